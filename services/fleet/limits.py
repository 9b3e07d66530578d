"""Plan limits on the fleet: ``enroll`` asks here before it creates a node.

Billing owns the rules (Starter's 15 nodes, a lapsed trial, an enterprise cap);
this module is the one place the fleet calls them. It runs inside the enrollment
transaction, before the node row exists, so a 402 keeps nothing.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from billing import quotas


async def check_node_limit(session: AsyncSession, *, tenant_id: uuid.UUID, trial_days: int) -> None:
    """Raise ``PaymentRequired`` if ``tenant_id`` may not enroll one more node."""
    await quotas.check_node_limit(session, tenant_id=tenant_id, trial_days=trial_days)
