"""`hangar up` after a crash: killed with SIGKILL (alone, or with Postgres and SeaweedFS),
it starts again on the same data dir by itself; a second one on a running data dir says
where the first runs; a SeaweedFS that dies while up comes back on the same endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import httpx
import psutil

from services.embedded import free_port
from tests.factories import write_gguf
from tests.services.test_up import start_up, started_by_us, stop


async def kill_9(proc: asyncio.subprocess.Process) -> None:
    proc.kill()
    await proc.wait()


def weed_of(data_dir) -> psutil.Process:
    (weed,) = [p for p in started_by_us(data_dir) if p.name() == "weed"]
    return weed


async def second_up(data_dir, port) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANGAR_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "up", "--data-dir", str(data_dir),
        "--port", str(port), env={**env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode()


async def test_up_starts_again_after_kill_9_of_itself_and_of_all_three(tmp_path):
    data_dir, port = tmp_path / "hangar-data", free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await start_up(data_dir, port)
    token = (data_dir / "operator-token").read_text().strip()
    operator = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        assert (await http.post("/v1/tenants/", json={"name": "acme"}, headers=operator)).is_success

    # A second `hangar up` on the same data dir: where the first one runs, no traceback.
    code, out = await second_up(data_dir, free_port())
    assert code != 0
    assert f"already running at {base} (pid {proc.pid})" in out, out
    assert "Traceback" not in out

    # SIGKILL of hangar up alone: Postgres and SeaweedFS must not block the next start.
    await kill_9(proc)
    proc = await start_up(data_dir, port)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        tenants = (await http.get("/v1/tenants/", headers=operator)).json()
        assert [t["name"] for t in tenants] == ["acme"]

    # SIGKILL of all three at once (a power cut as far as the data dir knows).
    children = [p for p in started_by_us(data_dir) if p.pid != proc.pid]
    assert {p.name() for p in children} == {"postgres", "weed"}
    await kill_9(proc)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc = await start_up(data_dir, port)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        tenants = (await http.get("/v1/tenants/", headers=operator)).json()
        assert [t["name"] for t in tenants] == ["acme"]

    out = await stop(proc)
    assert proc.returncode == 0, out
    assert started_by_us(data_dir) == []


async def test_children_killed_while_up_are_restarted_and_requests_work_again(tmp_path):
    data_dir, port = tmp_path / "hangar-data", free_port()
    proc = await start_up(data_dir, port)
    token = (data_dir / "operator-token").read_text().strip()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        tenant = (
            await http.post(
                "/v1/tenants/", json={"name": "acme"}, headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
        key = {"Authorization": f"Bearer {tenant['admin_key']['secret']}"}
        path = write_gguf(tmp_path / "m.gguf", seed=41)
        pushed = await http.post("/v1/models/m/versions", content=path.read_bytes(), headers=key)
        assert pushed.status_code == 201, pushed.text

        old = weed_of(data_dir)
        old.kill()
        old.wait(30)
        # While it is down a download is a 503; within the watchdog's restart it works again.
        for _ in range(240):
            blob = await http.get("/v1/models/m/versions/latest/blob", headers=key)
            if blob.status_code == 200:
                break
            assert blob.status_code == 503, blob.text
            await asyncio.sleep(0.5)
        assert blob.status_code == 200 and blob.content == path.read_bytes()
        assert weed_of(data_dir).pid != old.pid

        # Postgres killed too: 503s with Retry-After while it recovers, never a 500.
        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        psutil.Process(postmaster).kill()
        for _ in range(240):
            listed = await http.get("/v1/models/", headers=key)
            if listed.status_code == 200:
                break
            assert listed.status_code == 503 and listed.headers["retry-after"], listed.text
            await asyncio.sleep(0.5)
        assert [m["name"] for m in listed.json()] == ["m"]

    out = await stop(proc)
    (tmp_path / "hangar-up.out").write_text(out)
    assert proc.returncode == 0, out
    # The operator is told why they restarted; start-up was quiet, the banner one line.
    assert "SeaweedFS exited" in out and "PostgreSQL exited" in out
    assert "XDG_RUNTIME_DIR" not in out and "apscheduler" not in out.lower()
    assert f"Hangar is starting at http://127.0.0.1:{port}  (API docs: http" in out
    assert started_by_us(data_dir) == []
