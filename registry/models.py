from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, CreatedAt, new_id, utcnow


class Model(CreatedAt, Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))

    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model",
        order_by="ModelVersion.number",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    tags: Mapped[list[Tag]] = relationship(
        order_by="Tag.name", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class Blob(CreatedAt, Base):
    """Content-addressed bytes of one tenant: the same digest is stored (and billed) once."""

    __tablename__ = "blobs"
    __table_args__ = (UniqueConstraint("tenant_id", "digest"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(71))  # "sha256:" + 64 hex
    size: Mapped[int] = mapped_column(BigInteger)
    s3_key: Mapped[str] = mapped_column(String(256), unique=True)


class ModelVersion(CreatedAt, Base):
    """Immutable: a version never changes the blob it points at."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "number"),
        UniqueConstraint("model_id", "digest"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    blob_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("blobs.id"), index=True)
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int] = mapped_column(BigInteger)
    gguf: Mapped[dict[str, Any]] = mapped_column(JSONB)

    model: Mapped[Model] = relationship(back_populates="versions", lazy="raise")


class Tag(Base):
    __tablename__ = "tags"

    model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UploadSession(CreatedAt, Base):
    """A resumable upload: S3 multipart parts committed so far, and where to go on."""

    __tablename__ = "upload_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    model_name: Mapped[str] = mapped_column(String(128))
    tag: Mapped[str] = mapped_column(String(128))
    declared_size: Mapped[int | None] = mapped_column(BigInteger)
    declared_digest: Mapped[str | None] = mapped_column(String(71))
    s3_key: Mapped[str] = mapped_column(String(256))
    s3_upload_id: Mapped[str] = mapped_column(String(1024))
    # Bytes committed to S3 as whole parts; a resumed upload continues from here.
    committed: Mapped[int] = mapped_column(BigInteger, default=0)
    parts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    gguf: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The publisher's signature of declared_digest (wire.signing), checked at start.
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
