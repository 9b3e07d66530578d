"""Plan limits on the fleet.

INTEGRATION HOOK: billing wires its node-count check in here. ``enroll`` calls
``check_node_limit`` inside the enrollment transaction, before the node row is
created, so raising ``services.errors.PaymentRequired`` (402, naming the limit)
refuses the 16th node of a Starter tenant and nothing is kept.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession


async def check_node_limit(session: AsyncSession, *, tenant_id: uuid.UUID) -> None:
    """Raise if ``tenant_id`` may not enroll one more node. Default: no limit."""
    return None
