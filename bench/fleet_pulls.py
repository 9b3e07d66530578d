"""One site of N node processes pulling one large blob: control-plane bytes and time.

Each node is the real node runtime (``node_runtime.cli run``) with model loading off
(``HANGAR_NODE_MAX_LOADED_MODELS=0``): the pull path (peers query, peer fetch or control-
plane download, sha256, rename) runs as in production, without llama.cpp. Three ways the
blob reaches the nodes, each in its own tenant, measured in the same run:

- without peers (the baseline): each node is a site of its own (its own ``site``
  label), so each downloads the blob from the control plane;
- all at once: one deployment to every node: every node asks for peers at the same
  moment and none holds the blob yet, so the control plane picks one to fetch it for
  the site and the others wait for it, then copy it;
- first one, then the site: the blob goes to one node, then to the others (what a
  rollout's ``--steps 1,100%`` does): they fetch it from that peer.

Control-plane bytes are the ``egress`` usage the control plane metered (what it sent);
peer bytes are what the nodes report fetching from peers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from bench.common import new_tenant
from bench.registry import make_gguf
from services.embedded import free_port

NODE_ENV = {
    # No llama.cpp load: the bench is about the pull, not serving.
    "HANGAR_NODE_MAX_LOADED_MODELS": "0",
    "HANGAR_NODE_MEMORY_BYTES": str(256 * 10**9),
    "HANGAR_NODE_HEARTBEAT_SECONDS": "1",
    "HANGAR_NODE_VERIFY_ON_START": "false",
}


def _node(root: Path, base: str, token: str, name: str) -> tuple[subprocess.Popen, str, str]:
    data_dir, port = root / name, free_port()
    url = f"http://127.0.0.1:{port}"
    enrolled = subprocess.run(
        [sys.executable, "-m", "node_runtime.cli", "enroll", "--server", base]
        + ["--token", token, "--data-dir", str(data_dir), "--name", name]
        + ["--port", str(port), "--advertise-url", url],
        capture_output=True,
        text=True,
        check=True,
    )
    node_id = enrolled.stdout.split("enrolled as node ")[1].split()[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "node_runtime.cli", "run", "--data-dir", str(data_dir)]
        + ["--port", str(port)],
        env={**os.environ, **NODE_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, node_id, url


def _up(urls: list[str], timeout: float) -> None:
    """Every node serving (and so heartbeating) before the clock starts."""
    end = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                raise SystemExit(f"node at {url} did not start in {timeout:.0f}s")
            time.sleep(0.2)


def _ready(http: httpx.Client, node_ids: list[str], digest: str) -> set[str]:
    done = set()
    for node_id in node_ids:
        models = http.get(f"/v1/nodes/{node_id}").json()["models"]
        if any(m["digest"] == digest and m["state"] == "ready" for m in models):
            done.add(node_id)
    return done


def _wait_ready(http: httpx.Client, node_ids: list[str], digest: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _ready(http, node_ids, digest) == set(node_ids):
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out: not every node holds {digest} ready after {timeout:.0f}s")


async def _egress(url: str, node_id: str) -> int:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        total = await conn.fetchval(
            "select coalesce(sum(quantity), 0) from usage_events "
            "where tenant_id = (select tenant_id from nodes where id = $1) and meter = 'egress'",
            uuid.UUID(node_id),
        )
    finally:
        await conn.close()
    return int(total)


def _settled_egress(url: str, node_id: str) -> int:
    """Egress is written after each download ends: wait until the sum stops moving."""
    last, same = -1, 0
    while same < 3:
        now = asyncio.run(_egress(url, node_id))
        same = same + 1 if now == last else 0
        last = now
        time.sleep(0.5)
    return last


def scenario(
    root: Path, stack, blob: Path, *, nodes: int, seed_first: bool, one_site: bool, timeout: float
) -> tuple[int, int, float]:
    """(control-plane bytes, peer bytes, seconds from the first deployment to the last
    node ready) for one site of ``nodes`` nodes in a fresh tenant."""
    admin = new_tenant(stack.base, stack.operator_token)
    procs: list[subprocess.Popen] = []
    with httpx.Client(
        base_url=stack.base, headers={"Authorization": f"Bearer {admin}"}, timeout=600
    ) as http:
        with blob.open("rb") as f:
            resp = http.post(
                "/v1/models/big/versions",
                params={"tag": "prod"},
                content=iter(lambda: f.read(1 << 20), b""),
                headers={"Content-Length": str(blob.stat().st_size)},
            )
        resp.raise_for_status()
        digest = resp.json()["version"]["digest"]
        token = http.post("/v1/enrollment-tokens/", json={"max_uses": nodes}).json()["secret"]
        site = root / f"seeded-{seed_first}-one-site-{one_site}"
        ids, urls = [], []
        try:
            for i in range(nodes):
                proc, node_id, url = _node(site, stack.base, token, f"site-{i}")
                procs.append(proc)
                ids.append(node_id)
                urls.append(url)
                labels = {"pool": "bench", "site": "ldn" if one_site else f"site-{i}"}
                http.post(f"/v1/nodes/{node_id}/labels", json={"set": labels})
            _up(urls, timeout)
            time.sleep(2)  # a heartbeat from each: online, so peers can find them
            start = time.perf_counter()
            if seed_first:
                http.post(
                    "/v1/deployments/", json={"model": "big:prod", "node_id": ids[0]}
                ).raise_for_status()
                _wait_ready(http, ids[:1], digest, timeout)
            http.post(
                "/v1/deployments/", json={"model": "big:prod", "selector": {"pool": "bench"}}
            ).raise_for_status()
            _wait_ready(http, ids, digest, timeout)
            seconds = time.perf_counter() - start
            sent = _settled_egress(stack.database_url, ids[0])
            time.sleep(2)  # a heartbeat or two: the counters of the last nodes
            peer = sum(http.get(f"/v1/nodes/{i}").json()["counters"]["peer_bytes"] for i in ids)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            shutil.rmtree(site, ignore_errors=True)
    return sent, peer, seconds


def run(root: Path, stack, *, nodes: int, size_mib: int, timeout: float) -> None:
    blob = root / "big.gguf"
    make_gguf(blob, size_mib * 1024 * 1024)
    size = blob.stat().st_size
    rows = []
    ways = (
        (False, False, f"without peers ({nodes} sites)"),
        (False, True, "all at once"),
        (True, True, "first one, then the site"),
    )
    for seed_first, one_site, label in ways:
        sent, peer, seconds = scenario(
            root,
            stack,
            blob,
            nodes=nodes,
            seed_first=seed_first,
            one_site=one_site,
            timeout=timeout,
        )
        rows.append((label, sent, peer, seconds))
    baseline = rows[0][1]
    print(f"\n{nodes} node processes pulling one {size_mib} MiB blob")
    head = f"{'':<28}{'control plane':>15}{'x blob':>8}{'vs baseline':>13}"
    print(head + f"{'from peers':>13}{'last ready':>12}")
    for label, sent, peer, seconds in rows:
        print(
            f"{label:<28}{sent / 2**20:>11.0f} MiB{sent / size:>8.2f}{sent / baseline:>13.2f}"
            f"{peer / 2**20:>9.0f} MiB{seconds:>10.1f} s"
        )
