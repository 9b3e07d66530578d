"""Enterprise contracts: set by the operator, each one moving the tenant onto it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import Contract
from billing.plan_changes import set_plan
from billing.schemas import ContractIn, ContractOut
from core.errors import BadRequest
from tenants.plans import Plan


def contract_out(contract: Contract, effective_at: datetime | None = None) -> ContractOut:
    data = {
        name: getattr(contract, name) for name in ContractOut.model_fields if name != "effective_at"
    }
    return ContractOut(**data, effective_at=effective_at)


async def set_contract(
    session: AsyncSession, *, tenant_id: uuid.UUID, terms: ContractIn, now: datetime
) -> ContractOut:
    """A new contract and, from ``effective_at`` (default now), the enterprise plan under it."""
    effective_at = terms.effective_at or now
    contract = Contract(tenant_id=tenant_id, **terms.model_dump(exclude={"effective_at"}))
    session.add(contract)
    await session.flush()
    await set_plan(
        session,
        tenant_id=tenant_id,
        plan=Plan.enterprise,
        effective_at=effective_at,
        contract_id=contract.id,
    )
    return contract_out(contract, effective_at)


async def get_contract(session: AsyncSession, *, tenant_id: uuid.UUID) -> ContractOut:
    contract = await session.scalar(
        select(Contract)
        .where(Contract.tenant_id == tenant_id)
        .order_by(Contract.created_at.desc())
        .limit(1)
    )
    if contract is None:
        raise BadRequest(
            "this tenant has no enterprise contract; set one with `hangar contracts set TENANT ...`"
        )
    return contract_out(contract)
