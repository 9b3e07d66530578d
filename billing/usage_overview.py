"""The usage page: metering's report for a period, with the plan and its limits."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import standing
from billing.quotas import limit_status
from billing.schemas import UsageOverview
from metering.periods import Period
from metering.reports import UsageNames, usage_report


async def usage_overview(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    period: Period,
    now: datetime,
    names: UsageNames,
) -> UsageOverview:
    state = await standing(session, tenant_id=tenant_id)
    report = await usage_report(session, tenant_id=tenant_id, period=period, names=names)
    # The plan shown is the one in force now, or at the end of a past period.
    terms = state.at(min(now, period.end - timedelta(microseconds=1))).terms
    # Limits describe where the tenant stands now, so only the current period shows them.
    limits = await limit_status(session, state, now=now) if period == Period.containing(now) else []
    return UsageOverview(
        **report.model_dump(), plan=terms.plan, plan_title=terms.title, limits=limits
    )
