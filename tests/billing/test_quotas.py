"""Plan limits: inside each limit works; past it is a 402 that says the limit, the use
and how to raise it, before any work is done."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import timedelta

import pytest

from billing.quotas import check_node_limit
from core.db import utcnow
from core.errors import PaymentRequired
from fleet.models import Node
from registry.models import Blob, Model, ModelVersion
from tests.billing.scripts import GB, add_node, egress
from tests.factories import write_gguf


async def starter(tenants, operator):
    t = await tenants.create()
    await operator.set_plan(t.name, "starter")
    return t


async def fake_stored(hangar, tenant_id: str, nbytes: int) -> None:
    """A big model already stored (rows only: nothing in this test reads its bytes)."""
    tid = uuid.UUID(tenant_id)
    async with hangar.sessions() as session, session.begin():
        model = Model(tenant_id=tid, name="big")
        blob = Blob(
            tenant_id=tid,
            digest="sha256:" + secrets.token_hex(32),
            size=nbytes,
            s3_key=f"tenants/{tid}/blobs/{uuid.uuid4()}",
        )
        session.add_all([model, blob])
        await session.flush()
        session.add(
            ModelVersion(
                tenant_id=tid,
                model_id=model.id,
                number=1,
                blob_id=blob.id,
                digest=blob.digest,
                size=nbytes,
                gguf={},
            )
        )


async def _enroll(hangar, tenant_id: str) -> None:
    """What the fleet's enrollment does: the check, then the node, in one transaction."""
    async with hangar.sessions() as session, session.begin():
        await check_node_limit(session, tenant_id=uuid.UUID(tenant_id))
        session.add(
            Node(
                tenant_id=uuid.UUID(tenant_id),
                name="n",
                labels={},
                facts={},
                report={},
                credential_hash=secrets.token_hex(32),
                credential_prefix="hgn_t",
                enrolled_at=utcnow(),
                desired_revision=0,
            )
        )


async def test_starter_allows_15_nodes_and_refuses_the_16th(tenants, operator, hangar):
    t = await starter(tenants, operator)
    await add_node(
        hangar, t.id, enrolled_at=utcnow(), revoked_at=utcnow()
    )  # revoked: does not count
    for _ in range(15):
        await _enroll(hangar, t.id)
    with pytest.raises(PaymentRequired) as refused:
        await _enroll(hangar, t.id)
    message = refused.value.message
    assert message.startswith("Starter allows 15 nodes; this tenant has 15.")
    assert (
        "`hangar billing plan payg`" in message and "`hangar tenants plan TENANT payg`" in message
    )
    assert refused.value.detail == {"limit": "nodes", "limit_nodes": 15, "used_nodes": 15}


async def test_two_enrollments_racing_for_the_last_place_get_one(tenants, operator, hangar):
    t = await starter(tenants, operator)
    for _ in range(14):
        await add_node(hangar, t.id, enrolled_at=utcnow())
    results = await asyncio.gather(
        _enroll(hangar, t.id), _enroll(hangar, t.id), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "PaymentRequired"]


async def test_upload_past_50_gb_is_refused_at_start_from_the_declared_size(
    tenants, operator, tmp_path
):
    t = await starter(tenants, operator)
    refused = await t.request("POST", "/v1/uploads/", json={"model": "huge", "size": 60 * GB})
    assert refused.status_code == 402
    assert refused.json()["error"].startswith(
        "Starter allows 50.00 GB of stored models; "
        "this tenant stores 0 B and this upload adds 60.00 GB."
    )
    assert refused.json()["code"] == "payment_required"
    assert (await t.push(write_gguf(tmp_path / "m.gguf"), "small")).status_code == 201


async def test_upload_is_checked_again_at_completion(tenants, operator, hangar, tmp_path):
    t = await starter(tenants, operator)
    a = write_gguf(tmp_path / "a.gguf", seed=1).read_bytes()
    b = write_gguf(tmp_path / "b.gguf", seed=2).read_bytes()
    await fake_stored(hangar, t.id, 50 * GB - len(a) - len(b) + 1000)  # each fits alone, not both
    sessions = []
    for name, data in (("a", a), ("b", b)):
        started = await t.request("POST", "/v1/uploads/", json={"model": name, "size": len(data)})
        assert started.status_code == 201, started.text
        upload = started.json()["id"]
        await t.request(
            "PATCH", f"/v1/uploads/{upload}", content=data, headers={"Upload-Offset": "0"}
        )
        sessions.append(upload)
    assert (
        await t.request("POST", f"/v1/uploads/{sessions[0]}/complete", json={})
    ).status_code == 201
    late = await t.request("POST", f"/v1/uploads/{sessions[1]}/complete", json={})
    assert late.status_code == 402
    assert "Starter allows 50.00 GB of stored models" in late.json()["error"]
    # Nothing was lost: free space, then complete the same session.
    assert (await t.request("GET", f"/v1/uploads/{sessions[1]}")).json()["committed"] == len(b)
    assert (await t.request("DELETE", "/v1/models/big/versions/1")).status_code == 204
    assert (
        await t.request("POST", f"/v1/uploads/{sessions[1]}/complete", json={})
    ).status_code == 201


async def test_download_past_100_gb_a_month_is_refused(tenants, operator, hangar, tmp_path):
    t = await starter(tenants, operator)
    path = write_gguf(tmp_path / "m.gguf")
    await t.push(path, "m")
    await operator.imported([egress(t.id, 100 * GB - 50, utcnow() - timedelta(minutes=1))])
    refused = await t.request("GET", "/v1/models/m/versions/1/blob")
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error.startswith(
        "Starter allows 100.00 GB of downloads per month; this tenant has downloaded 100.00 GB"
    )
    assert "The allowance resets on 1 " in error and "pay-as-you-go" in error
    # A range that still fits is served, and counted.
    ok = await t.request("GET", "/v1/models/m/versions/1/blob", headers={"Range": "bytes=0-49"})
    assert ok.status_code == 206 and len(ok.content) == 50
    await hangar.downloads.drain()
    again = await t.request("GET", "/v1/models/m/versions/1/blob", headers={"Range": "bytes=0-0"})
    assert again.status_code == 402


async def test_pay_as_you_go_has_no_such_limits(tenants, operator, hangar, tmp_path):
    t = await tenants.create(plan="payg")
    await t.push(write_gguf(tmp_path / "m.gguf"), "m")
    await operator.imported([egress(t.id, 500 * GB, utcnow() - timedelta(minutes=1))])
    for _ in range(16):
        await _enroll(hangar, t.id)
    assert (await t.request("GET", "/v1/models/m/versions/1/blob")).status_code == 200
    assert (
        await t.request("POST", "/v1/uploads/", json={"model": "x", "size": 80 * GB})
    ).status_code == 201


async def test_payg_spend_cap_refuses_work_past_it_and_caps_the_invoice(
    tenants, operator, hangar, tmp_path
):
    t = await tenants.create(plan="payg")
    await t.push(write_gguf(tmp_path / "m.gguf"), "m")
    assert (await t.request("PUT", "/v1/billing/spend-cap", json={"cap_pence": 100})).json()[
        "spend_cap_pence"
    ] == 100
    await operator.imported([egress(t.id, 7 * GB, utcnow() - timedelta(minutes=2))])  # 98p
    assert (await t.request("GET", "/v1/models/m/versions/1/blob")).status_code == 200
    await hangar.downloads.drain()
    await operator.imported([egress(t.id, GB, utcnow() - timedelta(minutes=1))])  # 112p
    refused = await t.request("GET", "/v1/models/m/versions/1/blob")
    assert refused.status_code == 402
    assert refused.json()["error"].startswith("This tenant's monthly spend cap is £1.00; usage in ")
    assert (
        "comes to £1.12" in refused.json()["error"]
        and "`hangar billing cap AMOUNT`" in refused.json()["error"]
    )
    preview = (await t.request("GET", "/v1/invoices/preview")).json()
    cap = [line for line in preview["lines"] if line["kind"] == "spend_cap"]
    assert cap and cap[0]["amount_pence"] == 100 - 112 and preview["total_pence"] == 100
    limits = {
        item["name"]: item for item in (await t.request("GET", "/v1/usage/")).json()["limits"]
    }
    assert limits["spend_cap"]["level"] == "reached"
    # Removing the cap lets work go on.
    await t.request("PUT", "/v1/billing/spend-cap", json={"cap_pence": None})
    assert (await t.request("GET", "/v1/models/m/versions/1/blob")).status_code == 200


async def test_enterprise_caps_come_from_the_contract(tenants, operator, hangar):
    t = await tenants.create()
    resp = await operator.request(
        "PUT",
        f"/v1/tenants/{t.name}/contract",
        json={
            "monthly_fee_pence": 50000,
            "device_month_pence": "300",
            "storage_gb_month_pence": "3",
            "egress_gb_pence": "8",
            "max_nodes": 2,
        },
    )
    assert resp.status_code == 200, resp.text
    await _enroll(hangar, t.id)
    await _enroll(hangar, t.id)
    with pytest.raises(PaymentRequired) as refused:
        await _enroll(hangar, t.id)
    assert refused.value.message.startswith("Enterprise allows 2 nodes; this tenant has 2.")
    assert "Ask your Hangar operator" in refused.value.message
