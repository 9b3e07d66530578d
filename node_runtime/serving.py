"""Which models are loaded: load on demand or when they become ready, unload after
the keep-alive, never more than ``max_loaded_models`` at once."""

from __future__ import annotations

import asyncio
import logging
import time

from node_runtime.cache import BlobCache
from node_runtime.engine import Engine
from node_runtime.errors import DoesNotFit, ModelNotFound, ModelUntrusted, Unavailable
from node_runtime.metrics import Metrics
from node_runtime.runner import ModelRunner
from node_runtime.settings import NodeSettings
from node_runtime.sync import Entry, Syncer
from node_runtime.trust import refusal
from wire.contract import SyncState

log = logging.getLogger("hangar.node.serving")


class Serving:
    def __init__(
        self,
        *,
        settings: NodeSettings,
        engine: Engine,
        cache: BlobCache,
        syncer: Syncer,
        metrics: Metrics | None = None,
    ):
        self.metrics = metrics
        self.settings = settings
        self.engine = engine
        self.cache = cache
        self.syncer = syncer
        self.runners: dict[str, ModelRunner] = {}

    def lookup(self, model: str) -> Entry:
        """``NAME:TAG``, ``NAME@sha256:…`` or a bare ``NAME`` (its ready version first)."""
        entries = list(self.syncer.entries.values())
        exact = [
            e for e in entries if model in e.ids or f"{e.desired.name}@{e.desired.digest}" == model
        ]
        by_name = sorted(
            (e for e in entries if e.desired.name == model),
            key=lambda e: e.status.state != SyncState.ready,
        )
        found = (exact or by_name or [None])[0]
        if found is None:
            ids = ", ".join(sorted(i for e in entries for i in e.ids)) or "none yet"
            raise ModelNotFound(
                f"model {model!r} is not assigned to this node; models here: {ids}. "
                "Assign it with `hangar deploy NAME:TAG --node ID`"
            )
        return found

    async def runner_for(self, entry: Entry) -> ModelRunner:
        status = entry.status
        if status.state == SyncState.does_not_fit:
            raise DoesNotFit(f"model {entry.id} does not fit this node: {status.reason}")
        if status.state == SyncState.untrusted:
            raise ModelUntrusted(f"model {entry.id} is refused by this node: {status.reason}")
        if status.state != SyncState.ready:
            done = (
                f" ({100 * status.bytes_done // max(status.bytes_total, 1)}%)"
                if status.bytes_total
                else ""
            )
            why = f": {status.reason}" if status.reason else ""
            raise Unavailable(
                f"model {entry.id} is {status.state.value}{done}{why}; retry shortly", retry_after=5
            )
        runner = self.runners.get(entry.desired.digest)
        if runner is None:
            runner = await self.load(entry)
        if runner.error:
            self.runners.pop(entry.desired.digest, None)
            raise Unavailable(
                f"model {entry.id} failed to load ({runner.error}); retrying", retry_after=5
            )
        return runner

    async def load(self, entry: Entry) -> ModelRunner:
        digest = entry.desired.digest
        if digest in self.runners:
            return self.runners[digest]
        if len(self.runners) >= self.settings.max_loaded_models and not await self._evict_one():
            raise Unavailable(
                f"{len(self.runners)} models are loaded and busy (limit {self.settings.max_loaded_models}); retry shortly",
                retry_after=5,
            )
        # Before every load: the signature against the keys trusted now …
        if (why := refusal(entry.desired, self.syncer.policy)) is not None:
            self.syncer.refuse(entry, why)
            raise ModelUntrusted(f"model {entry.id} is refused by this node: {why}")
        # … and the digest: a file damaged on disk is dropped and fetched again.
        if not await asyncio.to_thread(self.cache.verify, digest):
            self.syncer.mark(
                digest, SyncState.pending, "cached file was corrupt; fetching it again"
            )
            await self.syncer.ensure(digest)
            raise Unavailable(
                f"model {entry.id} was corrupt on disk and is being fetched again", retry_after=5
            )
        runner = ModelRunner(
            name=entry.id,
            digest=digest,
            path=self.cache.path(digest),
            engine=self.engine,
            queue_size=self.settings.queue_size,
        )
        self.runners[digest] = runner
        started = time.perf_counter()

        def loaded(f: asyncio.Future) -> None:
            # A failure is surfaced to requests via runner.error; here it is logged once.
            if f.cancelled() or f.exception() is not None:
                log.error("model %s failed to load: %s", entry.id, runner.error)
                return
            seconds = time.perf_counter() - started
            log.info("model %s loaded in %.1fs", entry.id, seconds)
            if self.metrics is not None:
                self.metrics.load_seconds.labels(entry.id).observe(seconds)

        runner.start_loading().add_done_callback(loaded)
        return runner

    async def preload(self) -> None:
        """Load ready models while there is room, so the first request is not a 503."""
        for entry in self.syncer.ready():
            if len(self.runners) >= self.settings.max_loaded_models:
                return
            if entry.desired.digest not in self.runners:
                try:
                    await self.load(entry)
                except Unavailable as exc:
                    log.info("not preloading %s: %s", entry.id, exc.message)

    async def _evict_one(self) -> bool:
        idle = [r for r in self.runners.values() if not r.busy and (r.ready or r.error)]
        if not idle:
            return False
        await self.unload(min(idle, key=lambda r: r.last_used).digest)
        return True

    async def unload(self, digest: str) -> None:
        runner = self.runners.pop(digest, None)
        if runner is not None:
            await runner.close()
            log.info("model %s unloaded", runner.name)

    async def reap_idle(self) -> None:
        cutoff = time.monotonic() - self.settings.keep_alive_seconds
        for digest, runner in list(self.runners.items()):
            if not runner.busy and runner.last_used < cutoff:
                await self.unload(digest)

    def loaded(self, digest: str) -> bool:
        runner = self.runners.get(digest)
        return runner is not None and runner.ready

    async def close(self) -> None:
        for digest in list(self.runners):
            await self.unload(digest)
