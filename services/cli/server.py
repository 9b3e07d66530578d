"""Running Hangar: ``hangar up`` (embedded stack), ``serve``, ``scheduler``, ``migrate``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from contextlib import ExitStack
from pathlib import Path

import uvicorn
from pydantic import SecretStr

from core.settings import Settings
from services.cli.client import out

log = logging.getLogger("hangar")


def operator_token(settings: Settings) -> str:
    """From HANGAR_OPERATOR_TOKEN, else generated once and kept in the data dir."""
    if settings.operator_token.get_secret_value():
        return settings.operator_token.get_secret_value()
    path = settings.data_dir / "operator-token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def start_embedded(settings: Settings, stack: ExitStack) -> Settings:
    """Start embedded Postgres / S3 for whatever the environment did not point elsewhere."""
    from services.embedded import EmbeddedPostgres, EmbeddedS3

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.database.url:
        pg = EmbeddedPostgres(settings.data_dir.resolve())
        out.print("starting embedded PostgreSQL …")
        settings.database.url = pg.start()
        stack.callback(pg.stop)
    if not settings.s3.endpoint:
        s3 = EmbeddedS3(settings.data_dir.resolve(), bucket=settings.s3.bucket)
        out.print("starting embedded S3 (SeaweedFS) …")
        stack.callback(s3.stop)
        settings.s3.endpoint = s3.start()
        settings.s3.access_key, settings.s3.secret_key = s3.access_key, SecretStr(s3.secret_key)
    settings.operator_token = SecretStr(operator_token(settings))
    return settings


def migrate(settings: Settings) -> None:
    from services.migrate import upgrade

    if not settings.database.url:
        raise SystemExit(
            "set HANGAR_DATABASE_URL (or use `hangar up`, which starts its own Postgres)"
        )
    upgrade(settings.database.url)


async def _serve(settings: Settings, *, api: bool, jobs: bool) -> None:
    from services.api.app import create_app
    from services.api.guards import SERVER_LIMITS
    from services.api.metrics import start_listener as start_metrics_listener
    from services.components import Components
    from services.scheduler import build_scheduler

    hangar = Components.build(settings)
    await hangar.store.ensure_bucket()
    if api:
        start_metrics_listener(settings)
    scheduler = build_scheduler(hangar) if jobs else None
    if scheduler:
        scheduler.start()
    try:
        if api:
            config = uvicorn.Config(
                create_app(settings, hangar),
                host=settings.host,
                port=settings.port,
                log_level="info",
                timeout_graceful_shutdown=10,
                **SERVER_LIMITS,
            )
            await uvicorn.Server(config).serve()
        else:
            await asyncio.Event().wait()  # until Ctrl-C
    finally:
        if scheduler:
            scheduler.shutdown(wait=False)
        await hangar.close()


def run(settings: Settings, *, api: bool = True, jobs: bool = True) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        asyncio.run(_serve(settings, api=api, jobs=jobs))


def up(settings: Settings, data_dir: Path, port: int) -> None:
    settings.data_dir, settings.port = data_dir, port
    with ExitStack() as stack:
        start_embedded(settings, stack)
        out.print("applying migrations …")
        migrate(settings)
        url = f"http://{settings.host}:{settings.port}"
        out.print(
            f"\n[bold green]Hangar is starting at {url}[/]  (API docs: {url}/schema)\n"
            f"operator token: [bold]{settings.operator_token.get_secret_value()}[/]\n"
            f"  export HANGAR_URL={url} HANGAR_OPERATOR_TOKEN=<the token above>\n"
            f"data: {settings.data_dir.resolve()}   stop with Ctrl-C\n"
        )
        run(settings)
        out.print("stopping embedded services …")
