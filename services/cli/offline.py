"""Sites with no link: ``hangar installation key``, ``hangar nodes create-offline``,
``hangar bundle create``, ``hangar fleet import-reports`` and the usage statements
between installations (``hangar usage statement|trust-installation|import-statement``)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Annotated

import httpx
import typer

from services.cli.client import (
    JSON,
    OPERATOR,
    UNREACHABLE,
    call,
    check,
    client,
    emit,
    err,
    fail,
    print_json,
    say,
    unreachable,
)
from services.cli.finance import usage
from services.cli.fleet import labels as parse_labels
from services.cli.fleet import nodes

installation = typer.Typer(help="This Hangar installation's signing key.", no_args_is_help=True)
bundle = typer.Typer(help="Signed bundles for nodes with no link.", no_args_is_help=True)
fleet = typer.Typer(help="Fleet files from sites with no link.", no_args_is_help=True)

LABELS = Annotated[list[str] | None, typer.Option("--label", help="KEY=VALUE (repeatable)")]
OUTPUT = Annotated[Path, typer.Option("-o", "--output", help="the file to write")]


def register(app: typer.Typer) -> None:
    app.add_typer(installation, name="installation")
    app.add_typer(bundle, name="bundle")
    app.add_typer(fleet, name="fleet")


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


@installation.command("key")
def installation_key(json: JSON = False) -> None:
    """The public key nodes and other installations verify this one's files with."""
    # A public route: any token will do (the operator's, or an API key).
    key = call(
        "GET",
        "/v1/installation/key",
        token_env=OPERATOR if os.environ.get(OPERATOR) else "HANGAR_TOKEN",
    )
    if json:
        return print_json(key)
    say.print(f"{key['public_key']}  (key id {key['key_id']})")


@nodes.command("create-offline")
def create_offline(
    name: str,
    label: LABELS = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="default: NAME.offline.json")
    ] = None,
    json: JSON = False,
) -> None:
    """A node for a machine that never reaches the control plane. Writes its identity
    file (credential inside, 0600): carry it over and run `hangar node init-offline`."""
    ident = call(
        "POST", "/v1/offline/nodes", json={"name": name, "labels": parse_labels(label or [])}
    )
    target = output or Path(f"{name}.offline.json")
    import json as json_

    _write_private(target, json_.dumps(ident, indent=2).encode())
    # The credential stays in the 0600 file: stdout only says where it is.
    emit(
        {"node_id": ident["node_id"], "name": name, "identity_file": str(target)},
        f"offline node {ident['node_id']} ({name}); identity written to {target}",
        json,
    )


@bundle.command("create")
def bundle_create(
    output: OUTPUT,
    node: Annotated[uuid.UUID | None, typer.Option(help="one node's id")] = None,
    label: LABELS = None,
    json: JSON = False,
) -> None:
    """One signed file with the desired state and model files of a node (--node) or of
    every node with the labels (--label k=v). Its bytes count as download egress."""
    body = {
        "node_id": str(node) if node else None,
        "labels": parse_labels(label) if label else None,
    }
    tmp = output.with_name(output.name + ".partial")
    answered = False
    with client(timeout=600) as http:
        try:
            with http.stream("POST", "/v1/offline/bundles", json=body) as resp:
                answered = True
                if not resp.is_success:
                    resp.read()
                    check(resp)
                total = int(resp.headers.get("content-length", 0))
                done = 0
                with tmp.open("wb") as f:
                    for chunk in resp.iter_bytes(1024 * 1024):
                        f.write(chunk)
                        done += len(chunk)
                        if total:
                            err.print(f"\r{done / 1e6:.1f} of {total / 1e6:.1f} MB", end="")
                err.print()
        except httpx.TransportError as exc:
            tmp.unlink(missing_ok=True)
            if not answered:  # no connection, or no answer: nothing was sent
                unreachable(http.base_url, exc)
            fail(f"the bundle download broke off ({exc}); run the command again", UNREACHABLE)
    if total and done != total:
        tmp.unlink(missing_ok=True)
        fail(f"got {done} of {total} bytes; run the command again")
    os.replace(tmp, output)
    emit({"output": str(output), "bytes": done}, f"wrote {output} ({done} bytes)", json)


@fleet.command("import-reports")
def import_reports(file: Path, json: JSON = False) -> None:
    """Import a node's signed report file (`hangar node export-reports`). Importing the
    same file twice adds nothing."""
    got = call(
        "POST",
        "/v1/offline/reports",
        content=_read(file),
        headers={"Content-Type": "application/octet-stream"},
        timeout=300,
    )
    if json:
        return print_json(got)
    pinned = "; node key pinned" if got["key_pinned"] else ""
    say.print(
        f"node {got['node_id']}: {got['stored']} report(s) stored, {got['duplicates']} already "
        f"imported{pinned}; last seen {got['last_seen_at']}"
    )


@usage.command("statement")
def statement(
    period: Annotated[str, typer.Option(help="a finished month, YYYY-MM")],
    output: OUTPUT,
    tenant: Annotated[
        list[str] | None, typer.Option(help="only this tenant (name or id; repeatable)")
    ] = None,
    json: JSON = False,
) -> None:
    """This installation's billed quantities per tenant for a month, signed by its key
    (operator), for the vendor's `hangar usage import-statement`."""
    with client(OPERATOR) as http:
        try:
            resp = http.get(
                "/v1/usage/statements/", params={"period": period, "tenant": tenant or []}
            )
        except httpx.TransportError as exc:
            unreachable(http.base_url, exc)
        if not resp.is_success:
            check(resp)
    _write_private(output, resp.content)
    emit(
        {"period": period, "output": str(output), "bytes": len(resp.content)},
        f"wrote the {period} statement to {output}",
        json,
    )


@usage.command("trust-installation")
def trust_installation(
    name: str,
    public_key: Annotated[str, typer.Argument(help="ed25519:… from `hangar installation key`")],
    tenant: Annotated[str, typer.Option(help="the tenant its statements bill (name or id)")],
    json: JSON = False,
) -> None:
    """Accept a tenant's monthly statements signed by an on-premise installation (operator)."""
    got = call(
        "POST",
        "/v1/usage/statements/issuers",
        token_env=OPERATOR,
        json={"tenant": tenant, "name": name, "public_key": public_key},
    )
    if json:
        return print_json(got)
    say.print(f"tenant {got['tenant_id']} now accepts statements from {name} (key {got['key_id']})")


@usage.command("import-statement")
def import_statement(
    file: Path,
    tenant: Annotated[str, typer.Option(help="the tenant billed (name or id)")],
    json: JSON = False,
) -> None:
    """Import a signed monthly statement as the tenant's usage (operator). The same file
    twice adds nothing; a month already invoiced is refused."""
    got = call(
        "POST",
        "/v1/usage/statements/import",
        token_env=OPERATOR,
        params={"tenant": tenant},
        content=_read(file),
        headers={"Content-Type": "application/octet-stream"},
    )
    if json:
        return print_json(got)
    say.print(
        f"{got['period']} from {got['issuer']}: {got['written']} quantities written, "
        f"{got['duplicates']} already imported"
    )
