"""Event-loop lag: how late a small periodic task wakes up. A blocked loop shows here first."""

from __future__ import annotations

import asyncio
from collections import deque


class LoopLagMonitor:
    def __init__(self, interval: float = 0.1, window: float = 60.0):
        self.interval = interval
        self.window = window
        self.lag_now = 0.0
        self._samples: deque[tuple[float, float]] = deque()  # (monotonic time, lag seconds)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            self.record(now, max(0.0, now - expected))

    def record(self, now: float, lag: float) -> None:
        self.lag_now = lag
        self._samples.append((now, lag))
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()

    @property
    def lag_max(self) -> float:
        return max((lag for _, lag in self._samples), default=0.0)

    def describe(self) -> dict:
        return {"now_ms": round(self.lag_now * 1000, 2), "max_1m_ms": round(self.lag_max * 1000, 2)}
