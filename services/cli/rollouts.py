"""``hangar rollout``: move a tag's nodes to another version in health-gated waves."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from services.cli import ids
from services.cli.client import JSON, NOT_FOUND, call, fail, print_json, say, show_table
from services.cli.fleet import labels, seconds

rollout = typer.Typer(
    help="Health-gated rollouts of a model version to a tag's nodes.", no_args_is_help=True
)

TARGET = Annotated[
    str,
    typer.Argument(
        help="NAME:TAG (its rollout in progress, else its latest) or a rollout id (or a unique prefix)"
    ),
]


def _find(target: str) -> dict[str, Any]:
    try:
        return call("GET", f"/v1/rollouts/{uuid.UUID(target)}")
    except ValueError:
        pass
    if ":" not in target and "@" not in target and ids.looks_like_prefix(target):
        rows = call("GET", "/v1/rollouts/")
        if any(str(r["id"]).startswith(target.lower()) for r in rows):
            return ids.match(target, rows, what="rollout", listing="hangar rollout ls")
    found = call("GET", "/v1/rollouts/", params={"model": target})
    if not found:
        fail(
            f"no rollout of {target}; start one with `hangar rollout start {target} --to VERSION`",
            NOT_FOUND,
        )
    return next((r for r in found if r["finished_at"] is None), found[0])


def _show(r: dict[str, Any], json: bool) -> None:
    if json:
        return print_json(r)
    say.print(
        f"rollout {r['id']}: {r['model']} version {r['from_version']} -> {r['to_version']}, "
        f"{r['state']}, wave {r['wave']} of {len(r['steps'])}"
        + (f" ({r['reason']})" if r["reason"] else "")
    )
    show_table(
        ["wave", "step", "nodes", "node", "state", "reason"],
        [
            [w["wave"], w["step"], w["nodes_total"], n["name"], n["state"], n["reason"]]
            for w in r["waves"]
            for n in (w["nodes"] or [{"name": "", "state": "", "reason": ""}])
        ],
    )


@rollout.command("start")
def start(
    model: Annotated[str, typer.Argument(help="NAME:TAG whose nodes move")],
    to: Annotated[str, typer.Option("--to", help="version number or sha256 digest")],
    label: Annotated[
        list[str], typer.Option(help="KEY=VALUE: only the tag's nodes with these labels")
    ] = [],  # noqa: B006
    steps: Annotated[
        str, typer.Option(help="cumulative wave sizes: counts or shares, ending at 100%")
    ] = "1,10%,50%,100%",
    bake: Annotated[
        str, typer.Option(help="how long each moved node must stay healthy (30s, 10m, 1h)")
    ] = "10m",
    max_unhealthy: Annotated[
        int, typer.Option(help="more unhealthy nodes than this stops and rolls back")
    ] = 1,
    json: JSON = False,
) -> None:
    """Start moving NAME:TAG's nodes to --to, wave by wave."""
    body = {
        "model": model,
        "to": to,
        "selector": labels(label) or None,
        "steps": [s.strip() for s in steps.split(",") if s.strip()],
        "bake_seconds": seconds(bake),
        "max_unhealthy": max_unhealthy,
    }
    _show(call("POST", "/v1/rollouts/", json=body), json)


@rollout.command("status")
def status(target: TARGET, json: JSON = False) -> None:
    """Each wave and each moved node's state."""
    _show(_find(target), json)


@rollout.command("ls")
def ls(json: JSON = False) -> None:
    """Rollouts of this tenant, newest first."""
    rows = call("GET", "/v1/rollouts/")
    if json:
        return print_json(rows)
    show_table(
        ["id", "model", "from", "to", "state", "wave", "started"],
        [
            [
                r["id"],
                r["model"],
                r["from_version"],
                r["to_version"],
                r["state"],
                f"{r['wave']}/{len(r['steps'])}",
                r["created_at"][:19],
            ]
            for r in rows
        ],
    )


def _action(name: str, target: str, json: bool) -> None:
    _show(call("POST", f"/v1/rollouts/{_find(target)['id']}/{name}"), json)


@rollout.command("pause")
def pause(target: TARGET, json: JSON = False) -> None:
    """Stop moving more nodes; moved ones stay where they are."""
    _action("pause", target, json)


@rollout.command("resume")
def resume(target: TARGET, json: JSON = False) -> None:
    """Carry on with a paused rollout."""
    _action("resume", target, json)


@rollout.command("abort")
def abort(target: TARGET, json: JSON = False) -> None:
    """Stop, and send every moved node back to the previous version."""
    _action("abort", target, json)
