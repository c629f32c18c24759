"""The camera: the backend interface, the worker thread that owns the backend, backend selection.

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
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from wanda.analysis import AnalysisWorker
from wanda.frames import Frame, FrameHub, RateMeter, multipart_part
from wanda.jpeg import JpegEncoder

log = logging.getLogger(__name__)


class CameraUnavailable(RuntimeError):
    """The requested camera cannot be used; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class PreviewFrame:
    pixels: np.ndarray  # (height, width, channels) uint8
    pixel_format: str  # "RGB", "BGR" (picamera2's "RGB888") or "RGBX"
    timestamp: float  # sensor read-out time, Unix seconds
    exposure_s: float
    gain: float


class CaptureCancelled(Exception):
    """A still exposure was cancelled before it finished; nothing was written."""


@dataclass(frozen=True, slots=True)
class StillImage:
    pixels: np.ndarray  # (height, width, 3) uint8, for JPEG
    pixel_format: str  # "RGB" or "BGR"
    linear: np.ndarray | None  # the linear sensor data (uint16), for science formats
    started: float  # exposure start, Unix seconds
    exposure_s: float  # as the sensor applied it
    gain: float
    metadata: dict[str, Any]
    raw_dng: bytes | None = None  # the raw sensor frame as DNG, when asked for and the backend can
    bayer: str | None = None  # "RGGB", ... when ``linear`` is the raw Bayer mosaic
    bit_depth: int | None = None  # of the values in ``linear`` (the sensor's ADC), when known
    black_level: float | None = None  # in the units of ``linear``, when the sensor reports it
    sensor_dpc: bool | None = None  # the sensor's own defective pixel correction, where it has one


class CameraBackend(Protocol):
    """What the worker needs from a camera. Called only from the worker thread."""

    name: str
    preview_size: tuple[int, int]
    exposure_limits: tuple[float, float]
    gain_limits: tuple[float, float]
    exposure_s: float  # the exposure in use (read from the loop for time-outs)
    # True when the backend encodes the preview itself (picamera2's hardware MJPEG encoder): the
    # worker then starts and stops that stream with the demand instead of calling capture_preview.
    encodes_preview: bool
    # True when preview pixels are linear in light (the simulated sky); False when the ISP applied
    # a gamma curve (picamera2), which the analysis undoes.
    preview_linear: bool
    instrument: str  # FITS INSTRUME
    pixel_size_um: float  # of a still's pixel (FITS XPIXSZ / YPIXSZ)
    # What /api/health says about the camera beyond its name (software versions, tuning, ...):
    # what someone helping over the network asks first. Known after open().
    details: dict[str, Any]

    def open(self) -> None: ...

    def close(self) -> None: ...

    def set_controls(self, *, exposure_s: float | None = None, gain: float | None = None) -> None: ...

    def capture_preview(self, wake: threading.Event, max_fps: float) -> PreviewFrame | None:
        """Block until the next preview frame; return None early when ``wake`` is set."""
        ...

    def capture_still(
        self,
        exposure_s: float,
        gain: float,
        cancel: threading.Event,
        skip_frames: int = 0,
        *,
        raw: bool = False,
        dng: bool = False,
    ) -> StillImage:
        """Take one exposure; raise CaptureCancelled as soon as ``cancel`` is set. ``raw`` asks for
        linear data (``StillImage.linear``; the raw Bayer mosaic on a Pi), ``dng`` for the raw
        sensor frame as DNG (``StillImage.raw_dng``), where the backend has them."""
        ...

    def start_stream(self, on_jpeg: Callable[[bytes, float], None]) -> None:
        """Only when ``encodes_preview``: call ``on_jpeg(jpeg, unix_time)`` for each frame."""
        ...

    def stop_stream(self) -> None: ...


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
    ):
        self.backend = backend
        self.encoder = encoder
        self._hub = hub
        # Viewers of /stream?stretch=auto: the same frames with the analysis's auto-stretch.
        self._stretched_hub = stretched_hub or FrameHub()
        self.analysis = analysis
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
        return self._stretched_hub.wants_frames or (self.analysis is not None and self.analysis.wanted)

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


@dataclass(frozen=True)
class Picamera2Probe:
    """Can picamera2 be imported, and does it list a camera? If not, why, and what fixes it."""

    ok: bool
    reason: str
    fix: str = ""


def probe_picamera2(tuning_file: str = "") -> Picamera2Probe:
    """Whether picamera2 can drive a camera here. The tuning file is selected first: libcamera
    reads it once, when the camera listing below starts its camera manager (a bad one raises
    CameraUnavailable, since picamera2 exists and the configuration asks for it)."""
    try:
        from picamera2 import Picamera2  # noqa: PLC0415  (only on a Pi)
    except ImportError as exc:
        if "numpy" in str(exc):
            return _numpy_mismatch(exc)
        return Picamera2Probe(
            False,
            f"picamera2 is not importable ({exc})",
            "on a Raspberry Pi install python3-picamera2 with apt and create the virtual environment "
            "with --system-site-packages",
        )
    except ValueError as exc:  # "numpy.dtype size changed": compiled against another numpy
        return _numpy_mismatch(exc)
    from wanda.picam import UPGRADE_FIX, missing_features, select_tuning_file  # noqa: PLC0415

    missing = missing_features(Picamera2)
    if missing:
        return Picamera2Probe(False, f"picamera2 is too old: it lacks {', '.join(missing)}", UPGRADE_FIX)
    select_tuning_file(tuning_file)
    try:
        cameras = Picamera2.global_camera_info()
    except Exception as exc:  # libcamera errors come in many types
        return Picamera2Probe(False, f"picamera2 could not list cameras ({exc})", "check libcamera: rpicam-hello --list-cameras")
    if not cameras:
        return Picamera2Probe(
            False,
            "picamera2 lists no camera",
            "check the ribbon cable and dtoverlay=imx477 in /boot/firmware/config.txt, then reboot",
        )
    models = ", ".join(str(c.get("Model", "?")) for c in cameras)
    return Picamera2Probe(True, f"picamera2 lists {len(cameras)} camera(s): {models}")


def _numpy_mismatch(exc: Exception) -> Picamera2Probe:
    return Picamera2Probe(
        False,
        f"picamera2 does not load with the numpy of this environment ({exc})",
        "picamera2 from apt needs Debian's numpy: .venv/bin/pip uninstall -y numpy, so the virtual "
        "environment uses the system one",
    )


def create_backend(config) -> CameraBackend:
    """The backend ``config.camera`` asks for; ``auto`` falls back to the simulated sky."""
    from wanda.sky import SimulatedSky

    def sky() -> CameraBackend:
        return SimulatedSky(fwhm=config.sim_fwhm, plate_scale=config.sim_plate_scale, seed=config.sim_seed)

    if config.camera == "sim":
        log.info("camera: simulated sky (--camera sim)")
        return sky()
    probe = probe_picamera2(config.tuning_file)
    if config.camera == "picamera2" and not probe.ok:
        raise CameraUnavailable(f"--camera picamera2: {probe.reason}: {probe.fix}")
    if probe.ok:
        from wanda.picam import Picamera2Backend

        log.info("camera: picamera2, because %s (--camera %s)", probe.reason, config.camera)
        return Picamera2Backend(
            colour_gains=config.colour_gains,
            tuning_file=config.tuning_file,
            preview_encoder=config.preview_encoder,
            sensor_dpc=config.sensor_dpc,
        )
    log.info("camera: simulated sky, because %s (--camera auto)", probe.reason)
    return sky()

