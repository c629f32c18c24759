"""A stand-in for the `picamera2` package, installed in ``sys.modules`` by the tests (no camera is
attached to these machines).

It imitates the parts of picamera2 and libcamera that WANDA uses, and behaves as their source says
they do where a mistake of ours would show on a real Pi. Each behaviour names the source it follows:
picamera2 as in raspberrypi/picamera2 (0.3.20 .. 0.3.36), libcamera as in raspberrypi/libcamera
(0.3 .. 0.7, the Raspberry Pi pipeline and IPA), the sensor as in the kernel's imx477 driver.

Jobs and the event loop (picamera2/picamera2.py, picamera2/job.py)
- An event-loop thread completes frames in real time (a frame lasts its exposure, or the minimum
  frame duration) and runs *jobs*: ``capture_request`` and ``switch_mode_and_capture_request``
  return a Job with ``wait=False``; ``wait(job, timeout)`` raises TimeoutError;
  ``cancel_all_and_flush`` cancels the pending jobs (their result then raises CancelledError).
- ``switch_mode_and_capture_request`` stops the camera, configures the still mode, captures one
  request and switches back to the configuration that was current, whose controls are the ones it
  was created with (``switch_mode_`` calls ``configure``, which makes ``self.controls`` from
  ``camera_config['controls']``).
- ``configure`` refuses a started camera; ``set_controls`` refuses a control the camera does not
  advertise (picamera2/controls.py).

Controls travel with requests (picamera2/request.py ``CompletedRequest.release``, ``start_``)
- ``set_controls`` only stores the controls; they are attached to the next request picamera2
  recycles (a completed request released back to the camera) and take effect when that request
  reaches the sensor, behind the requests already queued. ``start`` hands the stored controls to
  libcamera's ``Camera.start`` at once. ``stop`` cancels every queued request, and the controls
  they carry are lost; a request released after a stop is not recycled (``stop_count``).
- A preview configuration queues 4 requests, a still 1 (``buffer_count``); a request the
  application never releases is a buffer the camera no longer has.
- ``configure`` keeps a shallow copy of the configuration (``camera_config.copy()``): its
  ``controls`` dict is the caller's, and a mode switch back starts with what it holds then.
- picamera2 adds ``ExposureTimeMode``/``AnalogueGainMode`` (manual for a non-zero value) to the
  controls of recycled requests from 0.3.26, and to those given at start from 0.3.27 (``PICAMERA2``
  below; CHANGELOG 0.3.27 "failing to set exposure/gain when starting the camera").

The exposure and colour algorithms (libcamera src/ipa/rpi/common/ipa_base.cpp ``applyControls``,
src/ipa/rpi/controller/rpi/agc_channel.cpp, awb.cpp, src/libcamera/camera.cpp)
- A ControlList is a ``std::unordered_map`` in every version: the IPA meets a request's controls in
  no order the caller can choose. The fake takes them in ``CONTROL_ORDER`` (by default the worst
  order for the race below: values, then frame durations, then enables; tests may change it).
- Up to libcamera 0.4 (``LIBCAMERA`` below (0, 5)): ``AeEnable: False`` freezes the exposure and
  gain the AGC last used (``disableAuto``); ``ExposureTime`` fixes the exposure and sets the
  AGC's status to it as limited by the frame durations then in force (``setFixedExposureTime``).
  Met in the order ExposureTime, then AeEnable, a long exposure is frozen at the previous frame's
  length. A fixed ExposureTime and AnalogueGain alone already make the exposure manual (with both
  fixed the AGC only divides up the fixed values). ``AeEnable: True`` returns both to the algorithm.
- From 0.5 the IPA has ``ExposureTimeMode``/``AnalogueGainMode``, handled before the other controls
  of a list, and ignores ``ExposureTime``/``AnalogueGain`` while their mode is auto. The IPA
  itself does not handle ``AeEnable``; ``Camera`` turns it into the two modes for queued requests
  (``queueRequest``/``patchControlList``) from 0.5.0, and for the controls given at start only from
  0.5.2 (0.5.1+rpt20250707).
- Non-zero ``ColourGains`` make AWB manual (``Awb::isAutoEnabled``) and are adopted at once, also
  as the "previous" gains, so ``AwbEnable: False`` met after them freezes the same gains: no race.
- ``FrameDurationLimits`` persist across configurations (``applyFrameDurations`` runs with the
  defaults 1/30 s .. 250 s only on the first start) and are clamped to the sensor mode's range; a
  frame is 22 lines longer than its exposure (cam_helper_imx477.cpp ``frameIntegrationDiff``), so
  the exposure is cut to the longest frame allowed less 22 lines. Exposure is set in whole lines,
  gain in the IMX477's register steps, and the metadata says what was applied.
- ``camera_controls`` (libcamera's ``Camera::controls()``) holds placeholder ranges until the first
  ``configure`` (``ipaControls``: ExposureTime 1..66,666 us, AnalogueGain 1..16; FrameDurationLimits
  33,333..120,000 us), then the configured sensor mode's (``IpaBase::configure`` ``ctrlMap``).

Sensor modes and raw data (picamera2 ``_make_libcamera_config`` / ``score_mode``; libcamera
src/libcamera/pipeline/rpi/pisp/pisp.cpp ``validate``, common/pipeline_base.cpp)
- A preview configuration has a raw stream by default (``raw={}``) the size of the main stream.
  The sensor mode is the one picamera2's ``score_mode`` picks for the raw size, or for the main
  size without a raw stream (the same mode for WANDA's sizes). Each mode has its own exposure and
  frame limits.
- The raw stream's Bayer order follows the sensor's flips: the HQ camera reports a mounting
  rotation of 180 degrees, which the pipeline undoes with both flips, so its RGGB sensor delivers
  BGGR.
- On a Pi 5 (PiSP) the raw stream is always 16 bits a sample: an unpacked 12-bit format
  (``SRGGB12``) comes back as ``SRGGB16``, the sensor's 12-bit values shifted up by 4 (black level
  4096 instead of 256). On a Pi 4 (VC4) ``SRGGB12`` stays 12-bit. ``make_array("raw")`` gives bytes,
  each row padded to the stride. ``SensorBlackLevels`` in the metadata is in 16-bit units on both
  (control_ids_core.yaml).
- The IMX477 driver writes its ``dpc_enable`` module parameter to the sensor at every stream start
  (drivers/media/i2c/imx477.c ``imx477_start_streaming``): with it on, the sensor corrects
  single hot pixels (and faint stars with them). The fake reads ``DPC_PARAMETER`` at start and
  puts one hot pixel in its raw mosaic only when the correction is off.

The tuning file (picamera2 ``Picamera2.__init__``, ``CameraManager``; libcamera
src/libcamera/ipa_proxy.cpp ``ipaConfigurationFile``, pipeline_base.cpp ``loadIPA``)
- ``Picamera2(tuning=...)`` only sets ``LIBCAMERA_RPI_TUNING_FILE`` (a dict goes to a temporary
  file); ``tuning=None`` removes it. libcamera reads the variable once, when its camera manager
  starts and registers the cameras; picamera2 starts that manager on its first use
  (``global_camera_info`` or the first ``Picamera2``) and keeps it until its last camera closes.
  A file the variable names that cannot be read leaves the camera unregistered (no camera listed).
  ``tuning_in_use`` is the file libcamera loaded (None: the sensor's default).

Encoders (picamera2/encoders, picamera2/outputs): ``start_encoder`` with ``MJPEGEncoder`` and
``FileOutput`` writes one JPEG a frame (on a Pi 5 picamera2's MJPEGEncoder is libav's, in software).

Versions: picamera2 ``PICAMERA2`` (0.3.36), libcamera ``LIBCAMERA`` (0.7); ``picamera2_0_3_16()``
lacks what 0.3.17 and 0.3.20 added.

Fault injection: ``still_error`` (the still mode fails to start), ``stalled`` (no frame ever
completes: a loose ribbon cable), ``applied_exposure_us`` (the sensor applies another exposure),
``recycle_during_set_controls`` (picamera2's event loop recycles a request while ``set_controls``
runs, so the controls ride on a request already queued).
"""

from __future__ import annotations

import copy
import enum
import io
import json
import os
import re
import sys
import tempfile
import threading
import time
import types
from concurrent.futures import CancelledError, Future
from pathlib import Path

import numpy as np
from turbojpeg import TurboJPEG

IMX477_INFO = {"Model": "imx477", "Location": 2, "Rotation": 180, "Num": 0, "Id": "/base/soc/i2c0mux/i2c@1/imx477@1a"}
SENSOR_SIZE = (4056, 3040)
LINE_US = 30  # exposure is set in whole sensor lines
AUTO_EXPOSURE_US = 33333  # what the AGC settles on for the fake's scene
AUTO_COLOUR_GAINS = (1.9, 1.6)  # what AWB settles on
DEFAULT_EXPOSURE_US = 20000  # ipa_base.cpp defaultExposureTime
DEFAULT_FRAME_LIMITS_US = (33333, 250_000_000)  # defaultMinFrameDuration, defaultMaxFrameDuration
PREVIEW_BLUE = 200  # the fake's preview is blue: B=200 in picamera2's "RGB888" byte order (B, G, R)
BLACK_LEVEL_16 = 4096  # the IMX477's black level in 16-bit units (imx477.json rpi.black_level)
RAW_RED, RAW_BLUE = 1000, 3000  # 12-bit values of the fake's raw mosaic (blue adds exposure ms % 1000)
HOT_PIXEL = (101, 201)  # (y, x) of the one hot pixel the sensor's DPC would remove
TUNING_ENV = "LIBCAMERA_RPI_TUNING_FILE"

# The IMX477's modes as picamera2's sensor_modes lists them: size, bit depth, fastest frame,
# exposure range (us).
IMX477_MODES = [
    {"size": (1332, 990), "bit_depth": 10, "min_frame_us": 8331, "exposure_us": (31, 667234896)},
    {"size": (2028, 1080), "bit_depth": 12, "min_frame_us": 19988, "exposure_us": (60, 674181621)},
    {"size": (2028, 1520), "bit_depth": 12, "min_frame_us": 24994, "exposure_us": (60, 674181621)},
    {"size": (4056, 3040), "bit_depth": 12, "min_frame_us": 100000, "exposure_us": (114, 694422939)},
]

LIBCAMERA = [(0, 7)]  # the libcamera the fake imitates (a list so tests can change it in place)
PICAMERA2 = [(0, 3, 36)]  # the picamera2 it imitates
SENSOR_BAYER = "RGGB"  # the IMX477's own order...
DELIVERED_BAYER = "BGGR"  # ...and what it delivers flipped both ways for its 180 degree mounting
FRAME_INTEGRATION_DIFF_LINES = 22  # a frame lasts its exposure and this many lines more
RAW_STRIDE_ALIGN = 64  # bytes: raw rows are padded to a multiple of this
DPC_PARAMETER = [Path("/sys/module/imx477/parameters/dpc_enable")]  # tests point it at a file


def enables_last(names: list[str]) -> list[str]:
    """The worst order for the races libcamera's source shows: the values first, the frame
    durations after them, the enables last."""
    first = ("ExposureTime", "AnalogueGain", "ColourGains", "FrameDurationLimits")
    return sorted(names, key=lambda name: (first.index(name) if name in first else len(first), name.endswith("Enable")))


CONTROL_ORDER = [enables_last]  # the order the IPA meets a list's controls in


def has_control_modes() -> bool:
    """libcamera 0.5 and later: ExposureTimeMode and AnalogueGainMode exist."""
    return LIBCAMERA[0] >= (0, 5)


def unconfigured_controls() -> dict[str, tuple]:
    """camera_controls before the first configure: libcamera's placeholder ranges."""
    placeholders = {
        "ExposureTime": (1, 66666, 20000),
        "AnalogueGain": (1.0, 16.0, 1.0),
        "FrameDurationLimits": (33333, 120000, None),
    }
    return {**mode_controls(IMX477_MODES[-1]), **placeholders}


def mode_controls(mode: dict) -> dict[str, tuple]:
    """camera_controls as picamera2 reports them for the HQ camera in a mode: (min, max, default)."""
    low, high = mode["exposure_us"]
    controls = {
        "ExposureTime": (low, high, 20000),
        "AnalogueGain": (1.0, 22.2608695, None),
        "FrameDurationLimits": (mode["min_frame_us"], high + 11820, None),
        "AeEnable": (False, True, None),
        "AwbEnable": (False, True, None),
        "ColourGains": (0.0, 32.0, None),
        "NoiseReductionMode": (0, 4, 0),
        "Brightness": (-1.0, 1.0, 0.0),
    }
    if has_control_modes():
        controls["ExposureTimeMode"] = (0, 1, 0)
        controls["AnalogueGainMode"] = (0, 1, 0)
    return controls


def imx477_controls() -> dict[str, tuple]:
    """camera_controls in the full-sensor mode (where stills are taken)."""
    return mode_controls(IMX477_MODES[-1])


def raw_format(name: str) -> tuple[str, int, str]:
    """Bayer order, bits a sample and packing of a raw format name (picamera2's SensorFormat)."""
    match = re.fullmatch(r"S?([RGB]{4})(\d*)(?:_(.+))?", name)
    bayer, digits, packing = match.group(1), match.group(2), match.group(3) or ""
    return bayer, 16 if packing.startswith("PISP") else int(digits), packing


def score_mode(mode: dict, bit_depth: int, size: tuple[int, int]) -> float:
    """picamera2's copy of libcamera's mode score (lower is better)."""

    def score_format(desired, actual):
        score = desired - actual
        return -score / 4 if score < 0 else score * 2

    score = score_format(size[0], mode["size"][0]) + score_format(size[1], mode["size"][1])
    score += 1500 * score_format(size[0] / size[1], mode["size"][0] / mode["size"][1])
    score += 500 * abs(bit_depth - mode["bit_depth"])
    return score


class Job:
    """picamera2.job.Job: functions run in turn on the camera loop, each returning (done, result)."""

    def __init__(self, functions, signal_function=None):
        self._functions = list(functions)
        self._future: Future = Future()
        self._future.set_running_or_notify_cancel()
        self._signal_function = signal_function
        self._result = None

    def execute(self) -> bool:
        try:
            while self._functions:
                done, result = self._functions[0]()
                if not done:
                    break
                self._functions.pop(0)
            if not self._functions:
                self._result = result
        except Exception as exc:
            self._future.set_exception(exc)
            self._functions = []
        return not self._functions

    def signal(self) -> None:
        if not self._future.done():
            self._future.set_result(self._result)
        if self._signal_function:
            self._signal_function(self)

    def get_result(self, timeout=None):
        return self._future.result(timeout=timeout)

    def cancel(self) -> None:
        self._future.set_exception(CancelledError())


class CompletedRequest:
    def __init__(self, camera: Picamera2, config: dict, metadata: dict):
        self.camera = camera
        self.config = config
        self.metadata = metadata
        self.released = False
        self.stop_count = camera.stop_count
        self.hot_pixel = camera.dpc_at_start is False

    def _stream(self, name):
        stream = self.config.get(name)
        if not stream:
            raise RuntimeError(f"Stream {name!r} is not configured")
        return stream

    def make_array(self, name):
        assert not self.released, "make_array on a released request"
        stream = self._stream(name)
        width, height = stream["size"]
        if name == "raw":
            # An unpacked mosaic, handed over as picamera2 does: bytes, two per pixel. 12-bit
            # values, shifted up to 16 bits where the format says 16 (a Pi 5).
            bayer, depth, packing = raw_format(stream["format"])
            if packing:
                raise NotImplementedError("the fake delivers unpacked raw formats only")
            mosaic = np.full((height, width), BLACK_LEVEL_16 >> 4, np.uint16)
            red, blue = ((0, 0), (1, 1)) if bayer == "RGGB" else ((1, 1), (0, 0))  # RGGB or BGGR
            mosaic[red[0] :: 2, red[1] :: 2] = RAW_RED  # red sites brighter: the pattern shows
            mosaic[blue[0] :: 2, blue[1] :: 2] = RAW_BLUE + self.metadata["ExposureTime"] // 1000 % 1000
            if self.hot_pixel:
                mosaic[HOT_PIXEL] = 4095
            if depth == 16:
                mosaic <<= 4
            stride = -(-width * 2 // RAW_STRIDE_ALIGN) * RAW_STRIDE_ALIGN
            rows = np.full((height, stride), 0xAB, np.uint8)  # the padding holds whatever was there
            rows[:, : width * 2] = mosaic.view(np.uint8)
            return rows
        pixels = np.zeros((height, width, 3), np.uint8)
        pixels[..., 0] = PREVIEW_BLUE
        return pixels

    def get_metadata(self):
        return dict(self.metadata)

    def save_dng(self, file_output, name="raw"):
        assert not self.released, "save_dng on a released request"
        raw = self.make_array(name)
        # A TIFF header (DNG is TIFF) with the frame behind it, enough to be told apart from a JPEG.
        data = b"II*\x00" + b"DNG fake " + repr(self.metadata).encode() + raw[:4, :4].tobytes()
        if isinstance(file_output, io.BytesIO):
            file_output.write(data)
        else:
            Path(file_output).write_bytes(data)

    def release(self):
        assert not self.released, "request released twice"
        self.released = True
        self.camera._recycle(self)


class CameraManager:
    """picamera2's CameraManager around libcamera's: started on first use, gone with the last camera."""

    def __init__(self):
        self.running = False
        self.cameras: dict[int, Picamera2] = {}
        self.tuning_file: str | None = None
        self.tuning: dict | None = None
        self.registered: list[dict] = []

    def start(self) -> None:
        """libcamera's CameraManager::start: each camera's IPA loads its tuning file now."""
        if self.running:
            return
        self.running = True
        self.tuning_file = os.environ.get(TUNING_ENV) or None
        self.tuning = None
        self.registered = [dict(c) for c in Picamera2.cameras]
        if self.tuning_file is not None:
            try:
                self.tuning = json.loads(Path(self.tuning_file).read_text())
            except (OSError, ValueError):
                self.registered = []  # "Failed to load a suitable IPA library": not registered

    def add(self, index: int, camera: Picamera2) -> None:
        self.cameras[index] = camera

    def cleanup(self, index: int) -> None:
        del self.cameras[index]
        if not self.cameras:
            self.running = False


class Picamera2:
    cameras: list[dict] = [IMX477_INFO]
    instances: list[Picamera2] = []
    _cm = CameraManager()

    @staticmethod
    def global_camera_info():
        Picamera2._cm.start()
        return [dict(c) for c in Picamera2._cm.registered]

    @staticmethod
    def load_tuning_file(tuning_file, dir=None):
        raise AssertionError("WANDA resolves tuning files itself (the fake does not search directories)")

    def __init__(self, camera_num=0, tuning=None):
        tuning_file = None
        if tuning is not None:
            if isinstance(tuning, str):
                os.environ[TUNING_ENV] = tuning
            else:
                tuning_file = tempfile.NamedTemporaryFile("w")
                json.dump(tuning, tuning_file)
                tuning_file.flush()
                os.environ[TUNING_ENV] = tuning_file.name
        else:
            os.environ.pop(TUNING_ENV, None)  # picamera2: "Use default tuning"
        try:
            cameras = self.global_camera_info()
            if camera_num >= len(cameras):
                raise IndexError("list index out of range")
        finally:
            if tuning_file is not None:
                tuning_file.close()
        self.camera_num = camera_num
        Picamera2._cm.add(camera_num, self)
        self.tuning_in_use = Picamera2._cm.tuning_file
        self.tuning = Picamera2._cm.tuning
        self.camera_controls = unconfigured_controls()
        self.camera_properties = {"Model": "imx477", "UnitCellSize": (1550, 1550), "PixelArraySize": SENSOR_SIZE}
        self.sensor_resolution = SENSOR_SIZE
        self.sensor_format = "SRGGB12_CSI2P"
        self.camera_config: dict | None = None
        self.controls: dict = {}  # picamera2's pending controls (its Controls object)
        self.applied: dict = {}  # every control the IPA has met, the last value of each
        self.sent: list[dict] = []  # every control list given to configure or set_controls, in order
        self.started = False
        self.closed = False
        self.stop_count = 0
        self.dpc_at_start: bool | None = None
        self.configurations: list[dict] = []  # every configuration applied, in order
        self.control_log: list[tuple[str, dict]] = []  # (use case, controls in force) as each frame ran
        self.handed_out: list[CompletedRequest] = []
        self.completed_requests: list[CompletedRequest] = []
        self.encoders_started = 0
        self.still_error: Exception | None = None
        self.stalled = False
        self.applied_exposure_us: int | None = None
        self.recycle_during_set_controls = False
        # The IPA's state, which outlives configurations (ipa_base.cpp, agc_channel.cpp, awb.cpp).
        self._fixed_exposure_us = 0  # 0: the AGC decides
        self._fixed_gain = 0.0
        self._exposure_us = DEFAULT_EXPOSURE_US  # the AGC's status: what the last frame used
        self._gain = 1.0
        self._manual_gains = (0.0, 0.0)  # AWB is manual when both are non-zero
        self._colour_gains = AUTO_COLOUR_GAINS
        self._frame_limits_us = DEFAULT_FRAME_LIMITS_US
        self._mode = IMX477_MODES[-1]
        self._queue: list[dict] = []  # the controls of each request queued to the camera, in order
        self._jobs: list[Job] = []
        self._encoder = None
        self._output = None
        self._due: float | None = None
        self._frame_controls: dict | None = None
        self._poke = False
        self._cond = threading.Condition(threading.RLock())
        self._thread = threading.Thread(target=self._loop, name="fake-picamera2", daemon=True)
        self._thread.start()
        Picamera2.instances.append(self)

    # -- configuration ---------------------------------------------------------------------------

    def _configuration(self, use_case, main, lores, raw, buffer_count, controls, default_main):
        for name in controls:
            self._check_control(name)
        main = {**default_main, **(main or {})}
        if raw is not None:
            raw = {"size": main["size"], "format": self.sensor_format, **raw}
        return {
            "use_case": use_case,
            "main": main,
            "lores": lores,
            "raw": raw,
            "buffer_count": buffer_count,
            "controls": dict(controls),
        }

    def create_preview_configuration(self, main={}, lores=None, raw={}, buffer_count=4, controls={}, **_):  # noqa: B006
        return self._configuration(
            "preview", main, lores, raw, buffer_count, controls, {"size": (640, 480), "format": "XBGR8888"}
        )

    def create_still_configuration(self, main={}, lores=None, raw={}, buffer_count=1, controls={}, **_):  # noqa: B006
        return self._configuration(
            "still", main, lores, raw, buffer_count, controls, {"size": self.sensor_resolution, "format": "BGR888"}
        )

    def configure(self, camera_config):
        with self._cond:
            self.configure_(camera_config)

    def configure_(self, camera_config):
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(camera_config)  # picamera2's shallow copy: "controls" stays the caller's dict
        raw = config["raw"]
        size, depth = (raw["size"], raw_format(raw["format"])[1]) if raw else (config["main"]["size"], 12)
        self._mode = min(IMX477_MODES, key=lambda mode: score_mode(mode, depth, size))
        if raw:  # what validate() adjusts, written back into the configuration as picamera2 does
            _, depth, packing = raw_format(raw["format"])
            if get_platform() == Platform.PISP and depth != 16:  # the CFE writes 16-bit samples only
                packing, depth = ("PISP_COMP1" if packing == "CSI2P" else ""), 16
            raw["size"] = self._mode["size"]
            raw["format"] = (
                f"{DELIVERED_BAYER}_{packing}"
                if packing.startswith("PISP")
                else (f"S{DELIVERED_BAYER}{depth}" + (f"_{packing}" if packing else ""))
            )
        self.camera_config = config
        self.camera_controls = mode_controls(self._mode)  # the mode's ranges replace the placeholders
        self.controls = dict(config["controls"])
        self.sent.append(dict(config["controls"]))
        self.configurations.append(copy.deepcopy(config))

    def camera_configuration(self):
        """What was configured, as validation left it (picamera2 returns its own dict)."""
        return self.camera_config

    def _check_control(self, name):
        if name not in self.camera_controls:
            raise RuntimeError(f"Control {name} is not advertised by libcamera")

    def set_controls(self, controls):
        with self._cond:
            for name in controls:
                self._check_control(name)
            self.controls.update(controls)
            self.sent.append(dict(controls))
            if self.recycle_during_set_controls and self.started:
                self._queue.append(self._take_controls())

    def _take_controls(self, at_start: bool = False) -> dict:
        """picamera2 attaches its pending controls to the request it queues, and forgets them."""
        controls, self.controls = self.controls, {}
        sets_modes = PICAMERA2[0] >= ((0, 3, 27) if at_start else (0, 3, 26))
        if has_control_modes() and sets_modes:  # request.py release, picamera2.py start_
            if "ExposureTime" in controls:
                controls["ExposureTimeMode"] = 1 if controls["ExposureTime"] else 0
            if "AnalogueGain" in controls:
                controls["AnalogueGainMode"] = 1 if controls["AnalogueGain"] else 0
        return controls

    def _recycle(self, request: CompletedRequest) -> None:
        with self._cond:
            if self.closed or not self.started or request.stop_count != self.stop_count:
                return  # stopped since: the request is not queued again
            self._queue.append(self._take_controls())
            self._cond.notify_all()

    # -- the IPA ----------------------------------------------------------------------------------

    def _apply(self, controls: dict, at_start: bool = False) -> None:
        """A request's controls as the Raspberry Pi IPA applies them (see the module docstring)."""
        controls = dict(controls)
        self.applied.update(controls)
        if has_control_modes():
            patched = not at_start or LIBCAMERA[0] >= (0, 5, 2)
            if "AeEnable" in controls and patched:  # camera.cpp patchControlList
                manual = 0 if controls["AeEnable"] else 1
                controls.setdefault("ExposureTimeMode", manual)
                controls.setdefault("AnalogueGainMode", manual)
            if "ExposureTimeMode" in controls:  # handled first
                self._fixed_exposure_us = self._exposure_us if controls.pop("ExposureTimeMode") else 0
            if "AnalogueGainMode" in controls:
                self._fixed_gain = self._gain if controls.pop("AnalogueGainMode") else 0.0
            controls.pop("AeEnable", None)
        for name in CONTROL_ORDER[0](list(controls)):
            value = controls[name]
            if name == "AeEnable":  # agc_channel.cpp disableAuto / enableAuto
                if value:
                    self._fixed_exposure_us, self._fixed_gain = 0, 0.0
                else:
                    self._fixed_exposure_us, self._fixed_gain = self._exposure_us, self._gain
            elif name == "ExposureTime":
                if has_control_modes() and not self._fixed_exposure_us:
                    continue  # "Ignore manual exposure time when the auto exposure algorithm is running"
                self._fixed_exposure_us = value  # setFixedExposureTime
                self._exposure_us = self._limit_exposure(value)
            elif name == "AnalogueGain":
                if has_control_modes() and not self._fixed_gain:
                    continue
                self._fixed_gain = self._gain = float(value)
            elif name == "FrameDurationLimits":
                self._frame_limits_us = tuple(value)
            elif name == "AwbEnable":
                self._set_awb(value)
            elif name == "ColourGains":
                self._manual_gains = tuple(value)  # Awb::setManualGains: adopted at once, as
                if all(self._manual_gains):  # the previous gains too
                    self._colour_gains = self._manual_gains

    def _set_awb(self, enable: bool) -> None:
        if enable:
            self._manual_gains = (0.0, 0.0)
        else:  # Awb::disableAuto freezes what AWB last used
            self._manual_gains = self._colour_gains

    def _mode_frame_limits(self) -> tuple[int, int]:
        """FrameDurationLimits as applyFrameDurations clamps them to the mode."""
        low, high = self._frame_limits_us
        mode_low, mode_high, _ = self.camera_controls["FrameDurationLimits"]
        low = min(max(low, mode_low), mode_high)
        return low, max(low, min(max(high, mode_low), mode_high))

    def _limit_exposure(self, exposure_us: int) -> int:
        """agc_channel.cpp limitExposureTime: within the mode, and within the longest frame less
        the lines a frame needs beyond its exposure."""
        low, high, _ = self.camera_controls["ExposureTime"]
        longest = self._mode_frame_limits()[1] - FRAME_INTEGRATION_DIFF_LINES * LINE_US
        return min(max(exposure_us, low), high, longest)

    def _start_frame(self) -> None:
        """A queued request reaches the sensor: its controls apply; the AGC decides the exposure."""
        controls = self._queue.pop(0)
        if controls:
            self._apply(controls)
        exposure = self._fixed_exposure_us or AUTO_EXPOSURE_US
        exposure = self.applied_exposure_us or self._limit_exposure(exposure)
        self._exposure_us = max(LINE_US, round(exposure / LINE_US) * LINE_US)
        if self._fixed_gain:
            code = round(1024 - 1024 / self._fixed_gain)  # the IMX477's gain register
            self._gain = 1024 / (1024 - code)
        if all(self._manual_gains):
            self._colour_gains = self._manual_gains
        self._frame_controls = dict(self.applied)
        frame_us = max(self._exposure_us + FRAME_INTEGRATION_DIFF_LINES * LINE_US, self._mode_frame_limits()[0])
        self._due = time.monotonic() + frame_us / 1e6

    # -- running ----------------------------------------------------------------------------------

    def start(self):
        with self._cond:
            self.start_()

    def start_(self):
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.camera_config["use_case"] == "still" and self.still_error is not None:
            error, self.still_error = self.still_error, None
            raise error
        self._apply(self._take_controls(at_start=True), at_start=True)  # Camera::start(controls)
        path = DPC_PARAMETER[0]
        self.dpc_at_start = path.read_text().strip() not in ("0", "N") if path.exists() else True
        self._queue = [{} for _ in range(self.camera_config["buffer_count"])]
        self.started = True
        self._due = None
        self._cond.notify_all()

    def stop(self):
        with self._cond:
            self.stop_()

    def stop_(self):
        # libcamera's stop aborts the frame being exposed and cancels the queued requests (and
        # the controls they carry); picamera2 releases what it holds without recycling it.
        if self.started:
            self.stop_count += 1
        self.started = False
        self._due = None
        self._queue = []
        for request in self.completed_requests:
            request.release()
        self.completed_requests = []
        self._cond.notify_all()

    def close(self):
        with self._cond:
            self.stop_()
            if not self.closed:
                Picamera2._cm.cleanup(self.camera_num)
            self.closed = True
            self._cond.notify_all()
        self._thread.join(2)

    def _loop(self):
        while True:
            finished_frame = None
            with self._cond:
                if self.closed:
                    return
                if self.started and not self.stalled and self._due is None and self._queue:
                    self._start_frame()
                running = self.started and not self.stalled and self._due is not None
                timeout = max(0.0, self._due - time.monotonic()) if running else None
                if not self._poke and timeout != 0.0:
                    self._cond.wait(timeout)
                self._poke = False
                if self.closed:
                    return
                if self.started and not self.stalled and self._due is not None and time.monotonic() >= self._due:
                    finished_frame = self._complete_frame()
                    self._due = None
                finished = self._run_jobs()
            if finished_frame is not None and self._encoder is not None:
                self._encoder.encode(finished_frame, self._output)
            for job in finished:
                job.signal()

    def _complete_frame(self):
        low, _ = self._mode_frame_limits()
        metadata = {
            "SensorTimestamp": time.monotonic_ns(),
            "ExposureTime": self._exposure_us,
            "AnalogueGain": self._gain,
            "DigitalGain": 1.0,
            "ColourGains": tuple(self._colour_gains),
            "FrameDuration": max(self._exposure_us + FRAME_INTEGRATION_DIFF_LINES * LINE_US, low),
            "SensorBlackLevels": (BLACK_LEVEL_16,) * 4,
            "SensorTemperature": 31.0,
            "Lux": 0.4,
        }
        self.control_log.append((self.camera_config["use_case"], self._frame_controls))
        request = CompletedRequest(self, copy.deepcopy(self.camera_config), metadata)
        self.completed_requests.append(request)
        while len(self.completed_requests) > 1:  # picamera2 keeps only the newest
            self.completed_requests.pop(0).release()
        return request

    def _run_jobs(self) -> list[Job]:
        finished = []
        while self._jobs:
            if self._jobs[0].execute():
                finished.append(self._jobs.pop(0))
            else:
                break
        return finished

    # -- jobs -------------------------------------------------------------------------------------

    def dispatch_functions(self, functions, wait, signal_function=None, immediate=False):
        if wait is None:
            wait = signal_function is None
        with self._cond:
            job = Job(functions, signal_function)
            self._jobs.append(job)
            if immediate or self.completed_requests:
                self._poke = True
                self._cond.notify_all()
        if wait is False:
            return job
        return job.get_result(timeout=None if wait is True else wait)

    def wait(self, job, timeout=None):
        return job.get_result(timeout=timeout)

    def cancel_all_and_flush(self):
        with self._cond:
            for job in self._jobs:
                job.cancel()
            self._jobs = []

    def capture_request_(self):
        if not self.completed_requests:
            return (False, None)
        request = self.completed_requests.pop(0)
        self.handed_out.append(request)
        return (True, request)

    def capture_request(self, wait=None, signal_function=None, flush=None):
        return self.dispatch_functions([self.capture_request_], wait, signal_function)

    def switch_mode_(self, camera_config):
        self.stop_()
        self.configure_(camera_config)
        self.start_()
        return (True, self.camera_config)

    def switch_mode_and_capture_request(self, camera_config, wait=None, signal_function=None, delay=0):
        preview_config = self.camera_config
        drops = [delay]

        def drop_frames_():
            while self.completed_requests and drops[0] > 0:
                self.completed_requests.pop(0).release()
                drops[0] -= 1
            return (drops[0] == 0, None)

        def capture_and_switch_back_():
            done, request = self.capture_request_()
            if not done:
                return (False, None)
            self.switch_mode_(preview_config)
            return (True, request)

        functions = [lambda: self.switch_mode_(camera_config), drop_frames_, capture_and_switch_back_]
        return self.dispatch_functions(functions, wait, signal_function, immediate=True)

    # -- encoders ---------------------------------------------------------------------------------

    def start_encoder(self, encoder, output, name="main"):
        with self._cond:
            self._encoder, self._output = encoder, output
            self.encoders_started += 1

    def stop_encoder(self):
        with self._cond:
            self._encoder = self._output = None

    @property
    def exposing_us(self) -> int | None:
        """The exposure of the frame under way (None between frames or when stopped)."""
        with self._cond:
            return self._exposure_us if self.started and self._due is not None else None

    @property
    def encoding(self) -> bool:
        return self._encoder is not None

    def leaked(self) -> list[CompletedRequest]:
        """Requests handed to the application and never released."""
        return [r for r in self.handed_out if not r.released]


def picamera2_0_3_16() -> type[Picamera2]:
    """picamera2 as Bookworm's first images shipped it: ``wait`` without a time-out (0.3.17 added
    it) and no ``cancel_all_and_flush`` (0.3.20)."""
    namespace = {
        k: v for k, v in vars(Picamera2).items() if k not in ("cancel_all_and_flush", "__dict__", "__weakref__")
    }
    namespace["wait"] = lambda self, job: job.get_result()
    return type("Picamera2", (), namespace)


class Platform(enum.Enum):
    VC4 = 0
    PISP = 1


PLATFORM = [Platform.PISP]  # which Pi the fake is on (a list so tests can change it in place)


def get_platform():
    return PLATFORM[0]


class MJPEGEncoder:
    """The VC4's hardware encoder; on a Pi 5 picamera2 gives libav's software one under this name."""

    def __init__(self, bitrate=None):
        self.frames = 0
        self._jpeg = TurboJPEG()

    def encode(self, request, output):
        self.frames += 1
        pixels = np.zeros((*reversed(request.config["main"]["size"]), 3), np.uint8)
        pixels[..., 0] = PREVIEW_BLUE
        from turbojpeg import TJPF_BGR

        output.outputframe(self._jpeg.encode(pixels, pixel_format=TJPF_BGR), True, time.monotonic_ns() // 1000)


class FileOutput:
    def __init__(self, file=None, pts=None, split=None):
        self.fileoutput = file

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        self.fileoutput.write(frame)
        self.fileoutput.flush()


def install(monkeypatch, picamera2_class: type[Picamera2] = Picamera2) -> type[Picamera2]:
    """Put the fake in place of picamera2 (and its submodules) for one test; reset its state."""
    package = types.ModuleType("picamera2")
    package.Picamera2 = picamera2_class
    package.__path__ = []  # a package, so `from picamera2.encoders import ...` works
    encoders = types.ModuleType("picamera2.encoders")
    encoders.MJPEGEncoder = MJPEGEncoder
    outputs = types.ModuleType("picamera2.outputs")
    outputs.FileOutput = FileOutput
    platform = types.ModuleType("picamera2.platform")
    platform.Platform = Platform
    platform.get_platform = get_platform
    for name, module in {
        "picamera2": package,
        "picamera2.encoders": encoders,
        "picamera2.outputs": outputs,
        "picamera2.platform": platform,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delenv(TUNING_ENV, raising=False)  # restored after the test, whatever set it
    Picamera2.cameras = [IMX477_INFO]
    Picamera2.instances = []
    Picamera2._cm = CameraManager()
    PLATFORM[0] = Platform.PISP
    LIBCAMERA[0] = (0, 7)
    CONTROL_ORDER[0] = enables_last
    DPC_PARAMETER[0] = Path("/nonexistent/imx477/parameters/dpc_enable")
    return picamera2_class
