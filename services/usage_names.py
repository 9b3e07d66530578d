"""Names for the ids in usage reports: metering asks (``metering.reports.UsageNames``),
the fleet and the registry answer. Wired here because only the application layer may
see all three."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from fleet import nodes
from registry import service as registry


class UsageNames:
    async def nodes(self, session: AsyncSession, *, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        return await nodes.names(session, ids=ids)

    async def model_versions(
        self, session: AsyncSession, *, ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[str, int]]:
        return await registry.version_names(session, ids=ids)
