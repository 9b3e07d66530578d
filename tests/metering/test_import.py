"""The operator's usage import: every field validated, all or nothing, idempotent."""

from __future__ import annotations

import uuid

import pytest

from services.scheduler import run_job
from tests.billing.scripts import GB, at, egress


async def _april_egress(t) -> int:
    usage = (await t.request("GET", "/v1/usage/", params={"period": "2026-04"})).json()
    return usage["totals"]["egress_bytes"]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"meter": "gpu_hours"}, "meter", "'gpu_hours' is not a meter; use one of device_day"),
        ({"quantity": -5}, "quantity", "must not be negative, got -5"),
        ({"quantity": 1.5}, "quantity", "must be a whole number"),
        ({"quantity": "12"}, "quantity", "must be a whole number"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at", "is in the future"),
        ({"occurred_at": "2026-04-03T10:00:00"}, "occurred_at", "has no UTC offset"),
        ({"occurred_at": "last tuesday"}, "occurred_at", "is not an ISO 8601 time"),
        ({"tenant_id": "acme"}, "tenant_id", "must be a UUID"),
        ({"tenant_id": str(uuid.uuid4())}, "tenant_id", "is not a tenant"),
        ({"node_id": "n-1"}, "node_id", "must be a UUID"),
        ({"id": ""}, "id", "1 to 128 characters"),
        ({"quantiy": 3}, "quantiy", "is not a known field"),
    ],
)
async def test_a_bad_event_refuses_the_whole_batch_and_names_event_and_field(
    tenants, operator, change, field, words
):
    t = await tenants.create()
    good = egress(t.id, 1000, at("2026-04-02"))
    bad = {**egress(t.id, 7, at("2026-04-03")), **change}
    resp = await operator.import_events([good, bad])
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["error"].startswith("event 1")
    assert f"{field} " in body["error"] and words in body["error"]
    assert "Nothing from this batch was written" in body["error"]
    assert (
        body["detail"]["errors"][0]["index"] == 1 and body["detail"]["errors"][0]["field"] == field
    )
    assert await _april_egress(t) == 0  # not even the good event


async def test_every_problem_is_listed(tenants, operator):
    t = await tenants.create()
    events = [{**egress(t.id, 1, at("2026-04-02")), "quantity": -i} for i in range(1, 4)]
    resp = await operator.import_events(events)
    assert resp.status_code == 400
    assert [e["index"] for e in resp.json()["detail"]["errors"]] == [0, 1, 2]
    assert "2 more problem(s)" in resp.json()["error"]


async def test_import_is_idempotent_on_event_id(tenants, operator):
    t = await tenants.create()
    events = [egress(t.id, GB, at("2026-04-02", h)) for h in range(5)]
    assert await operator.imported(events) == {"received": 5, "written": 5, "duplicates": 0}
    assert await operator.imported(events) == {"received": 5, "written": 0, "duplicates": 5}
    # a duplicate inside one batch is written once too
    twice = egress(t.id, GB, at("2026-04-03"))
    assert await operator.imported([twice, twice]) == {"received": 2, "written": 1, "duplicates": 1}
    assert await _april_egress(t) == 6 * GB


async def test_same_event_id_in_two_tenants_is_two_events(tenants, operator):
    a, b = await tenants.create(), await tenants.create()
    await operator.imported([{**egress(a.id, 10, at("2026-04-02")), "id": "same"}])
    await operator.imported([{**egress(b.id, 20, at("2026-04-02")), "id": "same"}])
    assert await _april_egress(a) == 10 and await _april_egress(b) == 20


async def test_only_the_operator_may_import(tenants, http):
    t = await tenants.create()
    finance = {"Authorization": f"Bearer {await t.key_with('finance')}"}
    body = {"events": [egress(t.id, 1, at("2026-04-02"))]}
    for headers in (t.auth, finance, {}):
        assert (await http.post("/v1/usage/import", json=body, headers=headers)).status_code == 401


async def test_malformed_bodies_are_clear_400s(operator):
    for content, words in [
        (b"{not json", "not valid JSON"),
        (b'{"rows": []}', 'send {"events": [...]}'),
        (b'{"events": []}', "the batch is empty"),
        (b'{"events": [3]}', "event must be a JSON object"),
    ]:
        resp = await operator.request("POST", "/v1/usage/import", content=content)
        assert resp.status_code == 400, resp.text
        assert words in resp.json()["error"]


async def test_usage_for_an_invoiced_month_is_refused(tenants, operator, hangar):
    t = await tenants.create(plan="payg")
    await operator.set_plan(t.name, "payg", at("2025-06-01"))
    await operator.imported([egress(t.id, GB, at("2025-06-10"))])
    await run_job(hangar, "period-close", now=at("2025-07-02", 2))
    late = await operator.import_events([egress(t.id, GB, at("2025-06-20"))])
    assert late.status_code == 400
    assert "June 2025, which is already invoiced for this tenant (HGR-" in late.json()["error"]
    # the month after is open
    assert (await operator.import_events([egress(t.id, GB, at("2025-07-03"))])).status_code == 200


async def test_nul_characters_in_event_ids_and_attrs_are_400(tenants, operator):
    t = await tenants.create()
    event = {
        "tenant_id": t.id,
        "id": "ok-1",
        "meter": "egress",
        "quantity": 1,
        "occurred_at": "2026-01-05T00:00:00Z",
    }
    for bad, field in [
        ({"id": "e\x00vil"}, "id"),
        ({"attrs": {"note": "a\x00b"}}, "attrs"),
        ({"attrs": {"k\x00": "v"}}, "attrs"),
        ({"attrs": {"deep": ["x", {"y": "\x00"}]}}, "attrs"),
    ]:
        resp = await operator.import_events([{**event, **bad}])
        assert resp.status_code == 400, resp.text
        assert field in resp.text and "NUL" in resp.text


async def test_a_conflicting_resend_is_refused_and_an_exact_one_is_a_duplicate(tenants, operator):
    t = await tenants.create()
    event = egress(t.id, GB, at("2026-01-05"))
    assert (await operator.imported([event]))["written"] == 1
    assert await operator.imported([event]) == {"received": 1, "written": 0, "duplicates": 1}
    for change in [
        {"quantity": 2 * GB},
        {"meter": "inference"},
        {"occurred_at": "2026-01-06T00:00:00Z"},
        {"node_id": str(uuid.uuid4())},
    ]:
        resp = await operator.import_events([{**event, **change}])
        assert resp.status_code == 400, (change, resp.text)
        error = resp.json()["error"]
        assert event["id"] in error and "conflicts with what was recorded" in error
    # Within one batch too: the same id twice with different quantities.
    other = egress(t.id, GB, at("2026-01-07"))
    resp = await operator.import_events([other, {**other, "quantity": 3}])
    assert resp.status_code == 400 and other["id"] in resp.json()["error"]
    assert "conflicts with what was recorded" in resp.json()["error"]
