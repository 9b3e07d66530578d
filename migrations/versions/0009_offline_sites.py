"""sites with no link: offline nodes, their pinned report keys, usage statements

- ``nodes.offline``: issued by ``hangar nodes create-offline`` (never enrolled online);
  ``nodes.report_key``: the node's own Ed25519 public key, pinned on the import of its
  first signed report file (trust on first use).
- ``usage_issuers``: on-premise installations whose signed monthly statements a tenant
  accepts (their public key); ``usage_statements``: the statements imported, one per
  issuer and month.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 06:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "nodes", sa.Column("offline", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("nodes", sa.Column("report_key", sa.Text(), nullable=True))
    op.create_table(
        "usage_issuers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.UniqueConstraint("tenant_id", "name"),
        sa.UniqueConstraint("tenant_id", "key_id"),
    )
    op.create_table(
        "usage_statements",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "issuer_id",
            sa.Uuid(),
            sa.ForeignKey("usage_issuers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("statement_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("quantities", postgresql.JSONB(), nullable=False),
        sa.Column(
            "imported_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.UniqueConstraint("issuer_id", "period"),
    )


def downgrade() -> None:
    op.drop_table("usage_statements")
    op.drop_table("usage_issuers")
    op.drop_column("nodes", "report_key")
    op.drop_column("nodes", "offline")
