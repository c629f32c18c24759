"""Capture sessions: N frames into a folder of their own, rapid or spread over hours.

A session runs as an asyncio task that submits camera jobs through CameraControl, so it shares the
one camera with everything else and never blocks the loop. Frame i of a timed session is due at
``t0 + i * T / N`` (a frame longer than its slot makes the session late, and the status says so).
Its metadata is rewritten after every frame (wanda/sessions/store.py); a session that a crash or
kill left ``running`` is marked ``interrupted`` at the next start, and ``resume`` continues it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wanda import __version__
from wanda.arbiter import Lease
from wanda.control import CameraControl
from wanda.errors import ErrorCode, WandaError, storage_error
from wanda.events import EventBus
from wanda.mount import MountControl
from wanda.sessions.checks import Dither, SessionRequest, parse_start
from wanda.sessions.store import MetadataWriter, SessionStore, read_metadata, reconcile
from wanda.storage.disk import TEMP_PREFIX, NumberedFiles, disk_space, plain_name, unwritable_reason
from wanda.storage.gallery import resolve_inside
from wanda.timestamps import utc_iso

log = logging.getLogger(__name__)

RESUMABLE = ("interrupted", "stopped", "error")
ENDING_WAIT_S = 10.0  # how long a start or a listing waits for an ending session's last write
END_WAIT_S = 1.5  # how long a stop (or shutdown) waits for the session's task to end


@dataclass
class SessionRun:
    """A session in progress (or the last one), as the runner and the status see it."""

    folder: Path
    metadata: dict[str, Any]
    interval: float  # seconds between frame starts; 0 for rapid
    schedule_start: float  # loop time of the first frame of this run
    first_index: int  # frames already taken when this run started (a resume)
    lease: Lease  # the camera, held from the start until its last frame
    writer: MetadataWriter
    started_monotonic: float = field(default_factory=time.monotonic)
    ended_monotonic: float | None = None  # the elapsed time stops here
    tracking_started_here: bool = False
    stop_reason: str | None = None  # "stopped" or "interrupted" once asked to end
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    dither_offset: int = 0  # steps the RA axis stands ahead of plain tracking (dithering)
    announced: set[str | None] = field(default_factory=set)  # the files of the frames told to the listeners

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
        self.store = SessionStore(captures_root, state_dir)
        self.run: SessionRun | None = None
        self._lock = asyncio.Lock()
        # Called on the loop with ("frame", folder, the frame's record) after each frame is saved
        # and listed, and ("ended", folder, None) when a session ends: the stack follows a session.
        self.listeners: list[Callable[[str, Path, dict[str, Any] | None], None]] = []
        bus.add_status_provider("session", self.status)
        # What the server's start-up and the gallery ask of the sessions' files.
        self.recover = self.store.recover
        self.keep_writing = self.store.keep_writing
        self.storage_changed = self.store.storage_changed

    @property
    def active(self) -> bool:
        return self.run is not None and self.run.task is not None and not self.run.task.done()

    # -- commands ------------------------------------------------------------------------------

    async def start(self, body: Any) -> dict[str, Any]:
        request = parse_start(body, self.control)
        if request.dither is not None and not (request.enable_tracking or self.mount.tracking):
            raise WandaError(
                ErrorCode.VALIDATION_ERROR,
                "dither: the mount dithers only while it tracks: set enable_tracking (or start tracking first)",
            )
        async with self._lock:
            await self._ended()
            if self.active:
                raise WandaError(ErrorCode.SESSION_START_FAILED, "a session is already running: stop it first")
            lease = self.control.arbiter.acquire("session", request.name)
            try:
                await self._check_space(request.total_images, request.settings.file_format)
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
            "dither": request.dither.as_dict() if request.dither else None,
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
        if not isinstance(body, dict):
            raise WandaError(ErrorCode.VALIDATION_ERROR, "resume takes an optional name (the session's folder) only")
        if set(body) - {"name"}:  # named, as every field a validation error is about
            unknown = sorted(set(body) - {"name"})[0]
            raise WandaError(ErrorCode.VALIDATION_ERROR, f"{unknown}: unknown field (resume takes a name only)")
        if not isinstance(body.get("name", ""), str):
            raise WandaError(ErrorCode.VALIDATION_ERROR, "name: must be a string (the session's folder)")
        async with self._lock:
            await self._ended()
            if self.active:
                raise WandaError(ErrorCode.SESSION_START_FAILED, "a session is already running")
            folder, metadata = await asyncio.to_thread(self._resumable, body.get("name"))
            lease = self.control.arbiter.acquire("session", metadata.get("name"))
            try:
                remaining = metadata["total_images"] - len(metadata["frames"])
                await self._check_space(remaining, metadata["settings"].get("file_format", "jpeg"))
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
        run = self.run
        if run is not None and run.task is not None and not run.task.done() and run.metadata["status"] != "running":
            # Bounded: a write hung on a failing drive must not hang the list or every start.
            await asyncio.wait({run.task}, timeout=ENDING_WAIT_S)

    async def stop(self, reason: str = "stopped") -> dict[str, Any]:
        run = self.run
        if not self.active or run is None:
            raise WandaError(ErrorCode.SESSION_STOP_FAILED, "no session is running")
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
                "active": False,
                "running": False,
                "status": "idle",
                "name": None,
                "folder": None,
                "total_images": 0,
                "captured_images": 0,
                "images_captured": 0,
                "progress": 0.0,
                "elapsed_time": 0.0,
                "remaining_time": 0.0,
                "session_dir": None,
                "total_time_hours": None,
                "estimated_completion": None,
                "late": False,
                "lateness_s": 0.0,
                "mode": None,
                "error": None,
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
            "elapsed_time": round((run.ended_monotonic or time.monotonic()) - run.started_monotonic, 1),
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
            "dither": metadata.get("dither"),
            "dither_offset_steps": run.dither_offset,
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
        sessions: list[dict[str, Any]] = []
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
                    "saved": folder not in self.store.unwritten,  # False: the disk refused its newest state
                }
            )
        sessions.sort(key=lambda s: s["started"] or "", reverse=True)
        return sessions

    # -- the runner ----------------------------------------------------------------------------

    async def _launch(self, folder: Path, metadata: dict[str, Any], lease: Lease) -> None:
        """Write the session's first metadata and start its runner, which holds ``lease`` (the
        camera) until its last frame."""
        await asyncio.to_thread(self.store.write_fresh, folder, metadata)
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
        run.dither_offset = int(metadata.get("dither_offset_steps") or 0)  # a resume: where the axis stands
        run.announced = {frame.get("file") for frame in metadata["frames"]}
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
            dither = Dither(**metadata["dither"]) if metadata.get("dither") else None
            if metadata["enable_tracking"] and not self.mount.tracking:
                current = self.mount.status()
                self.mount.start(current["speed"], current["direction"])
                run.tracking_started_here = True
            for index in range(run.captured, run.total):
                dithered = None
                if dither is not None and index > 0 and index % dither.every == 0:
                    # Before the wait: a timed session's frame is not made late by it.
                    dithered = await self._dither(run, dither)
                    if run.stop_reason:
                        break
                await self._pause(run, run.due(index) - loop.time())
                if run.stop_reason:
                    break
                free, _ = await asyncio.to_thread(disk_space, run.folder)
                if free < self.min_free_bytes:
                    raise WandaError(
                        ErrorCode.INSUFFICIENT_SPACE,
                        f"free space fell to {free // 2**20} MB, below the floor of {self.min_free_bytes // 2**20} MB",
                    )
                extra: dict[str, Any] = {"session": metadata["name"], "object": target, "frame": index + 1}
                if dither is not None:
                    extra["dither_offset_steps"] = run.dither_offset
                try:
                    result = await self.control.capture(files, settings, extra, run.lease)
                except WandaError as exc:
                    if exc.code == ErrorCode.CAPTURE_CANCELLED:
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
                if dither is not None:
                    metadata["frames"][-1]["dither"] = {"offset_steps": run.dither_offset, **(dithered or {"steps": 0})}
                metadata["captured_images"] = len(metadata["frames"])
                await run.writer.write(metadata)
                self._announce(run, metadata["frames"][-1:])
                self.bus.publish(
                    "session", "session_progress", {**self.status(), "file": result["file"], "url": result["url"]}
                )
                if run.stop_reason:
                    break
            if run.stop_reason:
                outcome = run.stop_reason
        except WandaError as exc:
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

    def _announce(self, run: SessionRun, records: list[dict[str, Any]]) -> None:
        """Tell the listeners of the frames of ``records`` not told yet (by their files: the end's
        listing is made anew from the disk)."""
        for record in records:
            if record.get("file") not in run.announced:
                run.announced.add(record.get("file"))
                self._tell("frame", run.folder, record)

    def _tell(self, kind: str, folder: Path, record: dict[str, Any] | None) -> None:
        for listener in self.listeners:
            try:
                listener(kind, folder, record)
            except Exception:  # a listener's trouble must not end the session
                log.exception("a session listener failed on %s", kind)

    async def _dither(self, run: SessionRun, dither: Dither) -> dict[str, Any]:
        """Shift the RA axis to a random offset within ±max_steps of plain tracking, another than
        the one it has (so the offset never wanders off: a random walk would), then let it settle.
        Forward by a fast move, back by holding tracking for so many steps (never turning the gears
        back: no backlash). What was done, for the next frame's record. A mount that does not
        track, or refuses, leaves the session going (frames are still worth having), and the record
        says why."""
        offsets = [k for k in range(-dither.max_steps, dither.max_steps + 1) if k != run.dither_offset]
        wanted = random.choice(offsets) - run.dither_offset
        record: dict[str, Any] = {"steps": 0}
        try:
            if not self.mount.tracking:
                raise WandaError(ErrorCode.MOUNT_ERROR, "the mount is not tracking")
            record["steps"] = await self._shift(run, wanted)
        except WandaError as exc:
            log.warning("session %s: dither of %+d steps failed: %s", run.folder.name, wanted, exc.message)
            record["error"] = f"dither of {wanted:+d} steps: {exc.message}"
        run.dither_offset += record["steps"]
        run.metadata["dither_offset_steps"] = run.dither_offset  # written with the next frame (a resume's)
        await self._pause(run, dither.settle_s)
        self.bus.publish(
            "session",
            "session_dither",
            {**self.status(), "dither_steps": record["steps"], "dither_error": record.get("error")},
        )
        return record

    async def _shift(self, run: SessionRun, steps: int) -> int:
        """Move the axis ``steps`` against tracking; the steps made (a stop of the session cuts a
        move short where it is; a hold's steps are left out whatever comes)."""
        if steps < 0:
            await self._pause(run, self.mount.hold(-steps))
            return steps
        move = asyncio.ensure_future(self.mount.move(steps, self.mount.status()["direction"]))
        woken = asyncio.ensure_future(run.wake.wait())
        try:
            await asyncio.wait({move, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not move.done():
                move.cancel()  # the move stops where it is
                await asyncio.wait({move})
        failure = None if move.cancelled() else move.exception()
        if failure is not None:
            raise failure  # refused (nothing moved), or the mount failed: no offset known
        return self.mount.move_offset

    @staticmethod
    async def _pause(run: SessionRun, seconds: float) -> None:
        """Wait ``seconds``, or less when the session is told to end."""
        if seconds > 0:
            try:
                await asyncio.wait_for(run.wake.wait(), seconds)
            except TimeoutError:
                pass

    async def _finish(self, run: SessionRun, outcome: str, error: str | None) -> None:
        metadata = run.metadata
        # First, before any await: from here on the session is ending (see _end).
        metadata["status"] = outcome
        metadata["error"] = error
        metadata["ended"] = utc_iso(time.time())
        run.ended_monotonic = time.monotonic()
        if run.tracking_started_here and outcome != "interrupted":
            await self.mount.stop()  # only the tracking this session started
        try:
            # A frame saved while the session was told to end (or whose sidecar failed) is on
            # disk: list it, so the metadata agrees with the files.
            await asyncio.to_thread(reconcile, run.folder, metadata)
            await run.writer.write(metadata)
        except OSError as exc:  # a full disk: the last good metadata stays on disk, this one is retried
            log.error("could not write the metadata of session %s: %s", run.folder.name, exc)
            await asyncio.to_thread(self.store.keep_unwritten, run.folder, metadata)
        event = {"completed": "session_complete", "error": "session_error"}.get(outcome, "session_stop")
        self.bus.publish("session", event, self.status())
        # Frames the end listed (saved as it was told to end), or whose record could not be written.
        self._announce(run, metadata["frames"])
        self._tell("ended", run.folder, None)
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
        unwritten = self.store.unwritten.get(folder)
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
                if (
                    metadata
                    and metadata.get("status") in RESUMABLE
                    and len(metadata.get("frames", [])) < metadata.get("total_images", 0)
                ):
                    candidates.append((metadata.get("started") or "", folder, metadata))
        if not candidates:
            if name is not None and plain_name(name) and not (self.root / name).is_dir():
                raise WandaError(
                    ErrorCode.SESSION_START_FAILED, f"session {name!r} cannot be resumed: its folder was deleted"
                )
            which = f"session {name!r}" if name else "session"
            raise WandaError(ErrorCode.SESSION_START_FAILED, f"no interrupted {which} to resume")
        _, folder, metadata = max(candidates, key=lambda c: c[0])
        return folder, reconcile(folder, metadata)

    async def frames(self, name: str | None) -> tuple[Path, list[dict[str, Any]], bool]:
        """The folder and frame records of the session named ``name`` (its folder), or of the one
        running when None, and whether it runs (more frames will come). The running session's
        are read without a pause: a frame saved meanwhile cannot slip between them and a
        listener's next call. NOT_FOUND when there is no such session."""
        run = self.run
        if self.active and run is not None and run.metadata["status"] == "running" and name in (None, run.folder.name):
            return run.folder, [dict(frame) for frame in run.metadata["frames"]], True
        if name is None:
            raise WandaError(ErrorCode.NOT_FOUND, "no session is running: name the session to stack")
        found = await asyncio.to_thread(self._session_folder, name)
        if found is None:
            raise WandaError(ErrorCode.NOT_FOUND, f"no session {name!r} in the captures folder")
        folder, metadata = found
        frames = metadata.get("frames")
        return folder, list(frames) if isinstance(frames, list) else [], False

    def _session_folder(self, name: str) -> tuple[Path, dict[str, Any]] | None:
        """A session's folder right in the captures folder (not hidden, no link out of it), and
        its metadata; None when there is none."""
        if not plain_name(name):
            return None
        try:
            resolve_inside(self.root, name, kind="dir")  # no link out of the captures folder
        except (WandaError, OSError):
            return None
        folder = self.root / name  # as the running session and its listeners name it
        metadata = self._metadata_of(folder)
        return None if metadata is None else (folder, metadata)

    def frame_format(self) -> str | None:
        """The file format the running session saves its frames in (None when none runs)."""
        return self.run.metadata["settings"].get("file_format", "jpeg") if self.active and self.run else None

    async def _check_space(self, frames: int, file_format: str) -> None:
        unwritable = await asyncio.to_thread(unwritable_reason, self.root)
        if unwritable is not None:
            raise WandaError(ErrorCode.READ_ONLY_STORAGE, f"the session cannot save its frames: {unwritable}")
        free, _ = await asyncio.to_thread(disk_space, self.root)
        need = frames * self.control.estimated_still_bytes(file_format) + self.min_free_bytes
        if free < need:
            raise WandaError(  # told as a lack of space, answered as a session that cannot start (409)
                ErrorCode.INSUFFICIENT_SPACE,
                f"{frames} frames need about {need // 2**20} MB with the reserve, but {free // 2**20} MB are free",
                answer_as=ErrorCode.SESSION_START_FAILED,
            )
