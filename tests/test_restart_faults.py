"""WANDA starts on a full or read-only disk. A session a kill left ``running`` cannot be marked
interrupted there, and that write used to take the server down ("cannot listen ...: No space left
on device"): under systemd a restart loop, while the observer could have freed space through the
gallery. Now the server serves, shows the session as interrupted with its reason, says what is
wrong with the disk, and writes the recovery as soon as the disk takes it."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from helpers import fill, mounted_tmpfs, wait_for
from live_server import Wanda

from wanda.jpeg import JpegEncoder
from wanda.sessions.store import INTERRUPTED_BY_RESTART, RETRY_WRITE_S

JPEG = JpegEncoder().encode(np.full((64, 96, 3), 90, dtype=np.uint8), "RGB")


def left_running(disk) -> None:
    """A session as a kill leaves it: metadata saying running, one frame on disk."""
    folder = disk / "night"
    folder.mkdir()
    (folder / "light_0001.jpg").write_bytes(JPEG)
    metadata = {
        "format": 1,
        "name": "night",
        "folder": "night",
        "status": "running",
        "mode": "rapid",
        "total_images": 5,
        "captured_images": 1,
        "settings": {"frame_type": "light", "file_format": "jpeg", "exposure_seconds": 0.05, "gain": 1.0, "iso": 100},
        "started": "2026-12-01T20:00:00.000Z",
        "ended": None,
        "error": None,
        "resumed": [],
        "frames": [{"index": 1, "file": "light_0001.jpg", "exposure_seconds": 0.05, "gain": 1.0}],
    }
    (folder / "session_metadata.json").write_text(json.dumps(metadata))


def on_disk(disk) -> dict:
    return json.loads((disk / "night" / "session_metadata.json").read_text())


pytestmark = pytest.mark.slow  # a real `wanda` process on a small real filesystem


@pytest.fixture
def server(tmp_path):
    wanda = Wanda(tmp_path)  # started by the test, once the disk is as it wants it
    yield wanda
    assert wanda.stop() == 0
    assert "Traceback" not in wanda.log_text()


def test_wanda_starts_on_a_full_disk_and_writes_the_recovery_once_space_is_freed(tmp_path, server):
    with mounted_tmpfs(tmp_path / "captures", "4m") as disk:
        left_running(disk)
        (disk / "light_0001.jpg").write_bytes(JPEG * 40)  # what the observer will delete
        fill(disk, leave=0)
        server.start()  # raises if it does not serve
        [session] = server.get("/api/sessions")["sessions"]
        assert (session["status"], session["error"], session["saved"]) == ("interrupted", INTERRUPTED_BY_RESTART, False)
        assert on_disk(disk)["status"] == "running"  # the disk refused the recovery's write
        assert server.get("/api/storage")["state"] == "full"
        server.delete("/api/captures/light_0001.jpg")  # the gallery frees space on a full disk
        wait_for(lambda: on_disk(disk)["status"] == "interrupted", timeout=10)  # written at once, not at the next retry
        assert on_disk(disk)["error"] == INTERRUPTED_BY_RESTART
        [session] = server.get("/api/sessions")["sessions"]
        assert session["saved"] is True


def test_wanda_starts_on_a_read_only_disk_and_writes_the_recovery_when_it_is_writable_again(tmp_path, server):
    with mounted_tmpfs(tmp_path / "captures", "4m") as disk:
        left_running(disk)
        (disk / ".light_0002.jpg.1.2.tmp").write_bytes(b"half a frame")  # a temporary the kill left
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        server.start()
        [session] = server.get("/api/sessions")["sessions"]
        assert (session["status"], session["saved"]) == ("interrupted", False)
        storage = server.get("/api/storage")
        assert (storage["state"], storage["writable"]) == ("read_only", False)
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        wait_for(lambda: on_disk(disk)["status"] == "interrupted", timeout=3 * RETRY_WRITE_S)
        assert server.get("/api/storage")["writable"] is True  # (and full: 4 MB is below the reserve)
