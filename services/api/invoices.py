"""Invoice routes: the tenant's own (admin or finance key) and the operator's, across tenants."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from billing import invoices
from billing.accounts import resolve_tenant
from billing.export import COLUMNS, export_rows
from billing.schemas import CreditNoteIn, CreditNoteOut, InvoiceOut, InvoiceSummary, LineUsage
from core.db import utcnow
from metering.periods import Period
from services.api.auth import Principal, provide_operator
from services.api.exports import ExportFormat, export_response
from services.api.openapi import IDEMPOTENCY_KEY, doc, export_responses
from services.api.paging import After, Limit, paged
from services.api.usage import period_or_current
from services.components import Components
from tenants.schemas import Scope


def _period(period: str | None) -> Period | None:
    return Period.parse(period) if period else None


def _invoice_key(invoice: InvoiceSummary) -> str:
    # A draft has no id yet; it is the only one of its tenant and period.
    return str(invoice.id or f"{invoice.tenant_id}:{invoice.period}")


class InvoiceController(Controller):
    path = "/v1/invoices"
    tags = ["invoices"]

    @get("/")
    async def list(
        self,
        request: Request,
        db: AsyncSession,
        principal: Principal,
        period: str | None = None,
        status: str | None = None,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[InvoiceSummary]]:
        principal.require(Scope.finance)
        found = await invoices.list_invoices(
            db, tenant_id=principal.tenant_id, period=_period(period), status=status
        )
        return paged(request, found, key=_invoice_key, after=after, limit=limit)

    @get("/preview")
    async def preview(
        self, db: AsyncSession, principal: Principal, period: str | None = None
    ) -> InvoiceOut:
        """The open period's invoice as it stands (status ``draft``), rated from usage so far."""
        principal.require(Scope.finance)
        return await invoices.preview(
            db, tenant_id=principal.tenant_id, period=period_or_current(period)
        )

    @get("/export", opt=doc(responses=export_responses()))
    async def export(
        self,
        db: AsyncSession,
        principal: Principal,
        format: ExportFormat = "csv",
        period: str | None = None,
        status: str | None = None,
    ) -> Response:
        """One row per invoice line (and per credit note)."""
        principal.require(Scope.finance)
        rows = await export_rows(
            db, tenant_id=principal.tenant_id, period=_period(period), status=status
        )
        return export_response(
            rows, columns=COLUMNS, fmt=format, name=f"invoices-{period or 'all'}"
        )

    @get("/{ref:str}")
    async def show(self, db: AsyncSession, principal: Principal, ref: str) -> InvoiceOut:
        principal.require(Scope.finance)
        return await invoices.get_invoice(db, tenant_id=principal.tenant_id, ref=ref)

    @get("/{ref:str}/lines/{position:int}/usage")
    async def line_usage(
        self,
        db: AsyncSession,
        principal: Principal,
        ref: str,
        position: int,
        after: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=5000)] = 500,
    ) -> LineUsage:
        """The usage events behind one invoice line, oldest first."""
        principal.require(Scope.finance)
        return await invoices.line_usage(
            db, tenant_id=principal.tenant_id, ref=ref, position=position, after=after, limit=limit
        )


class OperatorInvoiceController(Controller):
    path = "/v1/operator/invoices"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @get("/", opt=doc(404))
    async def list(
        self,
        request: Request,
        db: AsyncSession,
        operator: None,
        tenant: str | None = None,
        period: str | None = None,
        status: str | None = None,
        after: After = None,
        limit: Limit = 1000,
    ) -> Response[list[InvoiceSummary]]:
        tenant_id = (await resolve_tenant(db, tenant)).id if tenant else None
        found = await invoices.list_invoices(
            db, tenant_id=tenant_id, period=_period(period), status=status
        )
        return paged(request, found, key=_invoice_key, after=after, limit=limit)

    @get("/export", opt=doc(404, responses=export_responses()))
    async def export(
        self,
        db: AsyncSession,
        operator: None,
        format: ExportFormat = "csv",
        tenant: str | None = None,
        period: str | None = None,
        status: str | None = None,
    ) -> Response:
        tenant_id = (await resolve_tenant(db, tenant)).id if tenant else None
        rows = await export_rows(db, tenant_id=tenant_id, period=_period(period), status=status)
        name = f"invoices-{tenant or 'all-tenants'}-{period or 'all'}"
        return export_response(rows, columns=COLUMNS, fmt=format, name=name)

    @get("/{ref:str}")
    async def show(self, db: AsyncSession, operator: None, ref: str) -> InvoiceOut:
        return await invoices.get_invoice(db, tenant_id=None, ref=ref)

    @post("/{ref:str}/credit-notes", status_code=201, opt=doc(409, headers=(IDEMPOTENCY_KEY,)))
    async def credit(
        self, db: AsyncSession, hangar: Components, operator: None, ref: str, data: CreditNoteIn
    ) -> CreditNoteOut:
        """Correct a finalized invoice: it never changes; the credit note says by how much."""
        return await invoices.create_credit_note(
            db,
            ref=ref,
            amount_pence=data.amount_pence,
            reason=data.reason,
            prefix=hangar.settings.billing.invoice_prefix,
        )

    @post("/{ref:str}/void", status_code=200, opt=doc(409))
    async def void(self, db: AsyncSession, operator: None, ref: str) -> InvoiceOut:
        return await invoices.void_invoice(db, ref=ref, now=utcnow())
