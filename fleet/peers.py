"""What a node asks about its fleet: which same-tenant peers hold a digest, and, for a
pull no peer of its site can serve yet, whether it fetches the digest from the control
plane for the whole site or waits for the node that does.

A site is the nodes of a tenant sharing a ``site`` label; the nodes without one are a
site of their own. Pulls look for peers in the puller's site only, so model bytes stay
on the site's network, and a site downloads a digest from the control plane once even
when all its nodes ask at the same moment (``SiteFetch``)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utcnow
from fleet.deployments import desired_state
from fleet.models import Node, NodeReadyBlob, SiteFetch
from wire.contract import (
    PEER_TICKET_SECONDS,
    DesiredModel,
    Peer,
    PeerList,
    PeerWait,
    SyncState,
    is_http_url,
    peer_ticket,
)

PEERS_LIMIT = 50
SITE_LABEL = "site"
# A site's fetcher keeps the lease for the time its download takes at a slow but
# working rate, plus a margin; a node it made wait fetches by itself after that.
FETCH_MARGIN_SECONDS = 120
FETCH_MIN_BYTES_PER_SECOND = 5_000_000
# Waiting nodes ask again after about the time the blob takes over a fast LAN (sooner,
# the fetcher cannot be done), within these bounds: a thousand nodes waiting on a large
# model ask a few dozen times a second, not thousands.
LAN_BYTES_PER_SECOND = 100_000_000
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 2.0, 30.0


def site_of(node: Node) -> str:
    return (node.labels or {}).get(SITE_LABEL, "")


async def peers(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    node_id: uuid.UUID,
    offline_after: timedelta,
    digest: str | None = None,
    pull: bool = False,
) -> PeerList:
    """Online nodes of the same tenant that advertise an API, with the models they hold
    ready — the only places a node may forward a request to or pull a blob from. Nodes
    ask for the digest they need, so the answer stays small in a fleet of thousands.
    With ``pull``, only the asking node's site, and a ``wait`` when another node of the
    site is fetching the digest from the control plane."""
    asker = await session.get(Node, node_id)
    if asker is None:  # deleted between authentication and here
        return PeerList(peers=[])
    stmt = select(Node).where(
        Node.tenant_id == tenant_id,
        Node.id != node_id,
        Node.revoked_at.is_(None),
        Node.disabled_at.is_(None),
        Node.last_seen_at > utcnow() - offline_after,
    )
    if pull:
        stmt = stmt.where(_in_site(site_of(asker)))
    if digest is not None:
        # By (tenant, digest) from the ready table: the answer is found without
        # reading every node's report, however large the fleet.
        stmt = stmt.join(NodeReadyBlob, NodeReadyBlob.node_id == Node.id).where(
            NodeReadyBlob.tenant_id == tenant_id, NodeReadyBlob.digest == digest
        )
    # No ORDER BY: any online holders will do (the node shuffles them), so the scan
    # stops at the limit instead of sorting the whole fleet.
    rows = [
        n
        for n in await session.scalars(stmt.limit(PEERS_LIMIT))
        if is_http_url((n.facts or {}).get("api_url") or "")
    ]
    # Tickets to fetch the bytes from a peer go only to a node the digest is assigned
    # to: peer-to-peer transfer never widens what a node may download.
    assigned = None
    if digest is not None and (rows or pull):
        assigned = await _assigned(session, asker, digest)
    found = [_peer(n, digest=digest, tickets=assigned is not None, requester=node_id) for n in rows]
    wait = None
    if pull and not found and assigned is not None:
        wait = await _site_fetch(session, asker=asker, model=assigned, offline_after=offline_after)
    return PeerList(peers=found, wait=wait)


def _in_site(site: str):
    if site:
        return Node.labels[SITE_LABEL].astext == site
    return ~Node.labels.has_key(SITE_LABEL)


def _peer(node: Node, *, digest: str | None, tickets: bool, requester: uuid.UUID) -> Peer:
    ready = [
        m["digest"]
        for m in (node.report or {}).get("models", [])
        if m.get("state") == SyncState.ready
    ]
    ticket = None
    if tickets and digest is not None:
        ticket = peer_ticket(
            credential_hash=node.credential_hash,
            digest=digest,
            requester=requester,
            expires=int(time.time()) + PEER_TICKET_SECONDS,
        )
    return Peer(
        node_id=node.id, name=node.name, api_url=node.facts["api_url"], models=ready, ticket=ticket
    )


async def _assigned(session: AsyncSession, node: Node, digest: str) -> DesiredModel | None:
    desired = await desired_state(session, node=node)
    return next((m for m in desired.models if m.digest == digest), None)


async def _site_fetch(
    session: AsyncSession, *, asker: Node, model: DesiredModel, offline_after: timedelta
) -> PeerWait | None:
    """None: the asker fetches ``model`` from the control plane for its site (it holds
    the lease now, or cannot serve peers anyway). Else: whom it waits for, and how long.
    The lease is taken when there is none, when the asker holds it already (a retry),
    or when its holder is gone (expired, offline, revoked, disabled); the insert and
    the row lock make sure two askers never both take it."""
    if not is_http_url((asker.facts or {}).get("api_url") or ""):
        return None  # peers could not fetch from it: it downloads for itself only
    now = utcnow()
    until = now + timedelta(seconds=FETCH_MARGIN_SECONDS + model.size / FETCH_MIN_BYTES_PER_SECOND)
    key = {"tenant_id": asker.tenant_id, "site": site_of(asker), "digest": model.digest}
    taken = await session.scalar(
        insert(SiteFetch)
        .values(**key, node_id=asker.id, expires_at=until)
        .on_conflict_do_nothing()
        .returning(SiteFetch.node_id)
    )
    if taken is not None:
        return None
    row = (
        await session.execute(
            select(SiteFetch, Node)
            .join(Node, Node.id == SiteFetch.node_id)
            .where(
                SiteFetch.tenant_id == asker.tenant_id,
                SiteFetch.site == key["site"],
                SiteFetch.digest == model.digest,
            )
            .with_for_update(of=SiteFetch)
        )
    ).one_or_none()
    if row is None:  # its node was deleted meanwhile: fetch it yourself
        return None
    lease, holder = row
    gone = (
        lease.expires_at <= now
        or holder.revoked_at is not None
        or holder.disabled_at is not None
        or holder.last_seen_at is None
        or holder.last_seen_at <= now - offline_after
    )
    if lease.node_id == asker.id or gone:
        lease.node_id, lease.expires_at = asker.id, until
        return None
    retry = min(max(model.size / LAN_BYTES_PER_SECOND, RETRY_MIN_SECONDS), RETRY_MAX_SECONDS)
    return PeerWait(
        node_id=holder.id,
        name=holder.name,
        retry_after_seconds=retry,
        give_up_seconds=max((lease.expires_at - now).total_seconds(), retry),
    )
