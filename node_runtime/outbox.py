"""Reports that could not be sent, kept on disk until the control plane is back.

One JSON file per heartbeat, named so that a directory listing is oldest first;
files are removed only after the control plane acknowledged them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from wire.contract import Heartbeat


class Outbox:
    def __init__(self, root: Path, *, max_items: int):
        self.root = root / "outbox"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_items = max_items

    def put(self, beat: Heartbeat) -> None:
        name = f"{time.time_ns():020d}-{beat.id}.json"
        tmp = self.root / (name + ".tmp")
        tmp.write_text(beat.model_dump_json())
        os.replace(tmp, self.root / name)  # never a half-written report in the queue
        items = self._files()
        for old in items[: max(0, len(items) - self.max_items)]:
            old.unlink(missing_ok=True)

    def _files(self) -> list[Path]:
        return sorted(self.root.glob("*.json"))

    def __len__(self) -> int:
        return len(self._files())

    def peek(self, limit: int) -> list[tuple[Path, Heartbeat]]:
        out = []
        for path in self._files()[:limit]:
            try:
                out.append((path, Heartbeat.model_validate_json(path.read_text())))
            except ValueError:
                path.unlink(missing_ok=True)  # unreadable: dropping it beats blocking the queue
        return out

    def remove(self, paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
