"""One node per site fetches a digest from the control plane (fleet.models.SiteFetch)

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_fetches",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("node_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_site_fetches_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_site_fetches_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "site", "digest", name=op.f("pk_site_fetches")),
    )
    op.create_index("ix_site_fetches_node_id", "site_fetches", ["node_id"])


def downgrade() -> None:
    op.drop_index("ix_site_fetches_node_id", table_name="site_fetches")
    op.drop_table("site_fetches")
