"""Everything a running Hangar process holds, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from billing.quotas import Quotas
from billing.stripe import StripeClient
from core import logredact
from core.db import async_url, make_engine, make_sessionmaker
from core.objectstore import ObjectStore
from core.settings import Settings
from fleet.pacing import HeartbeatPacer
from fleet.revisions import model_changed
from registry.downloads import Downloads
from registry.uploads import Uploads
from services.usage_names import UsageNames


def _secrets_of(settings: Settings) -> list[str]:
    """Every configured secret, so no log line can carry one."""
    password = urlsplit(settings.database.url).password if settings.database.url else None
    return [
        settings.operator_token.get_secret_value(),
        settings.s3.secret_key.get_secret_value(),
        settings.stripe.api_key.get_secret_value(),
        settings.stripe.webhook_secret.get_secret_value(),
        password or "",
    ]


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
    pacer: HeartbeatPacer
    # Heartbeats only: an engine without pre-ping (a ping costs more round trips than
    # the heartbeat itself); a connection found dead fails one beat, which the node retries.
    beats: async_sessionmaker[AsyncSession]

    @classmethod
    def build(cls, settings: Settings) -> Components:
        logredact.install(_secrets_of(settings))
        engine = make_engine(settings.database)
        sessions = make_sessionmaker(engine)
        store = ObjectStore(settings.s3)
        quotas = Quotas(sessions=sessions)
        beats = make_sessionmaker(
            create_async_engine(
                async_url(settings.database.url), pool_size=settings.database.pool_size
            )
        )
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
            pacer=HeartbeatPacer(
                base=settings.fleet.heartbeat_seconds,
                target_per_second=settings.fleet.heartbeats_per_second_target,
                longest=settings.fleet.offline_after_seconds / 2,
            ),
            beats=beats,
        )

    async def close(self) -> None:
        await self.downloads.drain()
        await self.stripe.close()
        await self.store.close()
        await self.engine.dispose()
        await self.beats.kw["bind"].dispose()
