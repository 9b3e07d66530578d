"""Request-scoped dependencies: the components and one transaction per request."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from services.components import Components


def provide_components(state: State) -> Components:
    return state.hangar


async def provide_db(hangar: Components) -> AsyncIterator[AsyncSession]:
    """Committed when the handler returns, rolled back if it raises."""
    async with hangar.sessions() as session, session.begin():
        yield session
