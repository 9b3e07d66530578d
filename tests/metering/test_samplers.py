"""The device-day and storage samplers: right counts, and idempotent even when two
schedulers run them at once."""

from __future__ import annotations

import asyncio

from billing.jobs import run_device_count
from services.components import Components
from services.scheduler import run_job
from tests.billing.scripts import add_node, at
from tests.factories import write_gguf


async def _usage(t, period: str) -> dict:
    resp = await t.request("GET", "/v1/usage/", params={"period": period})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_a_node_counts_for_each_day_it_was_enrolled_and_not_revoked(tenants, hangar):
    t = await tenants.create()
    await add_node(hangar, t.id, enrolled_at=at("2026-03-01", 9))
    await add_node(
        hangar, t.id, enrolled_at=at("2026-03-09", 23)
    )  # late on the 9th: counts the 9th
    await add_node(hangar, t.id, enrolled_at=at("2026-03-01"), revoked_at=at("2026-03-08", 12))
    await add_node(
        hangar, t.id, enrolled_at=at("2026-03-01"), revoked_at=at("2026-03-08")
    )  # gone at 00:00
    await add_node(hangar, t.id, enrolled_at=at("2026-03-11"))  # not yet enrolled

    # As of 10 March, noon: today and the three days before (7th..10th).
    first = await run_job(hangar, "device-count", now=at("2026-03-10", 12))
    assert first["covering"] == "2026-03-07..2026-03-10"
    usage = await _usage(t, "2026-03")
    assert usage["totals"]["device_days"] == 4 + 2 + 2 + 1
    assert [(d["date"], d["device_days"]) for d in usage["daily"]] == [
        ("2026-03-07", 3),
        ("2026-03-08", 2),
        ("2026-03-09", 2),
        ("2026-03-10", 2),
    ]
    assert usage["totals"]["device_months"] == "0.290323"  # 9 / 31

    again = await run_job(hangar, "device-count", now=at("2026-03-10", 18))
    assert again["written"] == 0
    assert (await _usage(t, "2026-03"))["totals"]["device_days"] == 9


async def test_two_schedulers_at_once_count_each_device_day_once(tenants, hangar, settings):
    t = await tenants.create()
    await add_node(hangar, t.id, enrolled_at=at("2026-02-01"))
    other = Components.build(settings)  # a second scheduler process, its own pool
    try:
        now = at("2026-02-20", 3)
        # With the advisory lock: one runs, the other skips or finds nothing to do.
        reports = await asyncio.gather(
            run_job(hangar, "device-count", now=now), run_job(other, "device-count", now=now)
        )
        assert sum(r["written"] for r in reports if r) >= 4
        # Without it (the domain function itself, twice at once): still exactly once.
        await asyncio.gather(
            run_device_count(hangar.sessions, now=at("2026-02-24"), settings=settings.billing),
            run_device_count(other.sessions, now=at("2026-02-24"), settings=settings.billing),
        )
    finally:
        await other.close()
    usage = await _usage(t, "2026-02")
    assert usage["totals"]["device_days"] == 8  # 17th..20th and 21st..24th


async def test_storage_is_sampled_per_hour_with_distinct_blobs_counted_once(
    tenants, hangar, tmp_path
):
    t = await tenants.create()
    one = write_gguf(tmp_path / "one.gguf", seed=1)
    two = write_gguf(tmp_path / "two.gguf", seed=2)
    for path, name in [(one, "a"), (one, "b"), (two, "c")]:  # "b" is the same bytes as "a"
        assert (await t.push(path, name)).status_code == 201
    await run_job(hangar, "storage-sample", now=at("2026-01-15", 13))
    await run_job(hangar, "storage-sample", now=at("2026-01-15", 13))  # same hour: nothing new
    await run_job(hangar, "storage-sample", now=at("2026-01-15", 14))
    usage = await _usage(t, "2026-01")
    stored = one.stat().st_size + two.stat().st_size
    assert usage["totals"]["storage_samples"] == 2
    assert float(usage["daily"][0]["storage_gb"]) == round(stored / 1e9, 6)


async def test_samplers_never_add_usage_to_an_invoiced_month(tenants, operator, hangar, tmp_path):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2022-06-01"))
    assert (await t.push(write_gguf(tmp_path / "m.gguf"), "m")).status_code == 201
    await run_job(hangar, "period-close", now=at("2022-07-02"))
    june = (await t.request("GET", "/v1/invoices/", params={"period": "2022-06"})).json()
    assert len(june) == 1 and june[0]["total_pence"] == 0
    await add_node(hangar, t.id, enrolled_at=at("2022-06-01"))
    # The lookback reaches back into June, which is invoiced: only July days are written.
    await run_job(hangar, "device-count", now=at("2022-07-01", 12))
    await run_job(hangar, "storage-sample", now=at("2022-06-20", 5))  # a late --at sample
    await run_job(hangar, "storage-sample", now=at("2022-07-01", 5))
    assert (await _usage(t, "2022-06"))["totals"]["device_days"] == 0
    assert (await _usage(t, "2022-06"))["totals"]["storage_samples"] == 0
    assert (await _usage(t, "2022-07"))["totals"]["device_days"] == 1
    assert (await _usage(t, "2022-07"))["totals"]["storage_samples"] == 1
