"""Report files from nodes with no link: signed by the node's own key (pinned on the
first import, vouched for by its credential), stored once per report id, metered once
however they arrive, and refused whole when anything is wrong."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from core.db import transaction
from fleet.models import NodeReport
from metering.models import UsageEvent
from node_runtime import identity
from node_runtime.outbox import Outbox
from node_runtime.reports_export import export_reports
from services.scheduler import run_job
from tests.factories import FACTS, Tenant, enroll_node
from tests.fleet.test_bundles import offline_node
from wire.contract import Counters, Heartbeat, ModelStatus, NodeFacts

DIGEST = "sha256:" + "d" * 64


def beat(at: datetime, prompt: int, completion: int, **kw) -> Heartbeat:
    return Heartbeat(
        sent_at=at,
        facts=NodeFacts(**FACTS),
        models=[ModelStatus(name="m", ref="prod", digest=DIGEST, state="ready", loaded=True)],
        counters=Counters(
            requests=prompt // 10, prompt_tokens=prompt, completion_tokens=completion
        ),
        queued=True,
        **kw,
    )


def queue(data_dir: Path, *beats: Heartbeat) -> None:
    box = Outbox(data_dir, max_items=1000)
    for b in beats:
        box.put(b)


async def import_file(t: Tenant, path: Path):
    return await t.request(
        "POST",
        "/v1/offline/reports",
        content=path.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )


async def inference(hangar, node_id: str) -> int:
    async with transaction(hangar.sessions) as s:
        return int(
            await s.scalar(
                select(func.coalesce(func.sum(UsageEvent.quantity), 0)).where(
                    UsageEvent.node_id == uuid.UUID(node_id), UsageEvent.meter == "inference"
                )
            )
        )


async def stored(hangar, node_id: str) -> int:
    async with transaction(hangar.sessions) as s:
        return int(
            await s.scalar(select(func.count()).where(NodeReport.node_id == uuid.UUID(node_id)))
        )


async def test_reports_import_once_and_update_the_node(tenants, tmp_path, hangar):
    t = await tenants.create()
    node = await offline_node(t, "ship", tmp_path)
    shown = (await t.request("GET", f"/v1/nodes/{node['node_id']}")).json()
    assert shown["state"] == "offline" and shown["last_seen_at"] is None
    now = datetime.now(UTC)
    queue(
        node["data_dir"],
        beat(now - timedelta(minutes=30), 10, 5),
        beat(now - timedelta(minutes=20), 40, 20),
        beat(now - timedelta(minutes=10), 100, 50),
    )
    file = tmp_path / "reports.hangar"
    assert export_reports(node["data_dir"], file) == (3, 0)

    got = await import_file(t, file)
    assert got.status_code == 200, got.text
    assert got.json() | {"last_seen_at": None} == {
        "node_id": node["node_id"],
        "received": 3,
        "stored": 3,
        "duplicates": 0,
        "metered": 3,
        "key_pinned": True,
        "last_seen_at": None,
    }
    assert await inference(hangar, node["node_id"]) == 150
    shown = (await t.request("GET", f"/v1/nodes/{node['node_id']}")).json()
    assert datetime.fromisoformat(shown["last_seen_at"]) == now - timedelta(minutes=10)
    assert [(m["digest"], m["state"], m["loaded"]) for m in shown["models"]] == [
        (DIGEST, "ready", True)
    ]
    assert shown["counters"]["prompt_tokens"] == 100 and shown["facts"]["hostname"] == "box"

    # Twice: nothing added.
    again = await import_file(t, file)
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 3
    assert (
        await inference(hangar, node["node_id"]) == 150
        and await stored(hangar, node["node_id"]) == 3
    )

    # The next file carries on from there: only the new tokens count.
    queue(node["data_dir"], beat(now - timedelta(minutes=5), 130, 70))
    export_reports(node["data_dir"], tmp_path / "next.hangar")
    nxt = await import_file(t, tmp_path / "next.hangar")
    assert nxt.json()["stored"] == 1 and nxt.json()["key_pinned"] is False
    assert await inference(hangar, node["node_id"]) == 200

    # Metered like any enrolled, non-revoked node: a device-day for today.
    await run_job(hangar, "device-count", now=datetime.now(UTC))
    async with transaction(hangar.sessions) as s:
        days = await s.scalar(
            select(func.count()).where(
                UsageEvent.node_id == uuid.UUID(node["node_id"]), UsageEvent.meter == "device_day"
            )
        )
    assert days == 1


async def test_online_heartbeats_and_imported_reports_never_double_count(tenants, tmp_path, hangar):
    """A node that heartbeated online, then lost its link and queued reports: the one
    beat that went both ways, and the time online beats covered, count once."""
    t = await tenants.create()
    online = await enroll_node(t)
    now = datetime.now(UTC)
    both = beat(now, 80, 20)
    for b in (beat(now - timedelta(seconds=1), 30, 10), both):
        resp = await online.request(
            "POST", "/v1/fleet/heartbeat", json=b.model_dump(mode="json") | {"queued": False}
        )
        assert resp.status_code == 200, resp.text
    assert await inference(hangar, online.id) == 100
    data_dir = tmp_path / "node"
    identity.save(
        data_dir,
        identity.Identity(
            server="http://unreachable.invalid",
            node_id=uuid.UUID(online.id),
            tenant_id=uuid.UUID(t.id),
            name="box",
            credential=online.credential,
        ),
    )
    # Queued after the link went down (a few seconds on, by the node's clock).
    queue(data_dir, both, beat(datetime.now(UTC) + timedelta(seconds=5), 150, 50))
    export_reports(data_dir, tmp_path / "r.hangar")
    got = await import_file(t, tmp_path / "r.hangar")
    assert got.status_code == 200, got.text
    assert got.json()["metered"] == 1
    assert await inference(hangar, online.id) == 200  # not 300


async def test_bad_report_files_are_refused_and_store_nothing(tenants, tmp_path, hangar):
    t = await tenants.create()
    node = await offline_node(t, "rig", tmp_path)
    now = datetime.now(UTC)
    queue(node["data_dir"], beat(now - timedelta(minutes=2), 10, 5), beat(now, 20, 10))
    good = tmp_path / "good.hangar"
    export_reports(node["data_dir"], good)
    data = good.read_bytes()
    bad = tmp_path / "bad.hangar"

    async def refuses(content: bytes, *needles: str, tenant: Tenant = t) -> None:
        bad.write_bytes(content)
        resp = await import_file(tenant, bad)
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert "Nothing was stored" in error, error
        for needle in needles:
            assert needle in error, error
        assert await stored(hangar, node["node_id"]) == 0
        assert await inference(hangar, node["node_id"]) == 0

    await refuses(data[:-10], "truncated")
    await refuses(data[:10], "not a Hangar signed file")
    await refuses(data + b"\0" * 100, "unexpected bytes")
    # A changed token count (the bits of one digit), or the reports re-ordered.
    length = int.from_bytes(data[16:20], "big")
    manifest = data[20 : 20 + length]
    await refuses(
        data.replace(b'"prompt_tokens":20', b'"prompt_tokens":90'), "signature does not match"
    )
    reports = json.loads(manifest)["reports"]
    first, second = (json.dumps(r, separators=(",", ":")).encode() for r in reports)
    assert first in manifest and second in manifest
    swapped = manifest.replace(first, b"\x00").replace(second, first).replace(b"\x00", second)
    await refuses(data[:20] + swapped + data[20 + length :], "signature does not match")
    # Another tenant's admin cannot import it.
    other = await tenants.create()
    await refuses(data, "another tenant", tenant=other)
    # A key the node's credential does not vouch for (a forger who knows the node id).
    forger = tmp_path / "forger"
    ident = identity.load(node["data_dir"])
    identity.save(forger, ident.model_copy(update={"credential": "hgn_guessed"}))
    queue(forger, beat(now, 999, 999))
    export_reports(forger, tmp_path / "forged.hangar")
    await refuses((tmp_path / "forged.hangar").read_bytes(), "not vouched for")

    # The real file imports; afterwards a second key for the same node is refused.
    ok = await import_file(t, good)
    assert ok.status_code == 200 and ok.json()["stored"] == 2
    clone = tmp_path / "clone"
    identity.save(clone, ident)
    queue(clone, beat(now, 30, 15))
    export_reports(clone, tmp_path / "clone.hangar")
    resp = await import_file(t, tmp_path / "clone.hangar")
    assert resp.status_code == 400 and "pinned" in resp.json()["error"], resp.text
    assert await stored(hangar, node["node_id"]) == 2

    # A revoked node may not report any more.
    await t.request("POST", f"/v1/nodes/{node['node_id']}/revoke")
    queue(node["data_dir"], beat(now, 40, 20))
    export_reports(node["data_dir"], tmp_path / "late.hangar")
    late = await import_file(t, tmp_path / "late.hangar")
    assert late.status_code == 400 and "revoked" in late.json()["error"]
