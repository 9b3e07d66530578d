"""Fleet tables: enrollment tokens, nodes, deployments and queued node reports."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, UniqueConstraint
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
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # The last heartbeat's report: free resources, per-model sync state, serving counters.
    report: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # Bumped whenever what this node should hold changes; heartbeats compare it.
    desired_revision: Mapped[int] = mapped_column(BigInteger, default=0)
    # online / offline, as last recorded (heartbeat or the offline job); disabled and
    # revoked come from their timestamps, which win over this.
    status: Mapped[str] = mapped_column(String(16), default="online", server_default="online")
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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
