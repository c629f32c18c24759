"""The camera worker: the thread that owns the camera backend (wanda/backends).

The worker is an actor. One thread owns the backend object and runs, in turn, the preview loop and
jobs submitted from the event loop (set controls, still captures, mode switches), so a still can
never race the preview. Each preview frame is JPEG-encoded once, only while somebody wants frames,
and handed to the FrameHub with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from wanda.analysis import AnalysisWorker
from wanda.backends import CameraBackend, CameraUnavailable
from wanda.frames import Frame, FrameHub, RateMeter, multipart_part
from wanda.jpeg import JpegEncoder
from wanda.stacking import StackWorker

log = logging.getLogger(__name__)


Job = Callable[..., Any]


class CameraWorker:
    """The thread that owns a camera backend."""

    def __init__(
        self,
        backend: CameraBackend,
        encoder: JpegEncoder,
        hub: FrameHub,
        loop: asyncio.AbstractEventLoop,
        *,
        max_fps: float = 30.0,
        stretched_hub: FrameHub | None = None,
        analysis: AnalysisWorker | None = None,
        stacker: StackWorker | None = None,
    ):
        self.backend = backend
        self.encoder = encoder
        self._hub = hub
        # Viewers of /stream?stretch=auto: the same frames with the analysis's auto-stretch.
        self._stretched_hub = stretched_hub or FrameHub()
        self.analysis = analysis
        self.stacker = stacker  # live stacking takes the preview's frames while it runs
        self._loop = loop
        self.max_fps = max_fps
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future, Job, tuple, dict]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._stats_lock = threading.Lock()
        self._captured = RateMeter()
        self._encoded = RateMeter()
        self.frames_captured = 0
        self.frames_encoded = 0
        self.preview_errors = 0
        self.preview_gain = 1.0  # night vision: digital gain on preview frames only (set from the loop)
        self._gain_table: tuple[float, np.ndarray] | None = None
        self._streaming = False  # the backend's own (hardware-encoded) stream is running
        hub.set_demand_callback(self.wake)
        self._stretched_hub.set_demand_callback(self.wake)
        if analysis is not None:
            analysis.set_camera_wake(self.wake)
        if stacker is not None:
            stacker.set_camera_wake(self.wake)

    # -- lifecycle (called from the loop thread, off the loop via to_thread) ------------------

    def start(self) -> None:
        """Start the thread and wait until the backend is open; raise its error if it fails."""
        opened: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(opened,), name="camera", daemon=True)
        self._thread.start()
        opened.result()

    def stop(self, timeout: float = 1.5) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("camera thread did not stop within %.1f s", timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- jobs ----------------------------------------------------------------------------------

    def submit(self, job: Job, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Run ``job(backend, *args, **kwargs)`` on the camera thread between preview frames."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self._stopping or not self.alive:
            future.set_exception(CameraUnavailable("the camera is not running (see the server log)"))
            return future
        self._jobs.put((future, job, args, kwargs))
        self._wake.set()
        return future

    async def call(self, job: Job, *args: Any, **kwargs: Any) -> Any:
        """Await a job from the event loop without blocking it."""
        return await asyncio.wrap_future(self.submit(job, *args, **kwargs))

    def wake(self) -> None:
        """Thread-safe: demand appeared or a job is waiting."""
        self._wake.set()

    # -- statistics ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            return {
                "captured_fps": round(self._captured.rate(), 2),
                "encoded_fps": round(self._encoded.rate(), 2),
                "frames_captured": self.frames_captured,
                "frames_encoded": self.frames_encoded,
                "preview_errors": self.preview_errors,
            }

    # -- the thread ----------------------------------------------------------------------------

    def _run(self, opened: concurrent.futures.Future) -> None:
        try:
            self.backend.open()
        except BaseException as exc:
            opened.set_exception(exc)
            return
        opened.set_result(None)
        try:
            while not self._stopping:
                self._wake.clear()  # before looking at jobs and demand, so no wake-up is lost
                self._run_jobs()
                if self._stopping:
                    break
                if self.backend.encodes_preview:
                    # The hardware encodes plain viewers' frames; pixels for the analysis or a
                    # stretch need the software path, which then serves the plain viewers too.
                    self._follow_demand(hardware=not self._wants_pixels())
                    if self._streaming or not self._wants_preview():
                        self._wake.wait(1.0)
                        continue
                elif not self._wants_preview():
                    self._wake.wait(1.0)
                    continue
                self._preview_once()
        finally:
            self._fail_pending_jobs()
            try:
                self.backend.close()
            except Exception:
                log.exception("closing the camera failed")

    def _run_jobs(self) -> None:
        while True:
            try:
                future, job, args, kwargs = self._jobs.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job(self.backend, *args, **kwargs))
            except BaseException as exc:  # the awaiting coroutine gets it, whatever it is
                future.set_exception(exc)

    def _fail_pending_jobs(self) -> None:
        while True:
            try:
                future, *_ = self._jobs.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(CameraUnavailable("the camera stopped"))

    def _preview_once(self) -> None:
        try:
            self._preview_frame()
        except Exception:  # a bad frame must not kill the thread that every job depends on
            with self._stats_lock:
                self.preview_errors += 1
            log.exception("preview frame failed; retrying")
            self._wake.wait(1.0)

    def _wants_pixels(self) -> bool:
        return (
            self._stretched_hub.wants_frames
            or (self.analysis is not None and self.analysis.wanted)
            or (self.stacker is not None and self.stacker.wanted)
        )

    def _wants_preview(self) -> bool:
        return self._hub.wants_frames or self._wants_pixels()

    def _preview_frame(self) -> None:
        preview = self.backend.capture_preview(self._wake, self.max_fps)
        if preview is None:  # interrupted: a job or a stop is waiting
            return
        with self._stats_lock:
            self.frames_captured += 1
            self._captured.tick()
        if self.analysis is not None:
            self.analysis.offer(preview.pixels, preview.pixel_format, preview.timestamp)
        if self.stacker is not None:
            self.stacker.offer(
                preview.pixels, preview.pixel_format, preview.timestamp, preview.exposure_s, preview.gain
            )
        self._seq += 1
        height, width = preview.pixels.shape[:2]
        if self._hub.wants_frames:
            pixels = preview.pixels
            if self.preview_gain != 1.0:
                pixels = self._brighten(pixels, self.preview_gain)
            jpeg = self.encoder.encode(pixels, preview.pixel_format)
            self._publish(self._hub, self._seq, jpeg, preview.timestamp, width, height)
        if self._stretched_hub.wants_frames:
            # Encoded once per frame for every stretched viewer; unstretched until the first
            # analysis has measured the sky.
            table = self.analysis.stretch_table() if self.analysis is not None else None
            pixels = preview.pixels if table is None else table[preview.pixels]
            jpeg = self.encoder.encode(pixels, preview.pixel_format)
            self._publish(self._stretched_hub, self._seq, jpeg, preview.timestamp, width, height)

    def _publish(self, hub: FrameHub, seq: int, jpeg: bytes, timestamp: float, width: int, height: int) -> None:
        """Hand one encoded frame to a hub (on the loop); called from the camera thread, or from
        picamera2's encoder thread when the hardware encodes (one producer at a time)."""
        frame = Frame(seq, timestamp, width, height, jpeg, multipart_part(jpeg, timestamp, seq))
        with self._stats_lock:
            self.frames_encoded += 1
            self._encoded.tick()
        try:
            self._loop.call_soon_threadsafe(hub.publish, frame)
        except RuntimeError:  # the loop is closed: we are shutting down
            self._stopping = True

    def _follow_demand(self, hardware: bool) -> None:
        """Hardware encoding: run the backend's stream exactly while somebody wants frames and
        the software path is not needed."""
        try:
            self._switch_stream(hardware)
        except Exception:  # like a bad preview frame: never fatal for the thread
            with self._stats_lock:
                self.preview_errors += 1
            log.exception("starting or stopping the hardware-encoded preview failed; retrying")

    def _switch_stream(self, hardware: bool) -> None:
        wanted = hardware and self._hub.wants_frames
        if wanted and not self._streaming:
            width, height = self.backend.preview_size

            def on_jpeg(jpeg: bytes, timestamp: float) -> None:
                with self._stats_lock:
                    self.frames_captured += 1
                    self._captured.tick()
                self._seq += 1
                self._publish(self._hub, self._seq, jpeg, timestamp, width, height)

            self.backend.start_stream(on_jpeg)
            self._streaming = True
        elif not wanted and self._streaming:
            self.backend.stop_stream()
            self._streaming = False

    def _brighten(self, pixels: np.ndarray, gain: float) -> np.ndarray:
        """Multiply 8-bit pixels by ``gain``, saturating, through a lookup table."""
        if self._gain_table is None or self._gain_table[0] != gain:
            table = np.minimum(np.arange(256, dtype=np.float32) * gain, 255).astype(np.uint8)
            self._gain_table = (gain, table)
        return self._gain_table[1][pixels]
