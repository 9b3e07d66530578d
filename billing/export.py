"""Finance exports: one row per invoice line (and per credit note), in ``COLUMNS``."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.invoices import filter_invoices
from billing.models import CreditNote, Invoice, InvoiceLine
from metering.periods import Period
from tenants.models import Tenant

COLUMNS = [
    "invoice",
    "tenant",
    "tenant_id",
    "period",
    "status",
    "finalized_at",
    "due_at",
    "paid_at",
    "invoice_total_pence",
    "line",
    "kind",
    "plan",
    "description",
    "meter",
    "quantity",
    "unit",
    "unit_price_pence",
    "amount_pence",
    "amount_gbp",
    "usage_from",
    "usage_to",
    "usage_events",
    "usage_total",
    "stripe_invoice_id",
]


def _gbp(pence: int) -> str:
    return str((Decimal(pence) / 100).quantize(Decimal("0.01")))


def _invoice_part(invoice: Invoice, tenant: str) -> dict[str, Any]:
    return {
        "invoice": invoice.number,
        "tenant": tenant,
        "tenant_id": str(invoice.tenant_id),
        "period": str(Period.of_date(invoice.period)),
        "status": invoice.status,
        "finalized_at": invoice.finalized_at.isoformat(),
        "due_at": invoice.due_at.isoformat(),
        "paid_at": invoice.paid_at.isoformat() if invoice.paid_at else "",
        "invoice_total_pence": invoice.total_pence,
        "stripe_invoice_id": invoice.stripe_invoice_id or "",
    }


async def export_rows(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, period: Period | None, status: str | None
) -> list[dict[str, Any]]:
    stmt = (
        select(Invoice, Tenant.name, InvoiceLine)
        .join(Tenant, Tenant.id == Invoice.tenant_id)
        .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
    )
    stmt = filter_invoices(stmt, tenant_id=tenant_id, period=period, status=status)
    rows: list[dict[str, Any]] = []
    for invoice, tenant, line in await session.execute(
        stmt.order_by(Invoice.period, Invoice.number, InvoiceLine.position)
    ):
        rows.append(
            {
                **_invoice_part(invoice, tenant),
                "line": line.position,
                "kind": line.kind,
                "plan": line.plan,
                "description": line.description,
                "meter": line.meter or "",
                "quantity": str(line.quantity),
                "unit": line.unit,
                "unit_price_pence": str(line.unit_price_pence),
                "amount_pence": line.amount_pence,
                "amount_gbp": _gbp(line.amount_pence),
                "usage_from": line.usage_from.isoformat(),
                "usage_to": line.usage_to.isoformat(),
                "usage_events": line.usage_events,
                "usage_total": line.usage_total,
            }
        )
    notes = (
        select(Invoice, Tenant.name, CreditNote)
        .join(Tenant, Tenant.id == Invoice.tenant_id)
        .join(CreditNote, CreditNote.invoice_id == Invoice.id)
    )
    notes = filter_invoices(notes, tenant_id=tenant_id, period=period, status=status)
    for invoice, tenant, note in await session.execute(notes.order_by(CreditNote.number)):
        rows.append(
            {
                **_invoice_part(invoice, tenant),
                "line": "",
                "kind": "credit_note",
                "plan": "",
                "description": f"{note.number}: {note.reason}",
                "meter": "",
                "quantity": "1",
                "unit": "note",
                "unit_price_pence": str(-note.amount_pence),
                "amount_pence": -note.amount_pence,
                "amount_gbp": _gbp(-note.amount_pence),
                "usage_from": "",
                "usage_to": "",
                "usage_events": 0,
                "usage_total": 0,
            }
        )
    return rows
