"""Plan limits, enforced where the action happens and before any work is done.

Each refusal is a 402 whose message names the limit, the current use and how to
raise it. The same numbers feed the usage API (80 % warning, 100 % reached).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.accounts import Standing, standing
from billing.period_close import rate_tenants
from billing.plans import Terms
from billing.rating import CONTEXT, pounds, to_pence
from billing.schemas import LimitStatus
from core.db import utcnow
from core.errors import PaymentRequired
from fleet.models import Node
from metering.meters import DEVICE_DAY, EGRESS, GB, STORAGE_SAMPLE, format_gb
from metering.models import UsageEvent
from metering.periods import Period
from registry.models import Blob, ModelVersion
from registry.service import storage_bytes
from tenants.plans import Plan


def _how_to_raise(terms: Terms) -> str:
    if terms.plan is Plan.enterprise:
        return (
            "Ask your Hangar operator to raise it in your contract "
            "(`hangar contracts set TENANT ...`)."
        )
    return (
        "Move to pay-as-you-go, which has no such limit, with `hangar billing plan payg` "
        "(or the operator: `hangar tenants plan TENANT payg`)."
    )


def _blocked(state: Standing, terms: Terms) -> PaymentRequired:
    return PaymentRequired(
        "The Starter trial has ended and no payment method is on file, so uploads, "
        "downloads and new nodes are paused (nodes keep serving the models they hold). "
        "Add a card with `hangar billing payment-method pm_...`, then choose a plan with "
        "`hangar billing plan starter` or `hangar billing plan payg`.",
        detail={"limit": "trial_ended", "plan": terms.plan.value, "tenant": state.tenant.name},
    )


async def active_nodes(session: AsyncSession, *, tenant_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Node)
            .where(Node.tenant_id == tenant_id, Node.revoked_at.is_(None))
        )
        or 0
    )


async def egress_this_month(session: AsyncSession, *, tenant_id: uuid.UUID, now: datetime) -> int:
    period = Period.containing(now)
    total = await session.scalar(
        select(func.coalesce(func.sum(UsageEvent.quantity), 0)).where(
            UsageEvent.tenant_id == tenant_id,
            UsageEvent.meter == EGRESS,
            UsageEvent.occurred_at >= period.start,
            UsageEvent.occurred_at < period.end,
        )
    )
    return int(total or 0)


async def month_usage_charges(session: AsyncSession, state: Standing, *, now: datetime) -> int:
    """What this month's usage lines come to so far, under the plans that have a cap."""
    period = Period.containing(now)
    lines = (
        await rate_tenants(session, period=period, segments={state.tenant.id: state.segments})
    )[state.tenant.id]
    capped = {s.terms.plan.value for s in state.segments if s.terms.spend_cap_pence is not None}
    return sum(line.amount_pence for line in lines if line.kind == "usage" and line.plan in capped)


async def _check_spend(
    session: AsyncSession,
    state: Standing,
    terms: Terms,
    *,
    now: datetime,
    meter: str,
    quantity: Decimal,
    what: str,
) -> None:
    cap = terms.spend_cap_pence
    rate = terms.rates.get(meter)
    if cap is None or rate is None:
        return
    spent = await month_usage_charges(session, state, now=now)
    adds = to_pence(CONTEXT.multiply(quantity, rate))
    if spent + adds <= cap and spent < cap:
        return
    period = Period.containing(now)
    who = (
        "your Hangar operator (in the contract)"
        if terms.plan is Plan.enterprise
        else "`hangar billing cap AMOUNT`"
    )
    raise PaymentRequired(
        f"This tenant's monthly spend cap is {pounds(cap)}; "
        f"usage in {period.label} comes to {pounds(spent)} "
        f"and {what} would add about {pounds(adds)}. Raise or remove the cap with {who}, "
        f"or wait until the allowance resets on 1 {period.next().label}.",
        detail={
            "limit": "spend_cap",
            "limit_pence": cap,
            "used_pence": spent,
            "requested_pence": adds,
        },
    )


class Quotas:
    """The registry's ``Quota`` (each check in its own short transaction) and the fleet's
    ``NodeLimit`` (inside the enrollment transaction)."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    async def _state(
        self, session: AsyncSession, tenant_id: uuid.UUID, now: datetime
    ) -> tuple[Standing, Terms]:
        state = await standing(session, tenant_id=tenant_id)
        terms = state.at(now).terms
        if terms.blocked:
            raise _blocked(state, terms)
        return state, terms

    async def check_node_limit(self, session: AsyncSession, *, tenant_id: uuid.UUID) -> None:
        """The fleet's ``NodeLimit``: inside the enrollment's own transaction."""
        await check_node_limit(session, tenant_id=tenant_id)

    async def check_upload_start(
        self, *, tenant_id: uuid.UUID, size: int | None, now: datetime | None = None
    ) -> None:
        await self._check_storage(tenant_id=tenant_id, adding=size or 0, now=now or utcnow())

    async def check_upload_complete(
        self, *, tenant_id: uuid.UUID, digest: str | None, size: int, now: datetime | None = None
    ) -> None:
        async with self.sessions() as session:
            stored = digest is not None and await session.scalar(
                select(Blob.id).where(
                    Blob.tenant_id == tenant_id,
                    Blob.digest == digest,
                    select(ModelVersion.id).where(ModelVersion.blob_id == Blob.id).exists(),
                )
            )
        # The same bytes are stored (and billed) once: a re-push adds nothing.
        await self._check_storage(
            tenant_id=tenant_id, adding=0 if stored else size, now=now or utcnow()
        )

    async def _check_storage(self, *, tenant_id: uuid.UUID, adding: int, now: datetime) -> None:
        async with self.sessions() as session:
            state, terms = await self._state(session, tenant_id, now)
            limit = terms.limits.storage_bytes
            if limit is not None:
                current = await storage_bytes(session, tenant_id=tenant_id)
                if current + adding > limit:
                    raise PaymentRequired(
                        f"{terms.title} allows {format_gb(limit)} of stored models; "
                        f"this tenant stores {format_gb(current)} and this upload adds "
                        f"{format_gb(adding)}. Delete versions you no longer need "
                        f"(`hangar models rm`), or raise the limit. {_how_to_raise(terms)}",
                        detail={
                            "limit": "storage",
                            "limit_bytes": limit,
                            "used_bytes": current,
                            "requested_bytes": adding,
                        },
                    )
            period = Period.containing(now)
            left = Decimal((period.end - now).total_seconds()) / Decimal(period.hours * 3600)
            await _check_spend(
                session,
                state,
                terms,
                now=now,
                meter=STORAGE_SAMPLE,
                quantity=Decimal(adding) / GB * left,
                what=f"storing this upload ({format_gb(adding)}) for the rest of the month",
            )

    async def check_download(
        self, *, tenant_id: uuid.UUID, nbytes: int, now: datetime | None = None
    ) -> None:
        now = now or utcnow()
        async with self.sessions() as session:
            state, terms = await self._state(session, tenant_id, now)
            limit = terms.limits.egress_bytes
            if limit is not None:
                used = await egress_this_month(session, tenant_id=tenant_id, now=now)
                if used + nbytes > limit:
                    period = Period.containing(now)
                    raise PaymentRequired(
                        f"{terms.title} allows {format_gb(limit)} of downloads per month; "
                        f"this tenant has downloaded {format_gb(used)} in {period.label} "
                        f"and this download is "
                        f"{format_gb(nbytes)}. The allowance resets on 1 {period.next().label}. "
                        f"{_how_to_raise(terms)}",
                        detail={
                            "limit": "egress",
                            "limit_bytes": limit,
                            "used_bytes": used,
                            "requested_bytes": nbytes,
                        },
                    )
            await _check_spend(
                session,
                state,
                terms,
                now=now,
                meter=EGRESS,
                quantity=Decimal(nbytes) / GB,
                what=f"this download ({format_gb(nbytes)})",
            )


async def check_node_limit(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    now: datetime | None = None,
) -> None:
    """Call inside the transaction that enrolls the node, before inserting it: the
    account row is locked until that transaction ends, so two enrollments racing for
    the last place are serialized and only one gets it."""
    now = now or utcnow()
    state = await standing(session, tenant_id=tenant_id, lock=True)
    terms = state.at(now).terms
    if terms.blocked:
        raise _blocked(state, terms)
    limit = terms.limits.nodes
    if limit is not None:
        count = await active_nodes(session, tenant_id=tenant_id)
        if count + 1 > limit:
            raise PaymentRequired(
                f"{terms.title} allows {limit} nodes; this tenant has {count}. "
                f"Revoke a node you no longer use, or raise the limit. {_how_to_raise(terms)}",
                detail={"limit": "nodes", "limit_nodes": limit, "used_nodes": count},
            )
    period = Period.containing(now)
    days_left = Decimal((period.end - now).total_seconds()) / Decimal(86400)
    await _check_spend(
        session,
        state,
        terms,
        now=now,
        meter=DEVICE_DAY,
        quantity=days_left / period.days,
        what="another node for the rest of the month",
    )


def _status(name: str, limit: int, used: int, unit: str) -> LimitStatus:
    percent = (Decimal(used) * 100 / limit).quantize(Decimal("0.01")) if limit else Decimal(100)
    level = "reached" if percent >= 100 else "warning" if percent >= 80 else "ok"
    return LimitStatus(name=name, limit=limit, used=used, unit=unit, percent=percent, level=level)


async def limit_status(
    session: AsyncSession, state: Standing, *, now: datetime
) -> list[LimitStatus]:
    """Where the tenant stands against each limit of the plan in force now."""
    terms = state.at(now).terms
    out = []
    tenant_id = state.tenant.id
    if terms.limits.nodes is not None:
        out.append(
            _status(
                "nodes",
                terms.limits.nodes,
                await active_nodes(session, tenant_id=tenant_id),
                "nodes",
            )
        )
    if terms.limits.storage_bytes is not None:
        used = await storage_bytes(session, tenant_id=tenant_id)
        out.append(_status("storage", terms.limits.storage_bytes, used, "bytes"))
    if terms.limits.egress_bytes is not None:
        used = await egress_this_month(session, tenant_id=tenant_id, now=now)
        out.append(_status("egress", terms.limits.egress_bytes, used, "bytes"))
    if terms.spend_cap_pence is not None:
        spent = await month_usage_charges(session, state, now=now)
        out.append(_status("spend_cap", terms.spend_cap_pence, spent, "pence"))
    return out
