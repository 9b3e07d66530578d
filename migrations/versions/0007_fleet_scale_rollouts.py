"""fleet at scale (HOT-friendly heartbeats, ready digests for peers) and rollouts

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A heartbeat only moves last_seen_at: with no index on it and room left in each
    # page, that update is HOT (no index touched, the new tuple stays in its page).
    op.drop_index("ix_nodes_last_seen_at", table_name="nodes")
    op.execute("alter table nodes set (fillfactor = 70)")
    op.add_column("nodes", sa.Column("state_hash", sa.String(length=64), nullable=True))
    # Keyset pagination of `nodes ls` (name, id within a tenant); names never change on beats.
    op.create_index("ix_nodes_tenant_id_name_id", "nodes", ["tenant_id", "name", "id"])
    op.create_table(
        "node_ready_blobs",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("node_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_node_ready_blobs_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "digest", "node_id", name=op.f("pk_node_ready_blobs")),
    )
    op.create_index("ix_node_ready_blobs_node_id", "node_ready_blobs", ["node_id"])
    op.execute(
        "insert into node_ready_blobs (tenant_id, digest, node_id) "
        "select distinct n.tenant_id, m->>'digest', n.id from nodes n, "
        "jsonb_array_elements(coalesce(n.report->'models', '[]'::jsonb)) m "
        "where m->>'state' = 'ready' and m->>'digest' is not null"
    )

    op.create_table(
        "rollouts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("from_version_id", sa.Uuid(), nullable=False),
        sa.Column("to_version_id", sa.Uuid(), nullable=False),
        sa.Column("selector", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("steps", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("bake_seconds", sa.Integer(), nullable=False),
        sa.Column("max_unhealthy", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("wave_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_rollouts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_rollouts_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    op.create_index("ix_rollouts_tenant_id", "rollouts", ["tenant_id"])
    # One rollout in flight per tag: a second `rollout start` is a 409, even in a race.
    op.create_index(
        "uq_rollouts_active_tag",
        "rollouts",
        ["model_id", "tag"],
        unique=True,
        postgresql_where=sa.text("finished_at is null"),
    )
    op.create_table(
        "rollout_nodes",
        sa.Column("rollout_id", sa.Uuid(), nullable=False),
        sa.Column("node_id", sa.Uuid(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("switched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("errors_at_switch", sa.BigInteger(), nullable=True),
        sa.Column("requests_at_switch", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_rollout_nodes_rollout_id_rollouts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_rollout_nodes_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rollout_id", "node_id", name=op.f("pk_rollout_nodes")),
    )
    op.create_index("ix_rollout_nodes_node_id", "rollout_nodes", ["node_id"])


def downgrade() -> None:
    op.drop_table("rollout_nodes")
    op.drop_table("rollouts")
    op.drop_table("node_ready_blobs")
    op.drop_index("ix_nodes_tenant_id_name_id", table_name="nodes")
    op.drop_column("nodes", "state_hash")
    op.execute("alter table nodes reset (fillfactor)")
    op.create_index("ix_nodes_last_seen_at", "nodes", ["last_seen_at"])
