"""The picamera2 backend: the Raspberry Pi HQ camera (IMX477) through libcamera.

Called only from the camera worker thread. The preview is a 1440x1080 stream; a still switches
the sensor to its full size (4056x3040) for one request and back (picamera2's
``switch_mode_and_capture_request``). Preview and stills run with the astro controls: no auto
exposure (it caps or doubles long exposures), no auto white balance (fixed colour gains from the
configuration), no noise reduction (it erases faint stars), frame duration limits wide enough for
the exposure, and exposure and gain clamped to what the sensor reports in ``camera_controls``.

Every picamera2 call that waits for a frame is asked for a job (``wait=False``) and waited for in
short slices, so a wake-up (a job for the worker, a stop) or a cancel never waits out a long
exposure: the pending job is dropped with ``cancel_all_and_flush`` and, for a still, the preview
configuration is restored by stopping and restarting the camera.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from wanda.camera import CameraUnavailable, CaptureCancelled, PreviewFrame, StillImage

log = logging.getLogger(__name__)

PREVIEW_SIZE = (1440, 1080)
FULL_SIZE = (4056, 3040)
RAW_FORMAT = "SRGGB12"  # the IMX477's Bayer order and depth, unpacked  # the IMX477's full sensor; the camera's own sensor_resolution wins
LONG_FRAME_S = 1.0  # a preview frame longer than this is aborted when the exposure is shortened
POLL_S = 0.05  # how often a wait for a frame looks at its stop event
FRAME_MARGIN_S = 5.0  # how late a preview frame may be before the camera counts as stalled
MODE_SWITCH_MARGIN_S = 10.0  # a still's time-out on top of its exposures: mode switches, read-out
# A reading differs from the request by more than the sensor's rounding (exposure in whole lines
# of some tens of microseconds, gain in register steps) when it is this far off.
MISMATCH = 0.02
MISMATCH_FLOOR = {"exposure": 100e-6, "analogue gain": 0.0}
NOISE_REDUCTION_OFF = 0  # libcamera's NoiseReductionModeEnum.Off (picamera2 accepts the number)


class Picamera2Backend:
    name = "picamera2"
    preview_size = PREVIEW_SIZE
    preview_linear = False  # the ISP's preview has a gamma curve (sRGB-like) applied

    def __init__(
        self,
        camera_num: int = 0,
        *,
        colour_gains: tuple[float, float] = (2.4, 1.7),
        tuning_file: str = "",
        preview_encoder: str = "auto",
    ):
        self._camera_num = camera_num
        self._colour_gains = (float(colour_gains[0]), float(colour_gains[1]))
        self._tuning_file = tuning_file
        self._preview_encoder = preview_encoder
        self._camera = None
        self._available: dict[str, tuple] = {}
        self._preview_config = None
        self.sensor_size = FULL_SIZE
        self.instrument = "Raspberry Pi camera"
        self.pixel_size_um = 1.55
        self.exposure_limits = (0.0001, 230.0)
        self.gain_limits = (1.0, 16.0)
        self.exposure_s = 1 / 30
        self.gain = 8.0
        self._max_fps = 30.0
        # The hardware MJPEG encoder hands JPEGs over itself; the worker then leaves the preview
        # to us (see CameraWorker).
        self.encodes_preview = False
        self._stream_sink: Callable[[bytes, float], None] | None = None
        self._encoder = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415  (only on a Pi)
        except ImportError as exc:
            raise CameraUnavailable(f"picamera2 is not importable ({exc})") from None
        tuning = self._load_tuning(Picamera2)
        camera = Picamera2(self._camera_num, tuning=tuning) if tuning is not None else Picamera2(self._camera_num)
        try:
            self.sensor_size = tuple(getattr(camera, "sensor_resolution", FULL_SIZE))
            # Until a mode is configured libcamera reports placeholder ranges (ExposureTime up to
            # 66.7 ms): configure the still mode once and read the limits of the mode long
            # exposures are taken in, then the preview.
            camera.configure(camera.create_still_configuration(main={"size": self.sensor_size, "format": "RGB888"}))
            self._available = dict(camera.camera_controls)
            self._read_limits()
            properties = getattr(camera, "camera_properties", {}) or {}
            self.instrument = f"Raspberry Pi camera ({properties.get('Model', 'unknown sensor')})"
            if "UnitCellSize" in properties:  # nanometres
                self.pixel_size_um = properties["UnitCellSize"][0] / 1000
            self._camera = camera
            self.encodes_preview = self._use_hardware_encoder()
            # "RGB888" in picamera2's naming arrives as B, G, R bytes (hence "BGR" below).
            self._preview_config = camera.create_preview_configuration(
                main={"size": PREVIEW_SIZE, "format": "RGB888"}, controls=self._preview_controls()
            )
            camera.configure(self._preview_config)
            self._available = dict(camera.camera_controls)  # the preview mode's (its controls' names)
            camera.start()
        except BaseException:
            self._camera = None
            camera.close()
            raise
        log.info(
            "picamera2: sensor %dx%d, exposure %.6f..%.1f s, gain %.2f..%.2f, preview encoder %s%s",
            *self.sensor_size,
            *self.exposure_limits,
            *self.gain_limits,
            "hardware MJPEG" if self.encodes_preview else "libjpeg-turbo",
            f", tuning {self._tuning_file}" if self._tuning_file else "",
        )

    def close(self) -> None:
        if self._camera is not None:
            self.stop_stream()
            self._camera.stop()
            self._camera.close()
            self._camera = None

    def _load_tuning(self, picamera2_class) -> dict | None:
        """The tuning file as picamera2 wants it (a dict), or None for the sensor's default."""
        name = self._tuning_file
        if not name:
            return None
        if "/" in name:
            try:
                return json.loads(Path(name).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CameraUnavailable(f"tuning file {name} cannot be read ({exc})") from None
        try:
            return picamera2_class.load_tuning_file(name)
        except RuntimeError as exc:
            raise CameraUnavailable(
                f"tuning file {name} was not found ({exc}): give a path, or a name from "
                "/usr/share/libcamera/ipa/rpi/vc4/ (Pi 4) or /usr/share/libcamera/ipa/rpi/pisp/ (Pi 5)"
            ) from None

    def _read_limits(self) -> None:
        # picamera2 reports (min, max, default); exposure in microseconds.
        if "ExposureTime" in self._available:
            low, high, _ = self._available["ExposureTime"]
            self.exposure_limits = (low / 1e6, high / 1e6)
        if "AnalogueGain" in self._available:
            low, high, _ = self._available["AnalogueGain"]
            self.gain_limits = (float(low), float(high))
        self.exposure_s = _clamp(self.exposure_s, *self.exposure_limits)
        self.gain = _clamp(self.gain, *self.gain_limits)

    def _use_hardware_encoder(self) -> bool:
        if self._preview_encoder == "software":
            return False
        try:
            from picamera2.platform import Platform, get_platform  # noqa: PLC0415

            on_vc4 = get_platform() == Platform.VC4
        except (ImportError, AttributeError):
            on_vc4 = False
        if self._preview_encoder == "hardware" and not on_vc4:
            raise CameraUnavailable(
                "preview_encoder hardware: this Raspberry Pi has no hardware JPEG encoder (only the Pi 4 "
                "and older have one); use preview_encoder auto or software"
            )
        return on_vc4

    # -- controls ----------------------------------------------------------------------------------

    def _astro_controls(self, exposure_s: float, gain: float, frame_s: float) -> dict[str, Any]:
        """The controls for one mode; only those this camera advertises (picamera2 refuses others)."""
        exposure_us = int(round(exposure_s * 1e6))
        # Not clamped here: libcamera clamps it to the range of the mode in use, which the limits
        # read at another moment (another mode) may not be.
        frame_us = max(int(round(frame_s * 1e6)), exposure_us)
        controls = {
            "AeEnable": False,  # auto exposure would cap or double long exposures
            "AwbEnable": False,  # a fixed white balance, the same for every frame of the night
            "ColourGains": self._colour_gains,
            "NoiseReductionMode": NOISE_REDUCTION_OFF,  # it smooths away faint stars
            "ExposureTime": exposure_us,
            "AnalogueGain": float(gain),
            # The sensor cannot expose longer than a frame lasts: let the frame last the exposure.
            "FrameDurationLimits": (frame_us, frame_us),
        }
        return {name: value for name, value in controls.items() if name in self._available}

    def _preview_controls(self) -> dict[str, Any]:
        return self._astro_controls(self.exposure_s, self.gain, max(1.0 / self._max_fps, self.exposure_s))

    def set_controls(self, *, exposure_s: float | None = None, gain: float | None = None) -> None:
        previous = self.exposure_s
        if exposure_s is not None:
            self.exposure_s = _clamp(float(exposure_s), *self.exposure_limits)
        if gain is not None:
            self.gain = _clamp(float(gain), *self.gain_limits)
        if self._camera is None:
            return
        self._camera.set_controls(self._preview_controls())
        if previous > LONG_FRAME_S and self.exposure_s < previous:
            # The long preview frame under way would hold the new exposure back until it ends
            # (minutes, perhaps): a restart aborts it, and the controls apply from the next frame.
            streaming = self._stream_sink
            self.stop_stream()
            self._camera.stop()
            self._camera.start()
            if streaming is not None:
                self.start_stream(streaming)

    # -- waiting for picamera2 jobs ----------------------------------------------------------------

    def _wait_for(self, job, stop: threading.Event, timeout: float):
        """The job's result; None as soon as ``stop`` is set (the job is dropped). Raises
        CameraUnavailable when nothing comes within ``timeout`` (a camera that stopped delivering)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._camera.wait(job, timeout=POLL_S)
            except TimeoutError:
                pass
            if stop.is_set():
                self._drop(job)
                return None
            if time.monotonic() > deadline:
                self._drop(job)
                raise CameraUnavailable(f"the camera delivered no frame within {timeout:.1f} s (check the ribbon cable)")

    def _drop(self, job) -> None:
        """Take a pending job back from picamera2; a request that arrived meanwhile is released."""
        self._camera.cancel_all_and_flush()
        try:
            late = job.get_result(timeout=1.0)  # finished just before the flush: it is ours to release
        except (concurrent.futures.CancelledError, TimeoutError):
            return
        except Exception:  # the job failed on its own; nothing is held
            return
        if hasattr(late, "release"):
            late.release()

    # -- preview -----------------------------------------------------------------------------------

    def capture_preview(self, wake: threading.Event, max_fps: float) -> PreviewFrame | None:
        if max_fps != self._max_fps:
            self._max_fps = max_fps
            self._camera.set_controls(self._preview_controls())
        job = self._camera.capture_request(wait=False)
        request = self._wait_for(job, wake, max(1.0 / max_fps, self.exposure_s) + FRAME_MARGIN_S)
        if request is None:
            return None
        try:
            pixels = request.make_array("main")
            metadata = request.get_metadata()
        finally:
            request.release()
        return PreviewFrame(
            pixels,
            "BGR",
            time.time(),
            metadata.get("ExposureTime", self.exposure_s * 1e6) / 1e6,
            metadata.get("AnalogueGain", self.gain),
        )

    def start_stream(self, on_jpeg: Callable[[bytes, float], None]) -> None:
        """Hardware encoding: picamera2's MJPEG encoder calls ``on_jpeg`` from its own thread."""
        if self._stream_sink is not None:
            return
        from picamera2.encoders import MJPEGEncoder  # noqa: PLC0415
        from picamera2.outputs import FileOutput  # noqa: PLC0415

        self._encoder = MJPEGEncoder()
        self._camera.start_encoder(self._encoder, FileOutput(_JpegSink(on_jpeg)), name="main")
        self._stream_sink = on_jpeg

    def stop_stream(self) -> None:
        if self._stream_sink is None:
            return
        self._stream_sink = None
        self._camera.stop_encoder()
        self._encoder = None

    # -- stills ------------------------------------------------------------------------------------

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
        """One exposure at full sensor size, then back to the preview; cancellable throughout.

        With ``raw`` the raw Bayer mosaic comes back as the linear data (for FITS), with ``dng``
        the raw frame as DNG bytes."""
        exposure_s = _clamp(float(exposure_s), *self.exposure_limits)
        gain = _clamp(float(gain), *self.gain_limits)
        streaming = self._stream_sink
        self.stop_stream()  # a mode switch under a running encoder is not supported by picamera2
        try:
            request = self._expose_full_size(exposure_s, gain, cancel, skip_frames, raw or dng)
            started = time.time() - exposure_s
            try:
                pixels = request.make_array("main")
                metadata = request.get_metadata()
                mosaic, bayer = self._mosaic(request) if raw else (None, None)
                dng_bytes = None
                if dng:
                    buffer = io.BytesIO()
                    request.save_dng(buffer)
                    dng_bytes = buffer.getvalue()
            finally:
                request.release()
            # The switch back re-applies the preview configuration as it was created: bring the
            # preview's current controls back with it.
            self._camera.set_controls(self._preview_controls())
        finally:
            if streaming is not None:
                self.start_stream(streaming)
        applied_exposure = metadata.get("ExposureTime", exposure_s * 1e6) / 1e6
        applied_gain = float(metadata.get("AnalogueGain", gain))
        _warn_on_mismatch("exposure", exposure_s, applied_exposure, "s")
        _warn_on_mismatch("analogue gain", gain, applied_gain, "")
        return StillImage(
            pixels=pixels,
            pixel_format="BGR",
            linear=mosaic,
            started=started,
            exposure_s=applied_exposure,
            gain=applied_gain,
            metadata={
                "requested": {"exposure_seconds": exposure_s, "gain": gain},
                **_plain(metadata),
            },
            raw_dng=dng_bytes,
            bayer=bayer,
        )

    def _mosaic(self, request) -> tuple[np.ndarray, str]:
        """The raw Bayer mosaic as uint16 (the sensor's 12-bit values) and its pattern."""
        array = request.make_array("raw")
        width = self.sensor_size[0]
        if array.dtype == np.uint8:  # picamera2 hands raw buffers over as bytes, stride included
            array = array.view(np.uint16)
        mosaic = np.ascontiguousarray(array[:, :width])
        raw_format = str((getattr(request, "config", None) or {}).get("raw", {}).get("format", RAW_FORMAT))
        return mosaic, raw_format[1:5]  # "SRGGB12" -> "RGGB"

    def _expose_full_size(self, exposure_s: float, gain: float, cancel: threading.Event, skip_frames: int, raw: bool):
        camera = self._camera
        still = camera.create_still_configuration(
            main={"size": self.sensor_size, "format": "RGB888"},
            # Unpacked 12-bit: 16 bits a pixel, the mosaic readable as uint16.
            raw={"size": self.sensor_size, "format": RAW_FORMAT} if raw else None,
            controls=self._astro_controls(exposure_s, gain, exposure_s),
        )
        if skip_frames:
            job = camera.switch_mode_and_capture_request(still, wait=False, delay=skip_frames)
        else:
            job = camera.switch_mode_and_capture_request(still, wait=False)
        timeout = exposure_s * (2 + skip_frames) + MODE_SWITCH_MARGIN_S
        try:
            request = self._wait_for(job, cancel, timeout)
        except BaseException:
            self._restore_preview()
            raise
        if request is None:
            self._restore_preview()
            raise CaptureCancelled("the exposure was cancelled")
        return request

    def _restore_preview(self) -> None:
        """After a dropped or failed still the camera may be left in the still mode: go back."""
        camera = self._camera
        try:
            camera.stop()
            camera.configure(self._preview_config)
            camera.set_controls(self._preview_controls())
            camera.start()
        except Exception:
            log.exception("restoring the preview after a still failed")
            raise CameraUnavailable("the camera could not return to the preview (see the server log)") from None


class _JpegSink(io.BufferedIOBase):
    """What picamera2's FileOutput writes to: each write is one whole JPEG from the encoder."""

    def __init__(self, on_jpeg: Callable[[bytes, float], None]):
        super().__init__()
        self._on_jpeg = on_jpeg

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._on_jpeg(bytes(data), time.time())
        return len(data)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _warn_on_mismatch(what: str, requested: float, applied: float, unit: str) -> None:
    if abs(applied - requested) > max(MISMATCH * requested, MISMATCH_FLOOR[what]):
        log.warning("the camera applied %s %g%s instead of the requested %g%s", what, applied, unit, requested, unit)


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """The request metadata that JSON can carry (numbers, text, tuples of numbers)."""
    plain: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, bool | int | float | str):
            plain[key] = value
        elif isinstance(value, tuple | list) and all(isinstance(v, int | float) for v in value):
            plain[key] = list(value)
    return plain
