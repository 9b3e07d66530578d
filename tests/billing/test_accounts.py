"""A billing account is opened in the transaction that creates its tenant: it exists
before anything reads it, on the plan the tenant was created with."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from billing.models import BillingAccount, PlanPeriod


async def _rows(hangar, tenant_id: str) -> tuple[BillingAccount | None, list[PlanPeriod]]:
    async with hangar.sessions() as session:
        account = await session.get(BillingAccount, uuid.UUID(tenant_id))
        periods = list(
            await session.scalars(
                select(PlanPeriod).where(PlanPeriod.tenant_id == uuid.UUID(tenant_id))
            )
        )
    return account, periods


async def test_the_account_exists_right_after_the_tenant_is_created(tenants, http, hangar):
    t = await tenants.create(plan="starter")
    # Nothing has read the account yet: the rows were written with the tenant.
    account, periods = await _rows(hangar, t.id)
    assert account is not None and account.payment_method is None
    [first] = periods
    assert first.plan == "trial" and first.trial_ends_at - first.starts_at == timedelta(days=30)
    assert first.starts_at == account.created_at


async def test_the_tenant_shows_the_plan_it_is_on(tenants, http, settings):
    operator = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
    created = await http.post(
        "/v1/tenants/",
        json={"name": "acct-payg-" + uuid.uuid4().hex[:6], "plan": "payg"},
        headers=operator,
    )
    assert created.status_code == 201, created.text
    assert created.json()["plan"] == "payg"
    starter = await tenants.create(plan="starter")
    listed = {t["id"]: t["plan"] for t in (await http.get("/v1/tenants/", headers=operator)).json()}
    assert listed[created.json()["id"]] == "payg" and listed[starter.id] == "trial"


async def test_a_tenant_cannot_be_created_on_a_state_only_billing_reaches(http, settings):
    operator = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
    for plan in ["trial", "lapsed", "gold"]:
        resp = await http.post(
            "/v1/tenants/", json={"name": f"acct-{plan}", "plan": plan}, headers=operator
        )
        assert resp.status_code == 400, resp.text
        assert "plan" in resp.text
