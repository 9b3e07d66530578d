"""What the fleet API takes and returns to tenant admins. What nodes send and
receive is in ``wire.contract``, the contract both sides import."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from core.errors import BadRequest
from wire.contract import Counters, ModelStatus, Resources, Text

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
LABEL_RULE = (
    "letters, digits and '.', '_', '-', '/', starting with a letter or digit, at most 63 characters"
)


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        for what, text in (("key", key), ("value", value)):
            if not _LABEL.fullmatch(text):
                raise BadRequest(
                    f"invalid label {what} {text!r} in {key}={value}: use {LABEL_RULE}"
                )
    return labels


class NodeState(StrEnum):
    online = "online"
    offline = "offline"
    disabled = "disabled"
    revoked = "revoked"


class TokenState(StrEnum):
    active = "active"
    expired = "expired"
    used_up = "used_up"
    revoked = "revoked"


class EnrollmentTokenCreate(BaseModel):
    name: Text = Field(default="default", min_length=1, max_length=128)
    expires_in_seconds: int = Field(default=86400, gt=0, le=366 * 86400)
    max_uses: int = Field(default=1, ge=1, le=1_000_000)
    labels: dict[str, str] = Field(
        default_factory=dict, description="given to every node enrolled with it"
    )


class EnrollmentTokenOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    state: TokenState
    expires_at: datetime
    max_uses: int
    uses: int
    labels: dict[str, str]
    created_at: datetime
    revoked_at: datetime | None


class EnrollmentTokenCreated(EnrollmentTokenOut):
    # Shown exactly once, at creation.
    secret: str


class NodeOut(BaseModel):
    id: uuid.UUID
    name: str
    state: NodeState
    labels: dict[str, str]
    facts: dict[str, Any]
    enrolled_at: datetime
    last_seen_at: datetime | None
    status_changed_at: datetime | None
    disabled_at: datetime | None
    revoked_at: datetime | None
    desired_revision: int
    applied_revision: int
    models: list[ModelStatus]
    resources: Resources
    counters: Counters


class NodeLabels(BaseModel):
    set: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class NodeReportOut(BaseModel):
    report_id: uuid.UUID
    sent_at: datetime
    received_at: datetime
    body: dict[str, Any]


class DeploymentCreate(BaseModel):
    model: str = Field(description="NAME:TAG (follows the tag) or NAME@sha256:… (pinned)")
    node_id: uuid.UUID | None = None
    selector: dict[str, str] | None = Field(
        default=None, description="every node carrying all these labels"
    )


class DeploymentOut(BaseModel):
    id: uuid.UUID
    model: str
    ref: str
    node_id: uuid.UUID | None
    selector: dict[str, str] | None
    version: int | None = Field(
        description="the version the ref resolves to now (None: it no longer resolves)"
    )
    digest: str | None
    nodes: int = Field(description="nodes (not revoked) this deployment targets now")
    created_at: datetime


class RolloutCreate(BaseModel):
    model: Text = Field(description="NAME:TAG whose nodes move")
    to: Text = Field(description="the version to move them to: a number or a sha256 digest")
    selector: dict[str, str] | None = Field(
        default=None, description="only the tag's nodes with these labels"
    )
    steps: list[Text] = Field(
        default_factory=lambda: ["1", "10%", "50%", "100%"],
        max_length=20,
        description="cumulative wave sizes: node counts or shares, ending at 100%",
    )
    bake_seconds: int = Field(
        default=600, ge=0, le=7 * 86400, description="how long a node must stay healthy"
    )
    max_unhealthy: int = Field(
        default=1, ge=0, le=100_000, description="more unhealthy nodes than this rolls back"
    )


class RolloutNodeOut(BaseModel):
    node_id: uuid.UUID
    name: str
    state: str
    switched_at: datetime | None
    reason: str | None


class RolloutWave(BaseModel):
    wave: int
    step: str
    nodes_total: int = Field(description="nodes moved once this wave is done (cumulative)")
    nodes: list[RolloutNodeOut] = Field(description="nodes this wave moved")


class RolloutOut(BaseModel):
    id: uuid.UUID
    model: str
    from_version: int | None
    to_version: int | None
    state: str
    wave: int = Field(description="the wave in flight (0: none moved yet)")
    steps: list[str]
    bake_seconds: int
    max_unhealthy: int
    selector: dict[str, str] | None
    reason: str | None
    created_at: datetime
    finished_at: datetime | None
    waves: list[RolloutWave]
