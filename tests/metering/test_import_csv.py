"""The usage import takes CSV too (the format finance exports and spreadsheets write),
checked by the same rules as JSON."""

from __future__ import annotations

import uuid


async def _post_csv(operator, csv: str):
    headers = {**operator.auth, "Content-Type": "text/csv"}
    return await operator.http.post("/v1/usage/import", content=csv, headers=headers)


async def test_csv_import_writes_the_events_and_is_idempotent(tenants, operator):
    t = await tenants.create()
    event_id = f"csv-{uuid.uuid4()}"
    csv = (
        "tenant_id,id,meter,quantity,occurred_at\n"
        f"{t.id},{event_id},egress,1000,2026-04-03T10:00:00Z\n"
    )
    first = await _post_csv(operator, csv)
    again = await _post_csv(operator, csv)
    assert first.status_code == 200, first.text
    assert first.json()["written"] == 1
    assert again.json() == {"received": 1, "written": 0, "duplicates": 1}


async def test_a_bad_csv_row_names_the_row_and_field(tenants, operator):
    t = await tenants.create()
    csv = f"tenant_id,id,meter,quantity,occurred_at\n{t.id},e1,egress,lots,2026-04-03T10:00:00Z\n"
    resp = await _post_csv(operator, csv)
    assert resp.status_code == 400
    assert "event 0" in resp.json()["error"] and "quantity" in resp.json()["error"]
