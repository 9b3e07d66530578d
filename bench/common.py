"""Shared bench plumbing: the embedded stack and a Hangar API in its own process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.embedded import EmbeddedPostgres, EmbeddedS3, free_port
from services.migrate import upgrade


@dataclass
class Stack:
    base: str
    operator_token: str
    s3: EmbeddedS3
    database_url: str


@contextmanager
def hangar_stack(root: Path, *, part_size: int = 16 * 1024 * 1024):
    """Yield (base_url, operator_token, s3) with a Hangar API process on loopback."""
    with hangar_api(root, part_size=part_size) as stack:
        yield stack.base, stack.operator_token, stack.s3


@contextmanager
def hangar_api(
    root: Path, *, part_size: int = 16 * 1024 * 1024, workers: int = 1
) -> Iterator[Stack]:
    """The same, also giving the database URL (for baselines measured in the database);
    ``workers``: API processes (``hangar serve --workers``)."""
    pg, s3 = EmbeddedPostgres(root), EmbeddedS3(root)
    url = pg.start()
    try:
        s3.start()
        upgrade(url)
        port, token = free_port(), secrets.token_urlsafe(16)
        env = {
            **os.environ,
            "HANGAR_DATABASE_URL": url,
            "HANGAR_S3_ENDPOINT": s3.endpoint,
            "HANGAR_S3_ACCESS_KEY": s3.access_key,
            "HANGAR_S3_SECRET_KEY": s3.secret_key,
            "HANGAR_OPERATOR_TOKEN": token,
            "HANGAR_REGISTRY_PART_SIZE": str(part_size),
        }
        api = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "serve", "--port", str(port)]
            + ["--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            yield Stack(base, token, s3, url)
        finally:
            api.terminate()
            api.wait(10)
    finally:
        s3.stop()
        pg.stop()


def new_tenant(base: str, operator_token: str) -> str:
    resp = httpx.post(
        f"{base}/v1/tenants/",
        json={"name": f"bench-{secrets.token_hex(4)}", "plan": "enterprise"},
        headers={"Authorization": f"Bearer {operator_token}"},
    )
    resp.raise_for_status()
    return resp.json()["admin_key"]["secret"]


def report(rows: list[tuple[str, float, float]]) -> None:
    """rows: (label, hangar MB/s, baseline MB/s)."""
    print(f"{'':<10}{'Hangar MB/s':>14}{'direct S3 MB/s':>16}{'ratio':>8}")
    for label, ours, base in rows:
        print(f"{label:<10}{ours:>14.1f}{base:>16.1f}{ours / base:>8.2f}")


# The nodes columns the fleet and console benches fill with COPY (rows built in this order).
NODE_COLUMNS = [
    "id",
    "tenant_id",
    "name",
    "labels",
    "facts",
    "credential_hash",
    "credential_prefix",
    "enrolled_at",
    "last_seen_at",
    "report",
    "desired_revision",
    "status",
]
