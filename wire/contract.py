"""The contract between a node and the control plane: the only module both sides import.

Pydantic models only (no server or runtime code), so the node stays a lightweight
install and the control plane validates exactly what nodes send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field

from wire.signing import Signature

NODE_CREDENTIAL_PREFIX = "hgn_"
ENROLLMENT_TOKEN_PREFIX = "hgt_"

INT64_MAX = 2**63 - 1


def _no_nul(value: str) -> str:
    # Postgres text and jsonb cannot hold U+0000: refuse it here as a 400, not a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\x00) characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


def is_http_url(value: str) -> bool:
    parsed = urlsplit(value)
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def _http_url(value: str) -> str:
    if not is_http_url(value):
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


HttpUrl = Annotated[str, AfterValidator(_no_nul), AfterValidator(_http_url)]
# Counters and sizes are stored as bigint.
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]


class NodeFacts(BaseModel):
    """What a machine is; sent at enrollment and refreshed by every heartbeat."""

    hostname: Text = Field(max_length=255)
    os: Text = ""
    arch: Text = ""
    cpu_cores: Count = 0
    memory_bytes: Count = Field(default=0, description="total RAM, the figure the fit check uses")
    disk_free_bytes: Count = 0
    gpu: Text | None = None
    runtime_version: Text = ""
    # Where peers of the same tenant reach this node's OpenAI-compatible API.
    # Recorded at enrollment; heartbeats do not change it.
    api_url: HttpUrl | None = Field(default=None, max_length=2048)


class EnrollRequest(BaseModel):
    token: Text = Field(description="an enrollment token from `hangar enroll-tokens create`")
    name: Text | None = Field(default=None, max_length=255, description="defaults to the hostname")
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
    # Refused by node_runtime.trust: signature missing where required, invalid, or made
    # by a key the tenant no longer trusts. Never loaded; the reason says which.
    untrusted = "untrusted"


class ModelStatus(BaseModel):
    name: Text
    ref: Text
    digest: Text
    state: SyncState
    bytes_done: Count = 0
    bytes_total: Count = 0
    reason: Text | None = None
    loaded: bool = False


class ModelCounters(BaseModel):
    """One model version's requests and server-side errors (5xx other than 503, and
    streams that broke), since the node runtime started: what a rollout's health
    gate reads. Client mistakes (4xx) and a full queue (503) are not the model's fault."""

    requests: Count = 0
    errors: Count = 0


# A node serves a handful of versions; the cap keeps a heartbeat small whatever it sends.
MAX_MODEL_COUNTERS = 64


class Counters(BaseModel):
    """Serving counters since the node runtime started (monotonic within one run)."""

    requests: Count = 0
    completed: Count = 0
    errors: Count = 0
    rejected: Count = 0
    forwarded: Count = 0
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    # Model bytes this node fetched from same-tenant peers instead of the control plane.
    peer_bytes: Count = 0
    # Per model version, by digest: they ride in every (light) heartbeat like the rest,
    # so the state hash does not change with each request.
    by_model: dict[Annotated[Text, Field(max_length=100)], ModelCounters] = Field(
        default_factory=dict, max_length=MAX_MODEL_COUNTERS
    )


class Resources(BaseModel):
    memory_available_bytes: Count = 0
    disk_free_bytes: Count = 0
    loaded_models: Count = 0


class Heartbeat(BaseModel):
    """A full heartbeat carries ``facts`` and the report (resources, models); a light one
    (``facts`` left out) carries only ``state_hash`` and the counters, and says the rest
    is as last sent. The control plane asks for a full one when its hash differs."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, description="idempotency key of this report")
    sent_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    facts: NodeFacts | None = Field(
        default=None, description="left out in a light heartbeat: unchanged since the last full one"
    )
    resources: Resources = Field(default_factory=Resources)
    models: list[ModelStatus] = Field(default_factory=list)
    counters: Counters = Field(default_factory=Counters)
    # The desired-state revision this node has applied.
    applied_revision: Count = 0
    # Reports written to disk while the control plane was unreachable.
    queued: bool = False
    state_hash: Text | None = Field(
        default=None,
        max_length=64,
        description="the node's hash of facts, resources, models and applied_revision",
    )


def state_hash(beat: Heartbeat) -> str:
    """The one hash both sides agree on: everything a full heartbeat carries except
    its id, time and counters (counters go in every heartbeat; they are small)."""
    body = beat.model_dump(
        mode="json", include={"facts", "resources", "models", "applied_revision"}
    )
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class HeartbeatReply(BaseModel):
    desired_revision: int
    heartbeat_seconds: float = Field(description="the interval to use; longer when under load")
    server_time: datetime
    send_state: bool = Field(
        default=False,
        description="the control plane does not hold this state_hash: send a full heartbeat now",
    )


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
    # Publishers' signatures of ``digest`` (wire.signing); empty for an unsigned version.
    signatures: list[Signature] = Field(default_factory=list)


class TrustedKey(BaseModel):
    """A signing key the tenant trusts: models signed by it may be loaded."""

    name: str
    key_id: str
    public_key: str = Field(description="the raw 32-byte Ed25519 public key, base64")


class DesiredState(BaseModel):
    revision: int
    models: list[DesiredModel]
    # The tenant's trust policy, sent with every desired state so a node (or an offline
    # bundle that embeds it) checks signatures with no further call.
    trusted_keys: list[TrustedKey] = Field(default_factory=list)
    require_signatures: bool = False


class Peer(BaseModel):
    node_id: uuid.UUID
    name: str
    api_url: str
    models: list[str] = Field(description="digests this peer reports ready")
    ticket: str | None = Field(
        default=None,
        description="lets the asking node fetch the digest from this peer (GET "
        "{api_url}/v1/peer/blobs/{digest} with header X-Hangar-Peer-Ticket); given only to "
        "nodes the digest "
        "is assigned to",
    )


PEER_BLOBS = "/v1/peer/blobs/"
# Its own header, not Authorization: nothing that looks like an API key goes to a peer.
PEER_TICKET_HEADER = "X-Hangar-Peer-Ticket"
PEER_TICKET_SECONDS = 600


def _ticket_mac(credential_hash: str, digest: str, requester: str, expires: int) -> str:
    return hmac.new(
        credential_hash.encode(), f"{digest}|{requester}|{expires}".encode(), hashlib.sha256
    ).hexdigest()


def peer_ticket(*, credential_hash: str, digest: str, requester: uuid.UUID, expires: int) -> str:
    """Issued by the control plane, keyed by the serving peer's credential hash: the
    peer checks it alone, and neither node ever sees the other's credential."""
    return f"{expires}.{requester}.{_ticket_mac(credential_hash, digest, str(requester), expires)}"


def check_peer_ticket(ticket: str, *, credential: str, digest: str, now: float) -> bool:
    """On the serving peer: was this ticket issued for this digest, to a node of my
    tenant (only the control plane knows my credential's hash), and not expired?"""
    try:
        expires_text, requester, mac = ticket.split(".", 2)
        expires = int(expires_text)
    except ValueError:
        return False
    own_hash = hashlib.sha256(credential.encode()).hexdigest()
    expected = _ticket_mac(own_hash, digest, requester, expires)
    return expires >= now and hmac.compare_digest(mac, expected)


class PeerWait(BaseModel):
    """No node of the asking node's site holds the digest yet, and another one is
    fetching it from the control plane for the whole site: ask again after
    ``retry_after_seconds`` and fetch it from that node once it is ready. A node stops
    waiting ``give_up_seconds`` after it was first told to wait and fetches the digest
    from the control plane itself, so a stuck fetcher never stalls a site."""

    node_id: uuid.UUID
    name: str = Field(description="the node fetching the digest for the site")
    retry_after_seconds: float
    give_up_seconds: float


class PeerList(BaseModel):
    peers: list[Peer]
    wait: PeerWait | None = Field(
        default=None,
        description="only with ?pull=true, when no peer of the site holds the digest "
        "and another node is fetching it from the control plane; absent: fetch from the "
        "peers listed or, with none, from the control plane",
    )
