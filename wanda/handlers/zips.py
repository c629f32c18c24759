"""Zips (a folder, or a selection of files), streamed while they are built: a builder thread per
zip (at most MAX_ZIPS at once, on threads of their own) hands 256 KiB chunks through a short queue
to the handler, which writes them to the client; a slow client holds its builder back, a client
that leaves cancels it, and shutdown ends every zip with a reset (a cut-off zip must not look
complete)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from wanda.errors import ErrorCode, WandaError
from wanda.handlers import drop_client
from wanda.keys import CONFIG
from wanda.storage import gallery

log = logging.getLogger(__name__)
ZIP_THREADS = web.AppKey("zip_threads", concurrent.futures.ThreadPoolExecutor)
ZIP_SLOTS = web.AppKey("zip_slots", asyncio.Semaphore)
MAX_ZIPS = 2
ZIP_QUEUE = 4  # chunks of a zip built ahead of its client


Build = Callable[[gallery.ChunkWriter], None]  # writes a zip into the sink, on a zip thread


async def send(request: web.Request, folder: Path) -> web.StreamResponse:
    """The folder as a zip download."""
    return await send_zip(request, folder.name, lambda sink: gallery.write_zip(folder, sink))


async def send_files(request: web.Request, entries: list[tuple[Path, str]], name: str) -> web.StreamResponse:
    """These files (path, name in the zip) as a zip download named ``name``."""
    return await send_zip(request, name, lambda sink: gallery.write_zip_of(entries, sink))


async def send_zip(request: web.Request, name: str, build: Build) -> web.StreamResponse:
    """What ``build`` writes, as the zip download ``name``.zip; or a clear refusal when shutting
    down or busy."""
    if request.app[ZIP_DOWNLOADS].closed:
        raise WandaError(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
    if request.app[ZIP_SLOTS].locked():
        raise WandaError(ErrorCode.BUSY, f"{MAX_ZIPS} zips are being made: try again when one is done")
    async with request.app[ZIP_SLOTS]:
        return await _stream_zip(request, name, build)


class _ZipPipe:
    """A zip's chunks, from its builder thread to its handler.

    The builder blocks while ZIP_QUEUE chunks wait for the client (a slow client holds it back);
    it waits on a Condition that the loop notifies, never on the loop itself, so ``cancel`` wakes
    it at once and it stops at its next write, and nothing is left polling or pending in the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()  # ZIP_QUEUE chunks at most, and the end
        self._room = threading.Condition()
        self._free = ZIP_QUEUE
        self.sink = gallery.ChunkWriter(self._hand_over)

    @property
    def cancelled(self) -> bool:
        return self.sink.cancelled.is_set()

    def build(self, build: Build) -> None:  # on the zip thread
        try:
            build(self.sink)
        finally:
            self._send(None)  # the end, complete or not: the handler then asks the builder which

    def _hand_over(self, chunk: bytes) -> None:  # on the zip thread: blocks while the client is behind
        with self._room:
            while not self._free and not self.cancelled:
                self._room.wait()
            if self.cancelled:
                raise OSError("the download was cancelled")
            self._free -= 1
        if not self._send(chunk):
            raise OSError("the server has stopped")

    def _send(self, item: bytes | None) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._chunks.put_nowait, item)
        except RuntimeError:  # the loop has closed: never, as the handler (or the cleanup) waits for the builder
            self.sink.cancelled.set()
            return False
        return True

    async def get(self) -> bytes | None:
        """The next chunk; None at the end of the zip or once cancelled."""
        chunk = None if self.cancelled else await self._chunks.get()
        if chunk is None or self.cancelled:
            return None
        with self._room:
            self._free += 1
            self._room.notify()
        return chunk

    def cancel(self) -> None:
        """Stop the builder at once, and wake the handler if it waits for a chunk."""
        self.sink.cancelled.set()
        with self._room:
            self._room.notify_all()
        self._chunks.put_nowait(None)


@dataclass(eq=False)
class _ZipDownloads:
    """The zips being sent, for shutdown to end."""

    active: dict[_ZipPipe, tuple[web.Request, asyncio.Task | None]] = field(default_factory=dict)
    closed: bool = False


ZIP_DOWNLOADS = web.AppKey("zip_downloads", _ZipDownloads)


async def _stream_zip(request: web.Request, name: str, build: Build) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "application/zip", "Content-Disposition": f'attachment; filename="{name}.zip"'}
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    pipe = _ZipPipe(loop)
    downloads = request.app[ZIP_DOWNLOADS]
    downloads.active[pipe] = (request, asyncio.current_task())
    if downloads.closed:  # shutdown began while the headers went out
        pipe.cancel()
    builder = loop.run_in_executor(request.app[ZIP_THREADS], pipe.build, build)
    builder.add_done_callback(_take_outcome)
    whole = False
    try:
        write_timeout = request.app[CONFIG].write_timeout
        while (chunk := await pipe.get()) is not None:
            async with asyncio.timeout(write_timeout):  # a client that stops reading is let go
                await response.write(chunk)
        if not pipe.cancelled:  # the builder's own end: it has returned, or is about to
            await asyncio.wait([builder])
            failure = builder.exception()
            if isinstance(failure, OSError):
                log.warning("zip of %s failed: %s", name, failure)
            elif failure is not None:
                raise failure
            whole = failure is None and not pipe.cancelled  # (shutdown may have come meanwhile)
    except (ConnectionError, TimeoutError):
        pass  # the client left, or stopped reading
    finally:
        del downloads.active[pipe]
        pipe.cancel()  # a builder still at work stops at its next write
        if not whole:
            drop_client(request)  # a cut-off zip must not look complete: the client gets a reset
        await asyncio.wait([builder])  # at once now: the thread does not outlive its handler
    if whole:
        await response.write_eof()
    return response


def _take_outcome(builder: asyncio.Future[None]) -> None:
    """Mark a builder's exception as seen, whatever becomes of its handler: the handler reports a
    failure that is news, and a cancelled download's "cancelled" is none."""
    if not builder.cancelled():
        builder.exception()


async def _end_zips(app: web.Application) -> None:
    """On shutdown, end every zip being sent, as the streams end: the builder stops at once and
    the client gets a reset. Left alone, a zip's handler would write on until aiohttp cancels it,
    twice ``shutdown_timeout`` later, with its builder still blocked."""
    downloads = app[ZIP_DOWNLOADS]
    downloads.closed = True
    handlers = []
    for pipe, (request, task) in list(downloads.active.items()):
        pipe.cancel()
        drop_client(request)
        if task is not None:
            handlers.append(task)
    if handlers:
        await asyncio.wait(handlers, timeout=app[CONFIG].shutdown_timeout)


def setup(app: web.Application) -> None:
    app[ZIP_SLOTS] = asyncio.Semaphore(MAX_ZIPS)
    app[ZIP_DOWNLOADS] = _ZipDownloads()
    app.on_shutdown.append(_end_zips)
    app.cleanup_ctx.append(_zip_threads)


async def _zip_threads(app: web.Application):
    # Zips get threads of their own: a client that reads slowly holds its builder for as long as
    # it takes, and must not take the shared threads every other disk task needs.
    app[ZIP_THREADS] = concurrent.futures.ThreadPoolExecutor(MAX_ZIPS, thread_name_prefix="zip")
    yield
    # Every builder has been told to stop (on_shutdown ended the zips): wait for them, so none
    # outlives the loop.
    await asyncio.to_thread(app[ZIP_THREADS].shutdown, wait=True, cancel_futures=True)
