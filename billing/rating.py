"""Rating: plan segments and the usage behind them -> invoice lines. Pure functions.

Rules (DESIGN.md): quantities and prices are Decimal; each line is rounded once,
half-up, to whole pence; the total is the sum of the lines. Flat fees and included
quantities are prorated by day. A UTC day belongs to the plan in force at its first
instant (00:00), which is also when its device-day event is stamped; storage samples
and egress are rated under the plan in force at their exact time.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from billing.plans import METER_TITLES, UNITS, Terms
from billing.timeline import Segment
from metering.meters import BILLED, DEVICE_DAY, GB, STORAGE_SAMPLE
from metering.periods import Period, day_start, next_midnight_at_or_after
from tenants.plans import Plan

QUANTITY_PLACES = Decimal("0.000000001")
# Byte sums times prices need more than the default 28 significant digits in the worst case.
CONTEXT = decimal.Context(prec=60, rounding=ROUND_HALF_UP)


def to_pence(amount: Decimal) -> int:
    """The one rounding step of a line: half-up to a whole penny."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def pounds(pence: int | Decimal) -> str:
    sign = "-" if pence < 0 else ""
    value = abs(Decimal(pence)) / 100
    return (
        f"{sign}£{value:,.2f}"
        if value == value.quantize(Decimal("0.01"))
        else f"{sign}£{value:,.4f}"
    )


@dataclass
class Window:
    """The slice of a segment inside the billed month."""

    segment: Segment
    usage_from: datetime
    usage_to: datetime
    # Whole UTC days owned by this segment (for flat fees and included quantities).
    fee_from: datetime
    days: int


@dataclass
class RatedLine:
    kind: str  # flat_fee, proration, trial, usage, spend_cap
    plan: str
    description: str
    meter: str | None
    quantity: Decimal
    unit: str
    unit_price_pence: Decimal
    amount_pence: int
    usage_from: datetime
    usage_to: datetime
    usage_events: int = 0
    usage_total: int = 0


def windows(period: Period, segments: list[Segment]) -> list[Window]:
    out = []
    for seg in segments:
        # The first segment also owns earlier usage of its own month (backfilled
        # imports), never usage of months before the tenant existed.
        lo = max(
            Period.containing(seg.starts_at).start if seg.first else seg.starts_at, period.start
        )
        hi = min(seg.ends_at or period.end, period.end)
        if lo >= hi:
            continue
        fee_lo = day_start(seg.starts_at) if seg.first else next_midnight_at_or_after(seg.starts_at)
        fee_hi = next_midnight_at_or_after(seg.ends_at) if seg.ends_at else period.end
        fee_lo, fee_hi = max(fee_lo, period.start), min(fee_hi, period.end)
        out.append(Window(seg, lo, hi, fee_lo, max(0, (fee_hi - fee_lo).days)))
    return out


def _days_label(window: Window, period: Period) -> str:
    if window.days == period.days:
        return period.label
    if window.days == 0:  # less than a day between two plan changes
        return f"{window.usage_from:%d %b %H:%M}–{window.usage_to:%d %b %H:%M} UTC"
    last = window.fee_from + timedelta(days=window.days - 1)
    return f"{window.fee_from.day}–{last.day} {period.label} ({window.days} of {period.days} days)"


def _fee_line(window: Window, period: Period) -> RatedLine | None:
    terms = window.segment.terms
    common = dict(
        plan=terms.plan.value, meter=None, usage_from=window.usage_from, usage_to=window.usage_to
    )
    if terms.plan is Plan.trial:
        return RatedLine(
            kind="trial",
            description=f"Starter trial, {_days_label(window, period)}, free",
            quantity=Decimal(window.days),
            unit="day",
            unit_price_pence=Decimal(0),
            amount_pence=0,
            **common,
        )
    if not terms.monthly_fee_pence:
        return None
    if window.days == period.days:
        return RatedLine(
            kind="flat_fee",
            description=f"{terms.title} plan, {period.label}",
            quantity=Decimal(1),
            unit="month",
            unit_price_pence=terms.monthly_fee_pence,
            amount_pence=to_pence(terms.monthly_fee_pence),
            **common,
        )
    share = CONTEXT.divide(Decimal(window.days), Decimal(period.days))
    return RatedLine(
        kind="proration",
        description=f"{terms.title} plan, {_days_label(window, period)}",
        quantity=share.quantize(QUANTITY_PLACES),
        unit="month",
        unit_price_pence=terms.monthly_fee_pence,
        amount_pence=to_pence(CONTEXT.multiply(terms.monthly_fee_pence, share)),
        **common,
    )


def quantity_of(meter: str, total: int, period: Period) -> Decimal:
    if meter == DEVICE_DAY:  # device-months = device-days / days in month
        return CONTEXT.divide(Decimal(total), Decimal(period.days))
    if meter == STORAGE_SAMPLE:  # GB-months = sum of hourly GB samples / hours in month
        return CONTEXT.divide(CONTEXT.divide(Decimal(total), GB), Decimal(period.hours))
    return CONTEXT.divide(Decimal(total), GB)


def _usage_line(
    window: Window, period: Period, meter: str, total: int, events: int
) -> RatedLine | None:
    terms: Terms = window.segment.terms
    quantity = quantity_of(meter, total, period)
    rate = terms.rates.get(meter)
    title = f"{METER_TITLES[meter]} ({terms.title}), {_days_label(window, period)}"
    common = dict(
        kind="usage",
        plan=terms.plan.value,
        meter=meter,
        unit=UNITS[meter],
        usage_from=window.usage_from,
        usage_to=window.usage_to,
        usage_events=events,
        usage_total=total,
    )
    if rate is None:
        if not events:
            return None
        note = "not charged" if terms.blocked or terms.plan is Plan.enterprise else "included"
        return RatedLine(
            description=f"{title}, {note}",
            quantity=quantity.quantize(QUANTITY_PLACES),
            unit_price_pence=Decimal(0),
            amount_pence=0,
            **common,
        )
    included = CONTEXT.divide(
        CONTEXT.multiply(terms.included.get(meter, Decimal(0)), Decimal(window.days)),
        Decimal(period.days),
    )
    billable = max(Decimal(0), quantity - included)
    if included:
        title += f", {included.quantize(Decimal('0.01'))} {UNITS[meter]} included"
    return RatedLine(
        description=title,
        quantity=billable.quantize(QUANTITY_PLACES),
        unit_price_pence=rate,
        amount_pence=to_pence(CONTEXT.multiply(billable, rate)),
        **common,
    )


def _cap_line(lines: list[RatedLine], windows_: list[Window], period: Period) -> RatedLine | None:
    # Each window is capped by the cap in force at its end (within this month), so a
    # cap set or removed after the month ended does not change it.
    caps = [w.segment.spend_cap_at(w.usage_to - timedelta(microseconds=1)) for w in windows_]
    capped = [w for w, c in zip(windows_, caps, strict=True) if c is not None]
    if not capped:
        return None
    cap = [c for c in caps if c is not None][-1]
    plans = {w.segment.terms.plan.value for w in capped}
    usage = sum(line.amount_pence for line in lines if line.kind == "usage" and line.plan in plans)
    if usage <= cap:
        return None
    return RatedLine(
        kind="spend_cap",
        plan=capped[-1].segment.terms.plan.value,
        description=f"Monthly spend cap {pounds(cap)} (usage charges were {pounds(usage)})",
        meter=None,
        quantity=Decimal(1),
        unit="month",
        unit_price_pence=Decimal(cap - usage),
        amount_pence=cap - usage,
        usage_from=period.start,
        usage_to=period.end,
    )


def rate(
    period: Period,
    segments: list[Segment],
    usage: dict[tuple[int, str], tuple[int, int]],
    *,
    draft: bool = False,
) -> list[RatedLine]:
    """``usage`` maps (index of the window in ``windows(period, segments)``, meter) to
    (sum of quantities, number of events) of the usage inside that window. A ``draft``
    (the preview) keeps a £0 line per priced meter, showing what will be charged as
    usage arrives; a finalized invoice drops lines with nothing behind them."""
    lines: list[RatedLine] = []
    wins = windows(period, segments)
    for index, window in enumerate(wins):
        fee = _fee_line(window, period)
        if fee:
            lines.append(fee)
        for meter in BILLED:
            total, events = usage.get((index, meter), (0, 0))
            line = _usage_line(window, period, meter, total, events)
            if line:
                lines.append(line)
    # No noise: a meter without usage, or a plan in force for less than a day, adds
    # nothing a reader needs. Lines with usage behind them stay, even if included.
    lines = [line for line in lines if not _empty(line, draft)]
    cap = _cap_line(lines, wins, period)
    if cap:
        lines.append(cap)
    return lines


def _empty(line: RatedLine, draft: bool) -> bool:
    if draft and line.kind == "usage":
        return False
    return (
        line.kind != "flat_fee"
        and line.quantity == 0
        and line.amount_pence == 0
        and line.usage_events == 0
    )
