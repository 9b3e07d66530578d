"""The heartbeat interval handed to nodes, lengthened when this API process takes
more heartbeats than it should, so a fleet larger than planned slows itself down."""

from __future__ import annotations

import time


class HeartbeatPacer:
    """Counts heartbeats per second; from the rate and the interval it handed out,
    estimates the active fleet and hands out the interval that brings the rate back
    to ``target_per_second`` (never below ``base``, never above ``longest``)."""

    def __init__(self, *, base: float, target_per_second: float, longest: float):
        self.base = base
        self.target = target_per_second
        self.longest = max(longest, base)
        self.interval = base
        self._second = int(time.monotonic())
        self._count = 0

    def beat(self) -> float:
        now = int(time.monotonic())
        if now != self._second:
            elapsed = now - self._second
            rate = self._count / elapsed
            # Nodes active ≈ rate × the interval they were told; spread them over target.
            wanted = rate * self.interval / self.target if self.target > 0 else self.base
            # Move halfway each second: a burst after a restart does not whipsaw the fleet.
            self.interval = min(self.longest, max(self.base, (self.interval + wanted) / 2))
            self._second, self._count = now, 0
        self._count += 1
        return round(self.interval, 1)
