"""The analysis thread: runs wanda/astro's measurements on the newest preview frame while
somebody wants them, and keeps the newest auto-stretch for the stretched stream."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from wanda.astro.measure import analyse
from wanda.astro.stretch import Stretch

log = logging.getLogger(__name__)


# Where red, green and blue are in a preview frame of each pixel format (picamera2's "RGB888" is
# BGR in memory; the simulated sky's RGBX has a padding byte last).
CHANNEL_ORDER = {"RGB": (0, 1, 2), "RGBX": (0, 1, 2), "BGR": (2, 1, 0)}


def srgb_to_linear_table() -> np.ndarray:
    """8-bit sRGB-encoded values to linear light, 0..65535 (the ISP's preview is gamma-encoded)."""
    v = np.arange(256) / 255
    linear = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return np.round(linear * 65535).astype(np.uint16)


class AnalysisWorker:
    """The thread that analyses the newest preview frame, at most once per ``interval``, and only
    while it is wanted: a WebSocket client listens to the `analysis` topic, somebody asked
    ``GET /api/analysis`` lately, or a viewer watches the stretched stream.

    The camera thread offers each frame (``offer``: a cheap check, a copy only when one is due);
    results go to the loop with ``call_soon_threadsafe`` and out as `analysis` `frame` events.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        publish: Callable[[dict[str, Any]], None],
        *,
        interval: float = 0.5,
        scale: float = 1.0,
        linear: bool = True,
        stretch_demand: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._loop = loop
        self._publish = publish
        self.interval = interval
        self.scale = scale
        self._to_linear = None if linear else srgb_to_linear_table()
        self._stretch_demand = stretch_demand
        self._clock = clock  # seconds, for the interval and ``hold`` (read from the camera thread too)
        self.listeners = 0  # WebSocket clients on the `analysis` topic (set from the loop)
        self._held_until = 0.0
        self._wake_camera: Callable[[], None] = lambda: None
        self._slot: tuple[np.ndarray, str, float] | None = None
        self._ready = threading.Event()
        self._stopping = False
        self._last_offer = -math.inf  # the first frame offered is due, whatever the clock reads
        self._thread: threading.Thread | None = None
        self.latest: dict[str, Any] | None = None  # the newest result (read from the loop)
        self.analysed = 0
        self._stretch_table: tuple[Stretch, np.ndarray] | None = None
        self.stretch: Stretch | None = None  # read from the camera thread
        self._waiters: list[asyncio.Future] = []

    # -- demand (from the loop) ------------------------------------------------------------------

    @property
    def wanted(self) -> bool:
        """Read from the camera thread too: plain attribute reads."""
        return self.listeners > 0 or self._clock() < self._held_until or self._stretch_demand()

    def set_camera_wake(self, wake: Callable[[], None]) -> None:
        self._wake_camera = wake

    def set_listeners(self, count: int) -> None:
        was = self.wanted
        self.listeners = count
        if self.wanted and not was:
            self._wake_camera()

    def hold(self, seconds: float) -> None:
        """Keep analysing for ``seconds`` (a client polling ``GET /api/analysis``)."""
        was = self.wanted
        self._held_until = max(self._held_until, self._clock() + seconds)
        if not was:
            self._wake_camera()

    def wake_camera(self) -> None:
        self._wake_camera()

    # -- frames (from the camera thread) --------------------------------------------------------

    def offer(self, pixels: np.ndarray, pixel_format: str, timestamp: float) -> None:
        if not self.wanted:
            return
        now = self._clock()
        if now - self._last_offer < self.interval:
            return
        self._last_offer = now
        self._slot = (pixels.copy(), pixel_format, timestamp)  # the camera reuses its buffers
        self._ready.set()

    def stretch_table(self) -> np.ndarray | None:
        """The 8-bit lookup table of the newest auto-stretch for preview pixels, or None yet."""
        stretch = self.stretch
        if stretch is None:
            return None
        if self._stretch_table is None or self._stretch_table[0] != stretch:
            if self._to_linear is None:
                table = stretch.lookup_table(256)
            else:  # gamma-encoded preview: to linear light, stretch, back to 8 bits
                table = stretch.lookup_table(65536)[self._to_linear]
            self._stretch_table = (stretch, table)
        return self._stretch_table[1]

    # -- the thread -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="analysis", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping = True
        self._ready.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            if self._stopping:
                return
            slot, self._slot = self._slot, None
            if slot is None:
                continue
            try:
                result = self.analyse_frame(*slot)
            except Exception:  # a frame that cannot be analysed must not end the thread
                log.exception("analysing a frame failed")
                continue
            try:
                self._loop.call_soon_threadsafe(self._deliver, result)
            except RuntimeError:  # the loop is closed: shutting down
                return

    def analyse_frame(self, pixels: np.ndarray, pixel_format: str, timestamp: float) -> dict[str, Any]:
        started = time.perf_counter()
        luminance, channels = self._luminance(pixels, pixel_format)
        full_scale = 255 if self._to_linear is None else 65535
        result = analyse(luminance, full_scale, scale=self.scale, channels=channels)
        self.stretch = Stretch(**result["stretch"])
        result["timestamp"] = timestamp
        result["analysis_ms"] = round(1000 * (time.perf_counter() - started), 1)
        self.analysed += 1
        return result

    def _luminance(self, pixels: np.ndarray, pixel_format: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        order = CHANNEL_ORDER[pixel_format]
        red, green, blue = (pixels[..., i] for i in order)
        if np.array_equal(red, green) and np.array_equal(green, blue):
            luminance, channels = np.ascontiguousarray(red), {}  # a grey image: one histogram says it all
        else:
            weighted = 77 * red.astype(np.uint16) + 150 * green.astype(np.uint16) + 29 * blue.astype(np.uint16)
            luminance = (weighted >> 8).astype(np.uint8)
            channels = {"red": red, "green": green, "blue": blue}
        if self._to_linear is not None:
            luminance = self._to_linear[luminance]
            channels = {name: self._to_linear[channel] for name, channel in channels.items()}
        return luminance, channels

    def _deliver(self, result: dict[str, Any]) -> None:
        """On the loop: keep it, wake who waits for one, publish it."""
        self.latest = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(result)
        self._publish(result)

    async def next_result(self) -> dict[str, Any]:
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        return await waiter
