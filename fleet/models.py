"""Fleet tables: enrollment tokens, nodes, deployments and queued node reports."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, CreatedAt, new_id, utcnow


class EnrollmentToken(CreatedAt, Base):
    """Lets machines join a tenant: limited in time and in number of uses."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    # Labels given to every node that enrolls with this token.
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Node(Base):
    """A tenant's machine running the node runtime."""

    __tablename__ = "nodes"
    # Heartbeats only move last_seen_at (and counters): no index covers what a beat
    # changes and each page keeps room, so the update is HOT, in place.
    __table_args__ = (
        Index("ix_nodes_tenant_id_name_id", "tenant_id", "name", "id"),
        {"postgresql_with": {"fillfactor": 70}},
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    # Hardware and runtime facts reported at enrollment and refreshed by heartbeats.
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    credential_prefix: Mapped[str] = mapped_column(String(16))
    enrollment_token_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("enrollment_tokens.id", ondelete="SET NULL")
    )
    # Billing counts a node for every UTC day between these two (devices meter).
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The last heartbeat's report: free resources, per-model sync state, serving counters.
    report: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # Bumped whenever what this node should hold changes; heartbeats compare it.
    desired_revision: Mapped[int] = mapped_column(BigInteger, default=0)
    # online / offline, as last recorded (heartbeat or the offline job); disabled and
    # revoked come from their timestamps, which win over this.
    status: Mapped[str] = mapped_column(String(16), default="online", server_default="online")
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The node's hash of its facts and report as last stored: a heartbeat carrying the
    # same hash sends neither, and writes only last_seen_at.
    state_hash: Mapped[str | None] = mapped_column(String(64))
    # Issued by `hangar nodes create-offline`: its reports arrive as signed files.
    offline: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The node's own Ed25519 public key, pinned by the first report file imported.
    report_key: Mapped[str | None] = mapped_column(Text)


class NodeReadyBlob(Base):
    """Digests each node reports ready, rewritten only when its report changes: the
    peers query reads this by (tenant, digest), not 100,000 JSONB reports."""

    __tablename__ = "node_ready_blobs"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    node_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class SiteFetch(Base):
    """Which node of a site fetches a digest from the control plane while the rest of
    the site waits to copy it from that node: a site downloads a model once even when
    every node asks for it at the same moment. A lease, void once it expires or its
    node goes offline; deleted when its node reports the digest ready."""

    __tablename__ = "site_fetches"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    # The nodes' ``site`` label; "" for the nodes without one (one site of their own).
    site: Mapped[str] = mapped_column(Text, primary_key=True)
    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    node_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Deployment(CreatedAt, Base):
    """Puts a model tag or digest on nodes, chosen by id or by a label selector."""

    __tablename__ = "deployments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    # Deleting the model removes its deployments with it.
    model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), index=True
    )
    # A tag follows the tag as it moves; a ``sha256:`` digest pins one version.
    ref: Mapped[str] = mapped_column(String(128))
    node_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    selector: Mapped[dict[str, str] | None] = mapped_column(JSONB)


class NodeReport(Base):
    """Heartbeats a node queued on disk while it could not reach us, kept as history
    (live heartbeats only overwrite ``nodes.report``, so thousands of nodes stay cheap)."""

    __tablename__ = "node_reports"
    __table_args__ = (UniqueConstraint("node_id", "report_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    report_id: Mapped[uuid.UUID] = mapped_column()
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)


class Rollout(CreatedAt, Base):
    """A model version moving through a tag's nodes in health-gated waves."""

    __tablename__ = "rollouts"
    __table_args__ = (
        # One rollout in flight per tag: a second start is a 409, even in a race.
        Index(
            "uq_rollouts_active_tag",
            "model_id",
            "tag",
            unique=True,
            postgresql_where=text("finished_at is null"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(128))
    from_version_id: Mapped[uuid.UUID] = mapped_column()
    to_version_id: Mapped[uuid.UUID] = mapped_column()
    selector: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    # Cumulative wave sizes: an int is a node count, "10%" a share of the tag's nodes.
    steps: Mapped[list[Any]] = mapped_column(JSONB)
    bake_seconds: Mapped[int] = mapped_column(Integer)
    max_unhealthy: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    # Index into steps of the wave in flight (0 before the first wave moved).
    wave: Mapped[int] = mapped_column(Integer, default=0)
    wave_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RolloutNode(Base):
    """One node moved by a rollout; its row is what stops it being moved twice."""

    __tablename__ = "rollout_nodes"

    rollout_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When the tag switched to the new version on this node (it was ready there).
    switched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    errors_at_switch: Mapped[int | None] = mapped_column(BigInteger)
    requests_at_switch: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
