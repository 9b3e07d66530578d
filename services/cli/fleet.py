"""``hangar enroll-tokens``, ``hangar nodes``, ``hangar deploy`` and ``hangar deployments``."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

import httpx
import typer

from services.cli.client import JSON, call, check, client, fail, out, print_json, show_table

tokens = typer.Typer(help="Enrollment tokens: how machines join your tenant.", no_args_is_help=True)
nodes = typer.Typer(help="Your fleet: enrolled machines.", no_args_is_help=True)
deployments = typer.Typer(help="Which models go to which nodes.", no_args_is_help=True)

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(app: typer.Typer) -> None:
    app.add_typer(tokens, name="enroll-tokens")
    app.add_typer(nodes, name="nodes")
    app.add_typer(deployments, name="deployments")
    app.command("deploy")(deploy)
    from services.cli.rollouts import rollout  # it reuses this module's parsers

    app.add_typer(rollout, name="rollout")


def seconds(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r}: use a number and a unit, e.g. 30m, 24h or 7d")
    return int(match[1]) * _UNITS[match[2]]


def labels(pairs: list[str]) -> dict[str, str]:
    out_ = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: labels are KEY=VALUE")
        out_[key] = value
    return out_


def _ago(ts: str | None) -> str:
    return ts[:19].replace("T", " ") if ts else "never"


def _models(node: dict) -> str:
    parts = []
    for m in node["models"]:
        state = m["state"]
        if state == "downloading" and m["bytes_total"]:
            state += f" {100 * m['bytes_done'] // m['bytes_total']}%"
        if m.get("loaded"):
            state += ", loaded"
        parts.append(f"{m['name']}:{m['ref'][:19]} ({state})")
    return "\n".join(parts)


# --- enrollment tokens -----------------------------------------------------------


@tokens.command("create")
def tokens_create(
    expires: Annotated[str, typer.Option(help="lifetime, e.g. 30m, 24h, 7d")] = "24h",
    uses: Annotated[int, typer.Option(help="how many machines may enroll with it")] = 1,
    name: Annotated[str, typer.Option(help="a label for the token")] = "default",
    label: Annotated[
        list[str], typer.Option(help="KEY=VALUE given to every node it enrolls (repeatable)")
    ] = [],  # noqa: B006
    json: JSON = False,
) -> None:
    """Create an enrollment token; the secret is shown once."""
    body = {
        "name": name,
        "expires_in_seconds": seconds(expires),
        "max_uses": uses,
        "labels": labels(label),
    }
    token = call("POST", "/v1/enrollment-tokens/", json=body)
    if json:
        return print_json(token)
    out.print(
        f"token {token['id']} ({uses} uses, expires {_ago(token['expires_at'])} UTC): [bold]{token['secret']}[/]"
    )
    out.print(
        "on the machine: hangar node enroll --server $HANGAR_URL --token <the token> --data-dir /var/lib/hangar-node"
    )


@tokens.command("ls")
def tokens_ls(json: JSON = False) -> None:
    """List enrollment tokens (never their secrets)."""
    rows = call("GET", "/v1/enrollment-tokens/")
    if json:
        return print_json(rows)
    show_table(
        ["id", "name", "prefix", "state", "uses", "expires", "labels"],
        [
            [
                t["id"],
                t["name"],
                t["prefix"] + "…",
                t["state"],
                f"{t['uses']}/{t['max_uses']}",
                _ago(t["expires_at"]),
                ",".join(f"{k}={v}" for k, v in t["labels"].items()),
            ]
            for t in rows
        ],
    )


@tokens.command("revoke")
def tokens_revoke(token_id: uuid.UUID) -> None:
    """Revoke an enrollment token; nodes already enrolled keep working."""
    call("DELETE", f"/v1/enrollment-tokens/{token_id}")
    out.print(f"revoked {token_id}")


# --- nodes -------------------------------------------------------------------------


@nodes.command("ls")
def nodes_ls(
    json: JSON = False,
    limit: Annotated[
        int | None, typer.Option(help="at most this many nodes (default: all, page by page)")
    ] = None,
) -> None:
    """Each node's state, last heartbeat, and its models' sync state."""
    rows: list[dict] = []
    after = None
    with client() as http:
        while limit is None or len(rows) < limit:
            params = {"limit": min(1000, limit - len(rows)) if limit else 1000}
            if after:
                params["after"] = after
            try:
                resp = http.get("/v1/nodes/", params=params)
            except httpx.TransportError as exc:
                fail(f"cannot reach Hangar at {http.base_url}: {exc}")
            rows += check(resp)
            if not (after := resp.headers.get("x-next-after")):
                break
    if json:
        return print_json(rows)
    show_table(
        ["id", "name", "state", "last seen (UTC)", "labels", "models"],
        [
            [
                n["id"],
                n["name"],
                n["state"],
                _ago(n["last_seen_at"]),
                ",".join(f"{k}={v}" for k, v in n["labels"].items()),
                _models(n),
            ]
            for n in rows
        ],
    )


@nodes.command("show")
def nodes_show(node_id: uuid.UUID, json: JSON = False) -> None:
    """One node: facts, resources, models, serving counters."""
    n = call("GET", f"/v1/nodes/{node_id}")
    if json:
        return print_json(n)
    f = n["facts"]
    out.print(
        f"[bold]{n['name']}[/] {n['id']}  state: [bold]{n['state']}[/]  last seen: {_ago(n['last_seen_at'])} UTC"
    )
    out.print(
        f"labels: {n['labels']}  revision: applied {n['applied_revision']} of {n['desired_revision']}"
    )
    out.print(
        f"{f.get('os')} {f.get('arch')}, {f.get('cpu_cores')} cores, {f.get('memory_bytes', 0) / 1e9:.1f} GB RAM, "
        f"gpu: {f.get('gpu') or 'none'}, runtime {f.get('runtime_version')}, api {f.get('api_url')}"
    )
    c = n["counters"]
    out.print(
        f"served {c['completed']}/{c['requests']} requests, {c['prompt_tokens']}+{c['completion_tokens']} tokens, "
        f"{c['rejected']} rejected, {c['forwarded']} forwarded"
    )
    show_table(
        ["model", "ref", "digest", "state", "progress", "loaded", "reason"],
        [
            [
                m["name"],
                m["ref"],
                m["digest"][:19] + "…",
                m["state"],
                f"{100 * m['bytes_done'] // m['bytes_total']}%" if m["bytes_total"] else "",
                m["loaded"],
                m.get("reason"),
            ]
            for m in n["models"]
        ],
    )


@nodes.command("label")
def nodes_label(
    node_id: uuid.UUID,
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE to set, KEY- to remove")],
) -> None:
    """Set or remove labels (deployments by label selector follow them)."""
    remove = [p[:-1] for p in pairs if p.endswith("-") and "=" not in p]
    node = call(
        "POST",
        f"/v1/nodes/{node_id}/labels",
        json={"set": labels([p for p in pairs if p[:-1] not in remove]), "remove": remove},
    )
    out.print(f"{node['name']}: {node['labels']}")


@nodes.command("disable")
def nodes_disable(node_id: uuid.UUID) -> None:
    """Refuse the node's credential until enabled again."""
    call("POST", f"/v1/nodes/{node_id}/disable")
    out.print(f"disabled {node_id}")


@nodes.command("enable")
def nodes_enable(node_id: uuid.UUID) -> None:
    """Accept a disabled node's credential again."""
    call("POST", f"/v1/nodes/{node_id}/enable")
    out.print(f"enabled {node_id}")


@nodes.command("revoke")
def nodes_revoke(node_id: uuid.UUID) -> None:
    """Revoke the node's credential for good (it stops counting as a device)."""
    call("POST", f"/v1/nodes/{node_id}/revoke")
    out.print(f"revoked {node_id}")


# --- deployments -------------------------------------------------------------------


def deploy(
    model: Annotated[
        str, typer.Argument(help="NAME:TAG (follows the tag) or NAME@sha256:… (pinned)")
    ],
    label: Annotated[
        list[str], typer.Option(help="KEY=VALUE: every node with all these labels (repeatable)")
    ] = [],  # noqa: B006
    node: Annotated[uuid.UUID | None, typer.Option(help="one node by id")] = None,
    json: JSON = False,
) -> None:
    """Assign a model to nodes by id or by label selector."""
    if (node is None) == (not label):
        fail("give exactly one target: --node ID or --label KEY=VALUE")
    body = {
        "model": model,
        "node_id": str(node) if node else None,
        "selector": labels(label) or None,
    }
    d = call("POST", "/v1/deployments/", json=body)
    if json:
        return print_json(d)
    out.print(
        f"deployment {d['id']}: {d['model']}:{d['ref'][:19]} (version {d['version']}) -> {d['nodes']} node(s)"
    )


@deployments.command("ls")
def deployments_ls(json: JSON = False) -> None:
    """List deployments with the version each resolves to now."""
    rows = call("GET", "/v1/deployments/")
    if json:
        return print_json(rows)
    show_table(
        ["id", "model", "ref", "version", "target", "nodes"],
        [
            [
                d["id"],
                d["model"],
                d["ref"][:19],
                d["version"],
                d["node_id"] or ",".join(f"{k}={v}" for k, v in (d["selector"] or {}).items()),
                d["nodes"],
            ]
            for d in rows
        ],
    )


@deployments.command("rm")
def deployments_rm(deployment_id: uuid.UUID) -> None:
    """Remove a deployment; its nodes drop the model at their next heartbeat."""
    call("DELETE", f"/v1/deployments/{deployment_id}")
    out.print(f"removed {deployment_id}")
