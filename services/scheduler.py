"""Periodic jobs on APScheduler. Every job is idempotent, and each run holds a
Postgres advisory lock so two schedulers never run the same job at once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import text

from billing import jobs as billing_jobs
from core.db import advisory_lock_key, transaction, utcnow
from fleet.nodes import mark_offline
from fleet.rollouts import Health, advance_all
from registry.gc import collect_garbage
from services.api.idempotency import forget_expired
from services.components import Components

log = logging.getLogger("hangar.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    trigger: CronTrigger
    # Called with the components and the time to act as of (now, unless a test or an
    # operator backfilling asks for another).
    run: Callable[[Components, datetime], Awaitable[Any]]
    help: str


async def _gc(hangar: Components, now: datetime) -> Any:
    stale = timedelta(hours=hangar.settings.registry.stale_upload_hours)
    report = await collect_garbage(hangar.sessions, hangar.store, stale_after=stale)
    expired = await forget_expired(hangar.sessions, now=now)
    return {**asdict(report), "idempotency_keys": expired}


async def _offline(hangar: Components, now: datetime) -> Any:
    after = timedelta(seconds=hangar.settings.fleet.offline_after_seconds)
    async with transaction(hangar.sessions) as session:
        went_offline = await mark_offline(session, offline_after=after, now=now)
    return {"went_offline": [str(i) for i in went_offline]}


async def _rollouts(hangar: Components, now: datetime) -> Any:
    health = Health.of(hangar.settings.fleet)
    async with transaction(hangar.sessions) as session:
        return await advance_all(session, now=now, health=health)


async def _storage_sample(hangar: Components, now: datetime) -> Any:
    return await billing_jobs.run_storage_sample(hangar.sessions, now=now)


async def _device_count(hangar: Components, now: datetime) -> Any:
    settings = hangar.settings.billing
    return await billing_jobs.run_device_count(hangar.sessions, now=now, settings=settings)


async def _trial_expiry(hangar: Components, now: datetime) -> Any:
    return await billing_jobs.run_trial_expiry(hangar.sessions, now=now)


async def _period_close(hangar: Components, now: datetime) -> Any:
    settings = hangar.settings.billing
    return await billing_jobs.run_period_close(hangar.sessions, now=now, settings=settings)


async def _stripe_sync(hangar: Components, now: datetime) -> Any:
    return await billing_jobs.run_stripe_sync(hangar.sessions, now=now, client=hangar.stripe)


JOBS: dict[str, Job] = {
    job.name: job
    for job in [
        Job(
            "gc",
            CronTrigger(minute=17),
            _gc,
            "abort stale uploads, delete unused blobs and orphaned objects, "
            "forget Idempotency-Keys past 24 hours",
        ),
        Job(
            "offline",
            CronTrigger(second=30),
            _offline,
            "mark nodes without a recent heartbeat offline",
        ),
        Job(
            "rollouts",
            CronTrigger(second="*/15"),
            _rollouts,
            "advance rollouts: switch ready nodes, judge health, next wave or roll back",
        ),
        Job(
            "storage-sample",
            CronTrigger(minute=5),
            _storage_sample,
            "record each tenant's stored bytes for this hour",
        ),
        Job(
            "device-count",
            CronTrigger(hour="*/6", minute=10),
            _device_count,
            "record a device-day per node enrolled and not revoked, today and the days before",
        ),
        Job(
            "trial-expiry",
            CronTrigger(minute=25),
            _trial_expiry,
            "end Starter trials after 30 days: paid Starter with a card on file, else paused",
        ),
        Job(
            "period-close",
            CronTrigger(hour=1, minute=30),
            _period_close,
            "finalize last month's invoices once the grace day has passed (gap-free numbers)",
        ),
        Job(
            "stripe-sync",
            CronTrigger(minute="*/10"),
            _stripe_sync,
            "push finalized invoices to Stripe and retry failed pushes",
        ),
    ]
}


async def run_job(
    hangar: Components, name: str, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """Run one job now (or as of ``now``). Returns its report, or None if another
    process holds it."""
    job, key = JOBS[name], advisory_lock_key("hangar-job", name)
    async with hangar.engine.connect() as conn:
        got = await conn.scalar(text("select pg_try_advisory_lock(:k)"), {"k": key})
        await conn.commit()
        if not got:
            log.info("job %s is running elsewhere; skipped", name)
            return None
        try:
            result = await job.run(hangar, now or utcnow())
        finally:
            await conn.execute(text("select pg_advisory_unlock(:k)"), {"k": key})
            await conn.commit()
    report = asdict(result) if is_dataclass(result) else (result or {})
    # One line per job that did something; a run that found nothing to do (the offline
    # and rollouts jobs, every few seconds) is not an event worth a line by default.
    log.log(
        logging.INFO if any(report.values()) else logging.DEBUG, "job %s done: %s", name, report
    )
    return report


async def scheduled_run(hangar: Components, name: str) -> None:
    """A timed run. While the database is away (restarting under `hangar up`, a
    failover) the run is skipped with one line, not a traceback every few seconds:
    the next run catches up, as every job is idempotent."""
    from services.api.errors import connection_lost

    try:
        await run_job(hangar, name)
    except Exception as exc:
        if not connection_lost(exc):
            raise
        log.warning("job %s skipped, the database is unavailable: %s", name, exc)


def build_scheduler(hangar: Components) -> AsyncIOScheduler:
    # run_job logs what each job did; APScheduler's own "Running job" / "executed
    # successfully" lines for every run only repeat it.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler = AsyncIOScheduler(timezone="UTC")
    for job in JOBS.values():
        scheduler.add_job(
            scheduled_run,
            job.trigger,
            args=[hangar, job.name],
            id=job.name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
        )
    return scheduler
