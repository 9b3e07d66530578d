from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from wire.signing import Signature


class SignatureOut(BaseModel):
    key_id: str
    key_name: str | None = Field(description="the trusted key's name; null once it is removed")
    trusted: bool = Field(description="made by a key the tenant trusts now, and it verifies")
    created_at: datetime


class VersionOut(BaseModel):
    number: int
    digest: str
    size: int
    tags: list[str]
    gguf: dict[str, Any]
    created_at: datetime
    signatures: list[SignatureOut] = Field(default_factory=list)


class ModelSummary(BaseModel):
    name: str
    versions: int
    tags: dict[str, int]
    latest: VersionOut | None
    created_at: datetime


class ModelOut(BaseModel):
    name: str
    created_at: datetime
    tags: dict[str, int]
    versions: list[VersionOut]


class UploadCreate(BaseModel):
    model: str = Field(description="model name; created on first push")
    tag: str = "latest"
    # S3's largest object is 5 TiB.
    size: int = Field(gt=0, le=5 * 1024**4, description="exact size of the file in bytes")
    digest: str | None = Field(
        default=None, description="expected 'sha256:<hex>'; checked at the end"
    )
    signature: Signature | None = Field(
        default=None,
        description="the publisher's signature of `digest` (checked before any byte moves)",
    )


class UploadOut(BaseModel):
    id: uuid.UUID
    model: str
    tag: str
    size: int | None
    committed: int
    created_at: datetime


class UploadComplete(BaseModel):
    digest: str | None = None


class PushResult(BaseModel):
    model: str
    tag: str
    version: VersionOut
    deduplicated: bool = Field(description="true when these bytes were already stored")


class HeldBlob(BaseModel):
    digest: str
    size: int


class HeldVersionCreate(BaseModel):
    model: str = Field(description="model name; created on first push")
    tag: str = "latest"
    signature: Signature | None = Field(
        default=None,
        description="the publisher's signature of the digest (`hangar push --sign-key`)",
    )


class TagMove(BaseModel):
    version: int


class SignIn(BaseModel):
    signature: Signature
