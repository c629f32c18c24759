"""Live stacking: the `stack` thread registers each frame on the first one's stars, warps it onto
it and adds it (wanda/astro/register.py, wanda/astro/stack.py), or rejects it with the reason; the
state goes to the loop with ``call_soon_threadsafe`` and out as `stack` events.

Its frames come from one source: the preview (live EAA), or a capture session's saved frames (those
already on disk, then each as it lands: the session tells the loop, the loop queues its file). A
session's frames are files: none is skipped, they wait in a queue (their names only) and the state
says how many; the stack ends by itself when the session has ended and its last frame is in. FITS
frames are read as the sensor's linear data (a raw Bayer mosaic is calibrated as a mosaic, then
interpolated to colour); JPEG frames as the preview's pixels.

Viewers of ``/stream?source=stack`` get the stack auto-stretched, rendered and JPEG-encoded once on
the stack thread after each frame added (and when the first viewer comes), for all of them.

The camera thread offers frames while a stack runs (``offer``: a cheap check, then a copy into a
slot of one). The stack thread takes the newest; a frame still waiting when a newer one comes is
skipped and counted, so a stack that cannot keep up with the frames never falls behind them. After
each frame it rests so that it takes at most DUTY of a core: the live view keeps its frame rate.

A frame is rejected when it shows too few stars to register, when registration fails, when its
stars are swollen or trailed (their median HFR grew by half against the first frame's: wind, a
focus slip, the mount stalled), or when they are dimmed by half (cloud). Nothing here blocks the
loop or the camera thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wanda import __version__
from wanda.analysis import CHANNEL_ORDER, srgb_to_linear_table
from wanda.astro.measure import exact_histogram, find_stars, statistics
from wanda.astro.register import MIN_INLIERS, RegistrationFailed, Transform, register
from wanda.astro.stack import Accumulator, warp
from wanda.astro.stretch import auto_stretch
from wanda.calibration import CalibrationLibrary
from wanda.errors import ErrorCode, WandaError
from wanda.frames import Frame, FrameHub, multipart_part
from wanda.jpeg import JpegEncoder
from wanda.storage.disk import NumberedFiles, SavedFile
from wanda.storage.fits import fits_bytes, read_fits
from wanda.timestamps import parse_utc, utc_iso

log = logging.getLogger(__name__)

REGISTER_STARS = 50  # the brightest stars of a frame taken to register it
SWOLLEN = 1.5  # a frame whose stars' median HFR is this times the first frame's is rejected
DIMMED = 0.5  # and one whose stars give less than this share of the first frame's light
DUTY = 0.4  # the share of a core the stack thread takes at most (see StackWorker._rest)
MAX_FRAMES = 65535  # the accumulator counts each pixel's values in 16 bits
# OpenCV names a Bayer layout by the second row's second and third pixels: a sensor whose top-left
# 2x2 is RGGB is OpenCV's "BG".
DEMOSAIC = {
    "RGGB": cv2.COLOR_BayerBG2RGB,
    "BGGR": cv2.COLOR_BayerRG2RGB,
    "GRBG": cv2.COLOR_BayerGB2RGB,
    "GBRG": cv2.COLOR_BayerGR2RGB,
}


@dataclass(frozen=True)
class SavedFrame:
    """A session's frame to stack: its file, and what the session recorded of it."""

    path: Path
    timestamp: float  # the exposure's start, Unix seconds
    exposure_s: float
    gain: float


def saved_frame(folder: Path, record: dict[str, Any]) -> SavedFrame:
    """A session's frame record (wanda/sessions/runner.py) as a frame to stack: its FITS file
    when it has one (the sensor's linear data), else its first file."""
    files = record.get("files") or [record["file"]]
    chosen = next((f for f in files if str(f).lower().endswith(".fits")), files[0])
    try:
        timestamp = parse_utc(record["started"])
    except (KeyError, TypeError, ValueError):  # a frame found on disk after a crash has no record of it
        timestamp = (folder / chosen).stat().st_mtime if (folder / chosen).exists() else 0.0
    return SavedFrame(
        folder / chosen,
        timestamp,
        float(record.get("exposure_seconds") or 0.0),
        float(record.get("gain") or 1.0),
    )


@dataclass(frozen=True)
class SessionFrames:
    """A session to stack: its folder, the frames on disk now, and whether more will come."""

    folder: Path
    frames: list[SavedFrame]
    running: bool


class StackWorker:
    """The `stack` thread and the running stack's state (read on the loop)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        publish: Callable[[str, dict[str, Any]], None],
        *,
        linear: bool = True,
        hub: FrameHub | None = None,
        jpeg_quality: int = 85,
        calibration: CalibrationLibrary | None = None,
        clock: Callable[[], float] = time.time,
    ):
        """``publish(event, state)`` is called on the loop; ``linear``: the preview's pixels are
        linear light (the simulator's), else sRGB-encoded (a Pi's preview) and linearised; ``hub``:
        where the stretched stack goes for its viewers; ``calibration``: the masters that match
        each frame are taken off it (a dark, else a bias) and divided out of it (a flat)."""
        self._loop = loop
        self._publish = publish
        # A Pi's preview is sRGB-encoded: to linear light on the preview's 0-255 scale.
        self._to_linear = None if linear else srgb_to_linear_table().astype(np.float32) * np.float32(255 / 65535)
        self._clock = clock
        self._lock = threading.Lock()  # guards the slot and the running flag
        self._ready = threading.Condition(self._lock)
        self._slot: tuple[np.ndarray, str, float, float, float] | None = None
        self.source: str | None = None  # "preview" or "session": where the running stack takes frames
        self._session: Path | None = None  # the session stacked (its folder)
        self._files: deque[SavedFrame] = deque()  # a session's frames waiting for the thread
        self._taken: set[Path] = set()  # a session's frames queued for this stack: never twice
        self._session_open = False  # more of the session's frames will come
        self._spare: np.ndarray | None = None  # the buffer of the frame the thread last took, for the next
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._wake_camera: Callable[[], None] = lambda: None
        self.running = False  # read from the camera thread
        self._reset_requested = False
        self._generation = 0  # a reset starts the next; a frame of an older one is not published
        self.skipped = 0  # frames a newer one replaced before the thread took them
        self._stack: _Stack | None = None
        self._stack_lock = threading.Lock()  # the stack thread adds, a save reads
        self.state: dict[str, Any] = _empty_state()
        self.hub = hub
        self._jpeg_quality = jpeg_quality
        self.calibration = calibration
        # The masters for frames of one size, exposure and gain (looked up again after a start
        # or a reset, and when those change): (key, dark or bias, flat, what was used).
        self._masters: tuple[tuple, np.ndarray | None, np.ndarray | None, dict[str, Any]] | None = None
        self._masters_epoch = 0  # counts the clears: a lookup under way when one came is not kept
        self._encoder: JpegEncoder | None = None  # the stack thread's own
        self._render_requested = False
        self._seq = 0
        if hub is not None:
            hub.set_demand_callback(self.request_render)

    # -- from the loop ----------------------------------------------------------------------------

    def set_camera_wake(self, wake: Callable[[], None]) -> None:
        self._wake_camera = wake

    def request_render(self) -> None:
        """A first viewer of the stack came: show it the stack as it is (the thread renders it)."""
        with self._lock:
            self._render_requested = True
            self._ready.notify()

    def start(self, session: SessionFrames | None = None) -> dict[str, Any]:
        """Stack the preview, or ``session``'s frames: those not stacked yet, then each as it
        lands. A stack of another source is cleared first (its frames are not alike)."""
        source = "preview" if session is None else "session"
        folder = None if session is None else session.folder
        with self._lock:
            if self._stack_started() and (source, folder) != (self.source, self._session):
                self._clear()
            self._masters = None  # masters built since are looked up again
            self._masters_epoch += 1
            self.running, self.source, self._session = True, source, folder
            if session is not None:
                self._session_open = session.running
                self._queue(session.frames)
            self.state = {**self.state, **self._source_state()}
            self._ready.notify()
        if session is None:
            self._wake_camera()  # the preview runs while a stack wants its frames
        self._publish("stack_status", self.state)  # every page shows it, not only the one that asked
        return self.state

    def stop(self) -> dict[str, Any]:
        """Stop taking frames; the stack so far stays (reset clears it)."""
        with self._lock:
            self.running = False
            self._slot = None
            for waiting in self._files:  # a start of the session again queues what was left waiting
                self._taken.discard(waiting.path)
            self._files.clear()
            self.state = {**self.state, **self._source_state()}
        self._publish("stack_status", self.state)
        return self.state

    def session_event(self, kind: str, folder: Path, frame: SavedFrame | None) -> None:
        """On the loop, from the sessions: ``frame`` of the session in ``folder`` is saved
        ("frame"), or the session ended ("ended")."""
        with self._lock:
            if not (self.running and self.source == "session" and folder == self._session):
                return
            if kind == "ended":
                self._session_open = False
            elif frame is not None:
                self._queue([frame])
            self._ready.notify()
        if kind == "frame":
            self.state = {**self.state, "waiting": len(self._files)}

    def _queue(self, frames: list[SavedFrame]) -> None:
        """With the lock held: the frames not queued yet, in order."""
        for frame in frames:
            if frame.path not in self._taken:
                self._taken.add(frame.path)
                self._files.append(frame)

    def _stack_started(self) -> bool:
        return self.state["stacked"] > 0 or self.state["rejected"] > 0

    def _clear(self) -> None:
        """With the lock held: the stack is dropped (by the thread, before its next frame)."""
        self._slot = None
        self._files.clear()
        self._taken.clear()
        self._reset_requested = True
        self._masters = None
        self._masters_epoch += 1
        self._generation += 1
        self.skipped = 0
        self._ready.notify()
        self.state = _empty_state()

    def _source_state(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "source": self.source,
            "session": self._session.name if self._session is not None else None,
            "waiting": len(self._files),
        }

    def reset(self) -> dict[str, Any]:
        """Clear the stack (the next frame starts a new one); a running stack goes on: a
        session's from its next frame."""
        with self._lock:
            self._clear()
            self.state = {**self.state, **self._source_state()}
        self._publish("stack_status", self.state)
        return self.state

    # -- from the camera thread -------------------------------------------------------------------

    @property
    def wanted(self) -> bool:
        return self.running and self.source == "preview"

    def offer(self, pixels: np.ndarray, pixel_format: str, timestamp: float, exposure_s: float, gain: float) -> None:
        if not self.wanted:
            return
        with self._lock:
            if not self.wanted:
                return
            # The camera reuses its buffers: the frame is copied, into the slot's own buffer (a
            # fresh 6 MB array a frame would make the heap creep).
            waiting = self._slot
            self.skipped += waiting is not None
            buffer = waiting[0] if waiting is not None and waiting[0].shape == pixels.shape else self._spare
            if buffer is None or buffer.shape != pixels.shape or buffer.dtype != pixels.dtype:
                buffer = np.empty_like(pixels)
            if buffer is self._spare:
                self._spare = None  # in the slot now (a replaced frame's buffer leaves the spare be)
            np.copyto(buffer, pixels)
            self._slot = (buffer, pixel_format, timestamp, exposure_s, gain)
            self._ready.notify()

    # -- the thread -----------------------------------------------------------------------------

    def start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stack", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            self.running = False
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                while (
                    self._slot is None
                    and not self._files
                    and not (self._stopping or self._reset_requested or self._render_requested)
                    and not self._session_done()
                ):
                    self._ready.wait()
                if self._stopping:
                    return
                if self._reset_requested:
                    self._reset_requested = False
                    with self._stack_lock:
                        self._stack = None
                render, self._render_requested = self._render_requested, False
                frame, self._slot = self._slot, None
                saved = self._files.popleft() if frame is None and self._files else None
                generation = self._generation
                done = frame is None and saved is None and self._session_done()
                if done:  # the session's last frame is in: the stack stops by itself
                    self.running = False
            if done:
                self._call_loop(self._source_done, generation)
            if frame is None and saved is None:
                if render:
                    self._show()
                continue
            started = time.monotonic()
            try:
                if self._stack is None:
                    self._stack = _Stack()
                if frame is not None:
                    event, state = self._add_preview(frame)
                else:
                    assert saved is not None
                    event, state = self._add_saved(saved)
            except Exception:  # a frame that cannot be stacked must not end the thread (nor spin it)
                log.exception("stacking a frame failed")
                self._rest(time.monotonic() - started)
                continue
            if not self._call_loop(self._deliver, generation, event, state):
                return
            if event == "stack_frame" or render:
                self._show()
            self._rest(time.monotonic() - started)

    def _add_preview(self, frame: tuple[np.ndarray, str, float, float, float]) -> tuple[str, dict[str, Any]]:
        assert self._stack is not None
        linear, timestamp, exposure_s, gain = self._linear(frame)
        with self._lock:
            self._spare = frame[0]  # its pixels are read: the buffer takes the next frame
        calibrated, used = self._calibrated(linear, exposure_s, gain)
        with self._stack_lock:
            return self._stack.add(calibrated, timestamp, exposure_s, used)

    def _add_saved(self, saved: SavedFrame) -> tuple[str, dict[str, Any]]:
        """A session's frame from its file: calibrated as the sensor gave it (a Bayer mosaic
        before it is interpolated), then stacked; one that cannot be read is rejected."""
        assert self._stack is not None
        try:
            pixels, bayer = self._read_saved(saved.path)
        except (OSError, ValueError) as exc:
            with self._stack_lock:
                return self._stack.reject(
                    "unreadable", f"{saved.path.name}: {exc}", {"timestamp": saved.timestamp, "file": saved.path.name}
                )
        calibrated, used = self._calibrated(pixels, saved.exposure_s, saved.gain)
        with self._stack_lock:
            event, state = self._stack.add(colour(calibrated, bayer), saved.timestamp, saved.exposure_s, used)
        state["last"]["file"] = saved.path.name
        return event, state

    def _read_saved(self, path: Path) -> tuple[np.ndarray, str | None]:
        """A saved frame as float32 (height, width, planes) on the preview's 0-255 scale (the
        masters are scaled so too), and its Bayer layout when it is a raw mosaic."""
        if path.suffix.lower() in (".fits", ".fit", ".fts"):
            image = read_fits(path)
            data = image.data if image.data.ndim == 3 else image.data[None]
            planes = np.ascontiguousarray(data.transpose(1, 2, 0)).astype(np.float32)
            planes *= np.float32(256 / (image.full_scale + 1))
            bayer = image.header.get("BAYERPAT")
            if bayer is not None and (bayer not in DEMOSAIC or planes.shape[2] != 1):
                raise ValueError(f"a Bayer layout {bayer!r} that is not read here")
            return planes, bayer
        if path.suffix.lower() in (".jpg", ".jpeg"):
            if self._encoder is None:
                self._encoder = JpegEncoder(self._jpeg_quality)
            rgb = self._encoder.decode(path.read_bytes())
            return (rgb.astype(np.float32) if self._to_linear is None else self._to_linear[rgb]), None
        raise ValueError("WANDA stacks FITS and JPEG frames (take the session as FITS)")

    def _session_done(self) -> bool:
        """With the lock held: a session stacked to its end (it ended and its frames are in)."""
        return self.running and self.source == "session" and not self._session_open and not self._files

    def _source_done(self, generation: int) -> None:
        """On the loop: the session's last frame was stacked and the stack stopped: say so."""
        if generation == self._generation and not self.running:
            self.state = {**self.state, **self._source_state()}
            self._publish("stack_status", {**self.state, "done": True})

    def _call_loop(self, callback: Callable[..., object], *args: Any) -> bool:
        """``callback(*args)`` on the loop; False when the loop is closed (shutting down)."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False
        return True

    def _rest(self, worked: float) -> None:
        """Leave the processor to the camera and the viewers for a while: the stack takes at most
        DUTY of a core (frames that come meanwhile are skipped, the newest taken), so the live view
        keeps its frame rate on a two-core Pi. A stop, a reset or the end cut the rest short."""
        pause = worked * (1 / DUTY - 1)
        with self._lock:
            self._ready.wait_for(lambda: self._stopping or self._reset_requested or not self.running, pause)

    def save(self, folder: Path, camera: str) -> SavedFile:
        """A thread's work: the stack as it stands into ``folder`` (the gallery's `stacks`): a
        stretched JPEG to look at, the 32-bit float FITS of the mean (EXPTIME the summed exposure,
        NCOMBINE the frames) for stacking software, and a JSON sidecar with the stack's state.
        NOT_FOUND when nothing is stacked yet."""
        with self._stack_lock:
            stack = self._stack
            if stack is None or stack.accumulator is None or stack.stacked == 0:
                raise WandaError(ErrorCode.NOT_FOUND, "nothing is stacked yet: POST /api/stack/start first")
            image = stack.accumulator.image()
            summary = stack.summary()
        planes = np.ascontiguousarray(image.transpose(2, 0, 1))  # (3, height, width): FITS's colour planes
        cards = [
            ("IMAGETYP", "Light Frame", "a stack of light frames"),
            ("EXPTIME", round(summary["integration_s"], 6), "[s] the frames' exposures summed"),
            ("NCOMBINE", summary["stacked"], "frames averaged"),
            ("DATE-OBS", summary["first"], "UTC: the first frame stacked"),
            ("DATE-END", summary["last"], "UTC: the last frame stacked"),
            ("BUNIT", "ADU", "the preview's 8-bit scale, averaged"),
            ("INSTRUME", camera, None),
            ("CREATOR", f"WANDA {__version__}", "live stack: registered, sigma-clipped mean"),
        ]
        fits = fits_bytes(planes, [(k, v, c or "") for k, v, c in cards])
        jpeg = JpegEncoder(self._jpeg_quality).encode(stretched(image), "RGB")
        sidecar = {"kind": "stack", "software": f"WANDA {__version__}", **summary, "state": self.state}
        return NumberedFiles(folder, "stack").save("jpg", jpeg, sidecar, companions={"fits": fits})

    def _show(self) -> None:
        """The stack, stretched and encoded once, to its viewers (if it has any, and an image)."""
        hub, stack = self.hub, self._stack
        if hub is None or not hub.wants_frames or stack is None or stack.accumulator is None:
            return
        try:
            if self._encoder is None:
                self._encoder = JpegEncoder(self._jpeg_quality)
            jpeg = self._encoder.encode(stretched(stack.accumulator.image()), "RGB")
        except Exception:
            log.exception("showing the stack failed")
            return
        self._seq += 1
        height, width = stack.accumulator.shape[:2]
        now = self._clock()
        self._call_loop(hub.publish, Frame(self._seq, now, width, height, jpeg, multipart_part(jpeg, now, self._seq)))

    def _linear(self, frame: tuple[np.ndarray, str, float, float, float]) -> tuple[np.ndarray, float, float, float]:
        """The frame as float32 linear RGB (H, W, 3), its timestamp, exposure and gain."""
        pixels, pixel_format, timestamp, exposure_s, gain = frame
        rgb = pixels[..., list(CHANNEL_ORDER[pixel_format])]
        linear = rgb.astype(np.float32) if self._to_linear is None else self._to_linear[rgb]
        return linear, timestamp, exposure_s, gain

    def _calibrated(self, frame: np.ndarray, exposure_s: float, gain: float) -> tuple[np.ndarray, dict[str, Any]]:
        """The frame less its master dark (else bias), divided by its master flat, in place; and
        which masters it took, or why none."""
        height, width = frame.shape[:2]
        key = (width, height, round(exposure_s, 6), round(gain, 3))
        masters = self._masters  # the loop may clear it (a start, a reset) meanwhile
        if masters is None or masters[0] != key:
            epoch = self._masters_epoch
            masters = (key, *self._find_masters(width, height, exposure_s, gain))
            with self._lock:
                if epoch == self._masters_epoch:  # not cleared while they were read: keep them
                    self._masters = masters
        _, offset, flat, used = masters
        if offset is not None:
            frame -= offset
        if flat is not None:
            frame /= flat
        return frame, used

    def _find_masters(
        self, width: int, height: int, exposure_s: float, gain: float
    ) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
        used: dict[str, Any] = {"dark": None, "bias": None, "flat": None, "missing": []}
        if self.calibration is None:
            return None, None, used
        library = self.calibration
        dark, wanted_dark = library.match("dark", width=width, height=height, exposure_s=exposure_s, gain=gain)
        bias, wanted_bias = library.match("bias", width=width, height=height, gain=gain)
        flat, wanted_flat = library.match("flat", width=width, height=height)
        offset = None
        chosen = dark or bias
        if chosen is not None:
            # Masters are in the units of the frames they came from (16-bit stills); the preview's
            # are 8-bit: 256 levels of its for the master's full scale + 1.
            offset = _as_planes(library.load(chosen) * np.float32(256 / (chosen.full_scale + 1)))
            used["dark" if dark else "bias"] = chosen.name
        if dark is None:
            used["missing"].append(f"no master {wanted_dark}" + (" (a bias is taken off instead)" if bias else ""))
        if chosen is None:
            used["missing"].append(f"no master {wanted_bias}")
        flat_planes = None
        if flat is not None:
            flat_planes = np.maximum(_as_planes(library.load(flat)), np.float32(0.05))
            used["flat"] = flat.name
        else:
            used["missing"].append(f"no master {wanted_flat}")
        return offset, flat_planes, used

    def _deliver(self, generation: int, event: str, state: dict[str, Any]) -> None:
        """On the loop: keep it and publish it, unless the stack was reset meanwhile."""
        if generation != self._generation:
            return
        self.state = {**state, **self._source_state(), "skipped": self.skipped}
        self._publish(event, self.state)


def colour(frame: np.ndarray, bayer: str | None) -> np.ndarray:
    """A calibrated frame (height, width, planes) as RGB: a Bayer mosaic interpolated (OpenCV's
    bilinear demosaicing, on 16 bits: the frame's 0-255 scale times 257), a grey frame repeated
    into the three channels, a colour one as it is."""
    if bayer is not None:
        levels = np.clip(frame[:, :, 0] * np.float32(257), 0, 65535).astype(np.uint16)
        rgb = cv2.cvtColor(levels, DEMOSAIC[bayer]).astype(np.float32)
        rgb *= np.float32(1 / 257)
        return rgb
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return frame


def stretched(image: np.ndarray) -> np.ndarray:
    """A stack (H, W, 3) float on the preview's 0-255 scale, NaN where no frame reached, as 8-bit
    RGB with the auto-stretch of its luminance (PixInsight's STF, as the live view's)."""
    levels = np.nan_to_num(image, nan=0.0) * np.float32(257.0)  # onto 16 bits: the stack's fine steps
    np.clip(levels, 0, 65535, out=levels)
    levels = levels.astype(np.uint16)
    stats = statistics(exact_histogram(levels.mean(axis=2, dtype=np.float32).astype(np.uint16), 65535))
    table = auto_stretch(stats, 65535).lookup_table(65536)
    return table[levels]


def _empty_state() -> dict[str, Any]:
    return {
        "running": False,
        "source": None,
        "session": None,
        "waiting": 0,
        "stacked": 0,
        "rejected": 0,
        "rejections": {},
        "skipped": 0,
        "integration_s": 0.0,
        "last": None,
        "noise": None,
        "single_frame_noise": None,
        "snr_gain": None,
        "width": None,
        "height": None,
        "memory_bytes": 0,
        "calibration": None,
    }


class _Stack:
    """One stack: its reference (the first frame with enough stars) and accumulator. Used on the
    stack thread only."""

    def __init__(self) -> None:
        self.accumulator: Accumulator | None = None
        self.reference: np.ndarray | None = None  # (N, 2) star positions, brightest first
        self.reference_hfr = 0.0
        self.reference_flux: np.ndarray | None = None
        self.single_noise = 0.0
        self.stacked = 0
        self.rejections: Counter[str] = Counter()
        self.integration_s = 0.0
        self.size = (0, 0)
        self.calibration: dict[str, Any] | None = None  # the masters the last frame took
        self.settings: tuple[float, tuple] | None = None  # the first frame's exposure and masters: every frame's
        self.first: float | None = None  # the first and the last frame stacked (Unix)
        self.last: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "stacked": self.stacked,
            "rejections": dict(self.rejections),
            "integration_s": round(self.integration_s, 6),
            # FITS dates carry no zone (UTC by the standard): no "Z", as the stills' DATE-OBS.
            "first": utc_iso(self.first).rstrip("Z") if self.first is not None else None,
            "last": utc_iso(self.last).rstrip("Z") if self.last is not None else None,
            "width": self.size[0],
            "height": self.size[1],
        }

    def add(
        self, frame: np.ndarray, timestamp: float, exposure_s: float, calibration: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        outcome: dict[str, Any] = {"timestamp": timestamp}
        if self.stacked >= MAX_FRAMES:
            return self.reject("full", f"the stack holds {MAX_FRAMES} frames: save it and reset", outcome)
        if self.settings is not None and self.settings != (round(exposure_s, 6), calibration_key(calibration)):
            return self.reject(
                "settings_changed",
                f"taken at {exposure_s:g} s, the stack at {self.settings[0]:g} s (or other masters): reset to stack the new settings",
                outcome,
            )
        self.calibration = calibration
        # The channels' mean as three plain adds: numpy's mean over a last axis of three is slow.
        luminance = (frame[..., 0] + frame[..., 1] + frame[..., 2]) * np.float32(1 / 3)
        stars, noise = _stars(luminance)
        outcome["stars"] = len(stars.x)
        if len(stars.x) < MIN_INLIERS:
            return self.reject("too_few_stars", f"{len(stars.x)} stars seen (at least {MIN_INLIERS})", outcome)
        brightest = np.argsort(-stars.flux)[:REGISTER_STARS]
        positions, flux = np.column_stack((stars.x, stars.y))[brightest], stars.flux[brightest]
        hfr = float(np.nanmedian(stars.hfr)) if np.isfinite(stars.hfr).any() else 0.0
        if self.accumulator is None or self.reference is None or self.reference_flux is None:
            height, width = luminance.shape
            self.size = (width, height)
            self.accumulator = Accumulator(frame.shape, noise_floor=noise)
            self.reference, self.reference_flux, self.reference_hfr = positions, flux, hfr
            self.single_noise = noise
            self.settings = (round(exposure_s, 6), calibration_key(calibration))
            transform = Transform(np.eye(2), np.zeros(2), len(positions), 0.0)
        else:
            if self.reference_hfr and hfr > SWOLLEN * self.reference_hfr:
                return self.reject(
                    "swollen_stars",
                    f"stars' HFR {hfr:.2f} px against {self.reference_hfr:.2f} (trailed, or out of focus)",
                    outcome,
                )
            try:
                transform = register(positions, self.reference)
            except RegistrationFailed as exc:
                return self.reject("not_aligned", str(exc), outcome)
            light = float(np.median(flux[: len(self.reference_flux)]) / np.median(self.reference_flux))
            if light < DIMMED:
                return self.reject(
                    "dimmed", f"the stars give {light:.0%} of the first frame's light (clouds?)", outcome
                )
        added = self.accumulator.add(warp(frame, transform.affine(), self.size))
        self.stacked += 1
        self.integration_s += exposure_s
        self.first = timestamp if self.first is None else self.first
        self.last = timestamp
        outcome.update(
            accepted=True,
            shift=[round(float(v), 2) for v in transform.shift],
            rotation=round(transform.rotation, 4),
            rms=round(transform.rms, 3),
            matched=transform.inliers,
            clipped=added.clipped,
            ms=round(1000 * (time.perf_counter() - started), 1),
        )
        return "stack_frame", self._state(outcome)

    def reject(self, reason: str, message: str, outcome: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.rejections[reason] += 1
        return "stack_rejected", self._state({**outcome, "accepted": False, "reason": reason, "message": message})

    def _state(self, last: dict[str, Any]) -> dict[str, Any]:
        noise = _background_noise(self.accumulator) if self.accumulator is not None else None
        return {
            **_empty_state(),
            "stacked": self.stacked,
            "rejected": sum(self.rejections.values()),
            "rejections": dict(self.rejections),
            "integration_s": round(self.integration_s, 3),
            "last": last,
            "noise": None if noise is None else round(noise, 4),
            "single_frame_noise": round(self.single_noise, 4) if self.accumulator is not None else None,
            "snr_gain": round(self.single_noise / noise, 3) if noise else None,
            "width": self.size[0] or None,
            "height": self.size[1] or None,
            "memory_bytes": self.accumulator.nbytes if self.accumulator is not None else 0,
            "calibration": self.calibration,
        }


def calibration_key(used: dict[str, Any] | None) -> tuple:
    """The masters a frame took, to compare: a stack is of frames calibrated alike."""
    return () if used is None else (used.get("dark"), used.get("bias"), used.get("flat"))


def _as_planes(master: np.ndarray) -> np.ndarray:
    """A grey master (height, width) as (height, width, 1), to take off every colour plane."""
    return master[:, :, None] if master.ndim == 2 else master


def _stars(luminance: np.ndarray):
    """The stars of a linear luminance image (float, 8-bit scale) and its background noise."""
    image = np.clip(np.round(luminance), 0, 255).astype(np.uint8)
    stats = statistics(exact_histogram(image, 255))
    return find_stars(image, stats, 255), max(stats.noise, 0.5)


def _background_noise(accumulator: Accumulator) -> float | None:
    """The standard deviation of the stack's background (its green channel), from the median
    absolute deviation of its covered pixels (stars are few and do not move it)."""
    # A ninth of the pixels: the same figure, a ninth of the time.
    covered = accumulator.count[::3, ::3, 1] > 0
    values = accumulator.mean[::3, ::3, 1][covered]
    if values.size < 100:
        return None
    deviation = np.median(np.abs(values - np.median(values)))
    return float(1.4826 * deviation)
