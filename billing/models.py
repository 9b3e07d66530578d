from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, CreatedAt, new_id

# Unit prices may carry fractions of a penny (contracts); amounts never do.
UnitPrice = Numeric(14, 4)
Quantity = Numeric(24, 9)


class BillingAccount(CreatedAt, Base):
    """A tenant's billing state. Its row is also the lock that serializes quota checks
    which must not race (two nodes enrolling as the 15th)."""

    __tablename__ = "billing_accounts"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    # A Stripe payment method id (pm_...) once one is on file.
    payment_method: Mapped[str | None] = mapped_column(String(255))
    # Pay-as-you-go monthly spend cap set by the tenant, in pence; None means no cap.
    spend_cap_pence: Mapped[int | None] = mapped_column(BigInteger)
    # When ``payment_method`` was put on file: a trial that ended earlier stays lapsed.
    payment_method_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))


class SpendCap(Base):
    """The tenant's pay-as-you-go spend cap from ``effective_at`` until the next row's.
    A month is capped by the cap in force at its end, so a change never reaches back
    into a finished month."""

    __tablename__ = "spend_caps"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    # None: the cap was removed.
    cap_pence: Mapped[int | None] = mapped_column(BigInteger)


class PlanPeriod(CreatedAt, Base):
    """The plan in force from ``starts_at`` until the next row's ``starts_at``."""

    __tablename__ = "plan_periods"
    __table_args__ = (UniqueConstraint("tenant_id", "starts_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    plan: Mapped[str] = mapped_column(String(16))
    contract_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contracts.id"))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Trial periods only: when the trial ends (and Starter or "lapsed" begins).
    trial_ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Contract(CreatedAt, Base):
    """Enterprise terms. Immutable: a change is a new contract and a new plan period,
    so an invoice can always be re-derived from the terms in force at the time."""

    __tablename__ = "contracts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    monthly_fee_pence: Mapped[int] = mapped_column(BigInteger)
    device_month_pence: Mapped[Decimal] = mapped_column(UnitPrice)
    storage_gb_month_pence: Mapped[Decimal] = mapped_column(UnitPrice)
    egress_gb_pence: Mapped[Decimal] = mapped_column(UnitPrice)
    included_device_months: Mapped[Decimal] = mapped_column(Quantity)
    included_storage_gb_months: Mapped[Decimal] = mapped_column(Quantity)
    included_egress_gb: Mapped[Decimal] = mapped_column(Quantity)
    # Hard caps, refused with 402 like Starter's limits; None means no cap.
    max_nodes: Mapped[int | None] = mapped_column(Integer)
    max_storage_gb: Mapped[Decimal | None] = mapped_column(Quantity)
    max_egress_gb: Mapped[Decimal | None] = mapped_column(Quantity)
    spend_cap_pence: Mapped[int | None] = mapped_column(BigInteger)
    payment_terms_days: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")


class Invoice(CreatedAt, Base):
    """A finalized invoice: immutable, numbered without gaps. Drafts are never stored;
    a preview is rated on the fly from the same code."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("tenant_id", "period"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(32), unique=True)
    period: Mapped[date] = mapped_column(Date, index=True)
    # ``billing.states.InvoiceStatus`` (open, paid, payment_failed, void), moved only as
    # ``billing.states.INVOICE`` allows.
    status: Mapped[str] = mapped_column(String(16), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    total_pence: Mapped[int] = mapped_column(BigInteger)
    finalized_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    voided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # ``billing.states.StripeState``: none -> invoiced -> collected / voided, or skipped.
    stripe_state: Mapped[str] = mapped_column(String(16), index=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_error: Mapped[str | None] = mapped_column(Text)
    stripe_attempts: Mapped[int] = mapped_column(Integer, default=0)
    stripe_next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class InvoiceLine(Base):
    """One rated line. ``usage_from``/``usage_to`` and ``meter`` name the usage events
    behind it, so every amount can be traced back to what was measured."""

    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    # flat_fee, proration, trial, usage, spend_cap
    kind: Mapped[str] = mapped_column(String(16))
    plan: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    meter: Mapped[str | None] = mapped_column(String(32))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    unit: Mapped[str] = mapped_column(String(16))
    unit_price_pence: Mapped[Decimal] = mapped_column(UnitPrice)
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    usage_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    usage_to: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    usage_events: Mapped[int] = mapped_column(BigInteger, default=0)
    # The raw sum behind the quantity: bytes, byte-hours or device-days.
    usage_total: Mapped[int] = mapped_column(BigInteger, default=0)


class CreditNote(CreatedAt, Base):
    """A correction to a finalized invoice, numbered in its own gap-free series."""

    __tablename__ = "credit_notes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[str] = mapped_column(String(32), unique=True)
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)


class NumberSeries(Base):
    """The next number of a gap-free series. Taken under ``FOR UPDATE`` in the same
    transaction as the invoice it numbers, so a rollback returns the number too."""

    __tablename__ = "number_series"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_value: Mapped[int] = mapped_column(BigInteger)


class StripeRequest(Base):
    """Our own record of every object we asked Stripe to create, keyed by the
    idempotency key. ``sent_at`` without ``stripe_id`` means "may exist in Stripe":
    a retry looks it up before creating it again (localstripe ignores the key)."""

    __tablename__ = "stripe_requests"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stripe_id: Mapped[str | None] = mapped_column(String(255))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StripeEvent(Base):
    """Webhook events already applied: Stripe delivers at least once."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
