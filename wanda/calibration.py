"""Master calibration frames: built from a session of darks, flats or bias frames, kept under
WANDA's data directory, and found again by what they fit.

A master is the per-pixel median (or sigma-clipped mean) of a session's FITS frames, combined in
blocks of rows so that memory stays bounded whatever the frame count (a Pi has 2 GB): each block
of every frame is read through a memory map of its file. Flats are first freed of their bias (a
master bias of their size and gain if there is one, else the black level their header gives) and
their master scaled to a mean of one (a panel's level is steady within a session), so that it
divides a light by the optic's shading alone. One build at a time.

Masters are 32-bit float FITS files (``master_dark_0001.fits``, ...) with an index,
``calibration.json``, written atomically after each change: kind, exposure, gain, temperature,
size, frames, method, and where they came from. ``match`` picks the master for a frame by the same
terms (a dark: size, exposure and gain within 5%, temperature within 5 degrees when both are
known; a flat: size; a bias: size and gain) and says why when none fits.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wanda.errors import ErrorCode, WandaError
from wanda.storage.disk import NumberedFiles, write_atomic
from wanda.storage.fits import fits_bytes, read_fits, read_header
from wanda.timestamps import utc_iso

log = logging.getLogger(__name__)

INDEX = "calibration.json"
KINDS = {"Dark Frame": "dark", "Flat Frame": "flat", "Bias Frame": "bias"}
METHODS = ("median", "sigma_clip")
MATCH_RATIO = 0.05  # exposure and gain within 5%
MATCH_DEGREES = 5.0
BLOCK_BYTES = 64 * 2**20  # the frames' rows combined at a time, all frames together
CLIP_SIGMA = 3.0


@dataclass(frozen=True)
class Master:
    name: str  # its file's name, the key to it
    kind: str  # dark, flat, bias
    exposure_s: float
    gain: float
    temperature: float | None
    width: int
    height: int
    planes: int  # 1 grey, 3 colour
    frames: int
    method: str
    full_scale: int  # of the frames it was built from (65535: 16-bit)
    created: str
    source: str  # the session folder it came from

    def describe(self) -> str:
        temperature = f", {self.temperature:g} °C" if self.temperature is not None else ""
        return f"{self.kind} {self.width}x{self.height} {self.exposure_s:g} s gain {self.gain:g}{temperature}"


class CalibrationLibrary:
    """The masters on disk. Thread-safe: builds run on a thread, the stack reads from its own."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._lock = threading.Lock()
        self._building = threading.Lock()  # one build at a time
        self._cache: dict[str, np.ndarray] = {}

    # -- the index ----------------------------------------------------------------------------

    def masters(self) -> list[Master]:
        with self._lock:
            return self._read_index()

    def _read_index(self) -> list[Master]:
        try:
            entries = json.loads((self.directory / INDEX).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("calibration index unreadable (%s): no masters", exc)
            return []
        try:
            return [Master(**entry) for entry in entries if (self.directory / entry["name"]).exists()]
        except (TypeError, KeyError, AttributeError) as exc:  # edited by hand, or another version's
            log.warning("calibration index not understood (%s): no masters", exc)
            return []

    def _write_index(self, masters: list[Master]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.directory / INDEX, json.dumps([asdict(m) for m in masters], indent=2).encode("utf-8"))

    def delete(self, name: str) -> Master:
        with self._lock:
            masters = self._read_index()
            found = next((m for m in masters if m.name == name), None)
            if found is None:
                raise WandaError(ErrorCode.NOT_FOUND, f"no master named {name!r}")
            self._write_index([m for m in masters if m.name != name])  # the index first: never a
            (self.directory / name).unlink(missing_ok=True)  # listed master without its file
            self._cache.pop(name, None)
            return found

    # -- building ------------------------------------------------------------------------------

    def build(self, folder: Path, method: str = "median", progress: Callable[[int, int], None] | None = None) -> Master:
        """A thread's work: the master of the session in ``folder`` (its FITS frames). WandaError
        when it has none, or frames of different kinds, sizes or settings."""
        if method not in METHODS:
            raise WandaError(ErrorCode.VALIDATION_ERROR, f"method: must be one of {', '.join(METHODS)}")
        if not self._building.acquire(blocking=False):
            raise WandaError(ErrorCode.BUSY, "a master is being built: one at a time")
        try:
            return self._build(folder, method, progress)
        finally:
            self._building.release()

    def _build(self, folder: Path, method: str, progress: Callable[[int, int], None] | None) -> Master:
        frames = sorted(p for p in folder.glob("*.fits") if not p.name.startswith("."))
        if not frames:
            raise WandaError(
                ErrorCode.NOT_FOUND, f"{folder.name} holds no FITS frames (take the session with FITS files)"
            )
        headers = []
        for path in frames:
            try:
                with open(path, "rb") as file:
                    header, offset = read_header(file)
            except ValueError as exc:
                raise WandaError(ErrorCode.VALIDATION_ERROR, f"{path.name}: {exc}") from None
            if not all(isinstance(header.get(card), int) for card in ("NAXIS1", "NAXIS2")):
                raise WandaError(
                    ErrorCode.VALIDATION_ERROR, f"{path.name}: not an image WANDA combines (no NAXIS1/NAXIS2)"
                )
            headers.append((path, header, offset))
        first = headers[0][1]
        kind = KINDS.get(str(first.get("IMAGETYP")))
        if kind is None:
            raise WandaError(
                ErrorCode.VALIDATION_ERROR,
                f"{folder.name} holds {first.get('IMAGETYP')!r}s, not darks, flats or bias frames",
            )
        for path, header, _ in headers:
            for card in ("IMAGETYP", "NAXIS1", "NAXIS2", "NAXIS3", "GAIN"):
                if header.get(card) != first.get(card):
                    raise WandaError(
                        ErrorCode.VALIDATION_ERROR, f"{path.name}: its {card} differs from the first frame's"
                    )
        width, height, planes = int(first["NAXIS1"]), int(first["NAXIS2"]), int(first.get("NAXIS3") or 1)
        exposure = float(np.median([float(h.get("EXPTIME", 0.0)) for _, h, _ in headers]))
        gain = float(first.get("GAIN", 1.0))
        temperatures = [float(t) for _, h, _ in headers if isinstance(t := h.get("CCD-TEMP"), int | float)]
        temperature = round(float(np.median(temperatures)), 2) if temperatures else None
        full_scale = int(first.get("DATAMAX") or 65535)
        bias: np.ndarray | float = 0.0
        if kind == "flat":
            bias = self._flat_bias(width, height, gain, first)
        master = self._combine(headers, (planes, height, width), method, kind, bias, progress)
        if kind == "flat":
            master /= np.float32(np.nanmean(master))  # the optic's shading alone: mean one
        created = utc_iso(time.time())
        cards = [
            ("IMAGETYP", f"Master {kind.capitalize()}", "WANDA master calibration frame"),
            ("EXPTIME", exposure, "seconds"),
            ("GAIN", gain, "analogue gain"),
            ("CCD-TEMP", temperature, "sensor, Celsius (median of the frames)"),
            ("NCOMBINE", len(frames), "frames combined"),
            ("COMBINE", method, ""),
        ]
        data = master[0] if planes == 1 else master
        saved = NumberedFiles(self.directory, f"master_{kind}").save("fits", fits_bytes(data, cards))
        entry = Master(
            name=saved.path.name,
            kind=kind,
            exposure_s=round(exposure, 6),
            gain=gain,
            temperature=temperature,
            width=width,
            height=height,
            planes=planes,
            frames=len(frames),
            method=method,
            full_scale=full_scale,
            created=created,
            source=folder.name,
        )
        with self._lock:
            self._write_index([*self._read_index(), entry])
        return entry

    def _flat_bias(self, width: int, height: int, gain: float, header: dict[str, Any]) -> np.ndarray | float:
        """What to take off each flat before normalising: a master bias of its size and gain, else
        its header's black level (0 without one: the flat then keeps the offset)."""
        found, _ = self.match("bias", width=width, height=height, gain=gain)
        if found is not None:
            return self.load(found)
        level = header.get("BLKLEVEL")
        return float(level) if isinstance(level, int | float) else 0.0

    def _combine(
        self,
        headers: list[tuple[Path, dict[str, Any], int]],
        shape: tuple[int, int, int],
        method: str,
        kind: str,
        bias: np.ndarray | float,
        progress: Callable[[int, int], None] | None,
    ) -> np.ndarray:
        planes, height, width = shape
        count = len(headers)
        rows = max(1, min(height, BLOCK_BYTES // max(1, count * width * planes * 4)))
        maps = [_frame_map(path, header, offset, shape) for path, header, offset in headers]
        master = np.empty(shape, np.float32)
        # A master comes back as load() gives it, (height, width[, planes]): planes first, as here.
        if isinstance(bias, float):
            bias_planes: np.ndarray | float = bias
        else:
            bias_planes = bias.transpose(2, 0, 1) if bias.ndim == 3 else bias[None]
        done = 0
        for start in range(0, height, rows):
            block = slice(start, start + rows)
            values = np.stack([frame(block) for frame in maps])  # (frames, planes, rows, width)
            if kind == "flat":
                values -= bias_planes if isinstance(bias_planes, float) else bias_planes[:, block]
            master[:, block] = _combined(values, method)
            done = min(height, start + rows)
            if progress is not None:
                progress(done, height)
        return master

    # -- using them ---------------------------------------------------------------------------

    def load(self, master: Master) -> np.ndarray:
        """The master's data as float32, (height, width) or (height, width, planes), cached."""
        with self._lock:
            cached = self._cache.get(master.name)
        if cached is not None:
            return cached
        path = self.directory / master.name
        with open(path, "rb") as file:
            _, offset = read_header(file)
        shape = (master.planes, master.height, master.width) if master.planes > 1 else (master.height, master.width)
        data = (
            np.fromfile(path, dtype=">f4", count=int(np.prod(shape)), offset=offset).astype(np.float32).reshape(shape)
        )
        if master.planes > 1:
            data = np.ascontiguousarray(data.transpose(1, 2, 0))
        with self._lock:
            self._cache[master.name] = data
        return data

    def match(
        self,
        kind: str,
        *,
        width: int,
        height: int,
        exposure_s: float | None = None,
        gain: float | None = None,
        temperature: float | None = None,
    ) -> tuple[Master | None, str]:
        """The newest master of ``kind`` that fits, and what was looked for (for the message when
        none does)."""
        wanted = f"{kind} of {width}x{height}"
        if exposure_s is not None and kind == "dark":
            wanted += f" at {exposure_s:g} s"
        if gain is not None and kind in ("dark", "bias"):
            wanted += f", gain {gain:g}"
        if temperature is not None and kind == "dark":
            wanted += f", {temperature:g} °C"

        def fits(m: Master) -> bool:
            if m.kind != kind or (m.width, m.height) != (width, height):
                return False
            if kind in ("dark", "bias") and gain is not None and abs(m.gain / gain - 1) > MATCH_RATIO:
                return False
            if kind == "dark" and exposure_s is not None and abs(m.exposure_s / exposure_s - 1) > MATCH_RATIO:
                return False
            return not (
                kind == "dark"
                and temperature is not None
                and m.temperature is not None
                and abs(m.temperature - temperature) > MATCH_DEGREES
            )

        candidates = [m for m in self.masters() if fits(m)]
        return (candidates[-1] if candidates else None), wanted


def _combined(values: np.ndarray, method: str) -> np.ndarray:
    """The frames' axis (0) combined: the median, or the mean of the values within CLIP_SIGMA
    robust sigmas (from the median absolute deviation) of the median."""
    median = np.median(values, axis=0)
    if method == "median" or values.shape[0] < 3:
        return median
    spread = 1.4826 * np.median(np.abs(values - median), axis=0)
    keep = np.abs(values - median) <= CLIP_SIGMA * np.maximum(spread, 1e-6)
    return (np.where(keep, values, 0).sum(axis=0) / np.maximum(keep.sum(axis=0), 1)).astype(np.float32)


def _frame_map(
    path: Path, header: dict[str, Any], offset: int, shape: tuple[int, int, int]
) -> Callable[[slice], np.ndarray]:
    """A reader of one frame's rows as float32 (planes, rows, width): WANDA's unsigned 16-bit
    frames through a memory map (only the rows asked for are read), others read whole once."""
    planes, height, width = shape
    if header.get("BITPIX") == 16 and header.get("BZERO") == 32768:
        stored = np.memmap(path, dtype=">i2", mode="r", offset=offset, shape=(planes, height, width))

        def rows(block: slice) -> np.ndarray:
            values = stored[:, block].astype(np.float32)
            values += np.float32(32768)
            return values

        return rows
    whole = read_fits(path).data.astype(np.float32).reshape(shape)
    return lambda block: whole[:, block]
