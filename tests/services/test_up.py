"""`hangar up` as a newcomer runs it: one command, everything embedded,
data kept across restarts, Ctrl-C stops everything it started."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx
import psutil

from services.embedded import free_port
from tests.factories import write_gguf


async def start_up(data_dir, port) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANGAR_")}
    # hangar up saves a CLI context: kept next to the data dir, not in the user's home.
    env["XDG_CONFIG_HOME"] = str(data_dir.parent / "config")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with httpx.AsyncClient() as http:
        for _ in range(1200):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            assert proc.returncode is None, (await proc.stdout.read()).decode()
            await asyncio.sleep(0.1)
    raise AssertionError("hangar up did not become healthy")


def started_by_us(data_dir) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(data_dir) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


async def stop(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return out.decode()


async def test_up_runs_everything_keeps_data_and_stops_cleanly(tmp_path):
    data_dir, port = tmp_path / "hangar-data", free_port()
    proc = await start_up(data_dir, port)
    token = (data_dir / "operator-token").read_text().strip()
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        tenant = (
            await http.post(
                "/v1/tenants/", json={"name": "acme"}, headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
        key = {"Authorization": f"Bearer {tenant['admin_key']['secret']}"}
        path = write_gguf(tmp_path / "m.gguf", seed=40)
        assert (
            await http.post("/v1/models/m/versions", content=path.read_bytes(), headers=key)
        ).status_code == 201

    out = await stop(proc)
    assert proc.returncode == 0, out
    assert token in out  # the operator token is printed at start
    assert started_by_us(data_dir) == []  # Postgres and SeaweedFS are gone too

    # Restart on the same data dir: the tenant, its key and its model are still there.
    proc = await start_up(data_dir, port)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        models = (await http.get("/v1/models/", headers=key)).json()
        assert [m["name"] for m in models] == ["m"]
        blob = await http.get("/v1/models/m/versions/latest/blob", headers=key)
        assert blob.content == path.read_bytes()
    await stop(proc)
    assert started_by_us(data_dir) == []
