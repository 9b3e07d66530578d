"""signed model versions: trusted keys, the require flag, signatures per version

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trusted_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_trusted_keys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_keys")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_trusted_keys_tenant_id_name")),
        sa.UniqueConstraint("tenant_id", "key_id", name=op.f("uq_trusted_keys_tenant_id_key_id")),
    )
    op.create_table(
        "signing_policies",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("require_signatures", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_signing_policies_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_signing_policies")),
    )
    op.create_table(
        "model_signatures",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_model_signatures_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_signatures_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_signatures")),
        sa.UniqueConstraint(
            "version_id", "key_id", name=op.f("uq_model_signatures_version_id_key_id")
        ),
    )
    op.create_index("ix_model_signatures_tenant_id", "model_signatures", ["tenant_id"])
    op.create_index("ix_model_signatures_version_id", "model_signatures", ["version_id"])
    op.add_column(
        "upload_sessions",
        sa.Column("signature", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("upload_sessions", "signature")
    op.drop_index("ix_model_signatures_version_id", table_name="model_signatures")
    op.drop_index("ix_model_signatures_tenant_id", table_name="model_signatures")
    op.drop_table("model_signatures")
    op.drop_table("signing_policies")
    op.drop_table("trusted_keys")
