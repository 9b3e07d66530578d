"""A tenant's plan history as segments: which terms were in force, from when to when.

Trial expiry is applied here as well as by the trial-expiry job, so a preview, an
invoice or a quota check is right even before the job has run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing.models import BillingAccount, Contract, PlanPeriod
from billing.plans import PlanName, Terms, terms_for


@dataclass(frozen=True)
class Segment:
    terms: Terms
    starts_at: datetime
    # Exclusive; None while it is the plan in force.
    ends_at: datetime | None
    # The first segment also owns usage recorded before it began (backfills).
    first: bool = False
    period_id: object = None

    def covers(self, moment: datetime) -> bool:
        return (self.first or moment >= self.starts_at) and (
            self.ends_at is None or moment < self.ends_at
        )


def after_trial(account: BillingAccount) -> PlanName:
    return PlanName.starter if account.payment_method else PlanName.lapsed


def build(
    periods: list[PlanPeriod], *, account: BillingAccount, contracts: dict[object, Contract]
) -> list[Segment]:
    periods = sorted(periods, key=lambda p: p.starts_at)
    segments: list[Segment] = []
    for i, period in enumerate(periods):
        ends = periods[i + 1].starts_at if i + 1 < len(periods) else None
        plan = PlanName(period.plan)
        terms = terms_for(
            plan,
            contract=contracts.get(period.contract_id),
            spend_cap_pence=account.spend_cap_pence,
        )
        trial_end = period.trial_ends_at
        if plan is PlanName.trial and trial_end is not None and (ends is None or trial_end < ends):
            segments.append(
                Segment(terms, period.starts_at, trial_end, first=i == 0, period_id=period.id)
            )
            segments.append(Segment(terms_for(after_trial(account)), trial_end, ends))
            continue
        segments.append(Segment(terms, period.starts_at, ends, first=i == 0, period_id=period.id))
    return segments


def in_force(segments: list[Segment], moment: datetime) -> Segment | None:
    for segment in reversed(segments):
        if segment.covers(moment):
            return segment
    return None
