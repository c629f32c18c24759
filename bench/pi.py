"""First run on a real Raspberry Pi (4 or 5) with the HQ camera: what WANDA and the camera do.

Run it against your running `wanda` server (on the Pi itself or from a laptop on the same network)
and paste everything it prints to us in one go; it takes about five minutes with the default
exposures (0.5 s, 30 s and 200 s, one after the other). Put the lens cap on first: the black-level
check reads the darkest pixels of the shortest exposure.

    .venv/bin/python bench/pi.py --url http://raspberrypi.local:5000 --password 'your password'
    WANDA_PASSWORD='your password' .venv/bin/python bench/pi.py --url http://raspberrypi.local:5000
    .venv/bin/python bench/pi.py                       # on the Pi itself, no password set

    .venv/bin/python bench/pi.py --exposures 0.5,30,200 --cancel-after 5 --iso 800   # the defaults

It talks to the server over HTTP only and prints one line per finding: PASS, FAIL, INFO or N/A.

1. Server and camera (/api/health): backend, model, picamera2 version, platform (Pi 4 VC4 or
   Pi 5 PiSP), tuning file, sensor DPC, preview encoder, exposure limits; checks that the longest
   exposure limit covers the longest exposure asked (0.0667 s is libcamera's placeholder).
2. Stills: for each of --exposures, a `jpeg+fits` capture at --iso: requested vs applied exposure
   (the JSON sidecar) within 2 % or 100 us, the sensor's ExposureTime, FrameDuration,
   AnalogueGain, SensorTemperature; the FITS file's BITDEPTH, BLKLEVEL, DATAMAX, SENSDPC,
   BAYERPAT and data min / median / max; data max <= DATAMAX; for the shortest exposure the 1st
   percentile of the data within +-64 of BLKLEVEL (a Pi 5 whose data were not scaled back from
   16 bits shows about 4096 instead of 256).
3. Cancel: a capture of the longest exposure cancelled after --cancel-after seconds: the capture
   request must answer 409 CAPTURE_CANCELLED, and a fresh preview frame reach a viewer of /stream
   (after the preview exposure is set back short), both within 10 s of the cancel; no file written.
4. Preview encoder: /state read twice 3 s apart while this script watches /stream: frames per
   second, frames_encoded, encodes (WANDA's own JPEG encodes: 0 with the Pi 4's hardware encoder).
5. A summary line; the exit code is 1 if anything failed, 2 if the server could not be talked to
   (not running, wrong password).

The camera settings it changes (exposure, iso, file_format) are read first and restored at the end,
also after Ctrl-C. The stills it takes stay in the capture directory (their names are printed).
Against the simulated sky (`wanda --camera sim`) the Pi-only items say "not reported (simulated
sky)" and are not failures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
import numpy as np

DEFAULT_URL = "http://127.0.0.1:5000"
API_TIMEOUT_S = 30.0  # any plain API call
CAPTURE_MARGIN_S = 120.0  # a still's request may take its exposure plus this (mode switch, saving)
DOWNLOAD_TIMEOUT_S = 600.0  # a full-size FITS (25 MB) over slow Wi-Fi
CANCEL_WITHIN_S = 10.0  # the capture must answer, and the preview come back, within this
START_WITHIN_S = 30.0  # the capture must show in /state's `exposing` within this
PREVIEW_SECONDS = 3.0  # between the two /state reads of the preview check
PREVIEW_FRAME_WAIT_S = 15.0  # the first frame of the preview check must come within this
LONG_PREVIEW_S = 1.0  # a preview exposure above this is shortened for the preview checks
SHORT_PREVIEW_S = 0.1
PLACEHOLDER_LIMIT_S = (0.06, 0.07)  # libcamera's ExposureTime maximum before a mode is configured
BLACK_TOLERANCE = 64  # data units
SIM = "not reported (simulated sky)"
PLATFORMS = {"pisp": "Pi 5 (PiSP)", "vc4": "Pi 4 (VC4)"}


class ServerProblem(Exception):
    """The server cannot be talked to (down, wrong password, not WANDA): one line, exit 2."""


class ApiFailure(Exception):
    """A request got an error answer; the check it belongs to fails."""

    def __init__(self, method: str, path: str, status: int, envelope: dict):
        self.status = status
        self.code = envelope.get("code") or "?"
        self.error = envelope.get("error") or envelope.get("message") or ""
        super().__init__(f"{method} {path}: HTTP {status} {self.code}: {self.error}")


# -- output --------------------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.passed = self.failed = self.not_applicable = 0

    def line(self, kind: str, text: str) -> None:
        print(f"{kind:<6}{text}", flush=True)

    def info(self, text: str) -> None:
        self.line("INFO", text)

    def check(self, passed: bool, text: str) -> None:
        if passed:
            self.passed += 1
        else:
            self.failed += 1
        self.line("PASS" if passed else "FAIL", text)

    def fail(self, text: str) -> None:
        self.check(False, text)

    def na(self, text: str) -> None:
        self.not_applicable += 1
        self.line("N/A", text)

    def summary(self) -> int:
        print(f"summary: {self.passed} passed, {self.failed} failed, {self.not_applicable} not applicable", flush=True)
        return 1 if self.failed else 0


def fmt(value, digits: int = 6) -> str:
    """A number as short as it can be: 0.5, 30, 0.50001."""
    if value is None:
        return "?"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}g}"


# -- HTTP ----------------------------------------------------------------------------------------


class Client:
    """WANDA's REST API over one aiohttp session, with the password as a Bearer token."""

    def __init__(self, base: str, password: str):
        self.base = base
        self.password = password
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        headers = {"Authorization": f"Bearer {self.password}"} if self.password else {}
        self.session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_S))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    def _problem(self, method: str, path: str, exc: BaseException, timeout: float) -> ServerProblem:
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc.os_error or exc)
            return ServerProblem(f"cannot reach WANDA at {self.base}: {reason} (is `wanda` running there? see --url)")
        if isinstance(exc, TimeoutError):
            return ServerProblem(f"no answer from WANDA at {self.base} within {fmt(timeout)} s ({method} {path})")
        return ServerProblem(f"talking to WANDA at {self.base} failed ({method} {path}): {exc!r}")

    def _refused(self, status: int, headers) -> ServerProblem | None:
        if status == 401:
            if self.password:
                return ServerProblem(
                    f"WANDA at {self.base} refused the password (401 UNAUTHORIZED): check --password or WANDA_PASSWORD"
                )
            return ServerProblem(
                f"WANDA at {self.base} wants a password (401 UNAUTHORIZED): pass --password or set WANDA_PASSWORD"
            )
        if status == 429:
            wait = headers.get("Retry-After", "?")
            return ServerProblem(
                f"WANDA at {self.base}: too many wrong passwords from this address (429): wait {wait} s, then check the password"
            )
        return None

    async def call(
        self, method: str, path: str, body: dict | None = None, timeout: float = API_TIMEOUT_S
    ) -> tuple[int, dict]:
        """(HTTP status, envelope) of one JSON request; ServerProblem when the server cannot be talked to."""
        try:
            async with self.session.request(
                method, self.base + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._problem(method, path, exc, timeout) from None
        refused = self._refused(status, headers)
        if refused:
            raise refused
        try:
            envelope = json.loads(raw)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "success" not in envelope:
            raise ServerProblem(
                f"{method} {self.base}{path} answered HTTP {status} without WANDA's JSON envelope: is this a WANDA server?"
            )
        return status, envelope

    async def data(self, method: str, path: str, body: dict | None = None, timeout: float = API_TIMEOUT_S) -> dict:
        """The `data` of a request that must succeed; ApiFailure otherwise."""
        status, envelope = await self.call(method, path, body, timeout)
        if not envelope.get("success"):
            raise ApiFailure(method, path, status, envelope)
        return envelope.get("data") or {}

    async def download(self, path: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
        try:
            async with self.session.get(
                self.base + path, timeout=aiohttp.ClientTimeout(total=timeout, sock_read=60)
            ) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._problem("GET", path, exc, timeout) from None
        refused = self._refused(status, headers)
        if refused:
            raise refused
        if status != 200:
            try:
                envelope = json.loads(raw)
            except ValueError:
                envelope = {"error": raw[:200].decode(errors="replace")}
            raise ApiFailure("GET", path, status, envelope if isinstance(envelope, dict) else {})
        return raw


class StreamViewer:
    """A viewer of /stream that records (seq, arrival on the monotonic clock) of every part."""

    def __init__(self, client: Client):
        self.client = client
        self.parts: list[tuple[int, float]] = []
        self.error: str | None = None
        self.arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._response: aiohttp.ClientResponse | None = None

    async def open(self) -> None:
        """Connect and get the response headers (bounded); then read parts in the background."""
        try:
            self._response = await asyncio.wait_for(
                self.client.session.get(
                    self.client.base + "/stream", timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
                ),
                API_TIMEOUT_S,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.client._problem("GET", "/stream", exc, API_TIMEOUT_S) from None
        refused = self.client._refused(self._response.status, self._response.headers)
        if refused:
            self._response.release()
            raise refused
        if self._response.status != 200:
            self.error = f"/stream answered HTTP {self._response.status}"
            self._response.release()
            return
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        content = self._response.content
        try:
            while True:
                line = await content.readline()
                if not line:
                    raise EOFError("the stream ended")
                if line.strip() != b"--frame":
                    continue
                headers = {}
                while True:
                    line = (await content.readline()).strip()
                    if not line:
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    headers[name.strip().lower()] = value.strip()
                await content.readexactly(int(headers.get("content-length", "0")))
                self.parts.append((int(headers.get("x-sequence", "0")), time.monotonic()))
                self.arrived.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = f"reading /stream: {exc!r}"
            self.arrived.set()

    async def wait_for(self, predicate, timeout: float) -> tuple[int, float] | None:
        """The first part that satisfies ``predicate(seq, arrival)``, waiting at most ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for part in self.parts[seen:]:
                if predicate(*part):
                    return part
            seen = len(self.parts)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.error or self._task is None:
                return None
            self.arrived.clear()
            if len(self.parts) > seen:
                continue
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                return None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._response is not None:
            self._response.close()


# -- FITS ----------------------------------------------------------------------------------------

FITS_BLOCK = 2880
FITS_CARD = 80


def _card_value(text: str):
    """The value of a card's value field (columns 11-80): string, logical, int or float."""
    text = text.strip()
    if text.startswith("'"):
        value, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    value.append("'")
                    i += 2
                    continue
                break
            value.append(text[i])
            i += 1
        return "".join(value).rstrip()
    token = text.split("/", 1)[0].strip()
    if token in ("T", "F"):
        return token == "T"
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token.replace("D", "E"))
    except ValueError:
        return token or None


def read_fits_minimal(raw: bytes) -> tuple[dict, np.ndarray]:
    """Header and data of a primary HDU of BITPIX 16 (with BZERO 32768: unsigned), as WANDA
    writes it: 2880-byte blocks of 80-character cards up to END, then big-endian 16-bit data."""
    header: dict = {}
    offset = 0
    while True:
        block = raw[offset : offset + FITS_BLOCK]
        if len(block) < FITS_BLOCK:
            raise ValueError("the FITS header has no END card")
        offset += FITS_BLOCK
        ended = False
        for i in range(0, FITS_BLOCK, FITS_CARD):
            card = block[i : i + FITS_CARD].decode("ascii", "replace")
            keyword = card[:8].strip()
            if keyword == "END":
                ended = True
                break
            if card[8:10] == "= ":
                header[keyword] = _card_value(card[10:])
        if ended:
            break
    if header.get("BITPIX") != 16:
        raise ValueError(f"BITPIX is {header.get('BITPIX')}, this reader takes 16 only")
    axes = [int(header[f"NAXIS{n}"]) for n in range(1, int(header.get("NAXIS", 0)) + 1)]
    count = math.prod(axes) if axes else 0
    stored = np.frombuffer(raw, dtype=">i2", count=count, offset=offset)
    if header.get("BZERO") == 32768 and header.get("BSCALE", 1) == 1:
        # Unsigned 16-bit: adding 32768 flips the top bit (no float copy of a 25 MB frame).
        data = np.bitwise_xor(stored.astype(np.int16).view(np.uint16), np.uint16(0x8000))
    else:
        data = stored.astype(np.float64) * float(header.get("BSCALE", 1)) + float(header.get("BZERO", 0))
    return header, data.reshape(axes[::-1])


def read_fits(raw: bytes) -> tuple[dict, np.ndarray, str]:
    """(header as a dict, data, which reader): astropy when it is installed, else our own."""
    try:
        from astropy.io import fits
    except ImportError:
        header, data = read_fits_minimal(raw)
        return header, data, "built-in reader"
    with fits.open(io.BytesIO(raw), memmap=False) as hdus:
        primary = hdus[0]
        header = {key: primary.header[key] for key in primary.header if key}
        data = np.array(primary.data)
    return header, data, "astropy"


# -- the checks ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, client: Client, report: Report):
        self.args = args
        self.client = client
        self.report = report
        self.exposures: list[float] = args.exposures
        self.health: dict = {}
        self.camera: dict = {}  # health's camera object
        self.sim = False
        self.original: dict | None = None
        self.capture_in_flight = False
        self.changed = False  # whether the settings need restoring

    # 1 -------------------------------------------------------------------------------------------

    async def server_and_camera(self) -> None:
        r = self.report
        self.health = await self.client.data("GET", "/api/health")
        self.camera = self.health.get("camera") or {}
        backend = self.camera.get("backend")
        self.sim = backend == "sim"
        try:
            from astropy import __version__ as astropy_version

            reader = f"astropy {astropy_version}"
        except ImportError:
            reader = "built-in FITS reader"
        r.info(
            f"bench/pi.py at {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC against {self.client.base}; "
            f"client Python {platform.python_version()}, aiohttp {aiohttp.__version__}, {reader}"
        )
        r.info(
            f"server: WANDA {self.health.get('version', '?')}, status {self.health.get('status', '?')}, "
            f"up {fmt(self.health.get('uptime_s'))} s, viewers {self.health.get('viewers', '?')}"
        )
        r.info(f"camera: backend {backend}, alive {self.camera.get('alive')}")
        if self.camera.get("alive") is False:
            r.fail("camera: the camera thread is not running (health status degraded): see the server log")
        missing = "not reported by this server (a WANDA before the Pi checks?)"
        absent = SIM if self.sim else missing

        def detail(label: str, key: str, show) -> None:
            if key in self.camera:
                r.info(f"{label}: {show(self.camera[key])}")
            else:
                r.info(f"{label}: {absent}")

        detail("model", "model", lambda v: v or "unknown")
        detail("picamera2", "picamera2", lambda v: v or "version unknown")
        detail(
            "platform",
            "platform",
            lambda v: PLATFORMS.get(v, f"{v} (unknown)") if v else "unknown (picamera2 before 0.3.13: a Pi 4 or older)",
        )
        detail("tuning file", "tuning_file", lambda v: v or "the sensor's default")
        detail("sensor DPC", "sensor_dpc", lambda v: v or "unknown (not readable)")
        detail("preview encoder", "preview_encoder", str)

        limits = self.camera.get("exposure_limits_s")
        source = "health"
        if not limits:
            limits = ((self.original or {}).get("limits") or {}).get("exposure_seconds")
            source = "camera status"
        if not limits or len(limits) != 2:
            r.fail("exposure limits: not reported by /api/health nor /api/camera/status")
            return
        low, high = float(limits[0]), float(limits[1])
        longest, shortest = max(self.exposures), min(self.exposures)
        span = f"exposure limits {fmt(low)}..{fmt(high)} s ({source})"
        if PLACEHOLDER_LIMIT_S[0] <= high <= PLACEHOLDER_LIMIT_S[1]:
            r.fail(
                f"{span}: {fmt(high, 3)} s is libcamera's placeholder before a sensor mode is configured, "
                "not the sensor's limit (the bug fixed in WANDA): update WANDA"
            )
        elif high >= longest and low <= shortest:
            r.check(True, f"{span} cover the exposures asked ({fmt(shortest)}..{fmt(longest)} s)")
        else:
            r.fail(f"{span} do not cover the exposures asked ({fmt(shortest)}..{fmt(longest)} s)")

    async def read_settings(self) -> None:
        """The settings this script changes, to restore them at the end."""
        _, envelope = await self.client.call("GET", "/api/camera/settings")
        if not envelope.get("success") or "exposure_seconds" not in (envelope.get("data") or {}):
            # WANDA answers settings on POST only (405 to a GET): the status carries the same.
            envelope = {"data": await self.client.data("GET", "/api/camera/status")}
        self.original = envelope["data"]

    async def no_session_running(self) -> bool:
        try:
            session = await self.client.data("GET", "/api/session/status")
        except ApiFailure:
            return True
        if session.get("active") or session.get("running"):
            self.report.fail(
                f"a session ({session.get('name')!r}) is running and holds the camera: stop it (or let it end) and run this again"
            )
            return False
        return True

    # 2 -------------------------------------------------------------------------------------------

    async def set(self, **settings) -> dict:
        self.changed = True
        return await self.client.data("POST", "/api/camera/settings", settings)

    async def stills(self) -> None:
        shortest = min(self.exposures)
        for exposure in self.exposures:
            await self.still(exposure, is_shortest=exposure == shortest)

    async def still(self, exposure: float, is_shortest: bool) -> None:
        r = self.report
        name = f"still {fmt(exposure)} s"
        try:
            await self.set(exposure_seconds=exposure, iso=self.args.iso, file_format="jpeg+fits")
        except ApiFailure as exc:
            r.fail(f"{name}: the settings were refused: {exc}")
            return
        started = time.monotonic()
        self.capture_in_flight = True  # until it answers: an interruption cancels it (restore)
        status, envelope = await self.client.call(
            "POST", "/api/camera/capture", {}, timeout=exposure + CAPTURE_MARGIN_S
        )
        self.capture_in_flight = False
        took = time.monotonic() - started
        if not envelope.get("success"):
            r.fail(
                f"{name}: the capture failed after {took:.1f} s: {ApiFailure('POST', '/api/camera/capture', status, envelope)}"
            )
            return
        data = envelope.get("data") or {}
        files = data.get("files") or [data.get("file")]
        folder = data.get("url", "/api/captures/").rsplit("/", 1)[0]
        r.info(f"{name}: saved {', '.join(f for f in files if f)} in {took:.1f} s (sidecar {data.get('sidecar')})")

        # The sidecar: requested vs applied, the sensor's metadata.
        sidecar: dict = {}
        if not data.get("sidecar"):
            r.fail(f"{name}: the capture answer names no sidecar")
        else:
            try:
                sidecar = json.loads(await self.client.download(f"{folder}/{quote(data['sidecar'])}"))
            except (ApiFailure, ValueError) as exc:
                r.fail(f"{name}: the sidecar could not be read: {exc}")
        if sidecar:
            applied = sidecar.get("exposure_seconds")
            requested = (sidecar.get("requested") or {}).get("exposure_seconds")
            camera = sidecar.get("camera") or {}
            figures = self.sensor_figures(camera)
            note = (
                ""
                if requested is None or abs(requested - exposure) <= 1e-6 * exposure
                else f", WANDA requested {fmt(requested)} s"
            )
            if not isinstance(applied, int | float):
                r.fail(f"{name}: the sidecar has no applied exposure_seconds ({figures}{note})")
            else:
                tolerance = max(0.02 * exposure, 100e-6)
                r.check(abs(applied - exposure) <= tolerance, f"{name}: applied {fmt(applied)} s ({figures}{note})")
            sensor = sidecar.get("sensor")
            if sensor:
                r.info(
                    f"{name} sidecar sensor: bit depth {sensor.get('bit_depth', '?')}, black level "
                    f"{fmt(sensor.get('black_level'))}, defective pixel correction "
                    f"{sensor.get('defective_pixel_correction', 'not reported')}"
                )
            elif self.sim:
                r.info(f"{name} sidecar sensor: {SIM}")
            else:
                r.fail(f"{name}: the sidecar has no `sensor` object (bit depth, black level, DPC), expected on a Pi")

        # The FITS file.
        fits_name = next((f for f in files if f and f.lower().endswith(".fits")), None)
        if fits_name is None:
            r.fail(f"{name}: no FITS file among {files}")
            return
        try:
            raw = await self.client.download(f"{folder}/{quote(fits_name)}")
            header, pixels, reader = await asyncio.to_thread(read_fits, raw)
            low, p1, median, high = await asyncio.to_thread(
                lambda: (int(pixels.min()), *(float(v) for v in np.percentile(pixels, [1, 50])), int(pixels.max()))
            )
        except ApiFailure as exc:
            r.fail(f"{name}: the FITS file could not be downloaded: {exc}")
            return
        except Exception as exc:
            r.fail(f"{name}: the FITS file {fits_name} could not be read: {exc!r}")
            return
        shape = "x".join(str(n) for n in reversed(pixels.shape))
        keys = ("BITDEPTH", "BLKLEVEL", "DATAMAX", "SENSDPC", "BAYERPAT")
        present = [f"{k} {fmt(header[k])}" for k in keys if k in header]
        absent = [k for k in keys if k not in header]
        if absent:
            why = SIM if self.sim else "missing"
            if not self.sim and absent == ["SENSDPC"] and self.camera.get("sensor_dpc", "") is None:
                why = "absent (the sensor's DPC setting is not readable, see health)"
            present.append(f"{', '.join(absent)} {why}")
        r.info(
            f"{name} FITS {fits_name} ({shape}, BITPIX {header.get('BITPIX')}, {len(raw) / 1e6:.1f} MB, {reader}): "
            f"{', '.join(present)}, EXPTIME {fmt(header.get('EXPTIME'))}; data min {low} / median {fmt(median)} / max {high}"
        )
        absent_fail = self.report.na if self.sim else self.report.fail
        datamax = header.get("DATAMAX")
        if isinstance(datamax, int | float):
            r.check(high <= datamax, f"{name} FITS: data max {high} <= DATAMAX {fmt(datamax)}")
        else:
            absent_fail(f"{name} FITS: data max vs DATAMAX: DATAMAX {SIM if self.sim else 'missing from the header'}")
        if is_shortest:
            black = header.get("BLKLEVEL")
            if isinstance(black, int | float):
                hint = ""
                if abs(p1 - black) > BLACK_TOLERANCE:
                    if abs(p1 - 16 * black) <= 16 * BLACK_TOLERANCE:
                        hint = ": the data look 16-bit, not scaled back to the sensor's 12 bits"
                    elif p1 > black:
                        hint = ": is the lens cap on? a lit scene lifts the darkest pixels"
                r.check(
                    abs(p1 - black) <= BLACK_TOLERANCE,
                    f"{name} FITS black level: data 1st percentile {fmt(p1)} vs BLKLEVEL {fmt(black)} (+-{BLACK_TOLERANCE}){hint}",
                )
            else:
                absent_fail(f"{name} FITS black level: BLKLEVEL {SIM if self.sim else 'missing from the header'}")

    def sensor_figures(self, camera: dict) -> str:
        keys = ("ExposureTime", "FrameDuration", "AnalogueGain", "SensorTemperature")
        if not any(k in camera for k in keys):
            return f"sensor metadata {SIM}" if self.sim else "sensor metadata: none in the sidecar"
        parts = []
        for key, show in (
            ("ExposureTime", lambda v: f"ExposureTime {fmt(v, 9)} us"),
            ("FrameDuration", lambda v: f"FrameDuration {fmt(v, 9)} us"),
            ("AnalogueGain", lambda v: f"gain {fmt(v, 4)}"),
            ("SensorTemperature", lambda v: f"{fmt(v, 4)} C"),
        ):
            parts.append(show(camera[key]) if key in camera else f"{key} not reported")
        return ", ".join(parts)

    # 3 -------------------------------------------------------------------------------------------

    def preview_exposure(self) -> float:
        """The owner's exposure for the preview checks, unless it is long: then a short one."""
        original = float((self.original or {}).get("exposure_seconds") or SHORT_PREVIEW_S)
        return original if original <= LONG_PREVIEW_S else SHORT_PREVIEW_S

    async def images(self) -> int | None:
        try:
            return int((await self.client.data("GET", "/api/captures?limit=1")).get("total"))
        except (ApiFailure, TypeError, ValueError):
            return None

    async def cancel(self) -> None:
        r = self.report
        longest = max(self.exposures)
        after = self.args.cancel_after
        name = f"cancel after {fmt(after)} s of a {fmt(longest)} s exposure"
        if after >= longest:
            r.na(f"{name}: --cancel-after must be shorter than the longest exposure")
            return
        try:
            await self.set(exposure_seconds=longest, iso=self.args.iso, file_format="jpeg+fits")
        except ApiFailure as exc:
            r.fail(f"{name}: the settings were refused: {exc}")
            return
        images_before = await self.images()
        self.capture_in_flight = True
        capture = asyncio.create_task(
            self.client.call("POST", "/api/camera/capture", {}, timeout=longest + CAPTURE_MARGIN_S)
        )
        viewer = StreamViewer(self.client)
        try:
            # Wait for the exposure to be under way.
            deadline = time.monotonic() + START_WITHIN_S
            state = {}
            while time.monotonic() < deadline and not capture.done():
                state = await self.client.data("GET", "/state")
                if state.get("exposing") is not None:
                    break
                await asyncio.sleep(0.05)
            if capture.done():
                status, envelope = capture.result()
                self.capture_in_flight = False
                r.fail(
                    f"{name}: the capture answered HTTP {status} {envelope.get('code', '')} before it could be cancelled"
                )
                return
            if state.get("exposing") is None:
                r.fail(f"{name}: /state showed no exposure within {fmt(START_WITHIN_S)} s of the capture request")
                return
            await viewer.open()  # watching before the cancel: the frame after it is timed on arrival
            latest = (await self.client.data("GET", "/state")).get("latest_frame") or {}
            seq_before = int(latest.get("seq") or 0)
            await asyncio.sleep(after)

            cancelled_at = time.monotonic()
            answer = await self.client.data("POST", "/api/camera/capture/cancel")
            if not answer.get("cancelled"):
                r.fail(
                    f"{name}: the cancel answered {answer} (the exposure had ended? a longer exposure or shorter --cancel-after)"
                )
            done, _ = await asyncio.wait({capture}, timeout=max(CANCEL_WITHIN_S, 30.0))
            answered_s = time.monotonic() - cancelled_at
            if not done:
                r.fail(f"{name}: the capture request did not answer within {answered_s:.1f} s of the cancel")
                return
            status, envelope = capture.result()
            self.capture_in_flight = False
            code = envelope.get("code") or ("success" if envelope.get("success") else "?")

            # The preview runs at the still's exposure now: set it short, then time the first new frame.
            short = self.preview_exposure()
            await self.set(exposure_seconds=short)
            set_back_s = time.monotonic() - cancelled_at
            fresh = await viewer.wait_for(lambda seq, at: seq > seq_before and at > cancelled_at, 30.0)
            frame_s = fresh[1] - cancelled_at if fresh else None
            images_after = await self.images()
        finally:
            await viewer.close()
            if not capture.done():  # interrupted: the server may still expose (restore cancels it)
                capture.cancel()
                await asyncio.gather(capture, return_exceptions=True)

        frame_text = (
            f"fresh preview frame after {frame_s:.2f} s"
            if frame_s is not None
            else f"no fresh preview frame within 30 s ({viewer.error or 'none arrived'})"
        )
        r.check(
            status == 409
            and code == "CAPTURE_CANCELLED"
            and answered_s <= CANCEL_WITHIN_S
            and frame_s is not None
            and frame_s <= CANCEL_WITHIN_S,
            f"{name}: capture answered {status} {code} after {answered_s:.2f} s, {frame_text} "
            f"(preview exposure set to {fmt(short)} s at {set_back_s:.2f} s)",
        )
        if images_before is None or images_after is None:
            r.info(f"{name}: the capture list could not be read to count files")
        else:
            r.check(
                images_after == images_before,
                f"{name}: no file written ({images_before} images before, {images_after} after)",
            )

    # 4 -------------------------------------------------------------------------------------------

    async def preview(self) -> None:
        r = self.report
        try:
            await self.set(exposure_seconds=self.preview_exposure())
        except ApiFailure as exc:
            r.fail(f"preview: the preview exposure could not be set: {exc}")
            return
        viewer = StreamViewer(self.client)
        try:
            await viewer.open()
            first = await viewer.wait_for(lambda seq, at: True, PREVIEW_FRAME_WAIT_S)
            if first is None:
                r.fail(
                    f"preview: no frame on /stream within {fmt(PREVIEW_FRAME_WAIT_S)} s ({viewer.error or 'none arrived'})"
                )
                return
            before = await self.client.data("GET", "/state")
            t0 = time.monotonic()
            received0 = len(viewer.parts)
            await asyncio.sleep(PREVIEW_SECONDS)
            after = await self.client.data("GET", "/state")
            elapsed = time.monotonic() - t0
            received = len(viewer.parts) - received0
        finally:
            await viewer.close()

        def delta(key: str) -> int | None:
            if key not in before or key not in after:
                return None
            return int(after[key]) - int(before[key])

        captured, encoded, encodes = delta("frames_captured"), delta("frames_encoded"), delta("encodes")
        fps = encoded / elapsed if encoded is not None else float("nan")
        r.info(
            f"preview at {fmt(self.preview_exposure())} s: over {elapsed:.1f} s {fps:.1f} frames/s "
            f"(frames_captured +{captured}, frames_encoded +{encoded}, encodes +{encodes}; "
            f"server captured_fps {after.get('captured_fps')}, encoded_fps {after.get('encoded_fps')}, "
            f"preview_errors {after.get('preview_errors')}); this viewer got {received} frames"
        )
        r.check(received > 0 and (encoded or 0) > 0, f"preview: frames reach a viewer ({received} in {elapsed:.1f} s)")
        configured = self.camera.get("preview_encoder")
        pixels_wanted = bool((after.get("analysis") or {}).get("running")) or bool(after.get("stretched_viewer_count"))
        if configured == "hardware":
            if encodes == 0 and (encoded or 0) > 0:
                r.check(
                    True, f"preview encoder: hardware in use (WANDA encoded no JPEG itself, {encoded} frames encoded)"
                )
            elif pixels_wanted:
                r.info(
                    f"preview encoder: hardware configured, but WANDA encoded {encodes} frames itself: the analysis or a "
                    "stretched view (a browser tab?) needs pixels, which takes the software path"
                )
            else:
                r.fail(f"preview encoder: hardware configured, yet WANDA encoded {encodes} of {encoded} frames itself")
        elif configured == "software":
            r.info(f"preview encoder: software (libjpeg-turbo), {encodes} encodes for {encoded} frames")
        else:
            r.info(
                f"preview encoder: {SIM if self.sim else 'not reported'}; {encodes} software encodes for {encoded} frames"
            )

    # 5 -------------------------------------------------------------------------------------------

    async def restore(self) -> None:
        if self.original is None or not self.changed:
            return
        r = self.report
        if self.capture_in_flight:  # interrupted during a still: free the camera first
            try:
                await self.client.data("POST", "/api/camera/capture/cancel")
            except (ApiFailure, ServerProblem):
                pass
        wanted = {k: self.original[k] for k in ("exposure_seconds", "iso", "file_format") if k in self.original}
        text = f"exposure {fmt(wanted.get('exposure_seconds'))} s, iso {fmt(wanted.get('iso'))}, file_format {wanted.get('file_format')}"
        last: Exception | None = None
        for _ in range(20):  # a cancelled still may hold the camera for a moment (409 CAPTURE_BUSY)
            try:
                await self.client.data("POST", "/api/camera/settings", wanted)
                now = await self.client.data("GET", "/api/camera/status")
                same = all(
                    math.isclose(float(now[k]), float(v), rel_tol=1e-5, abs_tol=1e-6)
                    if isinstance(v, int | float)
                    else now.get(k) == v
                    for k, v in wanted.items()
                )
                r.check(same, f"settings restored: {text}")
                return
            except ApiFailure as exc:
                last = exc
                if exc.code != "CAPTURE_BUSY":
                    break
                await asyncio.sleep(0.5)
            except ServerProblem as exc:
                last = exc
                break
        r.fail(f"settings not restored ({text}): {last}")


async def run(args) -> int:
    report = Report()
    async with Client(args.url, args.password) as client:
        bench = Bench(args, client, report)
        await bench.read_settings()  # the first request: a wrong password ends the run here
        try:
            await bench.server_and_camera()
            if await bench.no_session_running():
                await bench.stills()
                await bench.cancel()
                await bench.preview()
        except ApiFailure as exc:
            report.fail(f"unexpected answer: {exc}")
        finally:
            await bench.restore()
    return report.summary()


def exposures(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of seconds, got {text!r}") from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise argparse.ArgumentTypeError(f"exposures are seconds above 0, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the WANDA server (default {DEFAULT_URL})")
    parser.add_argument("--password", default=os.environ.get("WANDA_PASSWORD", ""), help="default: $WANDA_PASSWORD")
    parser.add_argument(
        "--exposures",
        type=exposures,
        default=exposures("0.5,30,200"),
        help="seconds, comma-separated (default 0.5,30,200)",
    )
    parser.add_argument(
        "--cancel-after", type=float, default=5.0, help="seconds into the longest exposure to cancel it (default 5)"
    )
    parser.add_argument("--iso", type=float, default=800.0, help="ISO of the stills (gain = iso / 100; default 800)")
    args = parser.parse_args(argv)
    url = args.url.strip().rstrip("/")
    args.url = url if "://" in url else f"http://{url}"
    if args.cancel_after < 0:
        parser.error("--cancel-after must be 0 or more")
    try:
        return asyncio.run(run(args))
    except ServerProblem as exc:
        print(f"ERROR {exc}", flush=True)
        return 2
    except KeyboardInterrupt:
        print("ERROR interrupted", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
