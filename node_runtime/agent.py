"""The control loop: heartbeat, fetch the desired state when its revision changed,
sync, refresh peers. When the control plane is unreachable the node keeps serving
what it holds and queues its reports on disk, then flushes them oldest first."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import UTC, datetime
from pathlib import Path

from node_runtime import facts
from node_runtime.control import ControlPlane
from node_runtime.errors import ControlPlaneRefused, ControlPlaneUnreachable
from node_runtime.outbox import Outbox
from node_runtime.serving import Serving
from node_runtime.settings import NodeSettings
from node_runtime.sync import Syncer
from wire.contract import Counters, DesiredState, Heartbeat, NodeFacts, ReportBatch, state_hash

log = logging.getLogger("hangar.node.agent")

FLUSH_BATCH = 200
RESOURCE_STEP = 100_000_000


class Agent:
    def __init__(
        self,
        *,
        settings: NodeSettings,
        control: ControlPlane,
        syncer: Syncer,
        serving: Serving,
        outbox: Outbox,
        counters: Counters,
        node_facts: NodeFacts,
    ):
        self.settings = settings
        self.control = control
        self.syncer = syncer
        self.serving = serving
        self.outbox = outbox
        self.counters = counters
        self.facts = node_facts
        self.wake = asyncio.Event()
        self.interval = settings.heartbeat_seconds or 15
        self.applied_revision = 0
        # The state_hash the control plane holds for us, as far as we know.
        self.acked_hash: str | None = None
        self.connected: bool | None = None
        self.refused: str | None = None
        self._desired_file = settings.data_dir / "desired.json"

    def build_heartbeat(self) -> Heartbeat:
        """A full heartbeat, its ``state_hash`` set."""
        models = self.syncer.statuses()
        for m in models:
            m.loaded = self.serving.loaded(m.digest)
        res = facts.resources(self.settings.data_dir, loaded_models=len(self.serving.runners))
        # Free memory and disk move by a few bytes every second; reported to the nearest
        # 100 MB they change rarely, so most heartbeats stay light.
        res.memory_available_bytes -= res.memory_available_bytes % RESOURCE_STEP
        res.disk_free_bytes -= res.disk_free_bytes % RESOURCE_STEP
        beat = Heartbeat(
            sent_at=datetime.now(UTC),
            facts=self.facts,
            resources=res,
            models=models,
            counters=self.counters.model_copy(update={"peer_bytes": self.syncer.peer_bytes}),
            applied_revision=self.applied_revision,
        )
        beat.state_hash = state_hash(beat)
        return beat

    def light(self, beat: Heartbeat) -> Heartbeat:
        """What goes on the wire: only the hash and counters when the control plane
        already holds this state (it said so by accepting it and not asking again)."""
        if beat.state_hash != self.acked_hash:
            return beat
        return Heartbeat(
            id=beat.id,
            sent_at=beat.sent_at,
            counters=beat.counters,
            applied_revision=beat.applied_revision,
            state_hash=beat.state_hash,
        )

    def sleep_seconds(self) -> float:
        # ±10 % jitter: nodes started (or reconnected) together drift apart.
        return self.interval * random.uniform(0.9, 1.1)

    async def start(self) -> None:
        """Before any contact: serve what the last desired state says, from the cache."""
        if self.settings.verify_on_start:
            await self.syncer.verify_all()
        saved = _read(self._desired_file)
        if saved is not None:
            await self._apply(saved)

    async def run(self) -> None:
        await self.start()
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad tick stop the agent (and so the node)
                log.exception("agent tick failed")
            try:
                await self.serving.reap_idle()
                await asyncio.wait_for(self.wake.wait(), timeout=self.sleep_seconds())
            except TimeoutError:
                pass
            self.wake.clear()

    async def tick(self) -> None:
        beat = self.build_heartbeat()
        try:
            await self._flush()
            reply = await self.control.heartbeat(self.light(beat))
        except ControlPlaneUnreachable as exc:
            if self.connected is not False:
                log.warning(
                    "control plane unreachable (%s); serving on, queuing reports in %s",
                    exc,
                    self.outbox.root,
                )
            self.connected = False
            self.outbox.put(beat.model_copy(update={"queued": True}))
            return
        except ControlPlaneRefused as exc:
            # Revoked or disabled: keep serving what is here, and say so loudly.
            if self.refused != exc.message:
                log.error("control plane refused this node: %s", exc.message)
            self.refused = exc.message
            return
        self.connected, self.refused = True, None
        if self.settings.heartbeat_seconds is None:
            self.interval = reply.heartbeat_seconds
        if reply.send_state:
            self.acked_hash = None
            self.wake.set()  # the control plane lost track of us: a full heartbeat now
        else:
            self.acked_hash = beat.state_hash
        if reply.desired_revision != self.applied_revision:
            try:
                desired = await self.control.desired()
            except (ControlPlaneUnreachable, ControlPlaneRefused) as exc:
                log.warning("could not fetch the desired state: %s; retrying next heartbeat", exc)
                return
            _write(self._desired_file, desired)
            await self._apply(desired)
            self.wake.set()  # report the new state at once

    async def _apply(self, desired: DesiredState) -> None:
        await self.syncer.apply(desired)
        self.applied_revision = desired.revision
        await self.serving.preload()

    async def _flush(self) -> None:
        while items := self.outbox.peek(FLUSH_BATCH):
            try:
                await self.control.reports(ReportBatch(reports=[beat for _, beat in items]))
            except ControlPlaneRefused as exc:
                if exc.status not in (400, 422):
                    raise
                # The control plane will never take these (say, an older wire format):
                # dropping them beats blocking every later report behind them.
                log.error(
                    "control plane rejected %d queued report(s): %s; dropped",
                    len(items),
                    exc.message,
                )
            self.outbox.remove([path for path, _ in items])
            log.info("flushed %d queued report(s) to the control plane", len(items))


def _read(path: Path) -> DesiredState | None:
    try:
        return DesiredState.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, desired: DesiredState) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(desired.model_dump(mode="json")))
    tmp.replace(path)
