"""Finance exports a month's usage as CSV or JSON, from the API and the CLI."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date

from tests.billing.scripts import GB, at, device_days, egress, storage_hours
from tests.billing.test_cli import cli


async def test_finance_exports_usage_per_day_per_meter_and_egress_per_node(
    tenants, operator, http, base_url, tmp_path
):
    t = await tenants.create()
    node = str(uuid.uuid4())
    await operator.imported(
        device_days(t.id, node, date(2023, 2, 1), date(2023, 2, 2))
        + storage_hours(t.id, 2 * GB, at("2023-02-01"), at("2023-02-01", 3))
        + [egress(t.id, 5 * GB, at("2023-02-02", 8), node_id=node)]
    )
    finance = await t.key_with("finance")
    read = await t.key_with("read")
    resp = await http.get(
        "/v1/usage/export",
        params={"period": "2023-02", "format": "csv"},
        headers={"Authorization": f"Bearer {finance}"},
    )
    assert resp.status_code == 200 and resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.headers["content-disposition"] == 'attachment; filename="usage-2023-02.csv"'
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    daily = [
        (r["date"], r["meter"], r["quantity"], r["events"]) for r in rows if r["section"] == "daily"
    ]
    assert daily == [
        ("2023-02-01", "device_day", "1", "1"),
        ("2023-02-01", "storage_sample", str(6 * GB), "3"),
        ("2023-02-02", "device_day", "1", "1"),
        ("2023-02-02", "egress", str(5 * GB), "1"),
    ]
    by_node = [(r["node_id"], r["quantity"]) for r in rows if r["section"] == "egress_by_node"]
    assert by_node == [(node, str(5 * GB))]
    as_json = await http.get(
        "/v1/usage/export",
        params={"period": "2023-02", "format": "json"},
        headers={"Authorization": f"Bearer {finance}"},
    )
    assert [r["quantity"] for r in as_json.json()][:4] == [1, 6 * GB, 1, 5 * GB]
    refused = await http.get(
        "/v1/usage/export",
        params={"period": "2023-02"},
        headers={"Authorization": f"Bearer {read}"},
    )
    assert refused.status_code == 403

    path = tmp_path / "usage.csv"
    await cli(
        base_url,
        "usage",
        "export",
        "--period",
        "2023-02",
        "--format",
        "csv",
        "-o",
        str(path),
        token=finance,
    )
    assert path.read_text() == resp.text
    printed = await cli(base_url, "usage", "export", "--period", "2023-02", token=finance)
    assert printed == resp.text
