"""Plan limits on the fleet: ``enroll`` asks a ``NodeLimit`` before it creates a node.

Billing owns the rules (Starter's 15 nodes, a lapsed trial, an enterprise cap) and
implements this protocol (``billing.quotas.Quotas``); ``services`` passes it in, so the
fleet does not depend on billing. It runs inside the enrollment transaction, before the
node row exists, so a 402 keeps nothing."""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class NodeLimit(Protocol):
    async def check_node_limit(self, session: AsyncSession, *, tenant_id: uuid.UUID) -> None:
        """Raise ``PaymentRequired`` if ``tenant_id`` may not enroll one more node."""


class NoNodeLimit:
    """Every enrollment allowed: for tools and tests that run the fleet alone."""

    async def check_node_limit(self, session: AsyncSession, *, tenant_id: uuid.UUID) -> None:
        return None
