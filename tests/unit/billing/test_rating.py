"""Rating, without a database: segments and usage totals in, invoice lines out.

The same rules the integration tests check through the API (tests/billing), at
the level of the pure function, where every rounding case is cheap to state."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing.plans import terms_for
from billing.rating import pounds, rate, to_pence
from billing.timeline import Segment
from metering.meters import DEVICE_DAY, EGRESS, GB_INT, STORAGE_SAMPLE
from metering.periods import Period
from tenants.plans import Plan

APRIL = Period(2026, 4)  # 30 days, 720 hours


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 4, day, hour, tzinfo=UTC)


def whole_month(plan: Plan, **terms) -> list[Segment]:
    return [Segment(terms_for(plan, **terms), at(1), None, first=True)]


def amounts(lines) -> dict[str | None, int]:
    return {line.meter or line.kind: line.amount_pence for line in lines}


def test_each_line_is_rounded_once_half_up_to_a_whole_penny():
    assert [to_pence(Decimal(x)) for x in ("0.5", "1.5", "2.5", "2.4999", "466.2")] == [
        1,
        2,
        3,
        2,
        466,
    ]


def test_amounts_print_as_pounds():
    assert pounds(1916) == "£19.16"
    assert pounds(-250) == "-£2.50"
    assert pounds(123456) == "£1,234.56"
    assert pounds(Decimal("0.5")) == "£0.0050"  # a unit price below a penny keeps its digits


def test_worked_example_payg_april_2026():
    usage = {
        (0, DEVICE_DAY): (75, 75),  # 2.5 device-months
        (0, STORAGE_SAMPLE): (40 * GB_INT * 720, 720),  # 40 GB all month
        (0, EGRESS): (33_300_000_000, 1),  # 33.3 GB
    }
    lines = rate(APRIL, whole_month(Plan.payg), usage)
    assert amounts(lines) == {DEVICE_DAY: 1250, STORAGE_SAMPLE: 200, EGRESS: 466}
    assert sum(line.amount_pence for line in lines) == 1916
    devices = next(line for line in lines if line.meter == DEVICE_DAY)
    assert devices.quantity == Decimal("2.5") and devices.usage_events == 75


def test_starter_is_a_flat_fee_with_its_usage_included():
    lines = rate(APRIL, whole_month(Plan.starter), {(0, DEVICE_DAY): (300, 300)})
    assert amounts(lines) == {"flat_fee": 3500, DEVICE_DAY: 0}
    assert "included" in lines[1].description


def test_a_plan_change_mid_month_prorates_the_fee_by_day():
    segments = [
        Segment(terms_for(Plan.payg), at(1), at(11), first=True),
        Segment(terms_for(Plan.starter), at(11), None),
    ]
    usage = {(0, DEVICE_DAY): (10, 10), (1, DEVICE_DAY): (20, 20)}
    lines = rate(APRIL, segments, usage)
    by_plan = {(line.plan, line.kind): line for line in lines}
    # 10 pay-as-you-go days of one device: 10/30 device-months at £5.
    assert by_plan["payg", "usage"].amount_pence == 167
    # 20 of 30 days of Starter: £35 x 2/3 = 2333.33p, rounded once.
    proration = by_plan["starter", "proration"]
    assert proration.amount_pence == 2333 and "20 of 30 days" in proration.description
    assert by_plan["starter", "usage"].amount_pence == 0


def test_a_spend_cap_brings_usage_charges_down_to_the_cap():
    lines = rate(APRIL, whole_month(Plan.payg, spend_cap_pence=1000), {(0, DEVICE_DAY): (75, 75)})
    assert amounts(lines) == {DEVICE_DAY: 1250, "spend_cap": -250}
    assert sum(line.amount_pence for line in lines) == 1000


def test_a_spend_cap_not_reached_adds_no_line():
    lines = rate(APRIL, whole_month(Plan.payg, spend_cap_pence=5000), {(0, EGRESS): (GB_INT, 1)})
    assert amounts(lines) == {EGRESS: 14}


def test_the_preview_shows_every_priced_meter_and_the_invoice_only_what_was_used():
    draft = rate(APRIL, whole_month(Plan.payg), {}, draft=True)
    assert amounts(draft) == {DEVICE_DAY: 0, STORAGE_SAMPLE: 0, EGRESS: 0}
    assert rate(APRIL, whole_month(Plan.payg), {}) == []


def test_february_of_a_leap_year_has_29_days():
    february = Period(2024, 2)
    segments = [Segment(terms_for(Plan.payg), datetime(2024, 2, 1, tzinfo=UTC), None, first=True)]
    lines = rate(february, segments, {(0, DEVICE_DAY): (14, 14)})
    assert amounts(lines) == {DEVICE_DAY: 241}  # 14/29 x 500p = 241.38p
