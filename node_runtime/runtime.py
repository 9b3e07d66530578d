"""Everything a running node holds, built once from settings and its identity."""

from __future__ import annotations

import asyncio
import logging
import socket

from node_runtime import facts
from node_runtime.agent import Agent
from node_runtime.cache import BlobCache
from node_runtime.control import ControlPlane
from node_runtime.engine import Engine, LlamaEngine
from node_runtime.forward import Forwarder
from node_runtime.identity import Identity
from node_runtime.metrics import Metrics
from node_runtime.outbox import Outbox
from node_runtime.responses import ResponseStore
from node_runtime.serving import Serving
from node_runtime.settings import NodeSettings
from node_runtime.sync import Syncer
from wire.contract import Counters, SyncState

log = logging.getLogger("hangar.node")


def advertise_url(settings: NodeSettings) -> str:
    host = settings.host if settings.host not in ("0.0.0.0", "::") else socket.gethostname()
    return settings.advertise_url or f"http://{host}:{settings.port}"


def gpu_layers(settings: NodeSettings) -> int:
    if settings.gpu_layers is not None:
        return settings.gpu_layers
    try:
        import llama_cpp

        return -1 if llama_cpp.llama_supports_gpu_offload() else 0
    except ImportError:  # no engine installed (tests with a fake one)
        return 0


class NodeRuntime:
    def __init__(self, settings: NodeSettings, identity: Identity, *, engine: Engine | None = None):
        self.settings = settings
        self.identity = identity
        self.started = 0.0
        self.counters = Counters()
        self.metrics = Metrics()
        self.responses = ResponseStore()
        # Last sync state per model, so a change is logged once (not every heartbeat).
        self._states: dict[str, str] = {}
        found = facts.gpus()
        self.gpu_layers = gpu_layers(settings)
        self.facts = facts.gather(
            settings.data_dir,
            api_url=advertise_url(settings),
            memory_bytes=settings.memory_bytes,
            found_gpus=found,
        )
        self.cache = BlobCache(settings.data_dir)
        self.outbox = Outbox(settings.data_dir, max_items=settings.outbox_max)
        self.control = ControlPlane(identity.server, identity.credential)
        self.forwarder = Forwarder(settings, node_id=str(identity.node_id), control=self.control)
        self.syncer = Syncer(
            settings=settings,
            identity=identity,
            cache=self.cache,
            memory_budget=facts.fit_budget(
                self.facts.memory_bytes, found, gpu_layers=self.gpu_layers
            ),
            on_change=self._changed,
            on_removed=self._removed,
        )
        engine = engine or LlamaEngine(
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            weight_repacking=settings.weight_repacking,
            gpu_layers=self.gpu_layers,
        )
        self.serving = Serving(
            settings=settings,
            engine=engine,
            cache=self.cache,
            syncer=self.syncer,
            metrics=self.metrics,
        )
        self.agent = Agent(
            settings=settings,
            control=self.control,
            syncer=self.syncer,
            serving=self.serving,
            outbox=self.outbox,
            counters=self.counters,
            node_facts=self.facts,
        )
        self._tasks: set[asyncio.Task] = set()
        self._agent_task: asyncio.Task | None = None

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _changed(self) -> None:
        # A model became ready or failed: report it now, and load it if there is room.
        self._log_transitions()
        self.agent.wake.set()
        self._spawn(self.serving.preload())

    def _log_transitions(self) -> None:
        states = {}
        for key, e in self.syncer.entries.items():
            state, before = e.status.state, self._states.get(key)
            states[key] = state.value
            if state.value == before:
                continue
            if state == SyncState.ready:
                how = "downloaded and verified" if before == "downloading" else "verified (cached)"
                log.info("model %s %s: %s", e.id, how, e.desired.digest)
            elif state == SyncState.does_not_fit:
                log.warning("model %s refused: %s", e.id, e.status.reason)
            elif state == SyncState.downloading:
                log.info("model %s downloading (%d bytes)", e.id, e.desired.size)
        self._states = states

    def _removed(self, digests: set[str]) -> None:
        for digest in digests:
            self._spawn(self.serving.unload(digest))

    async def start(self) -> None:
        self._agent_task = asyncio.get_running_loop().create_task(self.agent.run(), name="agent")

    async def stop(self) -> None:
        if self._agent_task is not None:
            self._agent_task.cancel()
            await asyncio.gather(self._agent_task, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.syncer.close()
        await self.serving.close()
        await self.forwarder.close()
        await self.control.close()
