"""Finalized invoices for finance: preview, list, show, trace, export, credit, void."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.accounts import standing
from billing.models import CreditNote, Invoice, InvoiceLine
from billing.period_close import next_numbers, rate_tenants
from billing.rating import RatedLine, pounds
from billing.schemas import (
    CreditNoteOut,
    InvoiceOut,
    InvoiceSummary,
    LineOut,
    LineUsage,
    UsageEventOut,
)
from billing.states import INVOICE, InvoiceStatus
from core.errors import BadRequest, Conflict, NotFound
from metering.models import UsageEvent
from metering.periods import Period
from tenants.models import Tenant

STATUSES = tuple(InvoiceStatus)


def _credited():
    return (
        select(func.coalesce(func.sum(CreditNote.amount_pence), 0))
        .where(CreditNote.invoice_id == Invoice.id)
        .scalar_subquery()
    )


def _summary(invoice: Invoice, tenant: str, credited: int) -> InvoiceSummary:
    return InvoiceSummary(
        id=invoice.id,
        number=invoice.number,
        tenant_id=invoice.tenant_id,
        tenant=tenant,
        period=str(Period.of_date(invoice.period)),
        status=invoice.status,
        currency=invoice.currency,
        total_pence=invoice.total_pence,
        total=pounds(invoice.total_pence),
        credited_pence=int(credited),
        finalized_at=invoice.finalized_at,
        due_at=invoice.due_at,
        paid_at=invoice.paid_at,
        stripe_invoice_id=invoice.stripe_invoice_id,
        stripe_state=invoice.stripe_state,
        stripe_error=invoice.stripe_error,
    )


def _line_out(position: int, line: RatedLine | InvoiceLine) -> LineOut:
    return LineOut(
        position=position,
        kind=line.kind,
        plan=line.plan,
        description=line.description,
        meter=line.meter,
        quantity=line.quantity,
        unit=line.unit,
        unit_price_pence=line.unit_price_pence,
        amount_pence=line.amount_pence,
        usage_from=line.usage_from,
        usage_to=line.usage_to,
        usage_events=line.usage_events,
        usage_total=line.usage_total,
    )


def filter_invoices(
    stmt: Select, *, tenant_id: uuid.UUID | None, period: Period | None, status: str | None
) -> Select:
    if tenant_id is not None:
        stmt = stmt.where(Invoice.tenant_id == tenant_id)
    if period is not None:
        stmt = stmt.where(Invoice.period == period.first_day)
    if status is not None:
        if status not in STATUSES:
            raise BadRequest(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        stmt = stmt.where(Invoice.status == status)
    return stmt


async def list_invoices(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    period: Period | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[InvoiceSummary]:
    stmt = select(Invoice, Tenant.name, _credited()).join(Tenant, Tenant.id == Invoice.tenant_id)
    stmt = filter_invoices(stmt, tenant_id=tenant_id, period=period, status=status)
    rows = await session.execute(
        stmt.order_by(Invoice.period.desc(), Invoice.finalized_at, Invoice.number).limit(limit)
    )
    return [_summary(invoice, name, credited) for invoice, name, credited in rows]


async def _find(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, ref: str
) -> tuple[Invoice, str]:
    """By number (what people read) or id; another tenant's invoice is not found."""
    try:
        cond = Invoice.id == uuid.UUID(ref)
    except ValueError:
        cond = Invoice.number == ref
    stmt = select(Invoice, Tenant.name).join(Tenant, Tenant.id == Invoice.tenant_id).where(cond)
    if tenant_id is not None:
        stmt = stmt.where(Invoice.tenant_id == tenant_id)
    row = (await session.execute(stmt)).first()
    if row is None:
        raise NotFound(f"no invoice {ref!r}; `hangar invoices ls` lists them")
    return row[0], row[1]


async def get_invoice(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, ref: str
) -> InvoiceOut:
    invoice, tenant = await _find(session, tenant_id=tenant_id, ref=ref)
    return await _full(session, invoice, tenant)


async def _full(session: AsyncSession, invoice: Invoice, tenant: str) -> InvoiceOut:
    lines = await session.scalars(
        select(InvoiceLine)
        .where(InvoiceLine.invoice_id == invoice.id)
        .order_by(InvoiceLine.position)
    )
    notes = list(
        await session.scalars(
            select(CreditNote)
            .where(CreditNote.invoice_id == invoice.id)
            .order_by(CreditNote.created_at)
        )
    )
    summary = _summary(invoice, tenant, sum(n.amount_pence for n in notes))
    return InvoiceOut(
        **summary.model_dump(),
        lines=[_line_out(line.position, line) for line in lines],
        credit_notes=[CreditNoteOut.model_validate(n, from_attributes=True) for n in notes],
    )


async def preview(session: AsyncSession, *, tenant_id: uuid.UUID, period: Period) -> InvoiceOut:
    """The invoice as it stands: the finalized one if the period is closed, else a draft
    rated from the usage so far (flat fees for the whole month, as they will be billed)."""
    existing = await session.scalar(
        select(Invoice.number).where(
            Invoice.tenant_id == tenant_id, Invoice.period == period.first_day
        )
    )
    if existing:
        return await get_invoice(session, tenant_id=tenant_id, ref=existing)
    state = await standing(session, tenant_id=tenant_id)
    lines = (
        await rate_tenants(session, period=period, segments={tenant_id: state.segments}, draft=True)
    )[tenant_id]
    total = sum(line.amount_pence for line in lines)
    return InvoiceOut(
        id=None,
        number=None,
        tenant_id=tenant_id,
        tenant=state.tenant.name,
        period=str(period),
        status=InvoiceStatus.draft,
        currency="gbp",
        total_pence=total,
        total=pounds(total),
        credited_pence=0,
        finalized_at=None,
        due_at=None,
        paid_at=None,
        stripe_invoice_id=None,
        stripe_state=None,
        lines=[_line_out(pos, line) for pos, line in enumerate(lines, start=1)],
        credit_notes=[],
    )


async def line_usage(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    ref: str,
    position: int,
    after: str | None,
    limit: int,
) -> LineUsage:
    """The usage events behind one line, oldest first, a page at a time."""
    invoice, _ = await _find(session, tenant_id=tenant_id, ref=ref)
    line = await session.scalar(
        select(InvoiceLine).where(
            InvoiceLine.invoice_id == invoice.id, InvoiceLine.position == position
        )
    )
    if line is None:
        raise NotFound(f"invoice {invoice.number} has no line {position}")
    if line.meter is None:
        raise BadRequest(
            f"line {position} of {invoice.number} is a {line.kind} line: no usage is behind it"
        )
    stmt = select(UsageEvent).where(
        UsageEvent.tenant_id == invoice.tenant_id,
        UsageEvent.meter == line.meter,
        UsageEvent.occurred_at >= line.usage_from,
        UsageEvent.occurred_at < line.usage_to,
    )
    if after:
        try:
            when, _, event_id = after.partition("|")
            stmt = stmt.where(
                func.row(UsageEvent.occurred_at, UsageEvent.event_id)
                > func.row(datetime.fromisoformat(when), event_id)
            )
        except ValueError:
            raise BadRequest(
                "invalid 'after': pass the 'next' value of the previous page"
            ) from None
    events = list(
        await session.scalars(
            stmt.order_by(UsageEvent.occurred_at, UsageEvent.event_id).limit(limit)
        )
    )
    last = events[-1] if len(events) == limit else None
    return LineUsage(
        invoice=invoice.number,
        position=position,
        meter=line.meter,
        usage_from=line.usage_from,
        usage_to=line.usage_to,
        total=line.usage_total,
        events=[
            UsageEventOut(
                event_id=e.event_id,
                meter=e.meter,
                quantity=e.quantity,
                occurred_at=e.occurred_at,
                node_id=e.node_id,
                model_version_id=e.model_version_id,
            )
            for e in events
        ],
        next=f"{last.occurred_at.isoformat()}|{last.event_id}" if last else None,
    )


async def create_credit_note(
    session: AsyncSession, *, ref: str, amount_pence: int, reason: str, prefix: str
) -> CreditNoteOut:
    invoice, _ = await _find(session, tenant_id=None, ref=ref)
    # Lock the invoice so two credit notes cannot together exceed its total.
    await session.execute(select(Invoice.id).where(Invoice.id == invoice.id).with_for_update())
    credited = await session.scalar(
        select(func.coalesce(func.sum(CreditNote.amount_pence), 0)).where(
            CreditNote.invoice_id == invoice.id
        )
    )
    left = invoice.total_pence - int(credited or 0)
    if invoice.status == InvoiceStatus.void:
        raise Conflict(f"{invoice.number} is void; nothing is left to credit")
    if amount_pence > left:
        raise BadRequest(
            f"{invoice.number} totals {pounds(invoice.total_pence)} and "
            f"{pounds(int(credited or 0))} is already credited; "
            f"at most {pounds(left)} can be credited"
        )
    (number,) = await next_numbers(session, series="credit_note", count=1)
    note = CreditNote(
        tenant_id=invoice.tenant_id,
        invoice_id=invoice.id,
        number=f"{prefix}-CN-{number:06d}",
        amount_pence=amount_pence,
        reason=reason,
    )
    session.add(note)
    await session.flush()
    return CreditNoteOut.model_validate(note, from_attributes=True)


async def void_invoice(session: AsyncSession, *, ref: str, now: datetime) -> InvoiceOut:
    """Cancel an unpaid invoice. It keeps its number (the series stays gap-free) and the
    Stripe sync voids the Stripe invoice too."""
    invoice, tenant = await _find(session, tenant_id=None, ref=ref)
    if invoice.status == InvoiceStatus.paid:
        raise Conflict(
            f"{invoice.number} is paid; refund it with a credit note instead of voiding it"
        )
    if invoice.status != InvoiceStatus.void:
        invoice.status = INVOICE.check(invoice.status, InvoiceStatus.void)
        invoice.voided_at = now
        # The sync job brings Stripe along (void there, or remove pending items).
        invoice.stripe_next_attempt_at = None
    await session.flush()
    return await _full(session, invoice, tenant)
