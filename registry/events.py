"""What the registry tells the layers above when a model changes (a tag moved, a tag or
version went away). The fleet implements it (``fleet.revisions.model_changed``: nodes
following the model fetch their desired state again) and ``services.components`` passes
it in, so the registry does not depend on the fleet."""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class ModelChanged(Protocol):
    """Called inside the transaction that made the change, so both commit together."""

    async def __call__(self, session: AsyncSession, *, model_id: uuid.UUID) -> None: ...


async def nobody_listens(session: AsyncSession, *, model_id: uuid.UUID) -> None:
    """For tools and tests that run the registry alone."""
