"""One loaded model: its own worker thread (llama.cpp is blocking C code and a
context is not thread-safe) and a bounded FIFO queue in front of it.

A request never cancels another: requests run one at a time, in arrival order; a
full queue answers 503 at once instead of waiting unboundedly."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from node_runtime.engine import Engine, LoadedModel
from node_runtime.errors import ModelNotFound, Unavailable

_DONE = object()


class ModelRunner:
    def __init__(self, *, name: str, digest: str, path: Path, engine: Engine, queue_size: int):
        self.name, self.digest, self.path = name, digest, path
        self.engine = engine
        self.queue_size = queue_size
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"model-{digest[7:19]}"
        )
        self.model: LoadedModel | None = None
        self.loading: asyncio.Future | None = None
        self.error: str | None = None
        self.lock = asyncio.Lock()
        self.admitted = 0  # running + waiting
        self.last_used = time.monotonic()
        # Set when the model is unassigned or unloaded: no new requests, and the model
        # is closed once the requests already running or queued have finished.
        self.draining = False
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def busy(self) -> bool:
        return self.admitted > 0

    @property
    def ready(self) -> bool:
        return self.model is not None

    def start_loading(self) -> asyncio.Future:
        if self.loading is None:
            self.loading = asyncio.get_running_loop().run_in_executor(self.executor, self._load)
        return self.loading

    def _load(self) -> None:
        try:
            self.model = self.engine.load(self.path)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise

    def _admit(self) -> None:
        if self.draining:
            raise ModelNotFound(
                f"model {self.name} is being removed from this node; see GET /v1/models"
            )
        if not self.ready:
            raise Unavailable(f"model {self.name} is still loading; retry shortly", retry_after=2)
        if self.admitted >= 1 + self.queue_size:
            raise Unavailable(
                f"model {self.name} is saturated ({self.admitted} requests running or queued, "
                f"queue size {self.queue_size}); retry shortly",
                retry_after=2,
            )
        self.admitted += 1
        self.idle.clear()
        self.last_used = time.monotonic()

    def _release(self) -> None:
        self.admitted -= 1
        self.last_used = time.monotonic()
        if self.admitted == 0:
            self.idle.set()

    async def stream(
        self, fn: Callable[[LoadedModel, threading.Event], Any]
    ) -> tuple[Any, AsyncIterator[Any]]:
        """``fn(model, cancel)`` returns either a whole response or an iterator of
        chunks; the iterator is driven on the worker thread and handed over through
        a queue. Returns (first item, the rest), so errors before the first chunk
        still become a proper HTTP error."""
        self._admit()
        released = False
        try:
            await self.lock.acquire()
        except BaseException:
            self._release()
            raise
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                result = fn(self.model, cancel)
                if isinstance(result, Iterator):
                    for chunk in result:
                        put(chunk)
                else:
                    put(result)
            except BaseException as exc:
                put(exc)
            finally:
                put(_DONE)

        done = loop.run_in_executor(self.executor, work)

        def finish(_=None) -> None:
            nonlocal released
            if not released:
                released = True
                self.lock.release()
                self._release()

        # The slot is freed when the worker finishes, whatever the client does.
        done.add_done_callback(finish)

        async def rest() -> AsyncIterator[Any]:
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                cancel.set()

        try:
            first = await queue.get()
        except BaseException:
            cancel.set()
            raise
        if isinstance(first, BaseException):
            cancel.set()
            raise first
        if first is _DONE:
            return None, rest()
        return first, rest()

    async def close(self) -> None:
        """Refuse new requests, let the admitted ones (running and queued) finish, then
        free the model."""
        self.draining = True
        await self.idle.wait()
        loop = asyncio.get_running_loop()
        if self.loading is not None:
            await asyncio.gather(self.loading, return_exceptions=True)
        model, self.model = self.model, None
        if model is not None:
            await loop.run_in_executor(self.executor, model.close)
        self.executor.shutdown(wait=False)
