"""Everything a running Hangar process holds, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.quotas import Quotas
from billing.stripe import StripeClient
from core.db import make_engine, make_sessionmaker
from core.objectstore import ObjectStore
from core.settings import Settings
from fleet.revisions import model_changed
from registry.downloads import Downloads
from registry.uploads import Uploads
from services.usage_names import UsageNames


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
    usage_names: UsageNames

    @classmethod
    def build(cls, settings: Settings) -> Components:
        engine = make_engine(settings.database)
        sessions = make_sessionmaker(engine)
        store = ObjectStore(settings.s3)
        quotas = Quotas(sessions=sessions)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            store=store,
            uploads=Uploads(
                sessions=sessions,
                store=store,
                settings=settings.registry,
                quota=quotas,
                on_change=model_changed,
            ),
            downloads=Downloads(
                sessions=sessions, store=store, settings=settings.registry, quota=quotas
            ),
            quotas=quotas,
            stripe=StripeClient(settings.stripe),
            usage_names=UsageNames(),
        )

    async def close(self) -> None:
        await self.downloads.drain()
        await self.stripe.close()
        await self.store.close()
        await self.engine.dispose()
