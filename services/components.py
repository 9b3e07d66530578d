"""Everything a running Hangar process holds, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.quotas import Quotas
from billing.stripe import StripeClient
from registry.downloads import Downloads
from registry.uploads import Uploads
from services.db import make_engine, make_sessionmaker
from services.objectstore import ObjectStore
from services.settings import Settings


@dataclass
class Components:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: ObjectStore
    uploads: Uploads
    downloads: Downloads
    quotas: Quotas
    stripe: StripeClient

    @classmethod
    def build(cls, settings: Settings) -> Components:
        engine = make_engine(settings.database)
        sessions = make_sessionmaker(engine)
        store = ObjectStore(settings.s3)
        quotas = Quotas(sessions=sessions, settings=settings.billing)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            store=store,
            uploads=Uploads(
                sessions=sessions, store=store, settings=settings.registry, quota=quotas
            ),
            downloads=Downloads(
                sessions=sessions, store=store, settings=settings.registry, quota=quotas
            ),
            quotas=quotas,
            stripe=StripeClient(settings.stripe),
        )

    async def close(self) -> None:
        await self.downloads.drain()
        await self.stripe.close()
        await self.store.close()
        await self.engine.dispose()
