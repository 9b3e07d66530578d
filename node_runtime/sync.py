"""Turns the desired state into files in the cache: fit check, one download per
digest with resume and retry, removal of what is no longer assigned."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from node_runtime.cache import BlobCache, Cancelled
from node_runtime.control import ControlPlane
from node_runtime.errors import ControlPlaneRefused, ControlPlaneUnreachable, DownloadFailed
from node_runtime.identity import Identity
from node_runtime.settings import NodeSettings
from node_runtime.trust import TrustPolicy, refusal
from wire.contract import (
    PEER_BLOBS,
    PEER_TICKET_HEADER,
    DesiredModel,
    DesiredState,
    ModelStatus,
    PeerList,
    SyncState,
    is_http_url,
)
from wire.refs import format_ref

log = logging.getLogger("hangar.node.sync")

# Peers tried per pull before the control plane; a peer must answer each read within
# PEER_READ_TIMEOUT and keep at least PEER_MIN_BYTES_PER_SECOND, or it is given up on.
PEER_TRIES = 3
PEER_READ_TIMEOUT = 10
PEER_MIN_BYTES_PER_SECOND = 5_000_000


def served_id(model: DesiredModel) -> str:
    """How clients name it: NAME:TAG for tag deployments, NAME@sha256:… for pinned ones."""
    return format_ref(model.name, model.ref)


def served_ids(model: DesiredModel) -> list[str]:
    """Every name it answers to: its ref and the aliases resolving to the same version."""
    ids = [served_id(model)]
    for ref in model.aliases:
        if (i := format_ref(model.name, ref)) not in ids:
            ids.append(i)
    return ids


@dataclass
class Entry:
    desired: DesiredModel
    status: ModelStatus = field(init=False)

    def __post_init__(self) -> None:
        d = self.desired
        self.status = ModelStatus(
            name=d.name, ref=d.ref, digest=d.digest, state=SyncState.pending, bytes_total=d.size
        )

    @property
    def id(self) -> str:
        return served_id(self.desired)

    @property
    def ids(self) -> list[str]:
        return served_ids(self.desired)


class Syncer:
    def __init__(
        self,
        *,
        settings: NodeSettings,
        identity: Identity,
        cache: BlobCache,
        memory_budget: int,
        on_change: Callable[[], None],
        on_removed: Callable[[set[str]], None],
    ):
        self.settings = settings
        self.identity = identity
        self.cache = cache
        self.memory_budget = memory_budget
        self.on_change = on_change
        self.on_removed = on_removed
        self.entries: dict[str, Entry] = {}
        # Asked for peers holding a digest before each pull (built on first use).
        self.control: ControlPlane | None = None
        # Bytes fetched from peers (reported in heartbeat counters, never billed).
        self.peer_bytes = 0
        self.downloads: dict[str, tuple[asyncio.Task, threading.Event]] = {}
        # The tenant's trusted keys and signature rule, from the last desired state.
        self.policy = TrustPolicy()

    def statuses(self) -> list[ModelStatus]:
        return [e.status.model_copy() for e in self.entries.values()]

    def mark(self, digest: str, state: SyncState, reason: str | None = None) -> None:
        for e in self.entries.values():
            if e.desired.digest == digest and e.status.state != SyncState.does_not_fit:
                if state == SyncState.ready:
                    e.status.bytes_done = e.status.bytes_total
                    # A verified file is ready only if its signature holds too.
                    if (why := refusal(e.desired, self.policy)) is not None:
                        self._untrusted(e, why)
                        continue
                e.status.state, e.status.reason = state, reason
        if state == SyncState.ready and not any(
            e.desired.digest == digest and e.status.state == SyncState.ready
            for e in self.entries.values()
        ):
            self.on_removed({digest})  # unload it if it was loaded (a key was revoked)
        self.on_change()

    def refuse(self, entry: Entry, reason: str) -> None:
        """Serving found ``entry`` untrusted right before loading it."""
        self._untrusted(entry, reason)
        self.on_change()

    @staticmethod
    def _untrusted(entry: Entry, reason: str) -> None:
        if entry.status.state != SyncState.untrusted or entry.status.reason != reason:
            log.warning("model %s refused (untrusted): %s", entry.id, reason)
        entry.status.state, entry.status.reason = SyncState.untrusted, reason

    async def verify_all(self) -> None:
        """At start: a file damaged while we were down is deleted here and fetched again."""
        for digest in sorted(self.cache.present()):
            if not await asyncio.to_thread(self.cache.verify, digest, force=True):
                log.warning("cached %s failed verification; it will be fetched again", digest)

    async def apply(self, desired: DesiredState) -> None:
        # Every model is checked again below (ensure -> mark), so a revoked key
        # unloads what only it signed at this sync.
        self.policy = TrustPolicy.of(desired)
        entries = {}
        for model in desired.models:
            entry = self.entries.get(f"{model.name}@{model.digest}") or Entry(model)
            entry.desired = model
            entries[f"{model.name}@{model.digest}"] = entry
        self.entries = entries
        wanted = {e.desired.digest for e in entries.values() if not self._does_not_fit(e)}
        for digest, (task, cancel) in list(self.downloads.items()):
            if digest not in wanted:
                cancel.set()
                task.cancel()
                del self.downloads[digest]
        removed = set(await asyncio.to_thread(self.cache.remove_except, wanted))
        if removed:
            log.info("removed %d unassigned blob(s)", len(removed))
            self.on_removed(removed)
        for digest in wanted:
            await self.ensure(digest)
        self.on_change()

    def _does_not_fit(self, entry: Entry) -> bool:
        """True if the model cannot fit: it is reported, never downloaded nor loaded."""
        need = entry.desired.estimated_memory_bytes
        if need > self.memory_budget:
            entry.status.state = SyncState.does_not_fit
            entry.status.reason = f"needs about {need / 1e9:.2f} GB of memory to load; this node has {self.memory_budget / 1e9:.2f} GB"
            return True
        if entry.status.state == SyncState.does_not_fit:
            entry.status.state, entry.status.reason = SyncState.pending, None
        return False

    async def ensure(self, digest: str) -> None:
        """Ready if the verified file is there, else one download for the digest."""
        if digest in self.downloads:
            return
        if await asyncio.to_thread(self.cache.verify, digest):
            self.mark(digest, SyncState.ready)
            return
        cancel = threading.Event()
        task = asyncio.create_task(self._download(digest, cancel), name=f"download {digest}")
        self.downloads[digest] = (task, cancel)

    def _model(self, digest: str) -> DesiredModel | None:
        return next((e.desired for e in self.entries.values() if e.desired.digest == digest), None)

    def _progress(self, digest: str) -> Callable[[int], None]:
        def report(done: int) -> None:
            for e in self.entries.values():
                if e.desired.digest == digest:
                    e.status.bytes_done = done

        return report

    async def _download(self, digest: str, cancel: threading.Event) -> None:
        attempt = 0
        try:
            while (model := self._model(digest)) is not None:
                self.mark(digest, SyncState.downloading)
                try:
                    if await self._from_peers(model, cancel):
                        self.mark(digest, SyncState.ready)
                        return
                    self.mark(digest, SyncState.downloading)  # no longer waiting for a peer
                    await asyncio.to_thread(self._fetch, model, cancel)
                    self.mark(digest, SyncState.ready)
                    return
                except Cancelled:
                    return
                except Exception as exc:  # network, disk, digest: report it and try again
                    attempt += 1
                    reason = f"{type(exc).__name__}: {exc}"[:500]
                    log.warning("download of %s failed (attempt %d): %s", digest, attempt, reason)
                    self.mark(digest, SyncState.failed, reason)
                    # The first retry is immediate: a dropped connection resumes from the .partial.
                    await asyncio.sleep(
                        0 if attempt == 1 else min(self.settings.retry_seconds * attempt, 60)
                    )
        finally:
            current = self.downloads.get(digest)
            if current is not None and current[1] is cancel:
                del self.downloads[digest]

    async def _peers(self, digest: str) -> PeerList:
        if self.control is None:
            self.control = ControlPlane(self.identity.server, self.identity.credential)
        try:
            found = await self.control.peers(digest, pull=True)
        except (ControlPlaneUnreachable, ControlPlaneRefused) as exc:
            log.info("no peer list for %s (%s); fetching from the control plane", digest, exc)
            return PeerList(peers=[])
        usable = [
            p for p in found.peers if p.ticket and digest in p.models and is_http_url(p.api_url)
        ]
        random.shuffle(usable)  # spread a site's pulls over every peer holding it
        return PeerList(peers=usable[:PEER_TRIES], wait=found.wait)

    async def _from_peers(self, model: DesiredModel, cancel: threading.Event) -> bool:
        """Fetch from a same-site peer that holds the digest, verifying it as always.
        While another node of the site fetches it from the control plane, wait for that
        node (up to the time the control plane allows, never longer). Any failure
        (unreachable, slow, wrong bytes) moves on; False: use the control plane."""
        give_up = None
        while not (found := await self._peers(model.digest)).peers:
            wait = found.wait
            if wait is None:
                return False
            now = time.monotonic()
            # Fixed when first told to wait: a fetcher that keeps retrying never
            # holds this node back for longer than that.
            first = give_up is None
            if give_up is None:
                give_up = now + wait.give_up_seconds
            if now >= give_up:
                log.warning(
                    "peer %s has not fetched %s for the site in time; fetching it here",
                    wait.name,
                    model.digest,
                )
                return False
            reason = f"waiting for {wait.name}, which fetches it for this site"
            if first:  # say it once
                log.info("%s: %s", model.digest, reason)
            self.mark(model.digest, SyncState.downloading, reason)
            # Jitter: a site's waiting nodes do not all ask again at the same moment.
            pause = wait.retry_after_seconds * random.uniform(0.75, 1.25)
            await asyncio.sleep(min(pause, give_up - now))
            if cancel.is_set():
                raise Cancelled()
        for peer in found.peers:
            try:
                await asyncio.to_thread(
                    self.cache.download,
                    peer.api_url,
                    PEER_BLOBS + model.digest,
                    headers={PEER_TICKET_HEADER: peer.ticket or ""},
                    digest=model.digest,
                    size=model.size,
                    progress=self._progress(model.digest),
                    cancel=cancel,
                    timeout=PEER_READ_TIMEOUT,
                    deadline=time.monotonic() + 30 + model.size / PEER_MIN_BYTES_PER_SECOND,
                )
            except Cancelled:
                raise
            except Exception as exc:
                log.warning(
                    "fetching %s from peer %s failed (%s: %s); trying the next source",
                    model.digest,
                    peer.name,
                    type(exc).__name__,
                    str(exc)[:300],
                )
                # Bytes from a peer that failed are not trusted as a base to resume from.
                self.cache.partial(model.digest).unlink(missing_ok=True)
                continue
            self.peer_bytes += model.size
            log.info("fetched %s from peer %s", model.digest, peer.name)
            return True
        return False

    def _fetch(self, model: DesiredModel, cancel: threading.Event) -> None:
        if not self.identity.server:
            raise DownloadFailed(
                "this node is offline: import a bundle that carries the model (`hangar node import-bundle`)"
            )
        self.cache.download(
            self.identity.server,
            model.download_path,
            headers={"Authorization": f"Bearer {self.identity.credential}"},
            digest=model.digest,
            size=model.size,
            progress=self._progress(model.digest),
            cancel=cancel,
        )

    def ready(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.status.state == SyncState.ready]

    async def close(self) -> None:
        for task, cancel in self.downloads.values():
            cancel.set()
            task.cancel()
        await asyncio.gather(*(t for t, _ in self.downloads.values()), return_exceptions=True)
        if self.control is not None:
            await self.control.close()
