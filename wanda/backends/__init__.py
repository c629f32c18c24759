"""The camera backends: what the camera worker needs from a camera, and the cameras.

- ``CameraBackend``: the interface; ``PreviewFrame`` and ``StillImage``: what a backend gives.
- ``sky``: the simulated sky (any machine); ``picam``: the Raspberry Pi camera through picamera2.
- ``choose``: which backend a configuration gets, and whether picamera2 can be used here.

A backend is called only from the camera worker thread (wanda/camera.py), which imports this
package; nothing here imports the worker, the web layer or aiohttp (checked by import-linter). Its
errors are the domain's (wanda/errors.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from wanda.errors import ErrorCode, WandaError


class CameraUnavailable(WandaError):
    """The requested camera cannot be used; the message says why and what to do."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.CAMERA_UNAVAILABLE, message)


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


def still_size(backend: CameraBackend) -> tuple[int, int]:
    """A still's width and height: the full sensor where the backend knows one (the Pi), else the
    preview's (the simulated sky's stills are its frames)."""
    return getattr(backend, "sensor_size", backend.preview_size)


class CameraBackend(Protocol):
    """What the worker needs from a camera. Called only from the worker thread."""

    name: str
    preview_size: tuple[int, int]
    exposure_limits: tuple[float, float]
    gain_limits: tuple[float, float]
    exposure_s: float  # the exposure in use (read from the loop for time-outs)
    gain: float
    # True when the backend encodes the preview itself (picamera2's hardware MJPEG encoder): the
    # worker then starts and stops that stream with the demand instead of calling capture_preview.
    encodes_preview: bool
    # True when preview pixels are linear in light (the simulated sky); False when the ISP applied
    # a gamma curve (picamera2), which the analysis undoes.
    preview_linear: bool
    instrument: str  # FITS INSTRUME
    sensor_name: str  # the sensor's model ("IMX477"), as an Alpaca client shows it
    pixel_size_um: float  # of a still's pixel (FITS XPIXSZ / YPIXSZ)
    # A still's linear data (``StillImage.linear`` when asked for raw): its values' bits, and its
    # Bayer pattern ("RGGB", ...; None: one value a pixel, no mosaic).
    raw_bit_depth: int
    raw_bayer: str | None

    @property
    def sensor_temperature(self) -> float | None:
        """The sensor's temperature in Celsius from its latest frame, where the camera reports one
        (None before that, or never)."""
        ...

    # What /api/health says about the camera beyond its name (software versions, tuning, ...):
    # what someone helping over the network asks first. Known after open().
    details: dict[str, Any]

    def open(self) -> None: ...

    def close(self) -> None: ...

    def set_controls(
        self, *, exposure_s: float | None = None, gain: float | None = None, frame_type: str | None = None
    ) -> None:
        """Exposure and gain for the preview and what follows; ``frame_type`` (light, dark, flat,
        bias) says what is in front of the lens: a real camera has nothing to change (the
        observer caps the telescope), the simulated sky renders the cap or the flat panel."""
        ...

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
