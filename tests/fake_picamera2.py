"""A stand-in for the `picamera2` package, installed in ``sys.modules`` by the tests (no camera is
attached to these machines).

It is faithful to the parts of picamera2's API that WANDA uses and to how they behave:
- an event-loop thread completes frames in real time (a frame lasts its exposure, or the
  minimum frame duration) and runs *jobs*: ``capture_request`` and
  ``switch_mode_and_capture_request`` return a Job with ``wait=False``; ``wait(job, timeout)``
  raises TimeoutError; ``cancel_all_and_flush`` cancels the pending jobs (their result then
  raises CancelledError);
- ``switch_mode_and_capture_request`` stops the camera, configures the still mode, captures one
  request and switches back to the configuration that was current, whose controls are the ones
  it was created with (as in picamera2);
- ``configure`` refuses a started camera; ``set_controls`` refuses a control the camera does not
  advertise; ``camera_controls`` gives (min, max, default) as picamera2 reports them for the IMX477,
  but only once a mode is configured: before the first ``configure`` libcamera reports placeholder
  ranges (ExposureTime 1..66,666 us, FrameDurationLimits 33,333..120,000 us), which its Raspberry Pi
  pipeline replaces with the sensor mode's when it is configured (picamera2's ``camera_controls``
  reads libcamera's ``Camera.controls`` as it stands; issue 14, item 1);
- the sensor as libcamera drives it: with ``AeEnable`` left on the exposure is the algorithm's
  (33 ms), ``FrameDurationLimits`` are clamped to the mode's range and an exposure longer than
  they allow is cut to it, exposure and gain are quantised, and the metadata says what was applied;
- requests must be released; ``save_dng`` needs a raw stream and takes a file name or a BytesIO;
- ``start_encoder`` with ``MJPEGEncoder`` (VC4 only) and ``FileOutput`` writes one JPEG a frame.

Fault injection: ``still_error`` (the still mode fails to start), ``stalled`` (no frame ever
completes: a loose ribbon cable), ``applied_exposure_us`` (the sensor applies another exposure).
"""

from __future__ import annotations

import copy
import enum
import io
import sys
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
AUTO_EXPOSURE_US = 33333
PREVIEW_BLUE = 200  # the fake's preview is blue: B=200 in picamera2's "RGB888" byte order (B, G, R)


def unconfigured_controls() -> dict[str, tuple]:
    """camera_controls before the first configure: libcamera's placeholder ranges."""
    return {**imx477_controls(), "ExposureTime": (1, 66666, 20000), "FrameDurationLimits": (33333, 120000, None)}


def imx477_controls() -> dict[str, tuple]:
    """camera_controls as picamera2 reports them for the HQ camera: (min, max, default)."""
    return {
        "ExposureTime": (114, 694422939, 20000),
        "AnalogueGain": (1.0, 22.2608695, None),
        "FrameDurationLimits": (14267, 694434742, None),
        "AeEnable": (False, True, None),
        "AwbEnable": (False, True, None),
        "ColourGains": (0.0, 32.0, None),
        "NoiseReductionMode": (0, 4, 0),
        "Brightness": (-1.0, 1.0, 0.0),
    }


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
            # An unpacked 12-bit mosaic, handed over as picamera2 does: bytes, two per pixel.
            mosaic = np.full((height, width), 256, np.uint16)
            mosaic[0::2, 0::2] = 1000  # red sites brighter: the RGGB pattern shows
            mosaic[1::2, 1::2] = 3000 + self.metadata["ExposureTime"] // 1000 % 1000  # blue
            return mosaic.view(np.uint8)
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


class Picamera2:
    cameras: list[dict] = [IMX477_INFO]
    tuning_files: dict[str, dict] = {"imx477_scientific.json": {"version": 2.0, "target": "bcm2835", "scientific": True}}
    instances: list[Picamera2] = []

    @staticmethod
    def global_camera_info():
        return [dict(c) for c in Picamera2.cameras]

    @staticmethod
    def load_tuning_file(tuning_file, dir=None):
        if tuning_file not in Picamera2.tuning_files:
            raise RuntimeError("Tuning file not found")
        return copy.deepcopy(Picamera2.tuning_files[tuning_file])

    def __init__(self, camera_num=0, tuning=None):
        if camera_num >= len(Picamera2.cameras):
            raise IndexError("list index out of range")
        self.camera_num = camera_num
        self.tuning = tuning
        self.camera_controls = unconfigured_controls()
        self.camera_properties = {"Model": "imx477", "UnitCellSize": (1550, 1550), "PixelArraySize": SENSOR_SIZE}
        self.sensor_resolution = SENSOR_SIZE
        self.camera_config: dict | None = None
        self.controls: dict = {}
        self.started = False
        self.closed = False
        self.configurations: list[dict] = []  # every configuration applied, in order
        self.control_log: list[tuple[str, dict]] = []  # (use case, controls) as each frame ran
        self.handed_out: list[CompletedRequest] = []
        self.completed_requests: list[CompletedRequest] = []
        self.encoders_started = 0
        self.still_error: Exception | None = None
        self.stalled = False
        self.applied_exposure_us: int | None = None
        self._jobs: list[Job] = []
        self._encoder = None
        self._output = None
        self._due: float | None = None
        self._poke = False
        self._cond = threading.Condition(threading.RLock())
        self._thread = threading.Thread(target=self._loop, name="fake-picamera2", daemon=True)
        self._thread.start()
        Picamera2.instances.append(self)

    # -- configuration ---------------------------------------------------------------------------

    def _configuration(self, use_case, main, lores, raw, buffer_count, controls, default_main):
        for name in controls:
            self._check_control(name)
        return {
            "use_case": use_case,
            "main": {**default_main, **(main or {})},
            "lores": lores,
            "raw": None if raw is None else {"size": self.sensor_resolution, "format": "SRGGB12_CSI2P", **raw},
            "buffer_count": buffer_count,
            "controls": dict(controls),
        }

    def create_preview_configuration(self, main={}, lores=None, raw=None, buffer_count=4, controls={}, **_):  # noqa: B006
        return self._configuration("preview", main, lores, raw, buffer_count, controls, {"size": (640, 480), "format": "XBGR8888"})

    def create_still_configuration(self, main={}, lores=None, raw={}, buffer_count=1, controls={}, **_):  # noqa: B006
        return self._configuration("still", main, lores, raw, buffer_count, controls, {"size": self.sensor_resolution, "format": "BGR888"})

    def configure(self, camera_config):
        with self._cond:
            self.configure_(camera_config)

    def configure_(self, camera_config):
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.camera_config = copy.deepcopy(camera_config)
        self.camera_controls = imx477_controls()  # the mode's ranges replace the placeholders
        self.controls = dict(camera_config["controls"])
        self.configurations.append(self.camera_config)

    def _check_control(self, name):
        if name not in self.camera_controls:
            raise RuntimeError(f"Control {name} is not advertised by libcamera")

    def set_controls(self, controls):
        with self._cond:
            for name in controls:
                self._check_control(name)
            self.controls.update(controls)

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
        self.started = True
        self._due = None
        self._cond.notify_all()

    def stop(self):
        with self._cond:
            self.stop_()

    def stop_(self):
        # libcamera's stop aborts the frame being exposed and returns the queued requests.
        self.started = False
        self._due = None
        for request in self.completed_requests:
            request.release()
        self.completed_requests = []
        self._cond.notify_all()

    def close(self):
        with self._cond:
            self.stop_()
            self.closed = True
            self._cond.notify_all()
        self._thread.join(2)

    def _frame_limits(self) -> tuple[int, int]:
        """FrameDurationLimits as libcamera applies them: clamped to the mode's range."""
        low, high = self.controls.get("FrameDurationLimits", (33333, 33333))
        mode_low, mode_high, _ = self.camera_controls["FrameDurationLimits"]
        return min(max(low, mode_low), mode_high), min(max(high, mode_low), mode_high)

    def _frame_seconds(self) -> float:
        return max(self._applied_exposure_us(), self._frame_limits()[0]) / 1e6

    def _applied_exposure_us(self) -> int:
        if self.controls.get("AeEnable", True):
            return AUTO_EXPOSURE_US  # the algorithm decides, whatever ExposureTime says
        exposure = self.applied_exposure_us or self.controls.get("ExposureTime", 20000)
        if "FrameDurationLimits" in self.controls:
            exposure = min(exposure, self._frame_limits()[1])  # libcamera cuts it
        return max(LINE_US, round(exposure / LINE_US) * LINE_US)

    def _applied_gain(self) -> float:
        code = round(1024 - 1024 / self.controls.get("AnalogueGain", 1.0))  # the IMX477's register
        return 1024 / (1024 - code)

    def _loop(self):
        while True:
            finished_frame = None
            with self._cond:
                if self.closed:
                    return
                if self.started and self._due is None:
                    self._due = time.monotonic() + self._frame_seconds()
                timeout = None if not self.started or self.stalled else max(0.0, self._due - time.monotonic())
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
        metadata = {
            "SensorTimestamp": time.monotonic_ns(),
            "ExposureTime": self._applied_exposure_us(),
            "AnalogueGain": self._applied_gain(),
            "DigitalGain": 1.0,
            "ColourGains": tuple(self.controls.get("ColourGains", (1.9, 1.6))),
            "FrameDuration": int(self._frame_seconds() * 1e6),
            "SensorTemperature": 31.0,
            "Lux": 0.4,
        }
        self.control_log.append((self.camera_config["use_case"], dict(self.controls)))
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
    def encoding(self) -> bool:
        return self._encoder is not None

    def leaked(self) -> list[CompletedRequest]:
        """Requests handed to the application and never released."""
        return [r for r in self.handed_out if not r.released]


class Platform(enum.Enum):
    VC4 = 0
    PISP = 1


PLATFORM = [Platform.PISP]  # which Pi the fake is on (a list so tests can change it in place)


def get_platform():
    return PLATFORM[0]


class MJPEGEncoder:
    def __init__(self, bitrate=None):
        if get_platform() != Platform.VC4:
            raise RuntimeError("Hardware MJPEG not available on this platform")
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


def install(monkeypatch) -> type[Picamera2]:
    """Put the fake in place of picamera2 (and its submodules) for one test; reset its state."""
    package = types.ModuleType("picamera2")
    package.Picamera2 = Picamera2
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
    Picamera2.cameras = [IMX477_INFO]
    Picamera2.instances = []
    PLATFORM[0] = Platform.PISP
    return Picamera2
