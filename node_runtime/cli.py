"""``hangar node``: enroll this machine, then run the agent and the local API."""

from __future__ import annotations

import json as json_
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.markup import escape

from node_runtime import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from node_runtime.settings import NodeSettings

app = typer.Typer(
    help="The node runtime: enroll this machine and serve its models.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

DATA_DIR = Annotated[
    Path | None,
    typer.Option(
        help="where the credential, model cache and outbox live "
        f"[default: HANGAR_NODE_DATA_DIR, else {DEFAULT_DATA_DIR}]",
        show_default=False,
    ),
]
# As `hangar`'s own --json (services.cli.client): one JSON document on stdout, errors as
# one JSON object on stderr. The node imports nothing of services/, hence these few lines.
JSON = Annotated[
    bool, typer.Option("--json", help="print JSON for scripts (errors: JSON on stderr)")
]


def node_settings(data_dir: Path | None, **given: Any) -> NodeSettings:
    """--data-dir, else HANGAR_NODE_DATA_DIR, else the default: the same for every command."""
    from node_runtime.settings import NodeSettings

    if data_dir is not None:
        given["data_dir"] = data_dir
    return NodeSettings(**given)


def emit(data: dict[str, Any], text: str, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json_.dumps(data, indent=2, default=str) + "\n")
    else:
        out.print(text)


def fail(label: str, message: str, as_json: bool) -> NoReturn:
    if as_json:
        body = {"error": message, "detail": None, "code": "failed", "status": None}
        sys.stderr.write(json_.dumps(body | {"exit_code": 1}) + "\n")
    else:
        err.print(f"[bold red]{label}:[/] {escape(message)}")
    raise typer.Exit(1)


def control_plane_url(value: str) -> str:
    """``--server $HANGAR_URL`` with the variable unset makes the next option the
    value (``--server --token hgt_…``): refuse anything but an http(s) URL, saying so."""
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise typer.BadParameter(
            f"{value!r} is not the control plane's URL; give one like http://hangar:8080 "
            "(if you wrote --server $HANGAR_URL, that variable is empty in this shell)"
        )
    return value.rstrip("/")


@app.command()
def enroll(
    server: Annotated[
        str,
        typer.Option(
            help="the control plane's URL, e.g. http://hangar:8080",
            envvar="HANGAR_URL",
            callback=control_plane_url,
        ),
    ],
    token: Annotated[
        str, typer.Option(help="an enrollment token (hgt_…) from `hangar enroll-tokens create`")
    ],
    data_dir: DATA_DIR = None,
    name: Annotated[str | None, typer.Option(help="node name (default: the hostname)")] = None,
    advertise_url: Annotated[
        str | None, typer.Option(help="how peer nodes reach this node's API")
    ] = None,
    port: Annotated[int, typer.Option(help="the port `hangar node run` will serve on")] = 8000,
    json: JSON = False,
) -> None:
    """Exchange an enrollment token for this node's own credential (stored 0600 under DATA_DIR)."""
    from node_runtime import control, facts, identity
    from node_runtime.errors import ControlPlaneRefused, ControlPlaneUnreachable
    from wire.contract import EnrollRequest

    # Only an explicit --advertise-url overrides HANGAR_NODE_ADVERTISE_URL.
    given = {"advertise_url": advertise_url} if advertise_url else {}
    settings = node_settings(data_dir, port=port, **given)
    data_dir = settings.data_dir
    from node_runtime.runtime import advertise_url as url_of

    node_facts = facts.gather(
        data_dir,
        api_url=url_of(settings),
        memory_bytes=settings.memory_bytes,
        found_gpus=facts.gpus(),
    )
    try:
        got = control.enroll(server, EnrollRequest(token=token, name=name, facts=node_facts))
    except ControlPlaneRefused as exc:
        fail(f"enrollment refused ({exc.status})", exc.message, json)
    except ControlPlaneUnreachable as exc:
        fail("cannot enroll", str(exc), json)
    path = identity.save(
        data_dir,
        identity.Identity(
            server=server,
            node_id=got.node_id,
            tenant_id=got.tenant_id,
            name=got.name,
            credential=got.credential,
            advertise_url=settings.advertise_url,
        ),
    )
    emit(
        {"node_id": got.node_id, "name": got.name, "credential_file": str(path)},
        f"enrolled as node [bold]{got.node_id}[/] ({got.name}); credential stored in {path}",
        json,
    )


@app.command()
def run(
    data_dir: DATA_DIR = None,
    port: Annotated[int | None, typer.Option(help="local API port (HANGAR_NODE_PORT)")] = None,
    host: Annotated[str | None, typer.Option(help="bind address (HANGAR_NODE_HOST)")] = None,
) -> None:
    """Run the agent (heartbeat, sync) and the local OpenAI-compatible API."""
    import uvicorn

    from node_runtime import identity
    from node_runtime.api import create_node_app
    from node_runtime.runtime import NodeRuntime

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = node_settings(data_dir)
    data_dir = settings.data_dir
    if port is not None:
        settings.port = port
    if host is not None:
        settings.host = host
    me = identity.load(data_dir)
    if not settings.advertise_url:  # what enrollment recorded, unless overridden
        settings.advertise_url = me.advertise_url
    runtime = NodeRuntime(settings, me)
    out.print(
        f"node {runtime.identity.name} serving on http://{settings.host}:{settings.port}/v1 "
        f"(control plane {runtime.identity.server or 'none: offline'}, air-gapped: {settings.air_gapped}, "
        f"peers reach it at {runtime.facts.api_url})"
    )
    uvicorn.run(
        create_node_app(runtime),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


@app.command("init-offline")
def init_offline(
    identity_file: Annotated[Path, typer.Argument(help="from `hangar nodes create-offline`")],
    data_dir: DATA_DIR = None,
    json: JSON = False,
) -> None:
    """Set up a node that never reaches the control plane (models come by bundle)."""
    from node_runtime.bundle import BundleRefused
    from node_runtime.bundle import init_offline as install

    data_dir = node_settings(data_dir).data_dir
    try:
        ident = install(identity_file, data_dir)
    except BundleRefused as exc:
        fail("error", str(exc), json)
    emit(
        {"node_id": ident.node_id, "name": ident.name, "data_dir": str(data_dir)},
        f"offline node {ident.node_id} ({ident.name}) set up in {data_dir}",
        json,
    )


@app.command("import-bundle")
def import_bundle(
    bundle: Annotated[Path, typer.Argument(help="a file from `hangar bundle create`")],
    data_dir: DATA_DIR = None,
    json: JSON = False,
) -> None:
    """Verify a bundle (signature, tenant, node, every blob digest) and install it whole;
    a refused bundle changes nothing. Restart `hangar node run` to serve it."""
    from node_runtime.bundle import BundleRefused
    from node_runtime.bundle import import_bundle as install

    data_dir = node_settings(data_dir).data_dir
    try:
        done = install(bundle, data_dir)
    except BundleRefused as exc:
        fail("bundle refused", f"{exc}; nothing was changed", json)
    if json:
        return emit(
            done.installed.model_dump(mode="json")
            | {
                "already": done.already,
                "blobs_written": done.blobs_written,
                "untrusted": done.untrusted,
            },
            "",
            json,
        )
    if done.already:
        out.print(f"bundle {done.installed.bundle_id} is already installed; nothing changed")
        return
    out.print(
        f"installed bundle {done.installed.bundle_id} (revision {done.installed.revision}, "
        f"{done.blobs_written} new blob(s)): {', '.join(done.installed.models) or 'no models'}"
    )
    for refusal in done.untrusted:
        err.print(f"[bold yellow]will not load:[/] {escape(refusal)}")


@app.command("export-reports")
def export_reports(
    output: Annotated[Path, typer.Option("-o", "--output", help="the report file to write")],
    data_dir: DATA_DIR = None,
    json: JSON = False,
) -> None:
    """Write the heartbeats kept in the outbox to a file signed by this node's key,
    for `hangar fleet import-reports` on the control plane."""
    from node_runtime.reports_export import export_reports as export

    written, left = export(node_settings(data_dir).data_dir, output)
    more = f"; {left} more queued: run it again" if left else ""
    emit(
        {"output": str(output), "written": written, "queued": left},
        f"wrote {written} report(s) to {output}{more}",
        json,
    )


if __name__ == "__main__":
    app()
