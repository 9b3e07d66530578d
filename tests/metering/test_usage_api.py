"""The usage API: what tenants and finance see for a period."""

from __future__ import annotations

from datetime import timedelta

from core.db import utcnow
from tests.billing.scripts import GB, add_node, at, egress
from tests.factories import write_gguf


async def test_real_downloads_show_per_node_and_per_model_version(
    tenants, operator, hangar, tmp_path
):
    t = await tenants.create()
    path = write_gguf(tmp_path / "m.gguf")
    await t.push(path, "llama")
    blob = await t.request("GET", "/v1/models/llama/versions/1/blob")
    part = await t.request(
        "GET", "/v1/models/llama/versions/1/blob", headers={"Range": "bytes=0-99"}
    )
    assert blob.status_code == 200 and part.status_code == 206
    await hangar.downloads.drain()
    node = await add_node(hangar, t.id, enrolled_at=utcnow() - timedelta(days=1))
    await operator.imported(
        [egress(t.id, 5000, utcnow() - timedelta(minutes=1), node_id=str(node.id))]
    )

    usage = (await t.request("GET", "/v1/usage/")).json()  # the current month by default
    size = path.stat().st_size
    assert usage["totals"]["egress_bytes"] == size + 100 + 5000
    by_version = {(v["model"], v["version"]): v["bytes"] for v in usage["egress_by_model_version"]}
    assert by_version[("llama", 1)] == size + 100
    by_node = {v["node"]: v["bytes"] for v in usage["egress_by_node"]}
    assert by_node == {None: size + 100, node.name: 5000}


async def test_usage_at_80_and_100_percent_of_a_limit_is_visible(tenants, operator, hangar):
    t = await tenants.create()  # a Starter trial: Starter's limits
    for _ in range(12):
        await add_node(hangar, t.id, enrolled_at=utcnow() - timedelta(days=1))
    start_of_month = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    await operator.imported([egress(t.id, 100 * GB, start_of_month)])
    usage = (await t.request("GET", "/v1/usage/")).json()
    assert usage["plan"] == "trial"
    limits = {item["name"]: item for item in usage["limits"]}
    assert limits["nodes"] == {
        "name": "nodes",
        "limit": 15,
        "used": 12,
        "unit": "nodes",
        "percent": "80.00",
        "level": "warning",
    }
    assert limits["egress"]["level"] == "reached" and limits["egress"]["used"] == 100 * GB
    assert limits["storage"]["level"] == "ok"


async def test_past_periods_and_bad_periods(tenants, operator):
    t = await tenants.create()
    await operator.imported(
        [egress(t.id, 3 * GB, at("2026-02-10", 8)), egress(t.id, GB, at("2026-02-11", 8))]
    )
    usage = (await t.request("GET", "/v1/usage/", params={"period": "2026-02"})).json()
    assert usage["days"] == 28 and usage["hours"] == 672
    assert usage["totals"]["egress_gb"] == "4.000000"
    assert [d["egress_bytes"] for d in usage["daily"]] == [3 * GB, GB]
    assert usage["limits"] == []  # limits describe now, not a past month
    bad = await t.request("GET", "/v1/usage/", params={"period": "2026-13"})
    assert bad.status_code == 400 and "use YYYY-MM" in bad.json()["error"]
