"""``hangar``: run the control plane and talk to it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node_runtime.cli import app as node_app
from services.cli import billing, fleet, ids, login, transfer, trust
from services.cli.choices import OpeningPlan
from services.cli.client import JSON, OPERATOR, call, emit, mode, print_json, say, show_table
from services.cli.entry import VERSION, HangarTyper
from services.cli.offline import register as register_offline

# The API's own key scopes: tenants.schemas is plain pydantic, fine for a CLI-only install.
from tenants.schemas import Scope

app = HangarTyper(
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
trust.register(app, models)
login.register(app)
register_offline(app)


@app.callback()
def main(version: VERSION = False) -> None:
    """Hangar: model registry and fleet control plane for private AI. Exit codes: 0 ok,
    1 refused or failed, 2 usage error, 3 not found, 4 refused by the plan (402),
    5 server unreachable, 6 not allowed (401/403)."""
    mode.reset()  # per invocation: tests run many in one process


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
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="log every request and library INFO line")
    ] = False,
) -> None:
    """Start everything on this machine: embedded Postgres and S3 (unless
    HANGAR_DATABASE_URL / HANGAR_S3_ENDPOINT point elsewhere), migrations, API, scheduler."""
    from services.cli.server import up as run_up

    run_up(_settings(), data_dir, port, verbose=verbose)


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="API port")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="API processes sharing the port (one per core)")
    ] = 1,
) -> None:
    """Run the API only (production: settings from HANGAR_* variables)."""
    from services.cli.server import serve_workers

    settings = _settings()
    if port:
        settings.port = port
    serve_workers(settings, workers)


@app.command()
def scheduler() -> None:
    """Run the scheduled jobs only (production)."""
    from services.cli.server import run

    run(_settings(), api=False, jobs=True)


@app.command()
def migrate(json: JSON = False) -> None:
    """Apply database migrations to HANGAR_DATABASE_URL."""
    from services.cli.server import migrate as run_migrate

    run_migrate(_settings())
    emit({"migrated": True}, "database is up to date", json)


# --- tenants and keys ----------------------------------------------------------


@tenants.command("create")
def tenants_create(
    name: str,
    plan: Annotated[
        OpeningPlan, typer.Option(case_sensitive=False, help="starter begins with the trial")
    ] = OpeningPlan.starter,
    json: JSON = False,
) -> None:
    """Create a tenant and print its first admin API key (shown once)."""
    body = {"name": name, "plan": plan.value}
    tenant = call("POST", "/v1/tenants/", token_env=OPERATOR, json=body)
    if json:
        return print_json(tenant)
    say.print(f"tenant {tenant['name']} ({tenant['plan']})  id {tenant['id']}")
    say.print(f"admin key (shown once): {tenant['admin_key']['secret']}")


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
        list[Scope] | None,
        typer.Option(case_sensitive=False, help="repeatable; default admin"),
    ] = None,
    json: JSON = False,
) -> None:
    """Create an API key; the secret is shown once."""
    scopes = [s.value for s in scope] if scope else ["admin"]
    key = call("POST", "/v1/keys/", json={"name": name, "scopes": scopes})
    if json:
        return print_json(key)
    say.print(f"key {key['id']} ({', '.join(key['scopes'])}): {key['secret']}  (shown once)")


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
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id or a unique prefix of it")],
    json: JSON = False,
) -> None:
    """Revoke an API key; it stops working at once."""
    key_id = ids.resolve(key_id, "/v1/keys/", what="key", listing="hangar keys ls")
    key = call("DELETE", f"/v1/keys/{key_id}")
    emit(key or {"id": key_id, "revoked": True}, f"revoked {key_id}", json)


# --- registry ------------------------------------------------------------------


@app.command()
def push(
    path: Path,
    ref: Annotated[str, typer.Argument(help="NAME or NAME:TAG")],
    sign_key: Annotated[Path | None, typer.Option("--sign-key", help=trust.SIGN_KEY_HELP)] = None,
    json: JSON = False,
) -> None:
    """Upload a GGUF file (resumes an interrupted upload of the same file). Bytes this
    tenant already holds (same sha256) are not sent again."""
    result = transfer.push(path, ref, sign_key=sign_key)
    v = result["version"]
    note = ""
    if result["deduplicated"]:
        note = (
            " (already stored: nothing uploaded)"
            if not result["uploaded_bytes"]
            else (" (already stored: deduplicated)")
        )
    emit(
        result,
        f"{result['model']}:{result['tag']} -> version {v['number']}  {v['digest']}{note}",
        json,
    )


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:TAG or NAME@sha256:…")],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="file to write, or a directory (writes NAME.gguf)"),
    ] = Path("."),
    json: JSON = False,
) -> None:
    """Download a model version (resumes, verifies the sha256). The destination is
    checked before any byte moves; a file there with the same digest is kept and
    nothing is downloaded."""
    result = transfer.pull(ref, output)
    note = "  (already there: nothing downloaded)" if result["already_there"] else ""
    emit(result, f"{result['path']}  {result['digest']}{note}", json)


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
    say.print(f"{model['name']}  tags: {', '.join(f'{t}→{n}' for t, n in model['tags'].items())}")
    show_table(
        ["version", "tags", "digest", "size", "arch", "params", "quant", "ctx", "memory", "signed"],
        [
            [
                v["number"],
                ",".join(v["tags"]),
                v["digest"],
                _size(v["size"]),
                v["gguf"].get("architecture"),
                f"{v['gguf'].get('parameter_count', 0) / 1e6:.0f}M",
                v["gguf"].get("file_type"),
                v["gguf"].get("context_length"),
                _size(v["gguf"].get("estimated_memory_bytes", 0)),
                trust.signed_by(v),
            ]
            for v in model["versions"]
        ],
    )


@models.command("rm")
def models_rm(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION-NUMBER, NAME:TAG or NAME@sha256:…")],
    json: JSON = False,
) -> None:
    """Delete a version (its blob is freed when no version uses it)."""
    name, version = transfer.split_ref(ref)
    call("DELETE", f"/v1/models/{name}/versions/{version}")
    emit({"deleted": ref}, f"deleted {ref}", json)


@models.command("tag")
def models_tag(name: str, tag: str, version: int, json: JSON = False) -> None:
    """Point TAG of model NAME at VERSION."""
    model = call("PUT", f"/v1/models/{name}/tags/{tag}", json={"version": version})
    emit(model, f"{name}:{tag} -> version {version}", json)


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
    json: JSON = False,
) -> None:
    """Run one job now through the API (operator; idempotent) and print its report
    (JSON, with or without --json)."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(at) if at else None
    except ValueError:
        raise typer.BadParameter(
            f"{at!r} is not an ISO time such as 2026-05-02T01:00:00Z", param_hint="--at"
        ) from None
    if moment is not None and moment.tzinfo is None:
        raise typer.BadParameter(
            f"{at!r} needs a time zone, such as 2026-05-02T01:00:00Z", param_hint="--at"
        )
    body = {"at": moment.isoformat()} if moment else {}
    # A month's close for many tenants can take a while: wait up to an hour.
    result = call("POST", f"/v1/jobs/{name}/run", json=body, token_env=OPERATOR, timeout=3600)
    if not result["ran"]:
        print_json({"skipped": "running in another process; try again shortly"})
        return
    print_json(result["report"])


if __name__ == "__main__":
    app()
