"""``hangar enroll-tokens``, ``hangar nodes``, ``hangar deploy`` and ``hangar deployments``."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from services.cli import ids
from services.cli.client import JSON, USAGE, call, emit, fail, print_json, say, show_table

tokens = typer.Typer(help="Enrollment tokens: how machines join your tenant.", no_args_is_help=True)
nodes = typer.Typer(help="Your fleet: enrolled machines.", no_args_is_help=True)
deployments = typer.Typer(help="Which models go to which nodes.", no_args_is_help=True)

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

NODE = Annotated[str, typer.Argument(help="the node's name, id, or a unique prefix of its id")]


def node_id(given: str) -> str:
    return ids.resolve(given, "/v1/nodes/", what="node", listing="hangar nodes ls", by_name=True)


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
        parts.append(f"{m['name']}:{m['ref']} ({state})")
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
    say.print(
        f"token {token['id']} ({uses} uses, expires {_ago(token['expires_at'])} UTC): {token['secret']}"
    )
    say.print(
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
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="the token's id or a unique prefix of it")],
    json: JSON = False,
) -> None:
    """Revoke an enrollment token; nodes already enrolled keep working."""
    token_id = ids.resolve(
        token_id, "/v1/enrollment-tokens/", what="token", listing="hangar enroll-tokens ls"
    )
    token = call("DELETE", f"/v1/enrollment-tokens/{token_id}")
    emit(token or {"id": token_id, "revoked": True}, f"revoked {token_id}", json)


# --- nodes -------------------------------------------------------------------------


@nodes.command("ls")
def nodes_ls(
    json: JSON = False,
    limit: Annotated[
        int | None, typer.Option(help="at most this many nodes (default: all, page by page)")
    ] = None,
) -> None:
    """Each node's state, last heartbeat, and its models' sync state."""
    if limit is not None and limit < 1:
        fail("--limit must be at least 1", USAGE)
    rows = ids.list_all("/v1/nodes/", limit=limit)
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
def nodes_show(node: NODE, json: JSON = False) -> None:
    """One node: facts, resources, models, serving counters."""
    n = call("GET", f"/v1/nodes/{node_id(node)}")
    if json:
        return print_json(n)
    f = n["facts"]
    say.print(
        f"{n['name']} {n['id']}  state: {n['state']}  last seen: {_ago(n['last_seen_at'])} UTC"
    )
    say.print(
        f"labels: {n['labels']}  revision: applied {n['applied_revision']} of {n['desired_revision']}"
    )
    say.print(
        f"{f.get('os')} {f.get('arch')}, {f.get('cpu_cores')} cores, {f.get('memory_bytes', 0) / 1e9:.1f} GB RAM, "
        f"gpu: {f.get('gpu') or 'none'}, runtime {f.get('runtime_version')}, api {f.get('api_url')}"
    )
    c = n["counters"]
    say.print(
        f"served {c['completed']}/{c['requests']} requests, {c['prompt_tokens']}+{c['completion_tokens']} tokens, "
        f"{c['rejected']} rejected, {c['forwarded']} forwarded"
    )
    show_table(
        ["model", "ref", "digest", "state", "progress", "loaded", "reason"],
        [
            [
                m["name"],
                m["ref"],
                m["digest"],
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
    node: NODE,
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE to set, KEY- to remove")],
    json: JSON = False,
) -> None:
    """Set or remove labels (deployments by label selector follow them)."""
    remove = [p[:-1] for p in pairs if p.endswith("-") and "=" not in p]
    body = {"set": labels([p for p in pairs if p[:-1] not in remove]), "remove": remove}
    found = call("POST", f"/v1/nodes/{node_id(node)}/labels", json=body)
    emit(found, f"{found['name']}: {found['labels']}", json)


def _node_action(action: str, node: str, json: bool) -> None:
    found_id = node_id(node)
    found = call("POST", f"/v1/nodes/{found_id}/{action}")
    emit(found or {"id": found_id}, f"{action}d {found_id}", json)


@nodes.command("disable")
def nodes_disable(node: NODE, json: JSON = False) -> None:
    """Refuse the node's credential until enabled again."""
    _node_action("disable", node, json)


@nodes.command("enable")
def nodes_enable(node: NODE, json: JSON = False) -> None:
    """Accept a disabled node's credential again."""
    _node_action("enable", node, json)


@nodes.command("revoke")
def nodes_revoke(node: NODE, json: JSON = False) -> None:
    """Revoke the node's credential for good (it stops counting as a device)."""
    _node_action("revoke", node, json)


# --- deployments -------------------------------------------------------------------


def deploy(
    model: Annotated[
        str, typer.Argument(help="NAME:TAG (follows the tag) or NAME@sha256:… (pinned)")
    ],
    label: Annotated[
        list[str], typer.Option(help="KEY=VALUE: every node with all these labels (repeatable)")
    ] = [],  # noqa: B006
    node: Annotated[str | None, typer.Option(help="one node by name, id or id prefix")] = None,
    json: JSON = False,
) -> None:
    """Assign a model to nodes by id or by label selector."""
    if (node is None) == (not label):
        fail("give exactly one target: --node ID or --label KEY=VALUE")
    body = {
        "model": model,
        "node_id": node_id(node) if node else None,
        "selector": labels(label) or None,
    }
    d = call("POST", "/v1/deployments/", json=body)
    if json:
        return print_json(d)
    say.print(
        f"deployment {d['id']}: {d['model']}:{d['ref']} (version {d['version']}) -> {d['nodes']} node(s)"
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
                d["ref"],
                d["version"],
                d["node_id"] or ",".join(f"{k}={v}" for k, v in (d["selector"] or {}).items()),
                d["nodes"],
            ]
            for d in rows
        ],
    )


@deployments.command("rm")
def deployments_rm(
    deployment_id: Annotated[str, typer.Argument(help="the id or a unique prefix of it")],
    json: JSON = False,
) -> None:
    """Remove a deployment; its nodes drop the model at their next heartbeat."""
    deployment_id = ids.resolve(
        deployment_id, "/v1/deployments/", what="deployment", listing="hangar deployments ls"
    )
    call("DELETE", f"/v1/deployments/{deployment_id}")
    emit({"removed": deployment_id}, f"removed {deployment_id}", json)
