"""A still on disk: the frame in each format asked for (JPEG, FITS), the raw DNG beside it, and
its JSON sidecar, with what the sensor applied and what WANDA knows about the data. Pure: the
storage thread encodes with it and writes the result with NumberedFiles."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from wanda import __version__
from wanda.backends import CameraUnavailable, StillImage
from wanda.jpeg import JpegEncoder
from wanda.storage.disk import Blob
from wanda.storage.fits import fits_bytes
from wanda.timestamps import utc_iso

IMAGE_TYPES = {"light": "Light Frame", "dark": "Dark Frame", "flat": "Flat Frame", "bias": "Bias Frame"}


class StillSettings(Protocol):
    """The settings a still was taken with, as its files record them (CameraSettings has them)."""

    @property
    def frame_type(self) -> str: ...
    @property
    def file_format(self) -> str: ...
    @property
    def exposure_seconds(self) -> float: ...
    @property
    def gain(self) -> float: ...
    @property
    def save_raw(self) -> bool: ...


@dataclass(frozen=True)
class CameraDescription:
    """What the files say about the camera that took the still."""

    backend: str
    instrument: str  # FITS INSTRUME
    pixel_size_um: float


@dataclass(frozen=True)
class EncodedStill:
    extension: str  # of the file that names the frame: the first format asked for
    data: Blob
    companions: dict[str, Blob]  # extension -> bytes: the other formats, the DNG
    sidecar: dict[str, Any]

    @property
    def size(self) -> int:
        return len(self.data) + sum(len(b) for b in self.companions.values())


def encode_still(
    image: StillImage,
    settings: StillSettings,
    camera: CameraDescription,
    observatory: dict[str, str],
    extra: dict[str, Any],
    encoder: JpegEncoder,
) -> EncodedStill:
    encoded: dict[str, Blob] = {}
    if "jpeg" in settings.file_format:
        encoded["jpg"] = encoder.encode(image.pixels, image.pixel_format)
    if "fits" in settings.file_format:
        if image.linear is None:
            raise CameraUnavailable("this camera gave no linear data to write as FITS")
        encoded["fits"] = fits_bytes(image.linear, fits_cards(image, settings, camera, observatory, extra))
    if image.raw_dng is not None:
        encoded["dng"] = image.raw_dng
    extension, data = next(iter(encoded.items()))
    height, width = image.pixels.shape[:2]
    sidecar = {
        "software": f"WANDA {__version__}",
        "backend": camera.backend,
        "date_obs": utc_iso(image.started),
        "exposure_seconds": image.exposure_s,
        "gain": image.gain,
        "iso": round(image.gain * 100, 6),
        "requested": {"exposure_seconds": settings.exposure_seconds, "gain": settings.gain},
        "frame_type": settings.frame_type,
        "width": width,
        "height": height,
        "file_format": settings.file_format,
        "raw": "dng"
        if image.raw_dng is not None
        else ("not available from this camera" if settings.save_raw else None),
        "saved": utc_iso(time.time()),
        "camera": image.metadata,
        **sensor_record(image),
        **{key: value for key, value in extra.items() if key != "solution"},
    }
    solution = extra.get("solution")
    if solution:  # the FITS has the cards; the sidecar the solution in words
        sidecar["solution"] = {key: value for key, value in solution.items() if key != "fits_cards"}
    return EncodedStill(extension, data, dict(list(encoded.items())[1:]), sidecar)


def fits_cards(
    image: StillImage,
    settings: StillSettings,
    camera: CameraDescription,
    observatory: dict[str, str],
    extra: dict[str, Any],
) -> list:
    temperature = image.metadata.get("SensorTemperature")
    return [
        ("DATE-OBS", utc_iso(image.started).rstrip("Z"), "UTC, start of the exposure"),
        ("EXPTIME", float(image.exposure_s), "seconds, as the sensor applied it"),
        ("GAIN", float(image.gain), "analogue gain"),
        ("ISOSPEED", round(image.gain * 100, 3), "gain x 100, as WANDA names it"),
        ("IMAGETYP", IMAGE_TYPES[settings.frame_type], "frame type"),
        ("INSTRUME", camera.instrument, "camera"),
        ("TELESCOP", observatory.get("telescope") or None, ""),
        ("OBSERVER", observatory.get("observer") or None, ""),
        ("OBJECT", extra.get("object") or observatory.get("object") or None, ""),
        ("XPIXSZ", float(camera.pixel_size_um), "pixel width, microns"),
        ("YPIXSZ", float(camera.pixel_size_um), "pixel height, microns"),
        ("CCD-TEMP", float(temperature) if isinstance(temperature, int | float) else None, "sensor, Celsius"),
        ("BAYERPAT", image.bayer, "raw Bayer mosaic, top-left first"),
        ("XBAYROFF", 0 if image.bayer else None, ""),
        ("YBAYROFF", 0 if image.bayer else None, ""),
        ("BITDEPTH", image.bit_depth, "bits per sample from the sensor"),
        ("DATAMAX", 2**image.bit_depth - 1 if image.bit_depth else None, "largest valid value"),
        ("BLKLEVEL", image.black_level, "sensor black level, data units"),
        ("SENSDPC", _on_off(image.sensor_dpc), "on-sensor defective pixel correction"),
        ("SWCREATE", f"WANDA {__version__}", "software"),
        *_solution_cards(extra.get("solution")),
    ]


def _solution_cards(solution: dict[str, Any] | None) -> list[tuple[str, Any, str]]:
    """Where the frame points, as stacking and astrometry software read it: the WCS, and the
    centre as RA/DEC (degrees) and OBJCTRA/OBJCTDEC (sexagesimal, as N.I.N.A. and SGP write them)."""
    if not solution:
        return []
    ra, dec = solution["ra"], solution["dec"]
    return [
        *[tuple(card) for card in solution["fits_cards"]],
        ("RA", float(ra), "centre, degrees, J2000 (plate solution)"),
        ("DEC", float(dec), "centre, degrees, J2000"),
        ("OBJCTRA", _sexagesimal(ra / 15, signed=False), "centre, hours"),
        ("OBJCTDEC", _sexagesimal(dec, signed=True), "centre, degrees"),
    ]


def _sexagesimal(value: float, *, signed: bool) -> str:
    """ "05 35 17.30" (hours) or "-05 23 28.0" (degrees)."""
    sign = "-" if value < 0 else "+"
    total = round(abs(value) * 3600, 2 if not signed else 1)
    whole, seconds = divmod(total, 60)
    first, minutes = divmod(int(whole), 60)
    text = f"{first:02d} {minutes:02d} {seconds:0{5 if not signed else 4}.{2 if not signed else 1}f}"
    return f"{sign}{text}" if signed else text


def _on_off(flag: bool | None) -> str | None:
    return None if flag is None else ("on" if flag else "off")


def sensor_record(image: StillImage) -> dict[str, Any]:
    """What the sidecar says about the sensor's data, where the backend knows it."""
    sensor = {
        "bit_depth": image.bit_depth,
        "black_level": image.black_level,
        "defective_pixel_correction": _on_off(image.sensor_dpc),
    }
    sensor = {key: value for key, value in sensor.items() if value is not None}
    return {"sensor": sensor} if sensor else {}
