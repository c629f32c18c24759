"""The picamera2 backend: the Raspberry Pi HQ camera (IMX477) through libcamera.

Called only from the camera worker thread. The preview is a 1440x1080 stream; a still switches
the sensor to its full size (4056x3040) for one request and back (picamera2's
``switch_mode_and_capture_request``). Preview and stills run with the astro controls: a fixed
exposure and gain (auto exposure caps or doubles long exposures), fixed colour gains from the
configuration (auto white balance would shift every frame differently), no noise reduction (it
erases faint stars), frame duration limits as long as the exposure, and exposure and gain clamped
to what the sensor reports in ``camera_controls`` for the mode in use.

What picamera2's and libcamera's source says this must get right (issue 14; the fake in
tests/fake_picamera2.py imitates each point and names its source):
- ``camera_controls`` holds placeholder ranges until a mode is configured: limits are read after.
- ``LIBCAMERA_RPI_TUNING_FILE`` is read once, when libcamera's camera manager starts, which the
  first picamera2 call does: ``select_tuning_file`` sets it before anything else.
- libcamera meets a request's controls in no fixed order, and up to 0.4 ``AeEnable: False`` met
  after ``ExposureTime`` freezes the exposure at the previous frame's length. There a fixed
  ExposureTime and AnalogueGain already make the exposure manual, so ``AeEnable`` is never sent.
  From 0.5 a fixed value is ignored unless its mode is manual: ``ExposureTimeMode`` and
  ``AnalogueGainMode`` are sent themselves (handled before the rest of a list in every 0.5+), not
  ``AeEnable``, which libcamera 0.5.0 and 0.5.1 do not translate for the controls given at start.
  Fixed ColourGains alone make white balance manual, so ``AwbEnable`` is not needed either.
- A frame lasts 22 lines longer than its exposure: the longest frame allowed has that margin.
- Controls ride on the next request picamera2 recycles, and a stop cancels those queued: a
  restart is stop, set, start. A mode switch back to the preview starts with the controls its
  configuration holds, so they are brought up to date before every still.
- A Pi 5 delivers raw samples as 16 bits (12-bit values shifted up by 4): the mosaic is scaled
  back by the format's depth.

Every picamera2 call that waits for a frame is asked for a job (``wait=False``) and waited for in
short slices, so a wake-up (a job for the worker, a stop) or a cancel never waits out a long
exposure: the pending job is dropped with ``cancel_all_and_flush`` and, for a still, the preview
configuration is restored by stopping and restarting the camera.
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import inspect
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from wanda.backends import CameraUnavailable, CaptureCancelled, PreviewFrame, StillImage

log = logging.getLogger(__name__)

PREVIEW_SIZE = (1440, 1080)
FULL_SIZE = (4056, 3040)
RAW_FORMAT = "SRGGB12"  # the IMX477's Bayer order and depth, unpacked
SENSOR_BIT_DEPTH = 12  # the IMX477's ADC: raw values 0..4095
TUNING_ENV = "LIBCAMERA_RPI_TUNING_FILE"
# Where picamera2's load_tuning_file looks for a tuning file given by name, in this order
# ({platform}: vc4 on a Pi 4 and older, pisp on a Pi 5).
TUNING_DIRS = (
    "~/libcamera/src/ipa/rpi/{platform}/data",
    "/usr/local/share/libcamera/ipa/rpi/{platform}",
    "/usr/share/libcamera/ipa/rpi/{platform}",
)
# The imx477 kernel driver's on-sensor defective pixel correction, written to the sensor at every
# stream start (it removes faint stars with the hot pixels).
SENSOR_DPC_PARAMETER = Path("/sys/module/imx477/parameters/dpc_enable")
UPGRADE_FIX = "run sudo apt update && sudo apt full-upgrade (WANDA needs picamera2 0.3.20 or newer)"
LONG_FRAME_S = 1.0  # a preview frame longer than this is aborted when the exposure is shortened
POLL_S = 0.05  # how often a wait for a frame looks at its stop event
FRAME_MARGIN_S = 5.0  # how late a preview frame may be before the camera counts as stalled
MODE_SWITCH_MARGIN_S = 10.0  # a still's time-out on top of its exposures: mode switches, read-out
# A reading differs from the request by more than the sensor's rounding (exposure in whole lines
# of some tens of microseconds, gain in register steps) when it is this far off.
MISMATCH = 0.02
MISMATCH_FLOOR = {"exposure": 100e-6, "analogue gain": 0.0}
NOISE_REDUCTION_OFF = 0  # libcamera's NoiseReductionModeEnum.Off (picamera2 accepts the number)
EXPOSURE_MODE_MANUAL = 1  # ExposureTimeModeManual, AnalogueGainModeManual
FRAME_SLACK_US = 5000  # at least this much longer may a frame be than its exposure (see above)


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
        sensor_dpc: bool = False,
    ):
        self._camera_num = camera_num
        self._colour_gains = (float(colour_gains[0]), float(colour_gains[1]))
        self._tuning_file = tuning_file
        self._preview_encoder = preview_encoder
        self._sensor_dpc = sensor_dpc
        self._camera: Any = None  # a Picamera2 (untyped; present only on a Pi)
        self._available: dict[str, tuple] = {}
        self._preview_config: dict[str, Any] = {}  # picamera2's preview configuration, once open
        self.sensor_size = FULL_SIZE
        self.instrument = "Raspberry Pi camera"
        self.sensor_name = "IMX477"
        self.pixel_size_um = 1.55
        self.raw_bit_depth = SENSOR_BIT_DEPTH
        self.raw_bayer: str | None = RAW_FORMAT[1:5]  # until open() reads the order the sensor delivers
        self.sensor_temperature: float | None = None  # from the frames' metadata
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
        self.details: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # here, not at the top: it exists only on a Pi
        except ImportError as exc:
            raise CameraUnavailable(f"picamera2 is not importable ({exc})") from None
        missing = missing_features(Picamera2)
        if missing:
            raise CameraUnavailable(f"picamera2 is too old: it lacks {', '.join(missing)}; {UPGRADE_FIX}")
        tuning = select_tuning_file(self._tuning_file)  # before the first call that starts libcamera
        apply_sensor_dpc(self._sensor_dpc)  # before the first stream start, which writes it to the sensor
        # A path makes picamera2 set the variable to the same file (None would remove it).
        camera = Picamera2(self._camera_num, tuning=tuning) if tuning else Picamera2(self._camera_num)
        try:
            self.sensor_size = tuple(getattr(camera, "sensor_resolution", FULL_SIZE))
            # Until a mode is configured libcamera reports placeholder ranges (ExposureTime up to
            # 66.7 ms): configure the still mode once and read the limits of the mode long
            # exposures are taken in, then the preview.
            camera.configure(
                camera.create_still_configuration(
                    main={"size": self.sensor_size, "format": "RGB888"},
                    raw={"size": self.sensor_size, "format": RAW_FORMAT},
                )
            )
            # The order the sensor delivers its mosaic in, as libcamera's validation wrote it back
            # (the HQ camera's 180 degree mounting is undone by flips: RGGB arrives as BGGR).
            self.raw_bayer = bayer_order(camera.camera_configuration()["raw"]["format"]) or self.raw_bayer
            self._available = dict(camera.camera_controls)
            self._read_limits()
            properties = getattr(camera, "camera_properties", {}) or {}
            self.instrument = f"Raspberry Pi camera ({properties.get('Model', 'unknown sensor')})"
            self.sensor_name = str(properties.get("Model", self.sensor_name)).upper()
            if "UnitCellSize" in properties:  # nanometres
                self.pixel_size_um = properties["UnitCellSize"][0] / 1000
            self._camera = camera
            self.encodes_preview = self._use_hardware_encoder()
            # "RGB888" in picamera2's naming arrives as B, G, R bytes (hence "BGR" below). The
            # preview keeps picamera2's default raw stream: it picks the sensor mode (2028x1520,
            # binned, full field) as picamera2 scores it.
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
        dpc = read_sensor_dpc()
        self.details = {
            "model": properties.get("Model"),
            "picamera2": _package_version("picamera2"),
            "platform": _platform_name(),
            "tuning_file": tuning or None,
            "sensor_dpc": None if dpc is None else ("on" if dpc else "off"),
            "preview_encoder": "hardware" if self.encodes_preview else "software",
            "exposure_limits_s": list(self.exposure_limits),
        }
        log.info(
            "picamera2: sensor %dx%d, exposure %.6f..%.1f s, gain %.2f..%.2f, preview encoder %s, tuning %s, sensor DPC %s",
            *self.sensor_size,
            *self.exposure_limits,
            *self.gain_limits,
            "hardware MJPEG" if self.encodes_preview else "libjpeg-turbo",
            tuning or "the sensor's default",
            {True: "on", False: "off", None: "unknown"}[dpc],
        )
        if dpc is not None and dpc != self._sensor_dpc:
            log.warning(
                "sensor DPC is %s, not %s as configured: %s",
                "on" if dpc else "off",
                "on" if self._sensor_dpc else "off",
                sensor_dpc_fix(self._sensor_dpc),
            )

    def close(self) -> None:
        if self._camera is not None:
            self.stop_stream()
            self._camera.stop()
            self._camera.close()
            self._camera = None

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
        on_vc4 = _platform_name() == "vc4"
        if self._preview_encoder == "hardware" and not on_vc4:
            raise CameraUnavailable(
                "preview_encoder hardware: this Raspberry Pi has no hardware JPEG encoder (only the Pi 4 "
                "and older have one); use preview_encoder auto or software"
            )
        return on_vc4

    # -- controls ----------------------------------------------------------------------------------

    def _astro_controls(self, exposure_s: float, gain: float, frame_s: float) -> dict[str, Any]:
        """The controls for one mode; only those this camera advertises (picamera2 refuses others)."""
        exposure_us = round(exposure_s * 1e6)
        # Not clamped here: libcamera clamps it to the range of the mode in use, which the limits
        # read at another moment (another mode) may not be. A frame lasts 22 sensor lines (and, in
        # the IMX477's long exposure mode, a rounding of up to 128 lines) beyond its exposure: the
        # longest frame allowed leaves room for that, or the exposure would be cut.
        frame_us = max(round(frame_s * 1e6), exposure_us)
        longest_frame_us = frame_us + max(FRAME_SLACK_US, frame_us // 100)
        controls = {
            # Fixed colour gains alone make white balance manual, the same for every frame of the
            # night (AwbEnable is not needed: non-zero gains are manual in every libcamera).
            "ColourGains": self._colour_gains,
            "NoiseReductionMode": NOISE_REDUCTION_OFF,  # it smooths away faint stars
            "ExposureTime": exposure_us,
            "AnalogueGain": float(gain),
            # The sensor cannot expose longer than a frame lasts: let the frame last the exposure.
            "FrameDurationLimits": (frame_us, longest_frame_us),
            # libcamera 0.5 on ignores ExposureTime and AnalogueGain while their modes are auto
            # (before 0.5 these controls do not exist, and the fixed values alone are manual).
            "ExposureTimeMode": EXPOSURE_MODE_MANUAL,
            "AnalogueGainMode": EXPOSURE_MODE_MANUAL,
        }
        return {name: value for name, value in controls.items() if name in self._available}

    def _preview_controls(self) -> dict[str, Any]:
        return self._astro_controls(self.exposure_s, self.gain, max(1.0 / self._max_fps, self.exposure_s))

    def set_controls(
        self, *, exposure_s: float | None = None, gain: float | None = None, frame_type: str | None = None
    ) -> None:
        # The frame type is the observer's doing (the cap, the flat panel): nothing to set here.
        if exposure_s is None and gain is None:
            return
        previous = self.exposure_s
        if exposure_s is not None:
            self.exposure_s = _clamp(float(exposure_s), *self.exposure_limits)
        if gain is not None:
            self.gain = _clamp(float(gain), *self.gain_limits)
        if self._camera is None:
            return
        if not (previous > LONG_FRAME_S and self.exposure_s < previous):
            self._camera.set_controls(self._preview_controls())
            return
        # The long preview frame under way would hold the new exposure back until it ends
        # (minutes, perhaps): a restart aborts it. Stop, set, start: controls set while running
        # ride on the next request picamera2 queues, and a stop cancels that request with them;
        # set while stopped, start() hands them to libcamera at once.
        streaming = self._stream_sink
        self.stop_stream()
        self._camera.stop()
        self._camera.set_controls(self._preview_controls())
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
                raise CameraUnavailable(
                    f"the camera delivered no frame within {timeout:.1f} s (check the ribbon cable)"
                )

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
        self._heard_temperature(metadata)
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
        from picamera2.encoders import MJPEGEncoder
        from picamera2.outputs import FileOutput

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
            # The preview's configuration was brought up to date before the switch; should picamera2
            # have copied it after all, the current controls still arrive a few frames later.
            self._camera.set_controls(self._preview_controls())
        finally:
            if streaming is not None:
                self.start_stream(streaming)
        self._heard_temperature(metadata)
        if bayer is not None:
            self.raw_bayer = bayer
        applied_exposure = metadata.get("ExposureTime", exposure_s * 1e6) / 1e6
        applied_gain = float(metadata.get("AnalogueGain", gain))
        _warn_on_mismatch("exposure", exposure_s, applied_exposure, "s")
        _warn_on_mismatch("analogue gain", gain, applied_gain, "")
        black_levels = metadata.get("SensorBlackLevels")  # in 16-bit units, whatever the format
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
            bit_depth=SENSOR_BIT_DEPTH if mosaic is not None else None,
            black_level=black_levels[0] / 2 ** (16 - SENSOR_BIT_DEPTH) if mosaic is not None and black_levels else None,
            sensor_dpc=read_sensor_dpc(),
        )

    def _heard_temperature(self, metadata: dict[str, Any]) -> None:
        temperature = metadata.get("SensorTemperature")
        if isinstance(temperature, int | float):
            self.sensor_temperature = float(temperature)

    def _mosaic(self, request) -> tuple[np.ndarray, str]:
        """The raw Bayer mosaic as uint16 holding the sensor's 12-bit values, and its pattern.

        A Pi 4 delivers ``SRGGB12`` as asked: 12-bit values in 16-bit words. A Pi 5's front end
        writes 16-bit samples only, so the same request comes back as ``SRGGB16`` with the values
        shifted up by 4 (black level 4096): shifted back, both Pis give the same data."""
        array = request.make_array("raw")
        width = self.sensor_size[0]
        if array.dtype == np.uint8:  # picamera2 hands raw buffers over as bytes, stride included
            array = array.view(np.uint16)
        raw_format = str((getattr(request, "config", None) or {}).get("raw", {}).get("format", RAW_FORMAT))
        order, _, packing = raw_format.partition("_")
        if packing:  # CSI-2 packed or PiSP compressed: not plain samples
            raise CameraUnavailable(
                f"the camera delivered raw data as {raw_format}, which WANDA cannot read (it asked for {RAW_FORMAT})"
            )
        depth = int(order[5:])  # "SRGGB16" -> 16
        mosaic = np.ascontiguousarray(array[:, :width])
        if depth > SENSOR_BIT_DEPTH:
            mosaic >>= depth - SENSOR_BIT_DEPTH
        return mosaic, order[1:5]  # "SRGGB12" -> "RGGB"

    def _expose_full_size(self, exposure_s: float, gain: float, cancel: threading.Event, skip_frames: int, raw: bool):
        camera = self._camera
        # The switch back starts the preview with the controls its configuration holds (picamera2
        # keeps a shallow copy of it, this very dict): bring them up to date, or the first frames
        # after the still would run with the settings the preview was created with.
        self._preview_config["controls"].update(self._preview_controls())
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


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _platform_name() -> str | None:
    """ "vc4" (Pi 4 and older) or "pisp" (Pi 5), as picamera2 tells them apart."""
    try:
        from picamera2.platform import Platform, get_platform
    except ImportError:  # picamera2 before 0.3.13 had no platform module (VC4 only)
        return None
    return "vc4" if get_platform() == Platform.VC4 else "pisp"


# -- what must be in place before the camera opens ----------------------------------------------


def missing_features(picamera2_class) -> list[str]:
    """The picamera2 features this backend uses that the installed picamera2 lacks (checked on
    the class, not by version: Debian's package may patch, and versions are not always stated)."""
    missing = []
    if "timeout" not in inspect.signature(picamera2_class.wait).parameters:
        missing.append("Picamera2.wait(job, timeout) (0.3.17)")
    if not hasattr(picamera2_class, "cancel_all_and_flush"):
        missing.append("Picamera2.cancel_all_and_flush (0.3.20)")
    if "delay" not in inspect.signature(picamera2_class.switch_mode_and_capture_request).parameters:
        missing.append("switch_mode_and_capture_request(delay) (0.3.13)")
    return missing


def resolve_tuning_file(name: str) -> str:
    """The tuning file's path: a path as given, a bare name looked up where libcamera keeps them
    for this Pi (as picamera2's load_tuning_file does). Raises CameraUnavailable when there is no
    such readable JSON file."""
    if "/" in name:
        path = Path(name).expanduser()
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CameraUnavailable(f"tuning file {name} cannot be read ({exc})") from None
        return str(path.resolve())
    platform = _platform_name()
    platforms = [platform] if platform else ["pisp", "vc4"]
    directories = [Path(d.format(platform=p)).expanduser() for p in platforms for d in TUNING_DIRS]
    for directory in directories:
        if (directory / name).is_file():
            return str(directory / name)
    raise CameraUnavailable(
        f"tuning file {name} was not found in {', '.join(map(str, directories))}: give a path, or a name from "
        "/usr/share/libcamera/ipa/rpi/vc4/ (Pi 4) or /usr/share/libcamera/ipa/rpi/pisp/ (Pi 5)"
    )


def select_tuning_file(name: str) -> str:
    """Point libcamera at the tuning file (a name or a path; empty: the sensor's default) and
    return its path. libcamera reads LIBCAMERA_RPI_TUNING_FILE once, when its camera manager
    starts: this must run before the first picamera2 call that lists or opens a camera."""
    if not name:
        os.environ.pop(TUNING_ENV, None)
        return ""
    path = resolve_tuning_file(name)
    os.environ[TUNING_ENV] = path
    return path


def read_sensor_dpc() -> bool | None:
    """Whether the IMX477's on-sensor defective pixel correction is on, as the driver will write it
    at the next stream start; None where there is no imx477 driver."""
    try:
        value = SENSOR_DPC_PARAMETER.read_text().strip()
    except OSError:
        return None
    return value not in ("0", "N")


def sensor_dpc_fix(wanted: bool) -> str:
    value = int(wanted)
    return (
        f"echo {value} | sudo tee {SENSOR_DPC_PARAMETER} (now), and options imx477 dpc_enable={value} in "
        "/etc/modprobe.d/wanda-imx477.conf (after a reboot; scripts/setup.sh on the Pi writes it)"
    )


def apply_sensor_dpc(wanted: bool) -> None:
    """Set the driver's parameter where this process may (root); otherwise open() says how."""
    current = read_sensor_dpc()
    if current is None or current == wanted:
        return
    try:
        SENSOR_DPC_PARAMETER.write_text(f"{int(wanted)}\n")
    except OSError:
        return


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


def bayer_order(raw_format: str) -> str | None:
    """The Bayer order of a libcamera raw format ("SBGGR12_CSI2P", "BGGR_PISP_COMP1"), or None."""
    order = raw_format.removeprefix("S")[:4]
    return order if sorted(order) == ["B", "G", "G", "R"] else None


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """The request metadata that JSON can carry (numbers, text, tuples of numbers)."""
    plain: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, bool | int | float | str):
            plain[key] = value
        elif isinstance(value, tuple | list) and all(isinstance(v, int | float) for v in value):
            plain[key] = list(value)
    return plain
