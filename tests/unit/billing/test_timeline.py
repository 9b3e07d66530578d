"""A tenant's plan history as segments, from plan periods that never touch the
database (the ORM rows are built in memory)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from billing.models import BillingAccount, PlanPeriod
from billing.plans import terms_for
from billing.timeline import Segment, after_trial, build, in_force
from tenants.plans import Plan


def at(day: int, month: int = 4) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC)


def period(plan: Plan, starts: datetime, trial_ends: datetime | None = None) -> PlanPeriod:
    return PlanPeriod(id=uuid.uuid4(), plan=plan.value, starts_at=starts, trial_ends_at=trial_ends)


def account(card_at: datetime | None = None) -> BillingAccount:
    return BillingAccount(
        payment_method="pm_card_visa" if card_at else None, payment_method_at=card_at
    )


def test_each_plan_period_runs_until_the_next_one_starts():
    segments = build(
        [period(Plan.starter, at(11)), period(Plan.payg, at(1))],  # any order
        account=account(),
        contracts={},
    )
    assert [(s.terms.plan, s.starts_at, s.ends_at) for s in segments] == [
        (Plan.payg, at(1), at(11)),
        (Plan.starter, at(11), None),
    ]
    assert [s.first for s in segments] == [True, False]


def test_a_trial_with_a_card_on_file_becomes_paid_starter_when_it_ends():
    segments = build(
        [period(Plan.trial, at(1), trial_ends=at(1, 5))], account=account(at(20)), contracts={}
    )
    assert [(s.terms.plan, s.starts_at, s.ends_at) for s in segments] == [
        (Plan.trial, at(1), at(1, 5)),
        (Plan.starter, at(1, 5), None),
    ]


def test_a_trial_without_a_card_blocks_writes_when_it_ends():
    segments = build(
        [period(Plan.trial, at(1), trial_ends=at(1, 5))], account=account(), contracts={}
    )
    assert segments[-1].starts_at == at(1, 5)
    assert segments[-1].terms.blocked and not segments[-1].terms.monthly_fee_pence


def test_a_card_added_after_the_trial_ended_does_not_turn_it_into_starter():
    assert after_trial(account(at(10, 5)), trial_end=at(1, 5)) is not Plan.starter
    assert after_trial(account(at(30)), trial_end=at(1, 5)) is Plan.starter


def test_the_plan_in_force_changes_at_the_boundary_and_the_first_owns_earlier_time():
    segments = build(
        [period(Plan.payg, at(5)), period(Plan.starter, at(11))],
        account=account(),
        contracts={},
    )
    assert in_force(segments, at(1)) is segments[0]  # a backfill before the tenant's first plan
    assert in_force(segments, at(10)) is segments[0]
    assert in_force(segments, at(11)) is segments[1]


def test_the_spend_cap_in_force_follows_its_history():
    segment = Segment(
        terms_for(Plan.payg, spend_cap_pence=9999),
        at(1),
        None,
        caps=((at(1), 1000), (at(15), None), (at(20), 2000)),
    )
    assert [segment.spend_cap_at(at(d)) for d in (1, 14, 15, 25)] == [1000, 1000, None, 2000]
    # Without a history, today's cap applies.
    assert Segment(segment.terms, at(1), None).spend_cap_at(at(2)) == 9999
