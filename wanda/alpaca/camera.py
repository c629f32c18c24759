"""Alpaca Camera 0: WANDA's camera as ICameraV4, for N.I.N.A., PHD2, Ekos and every Alpaca client.

An exposure goes through the same camera as everything else: it takes the camera from the arbiter
(wanda/arbiter.py) as holder "Alpaca client", so while it runs a capture or a session from the web page
is refused with CAPTURE_BUSY naming it, and while one of those runs StartExposure answers 0x40B
naming that. It is a still like any other (CameraControl.expose: the web page shows it exposing,
its progress events and status are a capture's), taken with raw data: the simulated sky's 16-bit linear
frame, the HQ camera's 12-bit Bayer mosaic. The image is kept in memory for the client to download
(ImageArray, as JSON or ImageBytes); with ``alpaca_save`` a FITS copy goes to ``captures/alpaca/``
too, and a copy that cannot be written never fails the exposure.

Binning (1..4, both axes alike; none on a Bayer sensor, whose binned blocks would mix its colours)
is the mean of the binned pixels, and subframes are cut from the full frame, both here after the
exposure: the sensor always reads the whole field. BayerOffsetX/Y are the full frame's, as ASCOM
has them: a client cutting an odd StartX or StartY takes the pattern's phase from them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from wanda.alpaca.device import AlpacaDevice, constant, fits_time
from wanda.alpaca.images import json_values, pixel_bytes
from wanda.alpaca.protocol import (
    INVALID_OPERATION,
    INVALID_VALUE,
    NOT_IMPLEMENTED,
    VALUE_NOT_SET,
    AlpacaError,
    Parameters,
)
from wanda.arbiter import Lease
from wanda.backends import CameraBackend, StillImage, still_size
from wanda.control import CameraControl
from wanda.errors import ErrorCode, WandaError
from wanda.settings import CameraSettings
from wanda.storage.disk import NumberedFiles

log = logging.getLogger(__name__)

MAX_BIN = 4
READOUT_MODES = ["Full frame"]
# ASCOM's SensorType: 0 monochrome, 2 RGGB (a 2x2 Bayer mosaic; BayerOffsetX/Y say which).
MONOCHROME, RGGB = 0, 2
# Where the red pixel of each 2x2 pattern sits: ASCOM's BayerOffsetX, BayerOffsetY.
BAYER_OFFSETS = {"RGGB": (0, 0), "GRBG": (1, 0), "GBRG": (0, 1), "BGGR": (1, 1)}


class CameraState(IntEnum):
    IDLE = 0
    WAITING = 1
    EXPOSING = 2
    READING = 3
    DOWNLOAD = 4
    ERROR = 5


@dataclass(frozen=True)
class Frame:
    """Which part of the sensor an image covers: binning, and the subframe in binned pixels."""

    binning: int
    start_x: int
    start_y: int
    num_x: int
    num_y: int

    def problem(self, width: int, height: int) -> str | None:
        """Why this frame does not fit a ``width`` x ``height`` sensor, or None."""
        if self.num_x < 1 or self.num_y < 1:
            return f"NumX and NumY must be at least 1 (they are {self.num_x} and {self.num_y})"
        if self.start_x < 0 or self.start_y < 0:
            return f"StartX and StartY must be at least 0 (they are {self.start_x} and {self.start_y})"
        if (self.start_x + self.num_x) * self.binning > width:
            return f"StartX + NumX ({self.start_x} + {self.num_x}) at bin {self.binning} is wider than the sensor's {width} pixels"
        if (self.start_y + self.num_y) * self.binning > height:
            return f"StartY + NumY ({self.start_y} + {self.num_y}) at bin {self.binning} is taller than the sensor's {height} pixels"
        return None


def cut(linear: np.ndarray, frame: Frame) -> np.ndarray:
    """The frame's part of a full sensor image (height, width), binned by the mean (uint16)."""
    b = frame.binning
    part = linear[
        frame.start_y * b : (frame.start_y + frame.num_y) * b, frame.start_x * b : (frame.start_x + frame.num_x) * b
    ]
    if b == 1:
        return np.ascontiguousarray(part, dtype=np.uint16)
    blocks = part.reshape(frame.num_y, b, frame.num_x, b).astype(np.float32)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint16)


@dataclass(frozen=True)
class AlpacaImage:
    """The last exposure, as an Alpaca client downloads it: (NumY, NumX) pixels."""

    pixels: np.ndarray
    _encodings: dict[str, asyncio.Future[bytes]] = field(default_factory=dict, compare=False, repr=False)

    async def encoded(self, kind: str) -> bytes:
        """The pixels as ImageBytes' data (``kind`` "bytes") or ImageArray's JSON ``Value``
        ("json"), encoded once on a thread however often and by however many they are downloaded:
        a client fetching the frame again (or two clients fetching it) costs a send, not another
        encoding of millions of pixels."""
        if kind not in self._encodings:
            encode = pixel_bytes if kind == "bytes" else json_values
            encoding = asyncio.ensure_future(asyncio.to_thread(encode, self.pixels))
            encoding.add_done_callback(lambda done: self._forget_failed(kind, done))
            self._encodings[kind] = encoding
        return await asyncio.shield(self._encodings[kind])  # a download given up leaves it for the next

    def _forget_failed(self, kind: str, encoding: asyncio.Future[bytes]) -> None:
        """A failed encoding is not kept: the next download tries again."""
        if encoding.cancelled() or encoding.exception() is not None:
            self._encodings.pop(kind, None)


class AlpacaCamera(AlpacaDevice):
    device_type = "camera"
    interface_version = 4

    def __init__(self, control: CameraControl, unique_id: str, *, save_to: Path | None = None):
        super().__init__("WANDA camera", f"WANDA's camera: {control.worker.backend.instrument}", unique_id)
        self.control = control
        self.save_to = save_to  # where FITS copies go (captures/alpaca), or None: no copies
        self._files: dict[str, NumberedFiles] = {}
        width, height = self.size
        self.frame = Frame(1, 0, 0, width, height)
        self.gain = self._iso(control.settings.gain)
        self.state = CameraState.IDLE
        self.failure: str | None = None
        self.image: AlpacaImage | None = None
        self.last: tuple[float, float] | None = None  # the last exposure's start and duration
        self._lease: Lease | None = None
        self._task: asyncio.Task | None = None
        self._aborting = False  # AbortExposure was asked for the exposure under way
        self.saving: set[asyncio.Task] = set()
        b = self.backend
        fixed = {
            "canabortexposure": True,
            "canasymmetricbin": False,
            "canfastreadout": False,
            "cangetcoolerpower": False,
            "canpulseguide": False,
            "cansetccdtemperature": False,
            "canstopexposure": False,  # neither sensor can end an exposure early and read it out
            "hasshutter": False,
            "readoutmodes": READOUT_MODES,
        }
        self.gets.update({name: constant(value) for name, value in fixed.items()})
        self.gets.update(
            {
                "bayeroffsetx": lambda p: self._bayer_offsets()[0],
                "bayeroffsety": lambda p: self._bayer_offsets()[1],
                "maxbinx": lambda p: self.max_bin,
                "maxbiny": lambda p: self.max_bin,
                "binx": lambda p: self.frame.binning,
                "biny": lambda p: self.frame.binning,
                "camerastate": lambda p: int(self.state),
                "cameraxsize": lambda p: self.size[0],
                "cameraysize": lambda p: self.size[1],
                "ccdtemperature": lambda p: self._temperature(),
                "exposuremax": lambda p: b.exposure_limits[1],
                "exposuremin": lambda p: b.exposure_limits[0],
                "exposureresolution": lambda p: 1e-6,  # libcamera's ExposureTime is in microseconds
                "gain": lambda p: self.gain,
                "gainmax": lambda p: self._gain_limits()[1],
                "gainmin": lambda p: self._gain_limits()[0],
                "imagearray": lambda p: self._image(),
                "imagearrayvariant": lambda p: self._image(),
                "imageready": lambda p: self.image_ready,
                "lastexposureduration": lambda p: self._last()[1],
                "lastexposurestarttime": lambda p: fits_time(self._last()[0]),
                "maxadu": lambda p: 2**b.raw_bit_depth - 1,
                "numx": lambda p: self.frame.num_x,
                "numy": lambda p: self.frame.num_y,
                "percentcompleted": lambda p: self._percent(),
                "pixelsizex": lambda p: b.pixel_size_um,
                "pixelsizey": lambda p: b.pixel_size_um,
                "readoutmode": lambda p: 0,
                "sensorname": lambda p: b.sensor_name,
                "sensortype": lambda p: MONOCHROME if b.raw_bayer is None else RGGB,
                "startx": lambda p: self.frame.start_x,
                "starty": lambda p: self.frame.start_y,
            }
        )
        self.puts.update(
            {
                "binx": lambda p: self._set_binning(p, "BinX"),
                "biny": lambda p: self._set_binning(p, "BinY"),
                "gain": self._set_gain,
                "numx": lambda p: self._set_frame(num_x=self._at_least("NumX", p, 1)),
                "numy": lambda p: self._set_frame(num_y=self._at_least("NumY", p, 1)),
                "startx": lambda p: self._set_frame(start_x=self._at_least("StartX", p, 0)),
                "starty": lambda p: self._set_frame(start_y=self._at_least("StartY", p, 0)),
                "readoutmode": self._set_readout_mode,
                "startexposure": self._start_exposure,
                "abortexposure": lambda p: self.abort(),
            }
        )
        self.not_implemented |= {
            "cooleron",
            "coolerpower",
            "electronsperadu",
            "fastreadout",
            "fullwellcapacity",
            "gains",
            "heatsinktemperature",
            "ispulseguiding",
            "offset",
            "offsetmax",
            "offsetmin",
            "offsets",
            "pulseguide",
            "setccdtemperature",
            "stopexposure",
            "subexposureduration",
        }

    @property
    def backend(self) -> CameraBackend:
        return self.control.worker.backend

    @property
    def size(self) -> tuple[int, int]:
        """The sensor's pixels as a still has them (the full sensor on a Pi; the simulated sky's frame)."""
        return still_size(self.backend)

    @property
    def max_bin(self) -> int:
        """4, but 1 on a Bayer sensor: a binned mosaic would mix its colours and still claim them."""
        return MAX_BIN if self.backend.raw_bayer is None else 1

    @staticmethod
    def _iso(gain: float) -> int:
        """Alpaca's Gain is WANDA's ISO: 100 x the analogue gain (1..16 on the HQ camera: 100..1600)."""
        return round(gain * 100)

    # -- properties -----------------------------------------------------------------------------

    def operational(self) -> dict[str, Any]:
        values: dict[str, Any] = {"CameraState": int(self.state)}
        if self.backend.sensor_temperature is not None:
            values["CCDTemperature"] = self._temperature()
        values["ImageReady"] = self.image_ready
        if self.state != CameraState.ERROR:
            values["PercentCompleted"] = self._percent()
        return values

    @property
    def image_ready(self) -> bool:
        return self.image is not None and self.state == CameraState.IDLE

    def _bayer_offsets(self) -> tuple[int, int]:
        bayer = self.backend.raw_bayer
        if bayer is None:
            raise AlpacaError(NOT_IMPLEMENTED, "the sensor is monochrome: it has no Bayer offsets")
        return BAYER_OFFSETS[bayer]

    def _temperature(self) -> float:
        temperature = self.backend.sensor_temperature
        if temperature is None:
            raise AlpacaError(
                VALUE_NOT_SET, "the sensor has not reported its temperature yet (it does with its frames)"
            )
        return round(temperature, 2)

    def _last(self) -> tuple[float, float]:
        if self.last is None:
            raise AlpacaError(VALUE_NOT_SET, "no exposure has been taken yet")
        return self.last

    def _percent(self) -> int:
        if self.state == CameraState.EXPOSING:
            exposure = self.control.exposure
            return int(exposure.progress()["progress"]) if exposure is not None else 0
        if self.state == CameraState.ERROR:
            raise AlpacaError(INVALID_OPERATION, f"the last exposure failed: {self.failure}")
        return 100 if self.state == CameraState.READING or self.image is not None else 0

    def _image(self) -> AlpacaImage:
        if self.state == CameraState.ERROR:
            raise AlpacaError(INVALID_OPERATION, f"there is no image: the last exposure failed: {self.failure}")
        if not self.image_ready:
            raise AlpacaError(INVALID_OPERATION, "there is no image: start an exposure and wait for ImageReady")
        assert self.image is not None
        return self.image

    # -- settings -------------------------------------------------------------------------------

    def _set_binning(self, parameters: Parameters, name: str) -> None:
        binning = parameters.integer(name)
        if not 1 <= binning <= self.max_bin:
            raise AlpacaError(INVALID_VALUE, f"{name} must be 1..{self.max_bin}, not {binning}")
        self._set_frame(binning=binning)  # both axes: binning is symmetric

    def _set_gain(self, parameters: Parameters) -> None:
        gain = parameters.integer("Gain")
        low, high = self._gain_limits()
        if not low <= gain <= high:
            raise AlpacaError(INVALID_VALUE, f"Gain must be {low}..{high} (ISO: 100 x the analogue gain), not {gain}")
        self.gain = gain

    def _gain_limits(self) -> tuple[int, int]:
        low, high = self.backend.gain_limits
        return math.ceil(low * 100 - 1e-6), math.floor(high * 100 + 1e-6)

    def _set_readout_mode(self, parameters: Parameters) -> None:
        mode = parameters.integer("ReadoutMode")
        if mode != 0:
            raise AlpacaError(INVALID_VALUE, f"ReadoutMode must be 0 ({READOUT_MODES[0]}), not {mode}")

    @staticmethod
    def _at_least(name: str, parameters: Parameters, low: int) -> int:
        value = parameters.integer(name)
        if value < low:
            raise AlpacaError(INVALID_VALUE, f"{name} must be at least {low}, not {value}")
        return value

    def _set_frame(self, **changes: int) -> None:
        self.frame = dataclasses.replace(self.frame, **changes)

    # -- exposures ------------------------------------------------------------------------------

    def _start_exposure(self, parameters: Parameters) -> None:
        duration = parameters.number("Duration")
        light = parameters.boolean("Light")
        if self._task is not None and not self._task.done():
            raise AlpacaError(INVALID_OPERATION, "an exposure is already under way")
        shortest, longest = self.backend.exposure_limits
        if not 0 <= duration <= longest:
            raise AlpacaError(INVALID_VALUE, f"Duration must be 0..{longest:g} seconds, not {duration:g}")
        problem = self.frame.problem(*self.size)
        if problem is not None:
            raise AlpacaError(INVALID_VALUE, problem)
        # A dark as short as the sensor goes is a bias frame (the simulated sky renders it so).
        frame_type = "light" if light else ("bias" if duration <= shortest else "dark")
        settings = dataclasses.replace(
            self.control.settings,
            exposure_seconds=max(duration, shortest),
            gain=self.gain / 100,
            frame_type=frame_type,
            file_format="fits",  # the linear data: the simulated sky's 16 bits, the Pi's mosaic
            save_raw=False,
            skip_frames=0,
        )
        try:
            lease = self.control.arbiter.acquire("Alpaca client")
        except WandaError as exc:
            raise AlpacaError(INVALID_OPERATION, exc.message) from None
        self.image, self.failure, self._aborting = None, None, False
        self.state = CameraState.EXPOSING
        self._lease = lease
        self._task = asyncio.create_task(self._expose(lease, settings, self.frame), name="alpaca-exposure")
        self._task.add_done_callback(lambda task: self._ended(lease, task))

    async def _expose(self, lease: Lease, settings: CameraSettings, frame: Frame) -> None:
        try:
            with lease:
                still = await self.control.expose(settings, lease)
            if self._aborting:  # aborted as the exposure ended: nothing is kept
                self.state = CameraState.IDLE
                return
            self.state = CameraState.READING
            if still.linear is None:
                raise WandaError(ErrorCode.CAPTURE_FAILED, "the camera gave no linear data")
            pixels = await asyncio.to_thread(cut, still.linear, frame)
            self.image = AlpacaImage(pixels)
            self.last = (still.started, still.exposure_s)
            self.state = CameraState.IDLE
            if self.save_to is not None:
                task = asyncio.create_task(self._save(still, settings), name="alpaca-save")
                self.saving.add(task)
                task.add_done_callback(self.saving.discard)
        except asyncio.CancelledError:  # aborted before or after the camera's part
            self.state = CameraState.IDLE
            raise
        except WandaError as exc:
            if exc.code == ErrorCode.CAPTURE_CANCELLED:
                self.state = CameraState.IDLE
            else:
                self.state, self.failure = CameraState.ERROR, exc.message
        except Exception as exc:
            log.exception("an Alpaca exposure failed")
            self.state, self.failure = CameraState.ERROR, f"{type(exc).__name__} (see the server log)"

    def _ended(self, lease: Lease, task: asyncio.Task) -> None:
        """The camera is given back however the exposure's task ended (a task cancelled before it
        ran never reached its own ``with lease``)."""
        lease.release()
        if task.cancelled():
            self.state = CameraState.IDLE

    async def _save(self, still: StillImage, settings: CameraSettings) -> None:
        """A FITS copy of the exposure; a failure is logged, and the client keeps its image."""
        assert self.save_to is not None
        files = self._files.setdefault(settings.frame_type, NumberedFiles(self.save_to, settings.frame_type))
        try:
            await self.control.save(files, still, settings, {"alpaca": True})
        except Exception as exc:
            log.warning("an Alpaca exposure's copy was not saved in %s: %s", self.save_to, exc)

    async def abort(self) -> None:
        """End the exposure under way, if any; nothing is kept. Harmless when none runs.

        While the camera thread exposes, the exposure is cancelled the way a capture's is (the
        sensor stops at once); before that (waiting for a settings change in flight) and after it
        (the settings being put back, the frame being cut) the task is cancelled, which
        CameraControl withstands (its restore is shielded). An abort as the still comes back is
        caught by ``_aborting``. Either way nothing is kept."""
        task = self._task
        if task is None or task.done():
            return
        self._aborting = True
        exposing = self.control.exposure is not None and self._lease is not None and self._lease.held
        if not (exposing and self.control.cancel()["cancelled"]):
            task.cancel()
        await asyncio.wait({task})

    async def disconnect(self) -> None:
        await self.abort()
        await super().disconnect()

    async def close(self) -> None:
        """Shutdown: the exposure ends, the copies being written are waited for."""
        await self.abort()
        if self.saving:
            await asyncio.wait(set(self.saving))
