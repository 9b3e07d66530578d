"""The contract between a node and the control plane: the only module both sides import.

Pydantic models only (no server or runtime code), so the node stays a lightweight
install and the control plane validates exactly what nodes send.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

NODE_CREDENTIAL_PREFIX = "hgn_"
ENROLLMENT_TOKEN_PREFIX = "hgt_"


class NodeFacts(BaseModel):
    """What a machine is; sent at enrollment and refreshed by every heartbeat."""

    hostname: str = Field(max_length=255)
    os: str = ""
    arch: str = ""
    cpu_cores: int = 0
    memory_bytes: int = Field(default=0, description="total RAM, the figure the fit check uses")
    disk_free_bytes: int = 0
    gpu: str | None = None
    runtime_version: str = ""
    # Where peers of the same tenant reach this node's OpenAI-compatible API.
    api_url: str | None = None


class EnrollRequest(BaseModel):
    token: str = Field(description="an enrollment token from `hangar enroll-tokens create`")
    name: str | None = Field(default=None, max_length=255, description="defaults to the hostname")
    facts: NodeFacts


class EnrollResponse(BaseModel):
    node_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    # Shown exactly once; the control plane keeps only its hash.
    credential: str
    labels: dict[str, str]
    heartbeat_seconds: float


class SyncState(StrEnum):
    pending = "pending"
    downloading = "downloading"
    ready = "ready"
    failed = "failed"
    does_not_fit = "does_not_fit"


class ModelStatus(BaseModel):
    name: str
    ref: str
    digest: str
    state: SyncState
    bytes_done: int = 0
    bytes_total: int = 0
    reason: str | None = None
    loaded: bool = False


class Counters(BaseModel):
    """Serving counters since the node runtime started (monotonic within one run)."""

    requests: int = 0
    completed: int = 0
    errors: int = 0
    rejected: int = 0
    forwarded: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Resources(BaseModel):
    memory_available_bytes: int = 0
    disk_free_bytes: int = 0
    loaded_models: int = 0


class Heartbeat(BaseModel):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, description="idempotency key of this report")
    sent_at: datetime
    facts: NodeFacts
    resources: Resources = Field(default_factory=Resources)
    models: list[ModelStatus] = Field(default_factory=list)
    counters: Counters = Field(default_factory=Counters)
    # The desired-state revision this node has applied.
    applied_revision: int = 0
    # Reports written to disk while the control plane was unreachable.
    queued: bool = False


class HeartbeatReply(BaseModel):
    desired_revision: int
    heartbeat_seconds: float
    server_time: datetime


class ReportBatch(BaseModel):
    """Heartbeats queued on disk while offline, oldest first."""

    reports: list[Heartbeat] = Field(max_length=1000)


class ReportBatchReply(BaseModel):
    accepted: int
    duplicates: int
    desired_revision: int


class DesiredModel(BaseModel):
    name: str
    ref: str = Field(description="the tag or digest the deployment names")
    # Other tags/digests of the same model deployed here that resolve to this version:
    # the node serves it under every one of them.
    aliases: list[str] = Field(default_factory=list)
    digest: str
    size: int
    version: int
    download_path: str = Field(description="GET this (with the node credential) for the bytes")
    estimated_memory_bytes: int
    gguf: dict[str, Any] = Field(default_factory=dict)


class DesiredState(BaseModel):
    revision: int
    models: list[DesiredModel]


class Peer(BaseModel):
    node_id: uuid.UUID
    name: str
    api_url: str
    models: list[str] = Field(description="digests this peer reports ready")


class PeerList(BaseModel):
    peers: list[Peer]
