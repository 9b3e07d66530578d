"""closed periods owned by metering; billing accounts opened with their tenant

- ``closed_periods``: metering's record of the months that take no more usage, filled
  from the invoices finalized so far (billing writes it from now on, in the invoice's
  transaction).
- Tenants that predate their billing account (it used to be inserted on first read)
  get it now, with the first plan period that read would have given them; Starter
  starts as a trial from the tenant's creation, 30 days (the default
  ``HANGAR_BILLING_TRIAL_DAYS``; trial periods already recorded keep their end).
- ``tenants.plan`` goes: the plan is billing's, and a copy kept in the tenant row needed
  a map between two plan enums.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 04:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "closed_periods",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_closed_periods_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "period", name=op.f("pk_closed_periods")),
    )
    op.execute(
        "insert into closed_periods (tenant_id, period, reference, created_at) "
        "select tenant_id, period, number, finalized_at from invoices"
    )
    op.execute(
        "insert into billing_accounts (tenant_id, created_at) "
        "select t.id, t.created_at from tenants t "
        "on conflict (tenant_id) do nothing"
    )
    op.execute(
        """
        insert into plan_periods (id, tenant_id, plan, starts_at, trial_ends_at, created_at)
        select gen_random_uuid(), t.id,
               case when t.plan = 'starter' then 'trial' else t.plan end,
               t.created_at,
               case when t.plan = 'starter' then t.created_at + interval '30 days' end,
               now()
        from tenants t
        where not exists (select 1 from plan_periods p where p.tenant_id = t.id)
        """
    )
    op.drop_column("tenants", "plan")


def downgrade() -> None:
    op.add_column("tenants", sa.Column("plan", sa.String(length=32), nullable=True))
    # The plan family of the latest period that has started (trial and lapsed are Starter's).
    op.execute(
        """
        update tenants t set plan = coalesce((
            select case when p.plan in ('trial', 'lapsed') then 'starter' else p.plan end
            from plan_periods p
            where p.tenant_id = t.id and p.starts_at <= now()
            order by p.starts_at desc limit 1
        ), 'starter')
        """
    )
    op.alter_column("tenants", "plan", nullable=False)
    op.drop_table("closed_periods")
