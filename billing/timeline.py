"""A tenant's plan history as segments: which terms were in force, from when to when.

Trial expiry is applied here as well as by the trial-expiry job, so a preview, an
invoice or a quota check is right even before the job has run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing.models import BillingAccount, Contract, PlanPeriod
from billing.plans import Terms, terms_for
from tenants.plans import Plan


@dataclass(frozen=True)
class Segment:
    terms: Terms
    starts_at: datetime
    # Exclusive; None while it is the plan in force.
    ends_at: datetime | None
    # The first segment also owns usage recorded before it began (backfills).
    first: bool = False
    period_id: object = None
    # Pay-as-you-go only: the spend cap history, (effective_at, cap) oldest first.
    caps: tuple[tuple[datetime, int | None], ...] | None = None

    def spend_cap_at(self, moment: datetime) -> int | None:
        """The spend cap in force at ``moment``: history beats today's cap."""
        if self.caps is None:
            return self.terms.spend_cap_pence
        cap = None
        for effective_at, value in self.caps:
            if effective_at <= moment:
                cap = value
        return cap

    def covers(self, moment: datetime) -> bool:
        return (self.first or moment >= self.starts_at) and (
            self.ends_at is None or moment < self.ends_at
        )


def after_trial(account: BillingAccount, trial_end: datetime) -> Plan:
    """Paid Starter if a payment method was on file when the trial ended."""
    on_file = account.payment_method and (
        account.payment_method_at is None or account.payment_method_at <= trial_end
    )
    return Plan.starter if on_file else Plan.lapsed


def build(
    periods: list[PlanPeriod],
    *,
    account: BillingAccount,
    contracts: dict[object, Contract],
    caps: list[tuple[datetime, int | None]] | None = None,
) -> list[Segment]:
    periods = sorted(periods, key=lambda p: p.starts_at)
    segments: list[Segment] = []
    for i, period in enumerate(periods):
        ends = periods[i + 1].starts_at if i + 1 < len(periods) else None
        plan = Plan(period.plan)
        terms = terms_for(
            plan,
            contract=contracts.get(period.contract_id),
            spend_cap_pence=account.spend_cap_pence,
        )
        history = tuple(sorted(caps)) if caps is not None and plan is Plan.payg else None
        trial_end = period.trial_ends_at
        if plan is Plan.trial and trial_end is not None and (ends is None or trial_end < ends):
            segments.append(
                Segment(terms, period.starts_at, trial_end, first=i == 0, period_id=period.id)
            )
            segments.append(Segment(terms_for(after_trial(account, trial_end)), trial_end, ends))
            continue
        segments.append(
            Segment(terms, period.starts_at, ends, first=i == 0, period_id=period.id, caps=history)
        )
    return segments


def in_force(segments: list[Segment], moment: datetime) -> Segment | None:
    for segment in reversed(segments):
        if segment.covers(moment):
            return segment
    return None
