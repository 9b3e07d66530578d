from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from billing.states import InvoiceStatus, StripeState
from metering.schemas import UsageReport
from tenants.plans import Plan, accepting


class LineOut(BaseModel):
    position: int
    kind: str
    plan: str
    description: str
    meter: str | None
    quantity: Decimal
    unit: str
    unit_price_pence: Decimal
    amount_pence: int
    # The usage behind the line: events of ``meter`` in [usage_from, usage_to).
    usage_from: datetime
    usage_to: datetime
    usage_events: int
    usage_total: int


class CreditNoteOut(BaseModel):
    number: str
    amount_pence: int
    reason: str
    created_at: datetime


class InvoiceSummary(BaseModel):
    id: uuid.UUID | None
    number: str | None
    tenant_id: uuid.UUID
    tenant: str
    period: str
    # draft (a preview of the open period), open, paid, payment_failed, void
    status: InvoiceStatus
    currency: str
    total_pence: int
    total: str
    credited_pence: int
    finalized_at: datetime | None
    due_at: datetime | None
    paid_at: datetime | None
    stripe_invoice_id: str | None
    stripe_state: StripeState | None
    # Why the last push to Stripe did not complete, for reconciliation.
    stripe_error: str | None = None


class InvoiceOut(InvoiceSummary):
    lines: list[LineOut]
    credit_notes: list[CreditNoteOut]


class UsageEventOut(BaseModel):
    event_id: str
    meter: str
    quantity: int
    occurred_at: datetime
    node_id: uuid.UUID | None
    model_version_id: uuid.UUID | None


class LineUsage(BaseModel):
    invoice: str
    position: int
    meter: str
    usage_from: datetime
    usage_to: datetime
    total: int
    events: list[UsageEventOut]
    # Pass as ``after`` to get the next page; None on the last page.
    next: str | None


class LimitStatus(BaseModel):
    name: Literal["nodes", "storage", "egress", "spend_cap"]
    limit: int
    used: int
    unit: str
    percent: Decimal
    # ok below 80 %, warning from 80 %, reached at 100 %
    level: Literal["ok", "warning", "reached"]


class UsageOverview(UsageReport):
    plan: Plan
    plan_title: str
    limits: list[LimitStatus]


class AccountOut(BaseModel):
    tenant_id: uuid.UUID
    tenant: str
    plan: Plan
    plan_title: str
    trial_ends_at: datetime | None
    payment_method: str | None
    spend_cap_pence: int | None
    stripe_customer_id: str | None
    blocked: bool


class PlanChange(BaseModel):
    plan: accepting(Plan.trial, Plan.starter, Plan.payg, Plan.enterprise)  # type: ignore[valid-type]
    # Default now. Operators may backdate (migrations) but not into an invoiced month.
    effective_at: AwareDatetime | None = None


class TenantPlanChoice(BaseModel):
    plan: accepting(Plan.starter, Plan.payg)  # type: ignore[valid-type]


# Amounts stay well inside a BIGINT, and quantities inside NUMERIC(24, 9).
MAX_PENCE = 10**15
Quantity = Field(default=Decimal(0), ge=0, max_digits=24, decimal_places=9)


class SpendCap(BaseModel):
    # Pence; null removes the cap.
    cap_pence: int | None = Field(ge=0, le=MAX_PENCE)


class PaymentMethodIn(BaseModel):
    payment_method: str = Field(min_length=3, max_length=255, pattern=r"^pm_[A-Za-z0-9_]+$")


class ContractIn(BaseModel):
    monthly_fee_pence: int = Field(ge=0, le=MAX_PENCE)
    # Unit prices in pence; fractions of a penny are allowed (4 places).
    device_month_pence: Decimal = Field(ge=0, max_digits=14, decimal_places=4)
    storage_gb_month_pence: Decimal = Field(ge=0, max_digits=14, decimal_places=4)
    egress_gb_pence: Decimal = Field(ge=0, max_digits=14, decimal_places=4)
    # Included per full month, prorated by day.
    included_device_months: Decimal = Quantity
    included_storage_gb_months: Decimal = Quantity
    included_egress_gb: Decimal = Quantity
    max_nodes: int | None = Field(default=None, ge=0, le=10**9)
    max_storage_gb: Decimal | None = Field(default=None, ge=0, max_digits=24, decimal_places=9)
    max_egress_gb: Decimal | None = Field(default=None, ge=0, max_digits=24, decimal_places=9)
    spend_cap_pence: int | None = Field(default=None, ge=0, le=MAX_PENCE)
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    note: str = Field(default="", max_length=10_000)
    effective_at: AwareDatetime | None = None

    @field_validator("note")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("note must not contain NUL characters (\\u0000)")
        return value


class ContractOut(ContractIn):
    id: uuid.UUID
    tenant_id: uuid.UUID
    created_at: datetime
    effective_at: datetime | None = None


class CreditNoteIn(BaseModel):
    amount_pence: int = Field(gt=0, le=MAX_PENCE)
    reason: str = Field(min_length=3, max_length=1000)

    @field_validator("reason")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("reason must not contain NUL characters (\\u0000)")
        return value
