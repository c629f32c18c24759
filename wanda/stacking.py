"""Live stacking: the `stack` thread feeds the stacking process (wanda/stack_engine.py) one frame
at a time, and takes its answers to the loop with ``call_soon_threadsafe``: the state, out as
`stack` events, and the stack stretched and encoded for the viewers of ``/stream?source=stack``
(after each frame added while somebody watches, and when a first viewer comes; once for all).

Its frames come from one source: the preview (live EAA), or a capture session's saved frames (those
already on disk, then each as it lands: the session tells the loop, the loop queues its file).

The camera thread offers preview frames while a stack of the preview runs (``offer``: a cheap
check, then a copy into a slot of one). The thread takes the newest; a frame still waiting when a
newer one comes is skipped and counted, so a stack that cannot keep up never falls behind the
camera. A session's frames are files: none is skipped, they wait in a queue (their names only) and
the state says how many; the stack ends by itself when the session has ended and its last frame is
in. After each frame the thread rests so that the stack takes at most DUTY of a core: the live view
keeps its frame rate. A save goes through the thread too (one talker to the process).

Nothing here blocks the loop or the camera thread, and the stacking's own work does not even take
the server's GIL: it is done in the other process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wanda.errors import ErrorCode, WandaError
from wanda.frames import Frame, FrameHub, multipart_part
from wanda.stack_engine import EngineGone, StackProcess, empty_state
from wanda.storage.disk import SavedFile, plain_name
from wanda.timestamps import parse_utc

log = logging.getLogger(__name__)

DUTY = 0.4  # the share of a core the stacking takes at most (see StackWorker._rest)


@dataclass(frozen=True)
class SavedFrame:
    """A session's frame to stack: its file, and what the session recorded of it."""

    path: Path
    timestamp: float | None  # the exposure's start, Unix seconds (None: unknown, the file's time is taken)
    exposure_s: float
    gain: float


def saved_frame(folder: Path, record: dict[str, Any]) -> SavedFrame:
    """A session's frame record (wanda/sessions/runner.py) as a frame to stack: its FITS file when
    it lists one (the sensor's linear data; the stacking process also looks for a FITS beside a
    JPEG), else its file. No disk is read here (the loop calls it for every frame). ValueError
    for a record that names no file right in the folder."""
    if not isinstance(record, dict):
        raise ValueError(f"a frame record that is not one: {record!r:.80}")
    files = record.get("files") or [record.get("file")]
    if not isinstance(files, list) or not all(isinstance(f, str) and plain_name(f) for f in files):
        raise ValueError(f"a frame record names no file of its folder: {files!r:.80}")
    exposure, gain = record.get("exposure_seconds") or 0.0, record.get("gain") or 1.0
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exposure, gain)):
        raise ValueError(f"a frame record's exposure or gain is not a number: {record!r:.80}")
    chosen = next((f for f in files if f.lower().endswith(".fits")), files[0])
    try:
        timestamp: float | None = parse_utc(record["started"])
    except (KeyError, TypeError, ValueError, AttributeError):  # a frame found after a crash: its file's time
        timestamp = None
    return SavedFrame(folder / chosen, timestamp, float(exposure), float(gain))


def saved_frames(folder: Path, records: list[dict[str, Any]]) -> list[SavedFrame]:
    """The frames of a session's records that name a file of its folder (others are left out)."""
    frames = []
    for record in records:
        try:
            frames.append(saved_frame(folder, record))
        except ValueError as exc:
            log.warning("session %s: %s", folder.name, exc)
    return frames


@dataclass(frozen=True)
class SessionFrames:
    """A session to stack: its folder, the frames on disk now, and whether more will come."""

    folder: Path
    frames: list[SavedFrame]
    running: bool


class StackWorker:
    """The `stack` thread, the queue of frames it feeds the stacking process, and the running
    stack's state (read on the loop)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        publish: Callable[[str, dict[str, Any]], None],
        *,
        linear: bool = True,
        hub: FrameHub | None = None,
        jpeg_quality: int = 85,
        calibration_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ):
        """``publish(event, state)`` is called on the loop; ``linear``: the preview's pixels are
        linear light (the simulator's), else sRGB-encoded (a Pi's preview) and linearised; ``hub``:
        where the stretched stack goes for its viewers; ``calibration_dir``: the master frames'
        folder (wanda/calibration.py): those that match each frame are taken off it (a dark, else
        a bias) and divided out of it (a flat)."""
        self._loop = loop
        self._publish = publish
        self._engine = StackProcess(linear=linear, calibration_dir=calibration_dir, jpeg_quality=jpeg_quality)
        self._clock = clock
        self._lock = threading.Lock()  # guards the slot, the queue, the requests and the running flag
        self._ready = threading.Condition(self._lock)
        self._slot: tuple[np.ndarray, str, float, float, float] | None = None
        self.source: str | None = None  # "preview" or "session": where the running stack takes frames
        self._session: Path | None = None  # the session stacked (its folder)
        self._files: deque[SavedFrame] = deque()  # a session's frames waiting for the thread
        self._taken: set[Path] = set()  # a session's frames queued for this stack: never twice
        self._session_open = False  # more of the session's frames will come
        self._done = False  # the session's frames are all stacked: the stack stopped by itself
        self._spare: np.ndarray | None = None  # the buffer of the frame the thread last took, for the next
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._wake_camera: Callable[[], None] = lambda: None
        self.running = False  # read from the camera thread
        self._reset_requested = False
        self._generation = 0  # a reset starts the next; a frame of an older one is not published
        self._masters_epoch = 0  # counts starts and resets: the process looks the masters up again
        self.skipped = 0  # frames a newer one replaced before the thread took them
        self.state: dict[str, Any] = empty_state()
        self.hub = hub
        self._render_requested = False
        self._saves: list[tuple[concurrent.futures.Future[SavedFile], Path, str, dict[str, Any]]] = []
        self._seq = 0
        if hub is not None:
            hub.set_demand_callback(self.request_render)

    @property
    def session_folder(self) -> Path | None:
        """The folder of the session the stack takes (or took) its frames from."""
        return self._session if self.source == "session" else None

    @property
    def process_id(self) -> int | None:
        """The stacking process's, while it runs (it starts with the first frame)."""
        return self._engine.pid

    # -- from the loop ----------------------------------------------------------------------------

    def set_camera_wake(self, wake: Callable[[], None]) -> None:
        self._wake_camera = wake

    def request_render(self) -> None:
        """A first viewer of the stack came: show it the stack as it is (the thread renders it)."""
        with self._lock:
            self._render_requested = True
            self._ready.notify()

    def start(self, session: SessionFrames | None = None) -> dict[str, Any]:
        """Stack the preview, or ``session``'s frames: those not stacked yet, then each as it
        lands. A stack of another source is cleared first (its frames are not alike)."""
        source = "preview" if session is None else "session"
        folder = None if session is None else session.folder
        with self._lock:
            if (source, folder) != (self.source, self._session):
                self._clear()  # whatever is stacked, waiting or on its way of the other source goes
            self._masters_epoch += 1  # masters built since are looked up again
            self.running, self.source, self._session, self._done = True, source, folder, False
            if session is not None:
                self._session_open = session.running
                self._queue(session.frames)
            self.state = _without_error({**self.state, **self._source_state()})
            self._ready.notify()
        if session is None:
            self._wake_camera()  # the preview runs while a stack wants its frames
        self._publish("stack_status", self.state)  # every page shows it, not only the one that asked
        return self.state

    def stop(self) -> dict[str, Any]:
        """Stop taking frames; the stack so far stays (reset clears it)."""
        with self._lock:
            self.running = False
            self._slot = None
            for waiting in self._files:  # a start of the session again queues what was left waiting
                self._taken.discard(waiting.path)
            self._files.clear()
            self.state = {**self.state, **self._source_state()}
        self._publish("stack_status", self.state)
        return self.state

    def session_event(self, kind: str, folder: Path, frame: SavedFrame | None) -> None:
        """On the loop, from the sessions: ``frame`` of the session in ``folder`` is saved
        ("frame"), or the session ended ("ended")."""
        with self._lock:
            if not (self.running and self.source == "session" and folder == self._session):
                return
            if kind == "ended":
                self._session_open = False
            elif frame is not None:
                self._session_open = True  # (resumed while its last frames were stacked)
                self._queue([frame])
            self._ready.notify()
        if kind == "frame":
            self.state = {**self.state, "waiting": len(self._files)}

    def _queue(self, frames: list[SavedFrame]) -> None:
        """With the lock held: the frames not queued yet, in order."""
        for frame in frames:
            if frame.path not in self._taken:
                self._taken.add(frame.path)
                self._files.append(frame)

    def _clear(self) -> None:
        """With the lock held: the stack is dropped (by the thread, before its next frame)."""
        self._slot = None
        self._files.clear()
        self._taken.clear()
        self._reset_requested = True
        self._done = False
        self._masters_epoch += 1
        self._generation += 1
        self.skipped = 0
        self._ready.notify()
        self.state = empty_state()
        if self.hub is not None:  # a viewer who comes now does not see the stack that was
            self.hub.forget_latest()

    def _source_state(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "source": self.source,
            "session": self._session.name if self._session is not None else None,
            "waiting": len(self._files),
            "done": self._done,
        }

    def reset(self, session: SessionFrames | None = None) -> dict[str, Any]:
        """Clear the stack (the next frame starts a new one); a running stack goes on: a running
        stack of a session starts over with ``session``'s frames (the same session, listed
        again). A stopped stack is only cleared (a start takes the session's frames again)."""
        with self._lock:
            self._clear()
            if self.running and session is not None and self.source == "session" and session.folder == self._session:
                self._session_open = session.running
                self._queue(session.frames)
            self.state = _without_error({**self.state, **self._source_state()})
        self._publish("stack_status", self.state)
        return self.state

    # -- from the camera thread -------------------------------------------------------------------

    @property
    def wanted(self) -> bool:
        return self.running and self.source == "preview"

    def offer(self, pixels: np.ndarray, pixel_format: str, timestamp: float, exposure_s: float, gain: float) -> None:
        if not self.wanted:
            return
        with self._lock:
            if not self.wanted:
                return
            # The camera reuses its buffers: the frame is copied, into the slot's own buffer (a
            # fresh 6 MB array a frame would make the heap creep).
            waiting = self._slot
            self.skipped += waiting is not None
            buffer = waiting[0] if waiting is not None and waiting[0].shape == pixels.shape else self._spare
            if buffer is None or buffer.shape != pixels.shape or buffer.dtype != pixels.dtype:
                buffer = np.empty_like(pixels)
            if buffer is self._spare:
                self._spare = None  # in the slot now (a replaced frame's buffer leaves the spare be)
            np.copyto(buffer, pixels)
            self._slot = (buffer, pixel_format, timestamp, exposure_s, gain)
            self._ready.notify()

    # -- the thread -----------------------------------------------------------------------------

    def start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stack", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """End the thread and the stacking process: the frame under way is given ``timeout``
        seconds, then the process is killed (a frame may hang on a stalled disk)."""
        with self._lock:
            self._stopping = True
            self.running = False
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._engine.kill()
                self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._engine.close()
            with self._lock:
                saves, self._saves = self._saves, []
            for request, *_ in saves:
                _answer(request, error=WandaError(ErrorCode.SHUTTING_DOWN, "the server is shutting down"))

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not (
                    self._slot is not None
                    or self._files
                    or self._stopping
                    or self._reset_requested
                    or self._render_requested
                    or self._saves
                    or self._session_done()
                ):
                    self._ready.wait()
                if self._stopping:
                    return
                reset, self._reset_requested = self._reset_requested, False
                render, self._render_requested = self._render_requested, False
                saves, self._saves = self._saves, []
                generation = self._generation
                watched = self.hub is not None and self.hub.wants_frames
            # Requests first, each answered whatever comes; then a frame, taken only now: a lost
            # process cannot take a popped frame with it unannounced.
            try:
                if reset and self._engine.holds_stack:
                    self._engine.call(("reset",))
                self._save_all(saves)
                if render and watched and self._engine.holds_stack:
                    self._show(generation, self._engine.call(("render",)))
            except EngineGone as exc:
                self._lost(str(exc))
                continue
            except Exception:
                log.exception("a request to the stacking process failed")
            with self._lock:
                frame, self._slot = self._slot, None
                saved = self._files.popleft() if frame is None and self._files else None
                generation, epoch = self._generation, self._masters_epoch
                done = frame is None and saved is None and self._session_done()
                if done:  # the session's last frame is in: the stack stops by itself
                    self.running, self._done = False, True
            if done:
                self._call_loop(self._source_done, generation)
            if frame is None and saved is None:
                continue
            started = time.monotonic()
            try:
                if frame is not None:
                    pixels, pixel_format, timestamp, exposure_s, gain = frame
                    preview = ("preview", pixels.shape, pixels.dtype.str, pixel_format, timestamp, exposure_s, gain)
                    event, state, rendered = self._engine.call((*preview, epoch, watched), pixels)
                    with self._lock:
                        self._spare = pixels  # sent: the buffer takes the next frame
                else:
                    assert saved is not None
                    request = ("saved", str(saved.path), saved.timestamp, saved.exposure_s, saved.gain, epoch, watched)
                    event, state, rendered = self._engine.call(request)
                if not self._call_loop(self._deliver, generation, event, state):
                    return
                self._show(generation, rendered)
            except EngineGone as exc:
                self._lost(str(exc))
                continue
            except Exception:  # a frame that cannot be stacked must not end the thread (nor spin it)
                log.exception("stacking a frame failed")
            self._rest(time.monotonic() - started)

    def _save_all(self, saves: list[tuple[concurrent.futures.Future[SavedFile], Path, str, dict[str, Any]]]) -> None:
        """Each save written by the process and answered; when the process is lost on one, the
        others are answered so too (and the loss goes on to the caller)."""
        for k, (request, folder, camera, state) in enumerate(saves):
            if not request.set_running_or_notify_cancel():  # its client went away
                continue
            try:
                _answer(request, self._engine.call(("save", str(folder), camera, state)))
            except EngineGone:
                lost = WandaError(ErrorCode.NOT_FOUND, "the stack was lost: the stacking process ended")
                _answer(request, error=lost)
                for later, *_ in saves[k + 1 :]:
                    if later.set_running_or_notify_cancel():
                        _answer(later, error=lost)
                raise
            except Exception as exc:  # WandaError (nothing stacked), OSError (the disk's), ...
                _answer(request, error=exc)

    def _lost(self, message: str) -> None:
        """On the thread: the stacking process died and its stack with it: the stack stops, cleared,
        and says why (the next start starts the process again)."""
        log.error("%s: the stack is lost", message)
        with self._lock:
            self.running = False
            self._slot = None
            self._files.clear()
            self._taken.clear()
            self._generation += 1
            generation = self._generation
        self._call_loop(self._told_lost, generation, message)

    def _told_lost(self, generation: int, message: str) -> None:
        if generation == self._generation:
            self.state = {**empty_state(), **self._source_state(), "error": message}
            self._publish("stack_status", self.state)

    def _session_done(self) -> bool:
        """With the lock held: a session stacked to its end (it ended and its frames are in)."""
        return self.running and self.source == "session" and not self._session_open and not self._files

    def _source_done(self, generation: int) -> None:
        """On the loop: the session's last frame was stacked and the stack stopped: say so."""
        if generation == self._generation and not self.running:
            self.state = {**self.state, **self._source_state()}
            self._publish("stack_status", self.state)

    def _call_loop(self, callback: Callable[..., object], *args: Any) -> bool:
        """``callback(*args)`` on the loop; False when the loop is closed (shutting down)."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False
        return True

    def _rest(self, worked: float) -> None:
        """Leave the processor to the camera and the viewers for a while: the stack takes at most
        DUTY of a core (frames that come meanwhile are skipped, the newest taken), so the live view
        keeps its frame rate on a two-core Pi. A stop, a reset or the end cut the rest short."""
        pause = worked * (1 / DUTY - 1)
        with self._lock:
            self._ready.wait_for(
                lambda: (
                    self._stopping or self._reset_requested or self._saves or self._render_requested or not self.running
                ),
                pause,
            )

    async def save(self, folder: Path, camera: str) -> SavedFile:
        """The stack as it stands into ``folder`` (the gallery's `stacks`): the process writes a
        stretched JPEG, the 32-bit float FITS of the mean and a JSON sidecar with the stack's state
        (this one). NOT_FOUND when nothing is stacked yet."""
        if not self.state["stacked"]:
            raise WandaError(ErrorCode.NOT_FOUND, "nothing is stacked yet: POST /api/stack/start first")
        request: concurrent.futures.Future[SavedFile] = concurrent.futures.Future()
        with self._lock:
            if self._stopping:
                raise WandaError(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
            self._saves.append((request, folder, camera, dict(self.state)))
            self._ready.notify()
        return await asyncio.wrap_future(request)

    def _show(self, generation: int, rendered: tuple[bytes, int, int] | None) -> None:
        """The stack, stretched and encoded once (by the process), to its viewers, on the loop."""
        if rendered is not None and self.hub is not None:
            self._call_loop(self._publish_render, generation, rendered)

    def _publish_render(self, generation: int, rendered: tuple[bytes, int, int]) -> None:
        """On the loop: unless the stack was cleared since it was rendered."""
        if generation != self._generation or self.hub is None:
            return
        jpeg, width, height = rendered
        self._seq += 1
        now = self._clock()
        self.hub.publish(Frame(self._seq, now, width, height, jpeg, multipart_part(jpeg, now, self._seq)))

    def _deliver(self, generation: int, event: str, state: dict[str, Any]) -> None:
        """On the loop: keep it and publish it, unless the stack was reset meanwhile."""
        if generation != self._generation:
            return
        self.state = {**state, **self._source_state(), "skipped": self.skipped}
        self._publish(event, self.state)


def _answer(request: concurrent.futures.Future, result: Any = None, *, error: BaseException | None = None) -> None:
    """Resolve a save's future, unless its client went away (cancelled) meanwhile."""
    try:
        if error is not None:
            request.set_exception(error)
        else:
            request.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def _without_error(state: dict[str, Any]) -> dict[str, Any]:
    """A state that no longer says the last stack was lost (a start or a reset)."""
    return {key: value for key, value in state.items() if key != "error"}
