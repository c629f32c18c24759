"""A session's files: ``session_metadata.json`` beside its frames, rewritten atomically after every
frame and reconciled with the frames on disk after a crash; the store that recovers the captures
folder at start-up and keeps metadata a full or read-only disk refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from wanda.storage.disk import write_atomic
from wanda.timestamps import utc_iso

log = logging.getLogger(__name__)

METADATA = "session_metadata.json"
FINISHED = ("completed", "stopped", "error", "interrupted")
RETRY_WRITE_S = 10.0  # how often metadata the disk refused (full, read-only) is tried again
# In WANDA's data directory: how the sessions whose metadata the captures disk refused ended. A
# restart before that disk takes them must not turn a session that failed ("the disk is full")
# into one that was merely interrupted.
UNWRITTEN_FILE = "unwritten_sessions.json"
ENDING_FIELDS = ("status", "error", "ended")
INTERRUPTED_BY_RESTART = "the server stopped while the session ran (a crash, a kill, a power cut or a full disk)"
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
    listed = {
        frame["file"]: frame for frame in metadata.get("frames", []) if isinstance(frame, dict) and "file" in frame
    }
    settings = metadata.get("settings") or {}
    stem = settings.get("frame_type", "light")
    extension = frame_extension(settings.get("file_format", "jpeg"))

    numbers = {}
    for path in folder.iterdir():
        match = _FRAME_NUMBER.match(path.name)
        if match and match["type"] == stem and match["extension"] == extension:
            numbers[path.name] = int(match["number"])
    on_disk = sorted(numbers, key=numbers.__getitem__)  # light_10000 after light_9999
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


class SessionStore:
    """The sessions' files under a captures folder: recovery at start-up (temporaries swept,
    metadata reconciled with the frames on disk, sessions left running marked), and metadata the
    disk refused (full or read-only), shown from memory, remembered in WANDA's data directory and
    written as soon as the disk takes it."""

    def __init__(self, root: Path, state_dir: Path | None):
        self.root = root
        self.state_dir = state_dir
        # Metadata the disk refused (full or read-only): shown from here, written when it can be.
        self.unwritten: dict[Path, dict[str, Any]] = {}
        self._unwritten_lock = threading.Lock()  # a retry never overwrites a newer write
        self._refused: set[Path] = set()  # folders whose refusal is logged already
        # Endings remembered for folders not under this run's captures folder (a drive that is
        # not there today): kept for the day it is.
        self._elsewhere: dict[str, dict[str, Any]] = {}
        self._retry_now = asyncio.Event()

    # -- start-up: no session stays "running" after a crash ------------------------------------

    async def recover(self) -> list[str]:
        """Mark sessions left running by a crash or kill as interrupted (reconciled with disk)."""
        return await asyncio.to_thread(self._recover)

    def _recover(self) -> list[str]:
        """Sweep the temporaries a kill left behind, make every session's metadata agree with its
        files, and mark the sessions left running as interrupted."""
        marked: list[str] = []
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
                log.info(
                    "session %s %s before the restart (its disk refused to say so)", folder.name, metadata["status"]
                )
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
            if retry and self.unwritten.get(folder) is not metadata:
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
                        folder.name,
                        exc.strerror or exc,
                        metadata.get("status"),
                        RETRY_WRITE_S,
                    )
                if self.unwritten.get(folder) is not metadata:
                    self.unwritten[folder] = metadata
                    self._save_unwritten_endings()
                return
            if self.unwritten.pop(folder, None) is not None:
                self._save_unwritten_endings()
        if folder in self._refused:
            self._refused.discard(folder)
            log.info("session %s: its metadata is written at last", folder.name)

    def write_fresh(self, folder: Path, metadata: dict[str, Any]) -> None:
        """Thread: a new version of a session's metadata replaces any version the disk refused."""
        with self._unwritten_lock:
            write_metadata(folder, metadata)
            if self.unwritten.pop(folder, None) is not None:
                self._save_unwritten_endings()

    def keep_unwritten(self, folder: Path, metadata: dict[str, Any]) -> None:
        """Thread: keep metadata the disk refused, to show and to write later."""
        with self._unwritten_lock:
            self.unwritten[folder] = metadata
            self._save_unwritten_endings()

    def _save_unwritten_endings(self) -> None:
        """Thread, under the lock: how the unwritten sessions ended, on WANDA's own disk."""
        if self.state_dir is None:
            return
        endings = dict(self._elsewhere)
        endings.update(
            (str(folder), {key: metadata.get(key) for key in ENDING_FIELDS})
            for folder, metadata in self.unwritten.items()
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
            for folder, metadata in list(self.unwritten.items()):
                await asyncio.to_thread(self._write_or_keep, folder, metadata, retry=True)
