"""The stacking itself, in a process of its own (started by the `stack` thread, wanda/stacking.py):
each frame is calibrated with the masters that fit it, its stars found and registered on the first
frame's (wanda/astro/register.py), warped onto it and added to the sigma-clipping accumulator
(wanda/astro/stack.py), or rejected with the reason; the stack is auto-stretched and JPEG-encoded for
its viewers, and saved as FITS.

Why a process: the work is numpy and OpenCV calls of a few to tens of milliseconds each, which
release the GIL only between them. In the server's process they competed with the event loop, the
camera and the encoders for the GIL, and the loop woke up late (23 to 43 ms while stacking against
11 without: bench/stack.py). In a process of its own the stack competes for the processor only,
which the operating system shares out in time.

``StackProcess`` is the server's side: it starts the process (a new interpreter: a fork of a
threaded server could copy a lock another thread held), sends it requests over a socket pair (a
preview frame's pixels as raw bytes after its request: no pickling of 4.6 MB) and returns the
answers. One thread talks to it at a time (the `stack` thread). ``serve`` is the process's loop,
``StackEngine`` its state.

A frame is rejected when it shows too few stars to register, when registration fails, when its
stars are swollen or trailed (their median HFR grew by half against the first frame's: wind, a
focus slip, the mount stalled), or when they are dimmed by half (cloud).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from multiprocessing import BufferTooShort
from multiprocessing.connection import Connection
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
from wanda.jpeg import JpegEncoder
from wanda.storage.disk import NumberedFiles, SavedFile
from wanda.storage.fits import fits_bytes, read_fits
from wanda.timestamps import utc_iso

log = logging.getLogger(__name__)

REGISTER_STARS = 50  # the brightest stars of a frame taken to register it
SWOLLEN = 1.5  # a frame whose stars' median HFR is this times the first frame's is rejected
DIMMED = 0.5  # and one whose stars give less than this share of the first frame's light
MAX_FRAMES = 65535  # the accumulator counts each pixel's values in 16 bits
# OpenCV names a Bayer layout by the second row's second and third pixels: a sensor whose top-left
# 2x2 is RGGB is OpenCV's "BG".
DEMOSAIC = {
    "RGGB": cv2.COLOR_BayerBG2RGB,
    "BGGR": cv2.COLOR_BayerRG2RGB,
    "GRBG": cv2.COLOR_BayerGB2RGB,
    "GBRG": cv2.COLOR_BayerGR2RGB,
}
# A mosaic goes to OpenCV's demosaicing as 16-bit whole numbers: (value + PEDESTAL) * LEVELS holds
# -64..448 on the 0-255 scale (negative after a dark, above 255 after a flat) in 1/128 steps.
PEDESTAL = 64
LEVELS = 128
RENDER_WIDTH = 2048  # the widest stack shown as it is to its viewers (a Pi's preview is 1440 or 2028)
NICENESS = 10  # the stacking process's, against the server's 0
START_TIMEOUT_S = 60.0  # for the process to import numpy and OpenCV and say it is there (a Pi is slow)
ANSWER_TIMEOUT_S = 300.0  # a frame or a save that takes longer hangs (a stalled disk): the process is killed


class EngineGone(RuntimeError):
    """The stacking process ended (killed: out of memory?) or could not start."""


class StackProcess:
    """The server's side of the stacking process (``python -m wanda.stack_engine``, a socket pair
    between them): started at the first request, started again after it died. Not thread-safe:
    the `stack` thread alone calls it."""

    def __init__(self, *, linear: bool, calibration_dir: Path | None, jpeg_quality: int):
        self._options = {
            "linear": linear,
            "calibration_dir": None if calibration_dir is None else str(calibration_dir),
            "jpeg_quality": jpeg_quality,
        }
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self.holds_stack = False  # frames went to the process since its start or last reset

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def call(self, request: tuple, pixels: np.ndarray | None = None) -> Any:
        """Send ``request`` (and a preview frame's ``pixels``) and return the answer. A WandaError
        or OSError raised there is raised here; EngineGone when the process died, did not answer
        within ANSWER_TIMEOUT_S (it is killed), or the two could fall out of step (its stack is
        lost either way)."""
        conn = self._connection()
        try:
            conn.send(request)
            if pixels is not None:
                conn.send_bytes(np.ascontiguousarray(pixels).data.cast("B"))
            if not conn.poll(ANSWER_TIMEOUT_S):
                raise TimeoutError(f"no answer in {ANSWER_TIMEOUT_S:g} s")
            status, answer = conn.recv()
        except Exception as exc:  # whatever broke the exchange, the next one could not be trusted
            self.holds_stack = False
            self.kill()
            self.close()
            raise EngineGone(f"the stacking process ended ({exc or type(exc).__name__})") from None
        if request[0] in ("preview", "saved"):
            self.holds_stack = True
        elif request[0] == "reset":
            self.holds_stack = False
        if status == "error":
            code, message = answer
            raise WandaError(ErrorCode(code), message)
        if status == "oserror":  # the disk's trouble (full, read-only): the API says which
            raise OSError(*answer)
        if status == "failed":
            raise RuntimeError(answer)
        return answer

    def kill(self) -> None:
        """Kill the process now (any thread: a thread stuck waiting for it is freed)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def _connection(self) -> Connection:
        if self._conn is not None and self._process is not None:
            code = self._process.poll()
            if code is None:
                return self._conn
            lost, self.holds_stack = self.holds_stack, False
            self.close()
            if lost:  # it died between requests with a stack: say so before a new one starts
                raise EngineGone(f"the stacking process ended (exit status {code})")
        ours, theirs = socket.socketpair()
        # A process of its own rather than multiprocessing's: it imports this module and what it
        # needs, not the server's __main__ (the `wanda` command and all of aiohttp), and shows in
        # `ps` as what it is.
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        try:
            process = subprocess.Popen(
                # -P: not the server's working directory first on the path (a checkout there).
                [sys.executable, "-P", "-m", "wanda.stack_engine", str(theirs.fileno()), json.dumps(self._options)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            ours.close()
            raise EngineGone(f"the stacking process could not start: {exc}") from None
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        self._process, self._conn = process, conn
        try:
            if not conn.poll(START_TIMEOUT_S) or conn.recv() != "ready":  # numpy and OpenCV imported
                raise EOFError
        except (EOFError, OSError):
            self.close()
            raise EngineGone("the stacking process failed to start (see the log)") from None
        log.info("stacking process %d started", process.pid)
        return conn

    def close(self, timeout: float = 1.0) -> None:
        """End the process: asked first (it finishes the request under way), killed if it does not."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            try:
                conn.send(("stop",))
            except OSError:
                pass
            conn.close()
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)


def serve(conn: Connection, linear: bool, calibration_dir: str | None, jpeg_quality: int) -> None:
    """The stacking process: answer requests until told to stop or the server is gone."""
    # Ctrl-C in a terminal, and systemd's stop, are the server's to handle: it ends this process
    # after the frame under way (a stack lost in mid-shutdown would be reported as lost).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Background work: the live view and the server come first when the processor is short (the
    # stack then skips to newer frames), as the operating system shares it out by niceness.
    os.nice(NICENESS)
    logging.basicConfig(level=logging.INFO, format="wanda-stack: %(levelname)s %(message)s")
    engine = StackEngine(linear, None if calibration_dir is None else Path(calibration_dir), jpeg_quality)
    buffer = bytearray()
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
            kind, args = request[0], request[1:]
            if kind == "preview":  # its pixels follow: read them before anything can fail
                try:
                    conn.recv_bytes_into(buffer)
                except BufferTooShort as short:  # the message is read: into a buffer of its size
                    buffer = bytearray(short.args[0])
        except Exception:  # the server is gone, or sent what cannot be read: out of step
            return
        try:
            if kind == "stop":
                return
            if kind == "preview":
                shape, dtype = args[0], np.dtype(args[1])
                pixels = np.frombuffer(buffer, dtype, math.prod(shape)).reshape(shape)
                answer: Any = engine.add_preview(pixels, *args[2:])
            elif kind == "saved":
                answer = engine.add_saved(*args)
            elif kind == "render":
                answer = engine.render()
            elif kind == "reset":
                engine.reset()
                answer = None
            elif kind == "save":
                answer = engine.save(*args)
            else:
                raise ValueError(f"unknown request {kind!r}")
        except WandaError as exc:
            conn.send(("error", (exc.code.value, exc.message)))
        except OSError as exc:  # a save on a full or read-only disk: its errno goes back
            conn.send(("oserror", (exc.errno, exc.strerror, exc.filename)))
        except Exception as exc:  # one bad frame must not end the process
            log.exception("stacking: %s failed", kind)
            conn.send(("failed", f"{kind} failed: {type(exc).__name__}: {exc}"))
        else:
            conn.send(("ok", answer))


class StackEngine:
    """The stacking process's state: the stack, the masters that fit its frames, an encoder."""

    def __init__(self, linear: bool, calibration_dir: Path | None, jpeg_quality: int):
        # A Pi's preview is sRGB-encoded: to linear light on the preview's 0-255 scale.
        self._to_linear = None if linear else srgb_to_linear_table().astype(np.float32) * np.float32(255 / 65535)
        self._calibration_dir = calibration_dir
        self.calibration = CalibrationLibrary(calibration_dir) if calibration_dir is not None else None
        self._epoch = 0  # the server's count of its start and resets: masters are looked up afresh
        # The masters for frames of one size, exposure and gain: (key, dark or bias, flat, what was used).
        self._masters: tuple[tuple, np.ndarray | None, np.ndarray | None, dict[str, Any]] | None = None
        self.encoder = JpegEncoder(jpeg_quality)
        self.stack: Stack | None = None

    def reset(self) -> None:
        self.stack = None

    def add_preview(
        self,
        pixels: np.ndarray,
        pixel_format: str,
        timestamp: float,
        exposure_s: float,
        gain: float,
        epoch: int,
        render: bool,
    ) -> tuple[str, dict[str, Any], tuple[bytes, int, int] | None]:
        """A preview frame: stacked (or rejected); the event, the state, and the stack rendered
        when ``render`` and the frame was added."""
        rgb = pixels[..., list(CHANNEL_ORDER[pixel_format])]
        linear = rgb.astype(np.float32) if self._to_linear is None else self._to_linear[rgb]
        return self._add(linear, None, timestamp, exposure_s, gain, epoch, render, {"timestamp": timestamp})

    def add_saved(
        self, path: str, timestamp: float | None, exposure_s: float, gain: float, epoch: int, render: bool
    ) -> tuple[str, dict[str, Any], tuple[bytes, int, int] | None]:
        """A session's frame from its file: calibrated as the sensor gave it (a Bayer mosaic
        before it is interpolated), then stacked; one that cannot be read is rejected."""
        file = Path(path)
        outcome: dict[str, Any] = {"timestamp": timestamp, "file": file.name}
        try:
            if file.suffix.lower() in (".jpg", ".jpeg") and file.with_suffix(".fits").is_file():
                file = file.with_suffix(".fits")  # the sensor's linear data beside its JPEG
            if file.resolve().parent != file.parent.resolve():
                raise ValueError("a link out of its session's folder")
            if not stat.S_ISREG(file.stat().st_mode):  # a FIFO or a device would hang the read
                raise ValueError("not a regular file")
            if timestamp is None:  # a frame found after a crash: its file's time
                outcome["timestamp"] = timestamp = file.stat().st_mtime
            pixels, bayer, temperature = self._read_saved(file)
        except (OSError, ValueError) as exc:
            return (*self._stack().reject("unreadable", f"{file.name}: {exc}", outcome), None)
        return self._add(pixels, bayer, timestamp, exposure_s, gain, epoch, render, outcome, temperature)

    def _add(
        self,
        frame: np.ndarray,
        bayer: str | None,
        timestamp: float,
        exposure_s: float,
        gain: float,
        epoch: int,
        render: bool,
        outcome: dict[str, Any],
        temperature: float | None = None,
    ) -> tuple[str, dict[str, Any], tuple[bytes, int, int] | None]:
        stack = self._stack()
        try:
            calibrated, used = self._calibrated(frame, exposure_s, gain, epoch, temperature)
        except ValueError as exc:  # a master of the frame's size but not of its layout (colour, mosaic)
            return (*stack.reject("not_calibrated", f"a master does not fit the frame: {exc}", outcome), None)
        event, state = stack.add(colour(calibrated, bayer), timestamp, exposure_s, used)
        state["last"].update({k: v for k, v in outcome.items() if k != "timestamp"})
        return event, state, self.render() if render and event == "stack_frame" else None

    def _stack(self) -> Stack:
        if self.stack is None:
            self.stack = Stack()
        return self.stack

    def render(self) -> tuple[bytes, int, int] | None:
        """The stack stretched and encoded for its viewers, with its width and height; None before
        a frame. A stack wider than RENDER_WIDTH (a full-size one) is shown binned down to it:
        a phone shows no more, and the full size's temporaries would double the process's memory."""
        stack = self.stack
        if stack is None or stack.accumulator is None:
            return None
        mean = stack.accumulator.mean  # 0 where no frame reached: black, as the saved JPEG
        height, width = mean.shape[:2]
        factor = math.ceil(width / RENDER_WIDTH)
        shown: np.ndarray = mean
        if factor > 1:
            width, height = width // factor, height // factor
            shown = cv2.resize(mean, (width, height), interpolation=cv2.INTER_AREA)
        return self.encoder.encode(stretched(shown), "RGB"), width, height

    def save(self, folder: str, camera: str, state: dict[str, Any]) -> SavedFile:
        """The stack as it stands into ``folder`` (the gallery's `stacks`): a stretched JPEG to
        look at, the 32-bit float FITS of the mean (EXPTIME the summed exposure, NCOMBINE the
        frames) for stacking software, and a JSON sidecar with the stack's state. NOT_FOUND when
        nothing is stacked yet."""
        stack = self.stack
        if stack is None or stack.accumulator is None or stack.stacked == 0:
            raise WandaError(ErrorCode.NOT_FOUND, "nothing is stacked yet: POST /api/stack/start first")
        image = stack.accumulator.image()
        summary = stack.summary()
        planes = image.transpose(2, 0, 1)  # (3, height, width): FITS's colour planes (a view)
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
        # The JPEG first: its temporaries are gone before the FITS's buffer is made.
        jpeg = self.encoder.encode(stretched(image), "RGB")
        fits = fits_bytes(planes, [(k, v, c or "") for k, v, c in cards])
        sidecar = {"kind": "stack", "software": f"WANDA {__version__}", **summary, "state": state}
        return NumberedFiles(Path(folder), "stack").save("jpg", jpeg, sidecar, companions={"fits": fits})

    def _read_saved(self, path: Path) -> tuple[np.ndarray, str | None, float | None]:
        """A saved frame as float32 (height, width, planes) on the preview's 0-255 scale (the
        masters are scaled so too), its Bayer layout when it is a raw mosaic, and the sensor's
        temperature when the file says it (a dark is matched on it)."""
        if path.suffix.lower() in (".fits", ".fit", ".fts"):
            image = read_fits(path)
            data = image.data if image.data.ndim == 3 else image.data[None]
            planes = np.ascontiguousarray(data.transpose(1, 2, 0)).astype(np.float32)
            planes *= np.float32(256 / (image.full_scale + 1))
            bayer = image.header.get("BAYERPAT")
            if bayer is not None and (bayer not in DEMOSAIC or planes.shape[2] != 1):
                raise ValueError(f"a Bayer layout {bayer!r} that is not read here")
            temperature = image.header.get("CCD-TEMP")
            if not (isinstance(temperature, int | float) and math.isfinite(temperature)):
                temperature = None
            return planes, bayer, temperature
        if path.suffix.lower() in (".jpg", ".jpeg"):
            rgb = self.encoder.decode(path.read_bytes())
            return (rgb.astype(np.float32) if self._to_linear is None else self._to_linear[rgb]), None, None
        raise ValueError("WANDA stacks FITS and JPEG frames (take the session as FITS)")

    def _calibrated(
        self, frame: np.ndarray, exposure_s: float, gain: float, epoch: int, temperature: float | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The frame less its master dark (else bias), divided by its master flat, in place; and
        which masters it took, or why none. Looked up again when the server started or reset the
        stack since (``epoch``: masters built or deleted meanwhile count) and when the frames'
        size, exposure, gain or temperature (a saved frame's, to the degree) change."""
        if epoch != self._epoch:
            self._epoch, self._masters = epoch, None
            if self._calibration_dir is not None:  # a fresh library: no master read before is kept
                self.calibration = CalibrationLibrary(self._calibration_dir)
        height, width = frame.shape[:2]
        key = (width, height, round(exposure_s, 6), round(gain, 3), None if temperature is None else round(temperature))
        if self._masters is None or self._masters[0] != key:
            self._masters = (key, *self._find_masters(width, height, exposure_s, gain, temperature))
        _, offset, flat, used = self._masters
        if offset is not None:
            frame -= offset
        if flat is not None:
            frame /= flat
        return frame, used

    def _find_masters(
        self, width: int, height: int, exposure_s: float, gain: float, temperature: float | None
    ) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
        used: dict[str, Any] = {"dark": None, "bias": None, "flat": None, "missing": []}
        if self.calibration is None:
            return None, None, used
        library = self.calibration
        dark, wanted_dark = library.match(
            "dark", width=width, height=height, exposure_s=exposure_s, gain=gain, temperature=temperature
        )
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


def colour(frame: np.ndarray, bayer: str | None) -> np.ndarray:
    """A calibrated frame (height, width, planes) as RGB: a Bayer mosaic interpolated (OpenCV's
    bilinear demosaicing, which takes whole numbers: the 0-255 scale lifted by PEDESTAL and put
    on 16 bits, so the background's negative values after a dark are kept, then brought back), a
    grey frame repeated into the three channels, a colour one as it is."""
    if bayer is not None:
        levels = (frame[:, :, 0] + np.float32(PEDESTAL)) * np.float32(LEVELS)
        np.clip(levels, 0, 65535, out=levels)
        rgb = cv2.cvtColor(levels.astype(np.uint16), DEMOSAIC[bayer]).astype(np.float32)
        rgb *= np.float32(1 / LEVELS)
        rgb -= np.float32(PEDESTAL)
        return rgb
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return frame


def stretched(image: np.ndarray) -> np.ndarray:
    """A stack (H, W, 3) float on the preview's 0-255 scale, NaN where no frame reached, as 8-bit
    RGB with the auto-stretch of its luminance (PixInsight's STF, as the live view's)."""
    levels = image * np.float32(257.0)  # onto 16 bits: the stack's fine steps
    np.nan_to_num(levels, copy=False, nan=0.0)
    np.clip(levels, 0, 65535, out=levels)
    levels = levels.astype(np.uint16)
    stats = statistics(exact_histogram(levels.mean(axis=2, dtype=np.float32).astype(np.uint16), 65535))
    table = auto_stretch(stats, 65535).lookup_table(65536)
    return table[levels]


def empty_state() -> dict[str, Any]:
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


class Stack:
    """One stack: its reference (the first frame with enough stars) and accumulator."""

    def __init__(self) -> None:
        self.accumulator: Accumulator | None = None
        self.reference: np.ndarray | None = None  # (N, 2) star positions, brightest first
        self.reference_hfr = 0.0
        self.reference_flux: np.ndarray | None = None
        self.single_noise = 0.0
        self.stacked = 0
        self.rejections: Counter[str] = Counter()
        self.integration_s = 0.0
        self.calibration: dict[str, Any] | None = None  # the masters the last frame took
        self.settings: tuple[float, tuple] | None = None  # the first frame's exposure and masters: every frame's
        self.first: float | None = None  # the first and the last frame stacked (Unix)
        self.last: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """Width and height; (0, 0) before the first frame."""
        if self.accumulator is None:
            return 0, 0
        height, width = self.accumulator.shape[:2]
        return width, height

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
            **empty_state(),
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


def main() -> None:
    """``python -m wanda.stack_engine FD OPTIONS``: the stacking process, on the socket FD."""
    serve(Connection(int(sys.argv[1])), **json.loads(sys.argv[2]))


if __name__ == "__main__":
    # Run as the module by its name, so that what it sends back pickles as wanda.stack_engine's.
    from wanda.stack_engine import main as stack_main

    stack_main()
