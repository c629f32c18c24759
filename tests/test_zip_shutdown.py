"""SIGTERM while a folder zip is still streaming (issue 13): a real `wanda` process, real sockets.

The zip's builder thread is held back by the client (back-pressure), so at SIGTERM it is blocked
handing a chunk to the loop. Shutdown must end the download itself, as it ends the MJPEG streams:
the builder stops at once, every future is collected, nothing is logged as an error, the process
exits 0, and the client of the cut-off zip gets a reset (never an end that could look complete).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import threading
import time

import pytest
from aiohttp.test_utils import TestServer
from live_server import Wanda

from wanda.app import create_app

FILES = 12  # x 1 MiB, incompressible: more than the socket buffers and the zip's queue hold
FILE_SIZE = 1 << 20


class Download:
    """One `GET /api/captures/<folder>.zip` on a raw socket with a small receive buffer, so the
    server's buffers fill and the builder waits for this client."""

    def __init__(self, port: int, folder: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET /api/captures/{folder}.zip HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        self.received = bytearray()
        self.ending: str | None = None  # "reset" or "eof", once the server has let go
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()

    def wait_for_the_zip_to_start(self) -> None:
        """Until the first bytes of the zip itself (its first local header) arrive."""
        self.sock.settimeout(15)
        while b"PK\x03\x04" not in self.received:
            data = self.sock.recv(65536)
            assert data, f"the server closed before the zip began: {bytes(self.received[:300])!r}"
            self.received += data
        status = bytes(self.received).split(b"\r\n", 1)[0]
        assert b" 200 " in status, status

    def read_slowly(self) -> None:
        """Go on reading 64 KiB at a time with a pause after each, in the background (the pause is
        the slow client itself, not a wait for something to happen)."""
        self._reader = threading.Thread(target=self._read, args=(0.1,), daemon=True)
        self._reader.start()

    def _read(self, pause: float) -> None:
        self.sock.settimeout(1.0)
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                self.ending = "reset"
                return
            if not data:
                self.ending = "eof"
                return
            self.received += data
            time.sleep(pause)
        self.ending = "gave up"

    def how_it_ended(self, timeout: float = 15) -> str | None:
        """Read what is left (at once for a client that had stopped reading) and say how the
        server ended the response."""
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, args=(0.0,), daemon=True)
            self._reader.start()
        self._reader.join(timeout)
        self._stop.set()
        self._reader.join(2)
        return self.ending

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def make_folders(captures, names=("M31", "M42")):
    for name in names:
        folder = captures / name
        folder.mkdir(parents=True)
        for i in range(FILES):
            (folder / f"light_{i + 1:04d}.fits").write_bytes(os.urandom(FILE_SIZE))


@pytest.fixture
def server(tmp_path):
    make_folders(tmp_path / "captures")
    wanda = Wanda(tmp_path)
    wanda.start()
    try:
        yield wanda
    finally:
        wanda.kill()  # if the test's SIGTERM did not end it


@pytest.mark.slow
@pytest.mark.parametrize(
    "clients",
    [
        pytest.param(["slow"], id="a-client-reading-slowly"),
        pytest.param(["stalled"], id="a-client-that-stopped-reading"),
        pytest.param(["slow", "stalled"], id="two-zips-at-once"),
    ],
)
def test_sigterm_mid_zip_exits_cleanly_and_resets_the_cut_off_download(server, clients):
    downloads = []
    try:
        for kind, folder in zip(clients, ("M31", "M42"), strict=False):  # a folder for each client
            download = Download(server.port, folder)
            downloads.append(download)
            download.wait_for_the_zip_to_start()  # mid-stream: the rest is still being built
            if kind == "slow":
                download.read_slowly()

        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=15)
        took = time.monotonic() - started
        print(f"\n{'+'.join(clients)}: exit code {code} {took:.2f} s after SIGTERM")  # for the record, not a limit

        log = server.log_text()
        assert code == 0, log[-3000:]
        for bad in ("Traceback", "never retrieved", "never awaited", "ERROR"):
            assert bad not in log, log[-3000:]
        assert "stopped" in log
        # A cut-off zip must never look complete: each client is let go with a reset.
        for kind, download in zip(clients, downloads, strict=True):
            assert download.how_it_ended() == "reset", kind
            assert len(download.received) < FILES * FILE_SIZE
    finally:
        for download in downloads:
            download.close()


async def test_a_test_server_closing_mid_zip_leaves_no_future_unretrieved(config, caplog):
    """The same shutdown in-process, through aiohttp's test server, which also cancels a handler
    whose client is gone (handler_cancellation): the builders' outcomes are still taken."""
    make_folders(config.captures)
    server = TestServer(create_app(config), host="127.0.0.1", port=0)
    await server.start_server()
    downloads = []
    try:
        for folder in ("M31", "M42"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            writer.write(f"GET /api/captures/{folder}.zip HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            downloads.append((reader, writer))
            received = b""
            while b"PK\x03\x04" not in received:
                data = await asyncio.wait_for(reader.read(65536), 15)
                assert data, received[:300]
                received += data
    finally:
        await server.close()
    for reader, writer in downloads:
        with pytest.raises(ConnectionResetError):
            while await asyncio.wait_for(reader.read(1 << 20), 15):
                pass
        writer.close()
    gc.collect()  # asyncio reports an unretrieved exception when its future is collected
    await asyncio.sleep(0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
