"""What the signed files of disconnected sites carry (see ``wire.signed_files``):
an offline node's identity, bundles in, reports out, and monthly usage statements."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from typing import Any

from pydantic import BaseModel, Field

from wire.contract import DesiredState, Heartbeat

BUNDLE = "bundle"
REPORTS = "reports"
STATEMENT = "statement"
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class OfflineIdentity(BaseModel):
    """Written by `hangar nodes create-offline`, carried to the machine by hand."""

    kind: str = "hangar-offline-node"
    node_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    # Never sent anywhere by an offline node; it proves the node's key when its first
    # report file is imported (see ``credential_proof``).
    credential: str
    control_plane_key: str = Field(description="ed25519:… — bundles must be signed by it")


class BundleBody(BaseModel):
    """A bundle's manifest: the desired state of each node it is for, exactly as the
    control plane serves it to an online node, so whatever that carries flows through."""

    tenant_id: uuid.UUID
    nodes: dict[uuid.UUID, DesiredState] = Field(min_length=1)


class ReportsBody(BaseModel):
    tenant_id: uuid.UUID
    node_id: uuid.UUID
    node_key: str = Field(description="the node's own ed25519 public key, which signed this file")
    credential_proof: str
    reports: list[Heartbeat] = Field(max_length=20_000)


class StatementLine(BaseModel):
    tenant_id: uuid.UUID
    tenant: str
    # meter -> the month's sum of its quantities (device-days, byte samples, bytes).
    quantities: dict[str, int]


class StatementBody(BaseModel):
    period: str = Field(pattern=PERIOD.pattern)
    installation_key: str
    tenants: list[StatementLine]


def credential_proof(credential_hash: str, node_key: str) -> str:
    """Ties the node's key to its credential: only the node (which holds the credential)
    and the control plane (which holds its hash) can compute it."""
    return hmac.new(credential_hash.encode(), node_key.encode(), hashlib.sha256).hexdigest()


def hash_credential(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


def model_body(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
