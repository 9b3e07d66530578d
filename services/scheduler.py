"""Periodic jobs on APScheduler. Every job is idempotent, and each run holds a
Postgres advisory lock so two schedulers never run the same job at once."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, is_dataclass
from datetime import timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import text

from registry.gc import collect_garbage
from services.components import Components
from services.db import transaction
from services.fleet.nodes import mark_offline

log = logging.getLogger("hangar.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    trigger: CronTrigger
    run: Callable[[Components], Awaitable[Any]]
    help: str


async def _gc(hangar: Components) -> Any:
    stale = timedelta(hours=hangar.settings.registry.stale_upload_hours)
    return await collect_garbage(hangar.sessions, hangar.store, stale_after=stale)


async def _offline(hangar: Components) -> Any:
    after = timedelta(seconds=hangar.settings.fleet.offline_after_seconds)
    async with transaction(hangar.sessions) as session:
        went_offline = await mark_offline(session, offline_after=after)
    return {"went_offline": [str(i) for i in went_offline]}


JOBS: dict[str, Job] = {
    job.name: job
    for job in [
        Job("gc", CronTrigger(minute=17), _gc, "abort stale uploads, delete unused blobs and orphaned objects"),
        Job("offline", CronTrigger(second=30), _offline, "mark nodes without a recent heartbeat offline"),
    ]
}


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"hangar-job:{name}".encode()).digest()[:8], "big", signed=True)


async def run_job(hangar: Components, name: str) -> dict[str, Any] | None:
    """Run one job now. Returns its report, or None if another process holds it."""
    job = JOBS[name]
    async with hangar.engine.connect() as conn:
        got = await conn.scalar(text("select pg_try_advisory_lock(:k)"), {"k": _lock_key(name)})
        await conn.commit()
        if not got:
            log.info("job %s is running elsewhere; skipped", name)
            return None
        try:
            result = await job.run(hangar)
        finally:
            await conn.execute(text("select pg_advisory_unlock(:k)"), {"k": _lock_key(name)})
            await conn.commit()
    report = asdict(result) if is_dataclass(result) else (result or {})
    log.info("job %s done: %s", name, report)
    return report


def build_scheduler(hangar: Components) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")
    for job in JOBS.values():
        scheduler.add_job(
            run_job, job.trigger, args=[hangar, job.name], id=job.name,
            max_instances=1, coalesce=True, misfire_grace_time=3600,
        )
    return scheduler
