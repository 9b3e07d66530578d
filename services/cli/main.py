"""``hangar``: run the control plane and talk to it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer

from node_runtime.cli import app as node_app
from services.cli import billing, fleet, transfer
from services.cli.client import JSON, OPERATOR, call, out, print_json, show_table
from services.cli.offline import register as register_offline

app = typer.Typer(
    help="Hangar: model registry and fleet control plane for private AI.", no_args_is_help=True
)
tenants = typer.Typer(
    help="Tenants (platform operator; uses HANGAR_OPERATOR_TOKEN).", no_args_is_help=True
)
keys = typer.Typer(help="API keys of your tenant.", no_args_is_help=True)
models = typer.Typer(help="Models in the registry.", no_args_is_help=True)
jobs = typer.Typer(help="Scheduled jobs.", no_args_is_help=True)
app.add_typer(tenants, name="tenants")
app.add_typer(keys, name="keys")
app.add_typer(models, name="models")
app.add_typer(jobs, name="jobs")
app.add_typer(node_app, name="node")
fleet.register(app)
billing.register(app, tenants)
register_offline(app)


def _settings():
    from core.settings import Settings

    return Settings()


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


# --- running -----------------------------------------------------------------


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="where Postgres, S3 and the token live")] = Path(
        ".hangar"
    ),
    port: Annotated[int, typer.Option(help="API port")] = 8080,
) -> None:
    """Start everything on this machine: embedded Postgres and S3 (unless
    HANGAR_DATABASE_URL / HANGAR_S3_ENDPOINT point elsewhere), migrations, API, scheduler."""
    from services.cli.server import up as run_up

    run_up(_settings(), data_dir, port)


@app.command()
def serve(port: Annotated[int | None, typer.Option(help="API port")] = None) -> None:
    """Run the API only (production: settings from HANGAR_* variables)."""
    from services.cli.server import run

    settings = _settings()
    if port:
        settings.port = port
    run(settings, api=True, jobs=False)


@app.command()
def scheduler() -> None:
    """Run the scheduled jobs only (production)."""
    from services.cli.server import run

    run(_settings(), api=False, jobs=True)


@app.command()
def migrate() -> None:
    """Apply database migrations to HANGAR_DATABASE_URL."""
    from services.cli.server import migrate as run_migrate

    run_migrate(_settings())
    out.print("database is up to date")


# --- tenants and keys ----------------------------------------------------------


@tenants.command("create")
def tenants_create(
    name: str,
    plan: Annotated[str, typer.Option(help="starter, payg or enterprise")] = "starter",
    json: JSON = False,
) -> None:
    """Create a tenant and print its first admin API key (shown once)."""
    tenant = call("POST", "/v1/tenants/", token_env=OPERATOR, json={"name": name, "plan": plan})
    if json:
        return print_json(tenant)
    out.print(f"tenant [bold]{tenant['name']}[/] ({tenant['plan']})  id {tenant['id']}")
    out.print(f"admin key (shown once): [bold]{tenant['admin_key']['secret']}[/]")


@tenants.command("ls")
def tenants_ls(json: JSON = False) -> None:
    """List tenants."""
    rows = call("GET", "/v1/tenants/", token_env=OPERATOR)
    if json:
        return print_json(rows)
    show_table(
        ["id", "name", "plan", "created"],
        [[t["id"], t["name"], t["plan"], t["created_at"]] for t in rows],
    )


@keys.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="a label for the key")] = "default",
    scope: Annotated[
        list[str] | None, typer.Option(help="admin, finance or read (repeatable; default admin)")
    ] = None,
    json: JSON = False,
) -> None:
    """Create an API key; the secret is shown once."""
    key = call("POST", "/v1/keys/", json={"name": name, "scopes": scope or ["admin"]})
    if json:
        return print_json(key)
    out.print(
        f"key {key['id']} ({', '.join(key['scopes'])}): [bold]{key['secret']}[/]  (shown once)"
    )


@keys.command("ls")
def keys_ls(json: JSON = False) -> None:
    """List API keys (never their secrets)."""
    rows = call("GET", "/v1/keys/")
    if json:
        return print_json(rows)
    show_table(
        ["id", "name", "scopes", "prefix", "created", "revoked", "last used"],
        [
            [
                k["id"],
                k["name"],
                ",".join(k["scopes"]),
                k["prefix"] + "…",
                k["created_at"],
                k["revoked_at"],
                k["last_used_at"],
            ]
            for k in rows
        ],
    )


@keys.command("revoke")
def keys_revoke(key_id: uuid.UUID) -> None:
    """Revoke an API key; it stops working at once."""
    call("DELETE", f"/v1/keys/{key_id}")
    out.print(f"revoked {key_id}")


# --- registry ------------------------------------------------------------------


@app.command()
def push(path: Path, ref: Annotated[str, typer.Argument(help="NAME or NAME:TAG")]) -> None:
    """Upload a GGUF file (resumes an interrupted upload of the same file)."""
    result = transfer.push(path, ref)
    v = result["version"]
    note = " (already stored: deduplicated)" if result["deduplicated"] else ""
    out.print(f"{result['model']}:{result['tag']} -> version {v['number']}  {v['digest']}{note}")


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:TAG or NAME@sha256:…")],
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write")],
) -> None:
    """Download a model version (resumes, verifies the sha256)."""
    transfer.pull(ref, output)


@models.command("ls")
def models_ls(json: JSON = False) -> None:
    """List models."""
    rows = call("GET", "/v1/models/")
    if json:
        return print_json(rows)
    show_table(
        ["name", "versions", "tags", "latest", "size", "arch", "quant"],
        [
            [
                m["name"],
                m["versions"],
                ", ".join(f"{t}→{n}" for t, n in m["tags"].items()),
                m["latest"] and m["latest"]["number"],
                m["latest"] and _size(m["latest"]["size"]),
                m["latest"] and m["latest"]["gguf"].get("architecture"),
                m["latest"] and m["latest"]["gguf"].get("file_type"),
            ]
            for m in rows
        ],
    )


@models.command("show")
def models_show(name: str, json: JSON = False) -> None:
    """Show a model's versions, tags and GGUF facts."""
    model = call("GET", f"/v1/models/{name}")
    if json:
        return print_json(model)
    out.print(
        f"[bold]{model['name']}[/]  tags: {', '.join(f'{t}→{n}' for t, n in model['tags'].items())}"
    )
    show_table(
        ["version", "tags", "digest", "size", "arch", "params", "quant", "ctx", "memory"],
        [
            [
                v["number"],
                ",".join(v["tags"]),
                v["digest"][7:19] + "…",
                _size(v["size"]),
                v["gguf"].get("architecture"),
                f"{v['gguf'].get('parameter_count', 0) / 1e6:.0f}M",
                v["gguf"].get("file_type"),
                v["gguf"].get("context_length"),
                _size(v["gguf"].get("estimated_memory_bytes", 0)),
            ]
            for v in model["versions"]
        ],
    )


@models.command("rm")
def models_rm(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION-NUMBER, NAME:TAG or NAME@sha256:…")],
) -> None:
    """Delete a version (its blob is freed when no version uses it)."""
    name, version = transfer.split_ref(ref)
    call("DELETE", f"/v1/models/{name}/versions/{version}")
    out.print(f"deleted {ref}")


@models.command("tag")
def models_tag(name: str, tag: str, version: int) -> None:
    """Point TAG of model NAME at VERSION."""
    call("PUT", f"/v1/models/{name}/tags/{tag}", json={"version": version})
    out.print(f"{name}:{tag} -> version {version}")


# --- jobs ----------------------------------------------------------------------


@jobs.command("ls")
def jobs_ls(as_json: JSON = False) -> None:
    """List scheduled jobs (operator)."""
    found = call("GET", "/v1/jobs/", token_env=OPERATOR)
    if as_json:
        print_json(found)
        return
    show_table(["job", "schedule", "what"], [[j["name"], j["schedule"], j["what"]] for j in found])


@jobs.command("run")
def jobs_run(
    name: str,
    at: Annotated[
        str | None, typer.Option(help="act as of this ISO time (backfills), default now")
    ] = None,
) -> None:
    """Run one job now through the API (operator; idempotent) and print its report."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(at) if at else None
    except ValueError:
        raise typer.BadParameter(
            f"--at {at!r} is not an ISO time such as 2026-05-02T01:00:00Z"
        ) from None
    if moment is not None and moment.tzinfo is None:
        raise typer.BadParameter(f"--at {at!r} needs a time zone, such as 2026-05-02T01:00:00Z")
    body = {"at": moment.isoformat()} if moment else {}
    # A month's close for many tenants can take a while: wait up to an hour.
    result = call("POST", f"/v1/jobs/{name}/run", json=body, token_env=OPERATOR, timeout=3600)
    if not result["ran"]:
        print_json({"skipped": "running in another process; try again shortly"})
        return
    print_json(result["report"])


if __name__ == "__main__":
    app()
