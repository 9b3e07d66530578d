"""Running Hangar: ``hangar up`` (embedded stack), ``serve``, ``scheduler``, ``migrate``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
from contextlib import ExitStack
from pathlib import Path

import uvicorn
from pydantic import SecretStr

from core.settings import Settings
from services.cli.client import fail, out
from services.cli.contexts import write_local_context

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


def claim_data_dir(data_dir: Path, url: str, stack: ExitStack) -> None:
    """One ``hangar up`` per data dir. The lock is an flock, which the kernel drops
    when its holder dies however it dies, so a killed run never blocks the next one."""
    import fcntl  # POSIX; hangar up's embedded stack runs on Linux and macOS

    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "up.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        try:
            running = json.loads((data_dir / "up.json").read_text())
            where = f"at {running['url']} (pid {running['pid']})"
        except (OSError, ValueError, KeyError):
            where = "(starting)"
        fail(
            f"Hangar is already running {where} on the data dir {data_dir.resolve()}: "
            "use that one, or stop it first (Ctrl-C in its terminal)"
        )
    stack.callback(lock.close)
    (data_dir / "up.json").write_text(json.dumps({"pid": os.getpid(), "url": url}))
    stack.callback((data_dir / "up.json").unlink, missing_ok=True)


def check_port_free(host: str, port: int) -> None:
    """Before starting anything: uvicorn would only find out after the whole stack is up."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            fail(f"port {port} on {host} is in use by another program: pick another with --port")


def start_embedded(settings: Settings, stack: ExitStack, *, supervise: bool = False) -> Settings:
    """Start embedded Postgres / S3 for whatever the environment did not point elsewhere."""
    from services.embedded import EmbeddedPostgres, EmbeddedS3

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.database.url:
        pg = EmbeddedPostgres(settings.data_dir.resolve())
        out.print("starting embedded PostgreSQL …")
        stack.callback(pg.stop)
        settings.database.url = pg.start()
        if supervise:
            pg.supervise()
    if not settings.s3.endpoint:
        s3 = EmbeddedS3(settings.data_dir.resolve(), bucket=settings.s3.bucket)
        out.print("starting embedded S3 (SeaweedFS) …")
        stack.callback(s3.stop)
        settings.s3.endpoint = s3.start()
        if supervise:
            s3.supervise()  # a SeaweedFS that dies comes back on the same ports
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


async def _serve(
    settings: Settings,
    *,
    api: bool,
    jobs: bool,
    verbose: bool = True,
    sock: socket.socket | None = None,
    metrics_listener: bool = True,
) -> None:
    from services.api.app import create_app
    from services.api.guards import SERVER_LIMITS
    from services.api.metrics import start_listener as start_metrics_listener
    from services.components import Components
    from services.scheduler import build_scheduler

    hangar = Components.build(settings)
    await hangar.store.ensure_bucket()
    if api and metrics_listener:
        start_metrics_listener(settings)
    scheduler = build_scheduler(hangar) if jobs else None
    if scheduler:
        scheduler.start()
    try:
        app = create_app(settings, hangar) if api else None
        if not verbose:  # Litestar's logging setup, just done, let every library's INFO in
            configure_logging(verbose)
        if app is not None:
            config = uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                # Quiet: hangar up prints its own banner.
                log_level="info" if verbose else "warning",
                # A line per request is thousands a second from a fleet's heartbeats;
                # the metrics middleware counts requests, the app logs what matters.
                access_log=False,
                timeout_graceful_shutdown=10,
                **SERVER_LIMITS,
            )
            await uvicorn.Server(config).serve(sockets=[sock] if sock else None)
        else:
            await asyncio.Event().wait()  # until Ctrl-C
    finally:
        if scheduler:
            scheduler.shutdown(wait=False)
        await hangar.close()


def configure_logging(verbose: bool = True) -> None:
    """Verbose: every library's INFO lines (production's ``serve``). Quiet (``hangar up``
    by default): Hangar's own lines at INFO, other libraries' warnings only."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    logging.getLogger("hangar").setLevel(logging.INFO)


def run(
    settings: Settings,
    *,
    api: bool = True,
    jobs: bool = True,
    verbose: bool = True,
    sock: socket.socket | None = None,
    metrics_listener: bool = True,
) -> None:
    configure_logging(verbose)
    # uvloop: the event loop itself is a large share of a heartbeat's cost.
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_loop()) as runner:
        runner.run(
            _serve(
                settings,
                api=api,
                jobs=jobs,
                verbose=verbose,
                sock=sock,
                metrics_listener=metrics_listener,
            )
        )


def _loop():
    try:
        import uvloop
    except ImportError:  # not on every platform; asyncio's own loop works too
        return None
    return uvloop.new_event_loop


def serve_workers(settings: Settings, workers: int) -> None:
    """``hangar serve --workers N``: N API processes accepting on one listening socket
    (bound here, inherited by fork), so one control plane uses every core. Each worker
    has its own connection pools; Ctrl-C or SIGTERM here stops them all."""
    if workers <= 1:
        run(settings, api=True, jobs=False)
        return
    from services.api.metrics import SHARED_DIR_ENV, share_between_workers
    from services.api.metrics import start_listener as start_metrics_listener

    sock = socket.create_server((settings.host, settings.port), reuse_port=False, backlog=2048)
    shared_metrics = tempfile.mkdtemp(prefix="hangar-metrics-")
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: it serves until its parent tells it to stop
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent relays Ctrl-C once
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            share_between_workers(shared_metrics)
            code = 0
            try:
                # The parent serves a bound metrics address: one port, every worker's counts.
                run(settings, api=True, jobs=False, sock=sock, metrics_listener=False)
            except BaseException:
                log.exception("API worker %d stopped", os.getpid())
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()
    os.environ[SHARED_DIR_ENV] = shared_metrics
    stop_metrics = start_metrics_listener(settings)
    log.info("serving on %s:%s with %d worker processes", settings.host, settings.port, workers)

    def stop(*_: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for pid in children:
            while True:
                try:
                    os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break
    finally:
        stop_metrics()
        shutil.rmtree(shared_metrics, ignore_errors=True)


def up(settings: Settings, data_dir: Path, port: int, *, verbose: bool = False) -> None:
    settings.data_dir, settings.port = data_dir, port
    url = f"http://{settings.host}:{settings.port}"
    with ExitStack() as stack:
        claim_data_dir(data_dir, url, stack)
        check_port_free(settings.host, settings.port)
        configure_logging(verbose)
        start_embedded(settings, stack, supervise=True)
        out.print("applying migrations …")
        migrate(settings)
        token = settings.operator_token.get_secret_value()
        # A new terminal needs no exports: `hangar` commands find this server and
        # its operator token through the context `local` (env variables still win).
        context_file = write_local_context(url, token)
        out.print(
            f"\n[bold green]Hangar is starting at {url}[/]  (API docs: {url}/schema, "
            f"console: {url}/console)\n"
            f"operator token: [bold]{token}[/]\n"
            f"CLI context 'local' saved in {context_file}: `hangar` commands use it\n"
            f"  (elsewhere: export HANGAR_URL={url} "
            f"HANGAR_OPERATOR_TOKEN=$(cat {data_dir}/operator-token))\n"
            f"data: {settings.data_dir.resolve()}   stop with Ctrl-C\n",
            soft_wrap=True,  # never wrapped at 80 columns: the lines are for copying
        )
        run(settings, verbose=verbose)
        out.print("stopping embedded services …")
