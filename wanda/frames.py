"""FrameHub: the newest encoded preview frame, handed out in the event loop.

The camera thread publishes each frame once through ``loop.call_soon_threadsafe``; viewers await
"a frame newer than the one I sent", so a slow viewer skips frames instead of queueing them, and
waking every viewer costs one future per viewer, no copy and no encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

BOUNDARY = "frame"  # the original backend's boundary; some clients hard-code it


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    timestamp: float  # capture (sensor read-out) time, Unix seconds
    width: int
    height: int
    jpeg: bytes
    part: bytes  # the whole multipart part, built once per frame for every viewer


def multipart_part(jpeg: bytes, timestamp: float, seq: int) -> bytes:
    head = (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
        f"X-Timestamp: {timestamp:.6f}\r\nX-Sequence: {seq}\r\n\r\n"
    ).encode("ascii")
    return b"".join((head, jpeg, b"\r\n"))


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self._window = window
        self._clock = clock
        self._times: deque[float] = deque()
        self._created = clock()

    def tick(self) -> None:
        now = self._clock()
        self._times.append(now)
        self._trim(now)

    def rate(self) -> float:
        now = self._clock()
        self._trim(now)
        span = min(self._window, now - self._created)
        return len(self._times) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        times = self._times
        while times and times[0] < now - self._window:
            times.popleft()


_viewer_ids = itertools.count(1)


@dataclass(eq=False)
class Viewer:
    """One MJPEG stream client, for /state."""

    client: str
    path: str
    fps_limit: float | None
    id: int = field(default_factory=lambda: next(_viewer_ids))
    frames_sent: int = 0
    frames_skipped: int = 0
    task: asyncio.Task | None = None
    writing: bool = False  # inside a write to the client (the place a stalled client blocks)
    # Seconds, for its age and rate (tests pass their own).
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    started: float = field(init=False)
    meter: RateMeter = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.meter = RateMeter(clock=self.clock)

    def describe(self) -> dict:
        return {
            "id": self.id,
            "client": self.client,
            "path": self.path,
            "fps": round(self.meter.rate(), 2),
            "fps_limit": self.fps_limit,
            "frames_sent": self.frames_sent,
            "frames_skipped": self.frames_skipped,
            "connected_s": round(self.clock() - self.started, 1),
        }


class FrameHub:
    """Lives in the event loop; every method must be called from the loop thread."""

    def __init__(self, on_demand: Callable[[], None] | None = None):
        self.latest: Frame | None = None
        self.published = 0
        self.closed = False
        self._closing = asyncio.Event()  # for viewers that pace themselves (?fps=) between frames
        self.viewers: set[Viewer] = set()
        self.frames_skipped_closed = 0  # skipped by viewers that have left
        self._waiters: list[asyncio.Future] = []
        self._demand = 0
        self._on_demand = on_demand

    # -- demand: the camera encodes only while somebody wants frames ----------------------------

    @property
    def wants_frames(self) -> bool:
        """Read from the camera thread too: a plain int read is atomic in CPython."""
        return self._demand > 0

    def set_demand_callback(self, on_demand: Callable[[], None]) -> None:
        self._on_demand = on_demand

    def add_demand(self) -> None:
        self._demand += 1
        if self._demand == 1 and self._on_demand is not None:
            self._on_demand()

    def remove_demand(self) -> None:
        self._demand -= 1

    # -- frames --------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """How many callers of ``next_after`` wait for a frame now (one at most for each viewer)."""
        return len(self._waiters)

    def publish(self, frame: Frame) -> None:
        self.latest = frame
        self.published += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(frame)

    def forget_latest(self) -> None:
        """What was published is stale (the stack was cleared): a viewer that comes waits for the
        next frame."""
        self.latest = None

    async def next_after(self, seq: int) -> Frame | None:
        """The newest frame with a sequence number above ``seq``; None once the hub is closed."""
        if self.closed:
            return None
        latest = self.latest
        if latest is not None and latest.seq > seq:
            return latest
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            # Cancelled or timed out (a cancelled future is "done" too): do not leave it behind.
            # After a publish it is no longer in the list.
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    # -- viewers -------------------------------------------------------------------------------

    def add_viewer(self, viewer: Viewer) -> None:
        self.viewers.add(viewer)
        self.add_demand()

    def remove_viewer(self, viewer: Viewer) -> None:
        if viewer in self.viewers:
            self.viewers.discard(viewer)
            self.frames_skipped_closed += viewer.frames_skipped
            self.remove_demand()

    @property
    def frames_skipped(self) -> int:
        return self.frames_skipped_closed + sum(v.frames_skipped for v in self.viewers)

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if the hub closes meanwhile; False once it is closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return not self.closed

    def close(self) -> None:
        """End every stream now: waiting viewers get None, viewers stuck writing are cancelled."""
        self.closed = True
        self._closing.set()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for viewer in list(self.viewers):
            if viewer.writing and viewer.task is not None:
                viewer.task.cancel()
