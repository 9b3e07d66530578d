"""An engine behind the same Protocol as llama.cpp's, whose requests finish only when
the test says so: for queueing behaviour that real inference is too fast to show.
Used in addition to the real-engine tests, never instead of them."""

from __future__ import annotations

import threading
from pathlib import Path


class FakeModel:
    def __init__(self, engine: FakeEngine):
        self.engine = engine

    def chat(self, body, *, model, cancel):
        self.engine.running += 1
        self.engine.release.wait(60)
        usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        message = {"role": "assistant", "content": "ok"}
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage,
        }

    def complete(self, body, *, model, cancel):
        raise NotImplementedError

    def embed(self, body, *, model):
        raise NotImplementedError

    def close(self) -> None:
        pass


class FakeEngine:
    def __init__(self):
        self.release = threading.Event()
        self.loadable = threading.Event()
        self.loadable.set()
        self.running = 0

    def load(self, path: Path) -> FakeModel:
        self.loadable.wait(60)
        return FakeModel(self)
