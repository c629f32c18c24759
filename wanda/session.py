"""Capture sessions: N frames into a folder of their own, rapid or spread over hours.

A session runs as an asyncio task that submits camera jobs through CameraControl, so it shares the
one camera with everything else and never blocks the loop. Frame i of a timed session is due at
``t0 + i * T / N`` (a frame longer than its slot makes the session late, and the status says so).
``session_metadata.json`` is rewritten atomically after every frame; a session that a crash or kill
left ``running`` is marked ``interrupted`` (and reconciled with the files on disk) at the next start,
and ``resume`` continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wanda import __version__
from wanda.arbiter import Lease
from wanda.control import CameraControl, utc_iso
from wanda.errors import ApiError, storage_error
from wanda.events import EventBus
from wanda.mount import MountControl
from wanda.settings import CameraSettings, parse_changes
from wanda.storage import TEMP_PREFIX, NumberedFiles, disk_space, write_atomic
from wanda.validate import boolean, invalid, json_object, known_fields, number, whole, within

log = logging.getLogger(__name__)

METADATA = "session_metadata.json"
CONFIG_FILE = "session_config.json"
MAX_IMAGES = 100_000
MAX_HOURS = 240.0
RESUMABLE = ("interrupted", "stopped", "error")
# Path separators, and what FAT and exFAT USB drives (the usual capture disks) refuse in names.
FORBIDDEN_IN_NAMES = '/\\<>:"|?*'
FINISHED = ("completed", "stopped", "error", "interrupted")
ENDING_WAIT_S = 10.0  # how long a start or a listing waits for an ending session's last write
END_WAIT_S = 1.5  # how long a stop (or shutdown) waits for the session's task to end
RETRY_WRITE_S = 10.0  # how often metadata the disk refused (full, read-only) is tried again
# In WANDA's data directory: how the sessions whose metadata the captures disk refused ended. A
# restart before that disk takes them must not turn a session that failed ("the disk is full")
# into one that was merely interrupted.
UNWRITTEN_FILE = "unwritten_sessions.json"
ENDING_FIELDS = ("status", "error", "ended")
INTERRUPTED_BY_RESTART = "the server stopped while the session ran (a crash, a kill, a power cut or a full disk)"
# A folder name is at most 255 bytes on every filesystem; "_12" may be added when the name is taken.
MAX_NAME_BYTES = 240
# What FAT and exFAT drives (and Windows, which reads them) refuse as a name, with or without an
# extension: a folder named CON cannot be copied off the stick.
FAT_DEVICE_NAMES = frozenset(
    {
        "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
        *(f"COM{i}" for i in "0123456789¹²³"), *(f"LPT{i}" for i in "0123456789¹²³"),
    }
)
# A folder named like a frame's file in the captures folder (light_0005.json) would stand where a
# single capture's file goes.
_LIKE_A_FRAME = re.compile(r"^[A-Za-z]+_\d+\.", re.ASCII)


def validate_name(name: Any) -> str:
    """1-64 printable characters, no path separator, not ``.`` or ``..``, not hidden."""
    if not isinstance(name, str):
        raise invalid("name", "must be a string")
    if not 1 <= len(name) <= 64:
        raise invalid("name", "must be 1 to 64 characters")
    if not name.isprintable() or any(c in FORBIDDEN_IN_NAMES for c in name):
        raise invalid("name", f"may hold printable characters only, none of {' '.join(FORBIDDEN_IN_NAMES)}")
    if name in (".", "..") or name.startswith(TEMP_PREFIX):
        raise invalid("name", "may not be . or .. or start with a dot")
    if name != name.rstrip(". "):
        raise invalid("name", "may not end with a dot or a space (USB drives drop them)")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ApiError(400, "NAME_TOO_LONG", f"name: at most {MAX_NAME_BYTES} bytes in UTF-8 (a folder's name on disk)")
    if name.split(".")[0].rstrip().upper() in FAT_DEVICE_NAMES:
        raise ApiError(400, "RESERVED_NAME", f"name: {name!r} is a device name that USB drives (FAT) cannot hold")
    if _LIKE_A_FRAME.match(name):
        raise ApiError(400, "RESERVED_NAME", f"name: {name!r} is named like a frame's file (light_0001.jpg)")
    if name.casefold() == CONFIG_FILE:  # FAT and exFAT do not tell the case apart
        raise ApiError(400, "RESERVED_NAME", f"name: {CONFIG_FILE} is WANDA's own file in the captures folder")
    return name


def _count(field_name: str, value: Any) -> int:
    return int(within(field_name, whole(field_name, value), 1, MAX_IMAGES))


def _hours(field_name: str, value: Any) -> float:
    hours = number(field_name, value, "a number of hours")
    if not 0 < hours <= MAX_HOURS:
        raise invalid(field_name, f"must be above 0 and at most {MAX_HOURS:g}")
    return hours


@dataclass(frozen=True)
class SessionRequest:
    name: str
    total_images: int
    total_time_hours: float | None
    enable_tracking: bool
    use_current_settings: bool
    settings: CameraSettings
    object: str | None  # what is observed, for FITS OBJECT


SETTING_FIELDS = ("exposure_seconds", "iso", "gain")  # the camera's, unless use_current_settings
FRAME_FIELDS = ("frame_type", "file_format")  # the session's own, whatever the camera has
START_FIELDS = (
    "name", "total_images", "use_current_settings", "enable_tracking", "total_time_hours", "object",
    *SETTING_FIELDS, *FRAME_FIELDS,
)


def parse_start(body: Any, control: CameraControl) -> SessionRequest:
    known_fields(json_object(body), START_FIELDS)
    if "name" not in body:
        raise invalid("name", "is required")
    if "total_images" not in body:
        raise invalid("total_images", "is required")
    name = validate_name(body["name"])
    total = _count("total_images", body["total_images"])
    hours = body.get("total_time_hours")
    hours = None if hours is None else _hours("total_time_hours", hours)
    use_current = boolean("use_current_settings", body.get("use_current_settings", True))
    tracking = boolean("enable_tracking", body.get("enable_tracking", False))
    given = {k: body[k] for k in SETTING_FIELDS if k in body}
    if use_current and given:
        raise invalid(sorted(given)[0], "use_current_settings is true: leave the camera fields out or set it false")
    given.update({k: body[k] for k in FRAME_FIELDS if k in body})
    settings = dataclasses.replace(control.settings, **parse_changes(given, control.limits))
    if "object" in body:
        target = body["object"]
        if not isinstance(target, str) or not _fits_text(target):
            raise invalid("object", "must be 1 to 68 printable ASCII characters (it goes into FITS headers)")
    else:  # the session's name, when FITS can carry it
        target = name if _fits_text(name) else None
    return SessionRequest(name, total, hours, tracking, use_current, settings, target)


def _fits_text(text: str) -> bool:
    return 0 < len(text) <= 68 and text.isascii() and text.isprintable()


_FRAME_NUMBER = re.compile(r"^(?P<type>[a-z]+)_(?P<number>\d+)\.(?P<extension>jpg|fits)$")


def frame_extension(file_format: str) -> str:
    """The extension of the file that names a frame (the first format of ``file_format``)."""
    return "jpg" if file_format.startswith("jpeg") else "fits"
_OUR_TEMPORARY = re.compile(r"^\..+\.\d+\.\d+\.tmp$")  # write_atomic's names


class MetadataWriter:
    """Writes one session's metadata in order: a write that was overtaken (its task cancelled
    while the thread still ran) never replaces a newer one."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._version = 0
        self._written = 0

    async def write(self, metadata: dict[str, Any]) -> None:
        self._version += 1
        data = json.dumps(metadata).encode("utf-8")  # a snapshot, taken in the loop
        await asyncio.to_thread(self._write, data, self._version)

    def _write(self, data: bytes, version: int) -> None:
        with self._lock:
            if version <= self._written:
                return
            write_atomic(self.folder / METADATA, data)
            self._written = version


def read_metadata(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    write_atomic(folder / METADATA, json.dumps(metadata).encode("utf-8"))


def reconcile(folder: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Make the frame list agree with the images on disk (a crash between saving an image and
    rewriting the metadata leaves one image unlisted; a listed image can't be missing, but check)."""
    listed = {frame["file"]: frame for frame in metadata.get("frames", []) if isinstance(frame, dict) and "file" in frame}
    settings = metadata.get("settings") or {}
    stem = settings.get("frame_type", "light")
    extension = frame_extension(settings.get("file_format", "jpeg"))

    def is_frame(name: str) -> bool:
        match = _FRAME_NUMBER.match(name)
        return bool(match) and match["type"] == stem and match["extension"] == extension

    on_disk = sorted(
        (p.name for p in folder.iterdir() if is_frame(p.name)),
        key=lambda name: int(_FRAME_NUMBER.match(name)["number"]),  # light_10000 after light_9999
    )
    frames = []
    for name in on_disk:
        frame = listed.get(name)
        if frame is None:
            sidecar = folder / Path(name).with_suffix(".json")
            try:
                notes = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                notes = {}
            frame = {
                "index": notes.get("frame"),
                "file": name,
                "exposure_seconds": notes.get("exposure_seconds"),
                "gain": notes.get("gain"),
                "started": notes.get("date_obs"),
                "recovered": True,
            }
        frames.append(frame)
    metadata["frames"] = frames
    metadata["captured_images"] = len(frames)
    return metadata


@dataclass
class SessionRun:
    """A session in progress (or the last one), as the runner and the status see it."""

    folder: Path
    metadata: dict[str, Any]
    interval: float  # seconds between frame starts; 0 for rapid
    schedule_start: float  # loop time of the first frame of this run
    first_index: int  # frames already taken when this run started (a resume)
    lease: Lease  # the camera, held from the start until its last frame
    started_monotonic: float = field(default_factory=time.monotonic)
    writer: MetadataWriter | None = None
    tracking_started_here: bool = False
    stop_reason: str | None = None  # "stopped" or "interrupted" once asked to end
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    @property
    def total(self) -> int:
        return self.metadata["total_images"]

    @property
    def captured(self) -> int:
        return len(self.metadata["frames"])

    def due(self, index: int) -> float:
        return self.schedule_start + (index - self.first_index) * self.interval


class SessionManager:
    def __init__(
        self,
        control: CameraControl,
        mount: MountControl,
        bus: EventBus,
        *,
        captures_root: Path,
        min_free_bytes: int,
        state_dir: Path | None = None,
    ):
        self.control = control
        self.mount = mount
        self.bus = bus
        self.root = captures_root
        self.min_free_bytes = min_free_bytes
        self.state_dir = state_dir
        self.run: SessionRun | None = None
        self._lock = asyncio.Lock()
        # Metadata the disk refused (full or read-only): shown from here, written when it can be.
        self._unwritten: dict[Path, dict[str, Any]] = {}
        self._unwritten_lock = threading.Lock()  # a retry never overwrites a newer write
        self._refused: set[Path] = set()  # folders whose refusal is logged already
        # Endings remembered for folders not under this run's captures folder (a drive that is
        # not there today): kept for the day it is.
        self._elsewhere: dict[str, dict[str, Any]] = {}
        self._retry_now = asyncio.Event()
        bus.add_status_provider("session", self.status)

    @property
    def active(self) -> bool:
        return self.run is not None and self.run.task is not None and not self.run.task.done()

    # -- start-up: no session stays "running" after a crash ------------------------------------

    async def recover(self) -> list[str]:
        """Mark sessions left running by a crash or kill as interrupted (reconciled with disk)."""
        return await asyncio.to_thread(self._recover)

    def _recover(self) -> list[str]:
        """Sweep the temporaries a kill left behind, make every session's metadata agree with its
        files, and mark the sessions left running as interrupted."""
        marked = []
        if not self.root.is_dir():
            return marked
        remembered = self._read_unwritten_endings()
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink())
        here = {str(folder) for folder in folders}
        self._elsewhere = {key: ending for key, ending in remembered.items() if key not in here}
        self._sweep(self.root)
        for folder in folders:
            self._sweep(folder)
            metadata = read_metadata(folder)
            if metadata is None:
                continue
            before = json.dumps(metadata)
            metadata = reconcile(folder, metadata)
            ending = remembered.get(str(folder))
            if metadata.get("status") == "running" and ending is not None:
                metadata.update(ending)  # it ended before the restart; the disk refused to say so
                log.info("session %s %s before the restart (its disk refused to say so)", folder.name, metadata["status"])
            elif metadata.get("status") == "running":
                # Killed after its last frame but before it could say so: it is complete.
                complete = len(metadata.get("frames", [])) >= metadata.get("total_images", 0) > 0
                metadata["status"] = "completed" if complete else "interrupted"
                metadata["ended"] = metadata.get("ended") or utc_iso(time.time())
                if not complete:
                    metadata["error"] = metadata.get("error") or INTERRUPTED_BY_RESTART
                log.warning("session %s was left running (a crash?): marked %s", folder.name, metadata["status"])
                marked.append(folder.name)
            if json.dumps(metadata) != before:
                # A full or read-only disk must not keep the server down (under systemd, a restart
                # loop while the observer could free space through the gallery): keep it, retry.
                self._write_or_keep(folder, metadata)
        if remembered:
            with self._unwritten_lock:
                self._save_unwritten_endings()  # those written now are forgotten
        return marked

    @staticmethod
    def _sweep(folder: Path) -> None:
        for path in folder.iterdir():
            if _OUR_TEMPORARY.match(path.name) and path.is_file():
                log.info("removing %s, left half-written by an earlier run", path)
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:  # a read-only disk: harmless, the gallery never lists them
                    log.warning("cannot remove %s: %s", path, exc.strerror or exc)

    # -- metadata the disk refused --------------------------------------------------------------

    def _write_or_keep(self, folder: Path, metadata: dict[str, Any], *, retry: bool = False) -> None:
        """Thread: write a session's metadata, or keep it (shown, and tried again) if the disk
        refuses. ``retry``: it was kept before, and is written only if no newer version was."""
        with self._unwritten_lock:
            if retry and self._unwritten.get(folder) is not metadata:
                return  # written meanwhile (a resume)
            try:
                write_metadata(folder, metadata)
            except FileNotFoundError:
                pass  # its folder was deleted in the gallery: nothing left to describe
            except OSError as exc:
                if folder not in self._refused:  # once, not every RETRY_WRITE_S
                    self._refused.add(folder)
                    log.error(
                        "session %s: its metadata cannot be written (%s): shown as %s, tried again every %.0f s",
                        folder.name, exc.strerror or exc, metadata.get("status"), RETRY_WRITE_S,
                    )
                if self._unwritten.get(folder) is not metadata:
                    self._unwritten[folder] = metadata
                    self._save_unwritten_endings()
                return
            if self._unwritten.pop(folder, None) is not None:
                self._save_unwritten_endings()
        if folder in self._refused:
            self._refused.discard(folder)
            log.info("session %s: its metadata is written at last", folder.name)

    def _write_fresh(self, folder: Path, metadata: dict[str, Any]) -> None:
        """Thread: a new version of a session's metadata replaces any version the disk refused."""
        with self._unwritten_lock:
            write_metadata(folder, metadata)
            if self._unwritten.pop(folder, None) is not None:
                self._save_unwritten_endings()

    def _keep_unwritten(self, folder: Path, metadata: dict[str, Any]) -> None:
        """Thread: keep metadata the disk refused, to show and to write later."""
        with self._unwritten_lock:
            self._unwritten[folder] = metadata
            self._save_unwritten_endings()

    def _save_unwritten_endings(self) -> None:
        """Thread, under the lock: how the unwritten sessions ended, on WANDA's own disk."""
        if self.state_dir is None:
            return
        endings = dict(self._elsewhere)
        endings.update(
            (str(folder), {key: metadata.get(key) for key in ENDING_FIELDS})
            for folder, metadata in self._unwritten.items()
            if metadata.get("status") != "running"
        )
        path = self.state_dir / UNWRITTEN_FILE
        try:
            if endings:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                write_atomic(path, json.dumps(endings, indent=2).encode("utf-8"))
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:  # the same full disk: then only memory knows until the restart
            log.warning("cannot keep how unwritten sessions ended in %s: %s", path, exc.strerror or exc)

    def _read_unwritten_endings(self) -> dict[str, dict[str, Any]]:
        if self.state_dir is None:
            return {}
        try:
            endings = json.loads((self.state_dir / UNWRITTEN_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", self.state_dir / UNWRITTEN_FILE, exc)
            return {}
        if not isinstance(endings, dict):
            return {}
        return {
            folder: {key: ending.get(key) for key in ENDING_FIELDS}
            for folder, ending in endings.items()
            if isinstance(ending, dict) and ending.get("status") in FINISHED
        }

    def storage_changed(self) -> None:
        """Space may have been freed (a delete in the gallery): try the refused writes now."""
        self._retry_now.set()

    async def keep_writing(self) -> None:
        """For the server's lifetime: write what the disk refused as soon as it takes it."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), RETRY_WRITE_S)
            self._retry_now.clear()
            for folder, metadata in list(self._unwritten.items()):
                await asyncio.to_thread(self._write_or_keep, folder, metadata, retry=True)

    # -- commands ------------------------------------------------------------------------------

    async def start(self, body: Any) -> dict[str, Any]:
        request = parse_start(body, self.control)
        async with self._lock:
            await self._ended()
            if self.active:
                raise ApiError(409, "SESSION_START_FAILED", "a session is already running: stop it first")
            lease = self.control.arbiter.acquire("session", request.name)
            try:
                await self._check_space(request.total_images)
                folder = await asyncio.to_thread(self._new_folder, request.name)
                await self._launch(folder, self._new_metadata(request, folder), lease)
            except BaseException:
                lease.release()
                raise
        self.bus.publish("session", "session_start", self.status())
        return self.status()

    @staticmethod
    def _new_metadata(request: SessionRequest, folder: Path) -> dict[str, Any]:
        hours = request.total_time_hours
        return {
            "format": 1,
            "software": f"WANDA {__version__}",
            "name": request.name,
            "folder": folder.name,
            "status": "running",
            "mode": "timed" if hours else "rapid",
            "total_images": request.total_images,
            "captured_images": 0,
            "total_time_hours": hours,
            "interval_s": hours * 3600 / request.total_images if hours else 0.0,
            "enable_tracking": request.enable_tracking,
            "use_current_settings": request.use_current_settings,
            "settings": {
                "exposure_seconds": request.settings.exposure_seconds,
                "gain": request.settings.gain,
                "iso": request.settings.iso,
                "frame_type": request.settings.frame_type,
                "file_format": request.settings.file_format,
            },
            "object": request.object,
            "created": utc_iso(time.time()),
            "started": utc_iso(time.time()),
            "ended": None,
            "resumed": [],
            "late": False,
            "max_lateness_s": 0.0,
            "error": None,
            "frames": [],
        }

    async def resume(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"name"}:
            raise ApiError(400, "VALIDATION_ERROR", "resume takes an optional name (the session's folder) only")
        async with self._lock:
            await self._ended()
            if self.active:
                raise ApiError(409, "SESSION_START_FAILED", "a session is already running")
            folder, metadata = await asyncio.to_thread(self._resumable, body.get("name"))
            lease = self.control.arbiter.acquire("session", metadata.get("name"))
            try:
                remaining = metadata["total_images"] - len(metadata["frames"])
                await self._check_space(remaining)
                metadata["status"] = "running"
                metadata["ended"] = None
                metadata["error"] = None
                metadata["resumed"].append(utc_iso(time.time()))
                await self._launch(folder, metadata, lease)
            except BaseException:
                lease.release()
                raise
        self.bus.publish("session", "session_start", {**self.status(), "resumed": True})
        return self.status()

    async def _ended(self) -> None:
        """A session whose status already says how it ended may still be writing its metadata:
        wait for that, so a client that saw "completed" and at once lists the sessions or starts
        the next one sees it ended and is not refused."""
        if self.active and self.run.metadata["status"] != "running":
            # Bounded: a write hung on a failing drive must not hang the list or every start.
            await asyncio.wait({self.run.task}, timeout=ENDING_WAIT_S)

    async def stop(self, reason: str = "stopped") -> dict[str, Any]:
        run = self.run
        if not self.active or run is None:
            raise ApiError(409, "SESSION_STOP_FAILED", "no session is running")
        await self._end(run, reason)  # one that was ending already ends as it was: the status says how
        return self.status()

    async def shutdown(self) -> None:
        """Server shutdown: the running session ends as ``interrupted`` (resumable)."""
        if self.active and self.run is not None:
            await self._end(self.run, "interrupted")

    async def _end(self, run: SessionRun, reason: str) -> None:
        assert run.task is not None
        if run.metadata["status"] != "running":
            # Ending already, its camera released (a capture may be exposing now, not ours): let
            # it write how it ended, never cancel that.
            await asyncio.wait({run.task}, timeout=END_WAIT_S)
            return
        run.stop_reason = reason
        run.wake.set()  # a wait between frames ends now
        if run.lease.held and self.control.exposure is not None:
            self.control.cancel()  # a frame being exposed is dropped, nothing is written
        try:
            async with asyncio.timeout(END_WAIT_S):
                await asyncio.shield(run.task)
        except TimeoutError:
            if run.metadata["status"] == "running":  # stuck before it could end: cut it short
                run.task.cancel()
            # else it is writing how it ended (a slow drive): cancelling would lose that

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        run = self.run
        if run is None:
            return {
                "active": False, "running": False, "status": "idle", "name": None, "folder": None,
                "total_images": 0, "captured_images": 0, "images_captured": 0, "progress": 0.0,
                "elapsed_time": 0.0, "remaining_time": 0.0, "session_dir": None, "total_time_hours": None,
                "estimated_completion": None, "late": False, "lateness_s": 0.0, "mode": None, "error": None,
            }
        metadata = run.metadata
        # The task is still finishing when it announces the outcome: the status decides.
        running = self.active and metadata["status"] == "running"
        captured, total = run.captured, run.total
        remaining_s = self._remaining_seconds(run) if running else 0.0
        return {
            "active": running,
            "running": running,
            "status": metadata["status"],
            "name": metadata["name"],
            "folder": metadata["folder"],
            "total_images": total,
            "captured_images": captured,
            "images_captured": captured,
            "progress": round(100 * captured / total, 1),
            "elapsed_time": round(time.monotonic() - run.started_monotonic, 1),
            "remaining_time": round(remaining_s / 3600, 4),
            "session_dir": str(run.folder),
            "total_time_hours": metadata["total_time_hours"],
            "estimated_completion": round(time.time() + remaining_s, 1) if running else None,
            "late": metadata["late"],
            "lateness_s": metadata["max_lateness_s"],
            "mode": metadata["mode"],
            "frame_type": metadata["settings"]["frame_type"],
            "file_format": metadata["settings"].get("file_format", "jpeg"),
            "exposure_seconds": metadata["settings"]["exposure_seconds"],
            "enable_tracking": metadata["enable_tracking"],
            "error": metadata["error"],
        }

    def _remaining_seconds(self, run: SessionRun) -> float:
        left = run.total - run.captured
        exposure = run.metadata["settings"]["exposure_seconds"]
        if run.interval:
            last_start = run.due(run.total - 1) - asyncio.get_running_loop().time()
            return max(0.0, last_start) + exposure
        return left * exposure

    async def list_sessions(self) -> list[dict[str, Any]]:
        await self._ended()  # an ending session is listed as it ended, not as its disk still says
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[dict[str, Any]]:
        sessions = []
        if not self.root.is_dir():
            return sessions
        for folder in self.root.iterdir():
            if not folder.is_dir() or folder.name.startswith(TEMP_PREFIX):
                continue
            metadata = self._metadata_of(folder)
            if metadata is None:
                continue
            sessions.append(
                {
                    "name": metadata.get("name"),
                    "folder": folder.name,
                    "status": metadata.get("status"),
                    "captured_images": len(metadata.get("frames", [])),
                    "total_images": metadata.get("total_images"),
                    "started": metadata.get("started"),
                    "ended": metadata.get("ended"),
                    "mode": metadata.get("mode"),
                    "frame_type": (metadata.get("settings") or {}).get("frame_type"),
                    "error": metadata.get("error"),
                    "saved": folder not in self._unwritten,  # False: the disk refused its newest state
                }
            )
        sessions.sort(key=lambda s: s["started"] or "", reverse=True)
        return sessions

    # -- the runner ----------------------------------------------------------------------------

    async def _launch(self, folder: Path, metadata: dict[str, Any], lease: Lease) -> None:
        """Write the session's first metadata and start its runner, which holds ``lease`` (the
        camera) until its last frame."""
        await asyncio.to_thread(self._write_fresh, folder, metadata)
        loop = asyncio.get_running_loop()
        run = SessionRun(
            folder=folder,
            metadata=metadata,
            interval=metadata["interval_s"],
            schedule_start=loop.time(),
            first_index=len(metadata["frames"]),
            lease=lease,
            writer=MetadataWriter(folder),
        )
        self.run = run
        run.task = asyncio.create_task(self._run(run), name=f"session:{folder.name}")

    async def _run(self, run: SessionRun) -> None:
        metadata = run.metadata
        files = NumberedFiles(run.folder, metadata["settings"]["frame_type"])
        settings = dataclasses.replace(
            self.control.settings,
            exposure_seconds=metadata["settings"]["exposure_seconds"],
            gain=metadata["settings"]["gain"],
            frame_type=metadata["settings"]["frame_type"],
            file_format=metadata["settings"].get("file_format", "jpeg"),
        )
        target = metadata.get("object")
        loop = asyncio.get_running_loop()
        outcome, error = "completed", None
        try:
            if metadata["enable_tracking"] and not self.mount.tracking:
                current = self.mount.status()
                self.mount.start(current["speed"], current["direction"])
                run.tracking_started_here = True
            for index in range(run.captured, run.total):
                wait = run.due(index) - loop.time()
                if wait > 0:
                    try:
                        await asyncio.wait_for(run.wake.wait(), wait)
                    except TimeoutError:
                        pass
                if run.stop_reason:
                    break
                free, _ = await asyncio.to_thread(disk_space, run.folder)
                if free < self.min_free_bytes:
                    raise ApiError(507, "INSUFFICIENT_SPACE", f"free space fell to {free // 2**20} MB, below the floor of {self.min_free_bytes // 2**20} MB")
                try:
                    result = await self.control.capture(
                        files, settings, {"session": metadata["name"], "object": target, "frame": index + 1}, run.lease
                    )
                except ApiError as exc:
                    if exc.code == "CAPTURE_CANCELLED":
                        run.stop_reason = run.stop_reason or "stopped"  # cancelled from outside: a stop
                        break
                    raise
                lateness = loop.time() - run.due(index + 1) if index + 1 < run.total and run.interval else 0.0
                if lateness > 0:
                    metadata["late"] = True
                    metadata["max_lateness_s"] = round(max(metadata["max_lateness_s"], lateness), 3)
                metadata["frames"].append(
                    {
                        "index": index + 1,
                        "file": result["file"],
                        "exposure_seconds": result["exposure_seconds"],
                        "gain": result["gain"],
                        "started": result["started"],
                        **({"files": result["files"]} if len(result["files"]) > 1 else {}),
                    }
                )
                metadata["captured_images"] = len(metadata["frames"])
                await run.writer.write(metadata)
                self.bus.publish("session", "session_progress", {**self.status(), "file": result["file"], "url": result["url"]})
                if run.stop_reason:
                    break
            if run.stop_reason:
                outcome = run.stop_reason
        except ApiError as exc:
            outcome, error = "error", exc.message
        except OSError as exc:  # the metadata could not be written
            log.error("session %s: %s", run.folder.name, exc)
            known = storage_error(exc)  # the disk's reason: full, read-only, ...
            outcome, error = "error", f"writing the metadata failed: {known.message if known else exc.strerror or exc}"
        except asyncio.CancelledError:
            outcome = run.stop_reason or "interrupted"
            raise
        except Exception:
            log.exception("session %s failed", run.folder.name)
            outcome, error = "error", "the session failed (see the server log)"
        finally:
            # The camera is free as soon as the status can say the session ended: a capture right
            # after "completed" must not be refused while the last metadata is still written.
            run.lease.release()
            await self._finish(run, outcome, error)

    async def _finish(self, run: SessionRun, outcome: str, error: str | None) -> None:
        metadata = run.metadata
        # First, before any await: from here on the session is ending (see _end).
        metadata["status"] = outcome
        metadata["error"] = error
        metadata["ended"] = utc_iso(time.time())
        if run.tracking_started_here and outcome != "interrupted":
            await self.mount.stop()  # only the tracking this session started
        try:
            # A frame saved while the session was told to end (or whose sidecar failed) is on
            # disk: list it, so the metadata agrees with the files.
            await asyncio.to_thread(reconcile, run.folder, metadata)
            await run.writer.write(metadata)
        except OSError as exc:  # a full disk: the last good metadata stays on disk, this one is retried
            log.error("could not write the metadata of session %s: %s", run.folder.name, exc)
            await asyncio.to_thread(self._keep_unwritten, run.folder, metadata)
        event = {"completed": "session_complete", "error": "session_error"}.get(outcome, "session_stop")
        self.bus.publish("session", event, self.status())
        log.info("session %s %s: %d of %d frames", run.folder.name, outcome, run.captured, run.total)

    # -- files ---------------------------------------------------------------------------------

    def _new_folder(self, name: str) -> Path:
        """The session's folder: its name, or name_2, name_3, ... when that is taken."""
        self.root.mkdir(parents=True, exist_ok=True)
        candidate, n = name, 1
        while True:
            folder = self.root / candidate
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                n += 1
                candidate = f"{name}_{n}"

    def _metadata_of(self, folder: Path) -> dict[str, Any] | None:
        """A session's metadata: the disk's, unless the disk refused the newest version (a full or
        read-only disk): what is kept in memory is newer."""
        unwritten = self._unwritten.get(folder)
        if unwritten is not None:
            return json.loads(json.dumps(unwritten))  # a copy: callers may change it
        return read_metadata(folder)

    def _resumable(self, name: str | None) -> tuple[Path, dict[str, Any]]:
        candidates = []
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if name is not None and folder.name != name:
                    continue
                metadata = self._metadata_of(folder) if folder.is_dir() else None
                if metadata and metadata.get("status") in RESUMABLE and len(metadata.get("frames", [])) < metadata.get("total_images", 0):
                    candidates.append((metadata.get("started") or "", folder, metadata))
        if not candidates:
            which = f"session {name!r}" if name else "session"
            raise ApiError(409, "SESSION_START_FAILED", f"no interrupted {which} to resume")
        _, folder, metadata = max(candidates, key=lambda c: c[0])
        return folder, reconcile(folder, metadata)

    async def _check_space(self, frames: int) -> None:
        free, _ = await asyncio.to_thread(disk_space, self.root)
        need = frames * self.control.estimated_still_bytes() + self.min_free_bytes
        if free < need:
            raise ApiError(
                409,
                "INSUFFICIENT_SPACE",
                f"{frames} frames need about {need // 2**20} MB with the reserve, but {free // 2**20} MB are free",
            )


# -- the session form (the original backend's session_config.json) ------------------------------

CONFIG_DEFAULTS = {
    "name": "",
    "totalImages": 10,
    "enableTracking": False,
    "useCurrentSettings": True,
    "sessionMode": "rapid",
    "totalTimeHours": 1.0,
}


def parse_session_config(body: Any) -> dict[str, Any]:
    known_fields(json_object(body), CONFIG_DEFAULTS)
    form = dict(CONFIG_DEFAULTS)
    if "name" in body:
        if not isinstance(body["name"], str) or len(body["name"]) > 64:
            raise invalid("name", "must be a string of at most 64 characters")
        form["name"] = body["name"]
    if "totalImages" in body:
        form["totalImages"] = _count("totalImages", body["totalImages"])
    for key in ("enableTracking", "useCurrentSettings"):
        if key in body:
            form[key] = boolean(key, body[key])
    if "sessionMode" in body:
        if body["sessionMode"] not in ("rapid", "timed"):
            raise invalid("sessionMode", "must be rapid or timed")
        form["sessionMode"] = body["sessionMode"]
    if "totalTimeHours" in body:
        form["totalTimeHours"] = None if body["totalTimeHours"] is None else _hours("totalTimeHours", body["totalTimeHours"])
    if form["sessionMode"] == "timed" and not form["totalTimeHours"]:
        raise invalid("totalTimeHours", "a timed session needs totalTimeHours > 0")
    return form


def load_session_config(root: Path) -> dict[str, Any]:
    try:
        saved = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
        return parse_session_config(saved)
    except FileNotFoundError:
        return dict(CONFIG_DEFAULTS)
    except (OSError, ValueError, ApiError) as exc:
        log.warning("ignoring %s: %s", root / CONFIG_FILE, getattr(exc, "message", exc))
        return dict(CONFIG_DEFAULTS)


def save_session_config(root: Path, form: dict[str, Any]) -> None:
    os.makedirs(root, exist_ok=True)
    write_atomic(root / CONFIG_FILE, json.dumps(form, indent=2).encode("utf-8"))
