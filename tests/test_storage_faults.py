"""What the disk refuses is the client's clear 4xx or 507, never a 500: names too long for any
filesystem, a link that loops, names USB drives cannot hold, a full or read-only disk. And a
disk full or read-only does not take the gallery away: thumbnails still show, deletes still free
space, the status says what is wrong."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from helpers import fill, is_reply, mounted_tmpfs, receive_until, wait_until

from wanda.jpeg import JpegEncoder
from wanda.keys import CONTROL, SESSIONS

JPEG = JpegEncoder().encode(np.full((64, 96, 3), 90, dtype=np.uint8), "RGB")


async def envelope(response) -> tuple[int, str]:
    body = await response.json()
    assert body["success"] is False and body["error"], body
    return response.status, body["code"]


@pytest.mark.parametrize("length", [300, 5000])
async def test_a_name_too_long_for_any_filesystem_is_a_400(client, length):
    name = "x" * length + ".jpg"
    assert await envelope(await client.get(f"/api/captures/{name}")) == (400, "NAME_TOO_LONG")
    assert await envelope(await client.delete(f"/api/captures/{name}")) == (400, "NAME_TOO_LONG")
    assert await envelope(await client.get(f"/api/captures?folder={'y' * length}")) == (400, "NAME_TOO_LONG")


async def test_a_symbolic_link_loop_in_the_captures_folder_is_a_404(client, config):
    config.captures.mkdir(parents=True, exist_ok=True)
    os.symlink("loop", config.captures / "loop")
    os.symlink("ping", config.captures / "pong")
    os.symlink("pong", config.captures / "ping")
    for name in ("loop", "ping", "loop/light_0001.jpg"):
        assert await envelope(await client.get(f"/api/captures/{name}")) == (404, "LINK_LOOP")
        assert await envelope(await client.delete(f"/api/captures/{name}")) == (404, "LINK_LOOP")
    listing = await client.get("/api/captures")
    assert listing.status == 200 and (await listing.json())["data"]["files"] == []
    assert (await client.get("/api/captures/folders")).status == 200


async def test_a_file_whose_name_holds_a_newline_can_be_downloaded_and_deleted(client, config):
    config.captures.mkdir(parents=True, exist_ok=True)
    (config.captures / "odd\nname.jpg").write_bytes(JPEG)
    items = (await (await client.get("/api/captures")).json())["data"]["items"]
    assert [item["name"] for item in items] == ["odd\nname.jpg"]
    url = items[0]["url"]
    download = await client.get(url)
    assert download.status == 200 and await download.read() == JPEG
    assert (await client.get(items[0]["thumb_url"])).status == 200
    deleted = await client.delete(url)
    assert deleted.status == 200, await deleted.text()
    assert not (config.captures / "odd\nname.jpg").exists()


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("\N{RINGED PLANET}" * 61, "NAME_TOO_LONG"),  # 61 characters, 244 bytes
        ("session_config.json", "RESERVED_NAME"),
        ("CON", "RESERVED_NAME"),
        ("nul", "RESERVED_NAME"),
        ("COM1", "RESERVED_NAME"),
        ("LPT1.txt", "RESERVED_NAME"),
        ("CONIN$", "RESERVED_NAME"),
        ("COM\N{SUPERSCRIPT ONE}", "RESERVED_NAME"),
        ("lpt0", "RESERVED_NAME"),
        ("Session_Config.JSON", "RESERVED_NAME"),
    ],
)
async def test_session_names_no_disk_can_hold_are_refused_before_anything_is_made(client, config, name, code):
    response = await client.post("/api/session/start", json={"name": name, "total_images": 1})
    assert await envelope(response) == (400, code)
    assert not config.captures.exists() or list(config.captures.iterdir()) == []
    assert client.app[CONTROL].arbiter.holder is None


async def test_a_name_of_64_four_byte_characters_was_a_500(client):
    # 64 characters are allowed, but 256 bytes do not fit a folder's name on any filesystem.
    response = await client.post("/api/session/start", json={"name": "\N{GRINNING FACE}" * 64, "total_images": 1})
    assert await envelope(response) == (400, "NAME_TOO_LONG")


async def test_a_websocket_reply_never_echoes_nan_as_its_id(client):
    ws = await client.ws_connect("/ws")
    await ws.send_str('{"id": NaN, "action": "camera.status"}')
    await ws.send_str('{"id": 1, "action": "camera.status", "params": {"x": Infinity}}')
    await ws.send_str('{"id": 1e999, "action": "camera.status"}')
    await ws.send_str('{"id": 2, "action": "session.status"}')
    replies = []
    while len(replies) < 4:
        text = (await ws.receive(timeout=10)).data
        message = json.loads(text, parse_constant=lambda c, text=text: pytest.fail(f"{c} in {text}"))
        if "ok" in message:
            replies.append(message)
    assert [(r["id"], r["ok"]) for r in replies] == [(None, False), (None, False), (None, False), (2, True)]
    assert replies[0]["error"]["code"] == "INVALID_REQUEST"
    await ws.close()


# -- a full or read-only disk ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "usb", "4m") as disk:
        yield disk


def remount_read_only(disk) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)


async def storage(client) -> dict:
    return (await (await client.get("/api/storage")).json())["data"]


async def test_a_disk_below_the_reserve_is_low_not_full(make_client):
    client = await make_client(min_free_mb=2**40)  # a reserve no disk has, but room for a frame
    status = await storage(client)
    assert (status["state"], status["frames_left"]) == ("low", 0)
    assert (await client.post("/api/camera/capture")).status == 200  # single captures still fit


async def test_a_full_disk_answers_507_keeps_its_gallery_and_frees_space_by_delete(make_client, small_disk):
    captures = small_disk / "captures"
    client = await make_client(captures=captures, min_free_mb=0)
    captures.mkdir()
    (captures / "light_0001.jpg").write_bytes(JPEG)
    (captures / "light_0002.jpg").write_bytes(JPEG)
    assert (await storage(client))["state"] == "ok"
    fill(small_disk, leave=0)
    status = await storage(client)
    assert (status["state"], status["frames_left"], status["writable"]) == ("full", 0, True)
    form = await client.post("/api/session/config", json={"name": "M42", "totalImages": 5})
    assert await envelope(form) == (507, "INSUFFICIENT_SPACE")
    thumb = await client.get("/api/captures/light_0001.jpg?thumb=1")  # made, though it cannot be cached
    assert thumb.status == 200 and (await thumb.read())[:2] == b"\xff\xd8"
    capture = await client.post("/api/camera/capture")
    assert await envelope(capture) == (507, "CAPTURE_FAILED")
    deleted = await client.delete("/api/captures/light_0002.jpg")
    assert deleted.status == 200 and not (captures / "light_0002.jpg").exists()
    assert client.app[CONTROL].arbiter.holder is None


async def test_a_read_only_disk_says_so_and_refuses_writes_with_507(make_client, small_disk):
    captures = small_disk / "captures"
    captures.mkdir()
    (captures / "light_0001.jpg").write_bytes(JPEG)
    remount_read_only(small_disk)
    client = await make_client(captures=captures, min_free_mb=0)  # it starts: nothing to write yet
    status = await storage(client)
    assert (status["state"], status["writable"], status["frames_left"]) == ("read_only", False, 0)
    assert "read-only" in status["message"]
    thumb = await client.get("/api/captures/light_0001.jpg?thumb=1")
    assert thumb.status == 200 and (await thumb.read())[:2] == b"\xff\xd8"
    assert await envelope(await client.delete("/api/captures/light_0001.jpg")) == (507, "READ_ONLY_STORAGE")
    form = await client.post("/api/session/config", json={"name": "M42"})
    assert await envelope(form) == (507, "READ_ONLY_STORAGE")
    start = await client.post("/api/session/start", json={"name": "M42", "total_images": 1})
    assert await envelope(start) == (507, "READ_ONLY_STORAGE")
    assert client.app[CONTROL].arbiter.holder is None  # the refused start gave the camera back
    assert await envelope(await client.post("/api/camera/capture")) == (507, "CAPTURE_FAILED")
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 5, "action": "session.start", "params": {"name": "M42", "total_images": 1}})
    reply = (await receive_until(ws, is_reply(5)))[-1]
    assert reply["error"]["code"] == "READ_ONLY_STORAGE"
    await ws.close()


async def test_a_captures_folder_that_cannot_be_written_is_said_at_start_and_refuses_before_exposing(
    make_client, tmp_path, caplog
):
    in_the_way = tmp_path / "not a folder"
    in_the_way.write_bytes(b"a file where the captures folder would go")
    client = await make_client(captures=in_the_way / "captures", min_free_mb=0)
    assert any("NOTHING CAN BE SAVED" in r.message and "is a file, not a folder" in r.message for r in caplog.records)
    status = await storage(client)
    assert (status["state"], status["writable"]) == ("read_only", False)
    assert status["message"] == f"nothing can be saved: {in_the_way} is a file, not a folder"
    await client.post("/api/camera/settings", json={"exposure_seconds": 30})
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["camera"]}})
    await receive_until(ws, is_reply(1))
    capture = await client.post("/api/camera/capture")  # refused at once, not after a 30 s exposure
    body = await capture.json()
    assert (capture.status, body["code"]) == (507, "CAPTURE_FAILED")
    assert body["error"] == f"nothing can be saved: {in_the_way} is a file, not a folder"
    await ws.send_json({"id": 2, "action": "camera.status"})
    seen = await receive_until(ws, is_reply(2))
    assert [m for m in seen if m.get("event") == "capture_start"] == []  # no exposure was started
    start = await client.post("/api/session/start", json={"name": "M42", "total_images": 3})
    body = await start.json()
    assert (start.status, body["code"]) == (507, "READ_ONLY_STORAGE")
    assert body["error"] == f"the session cannot save its frames: {in_the_way} is a file, not a folder"
    assert client.app[CONTROL].arbiter.holder is None
    await ws.close()


async def test_a_session_that_failed_keeps_its_reason_across_a_restart(make_client, small_disk):
    captures = small_disk / "captures"
    client = await make_client(captures=captures, min_free_mb=1)
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 0.05})).status == 200
    assert (await client.post("/api/camera/capture")).status == 200
    started = await client.post(
        "/api/session/start", json={"name": "filling", "total_images": 5, "total_time_hours": 2.0 / 3600}
    )
    assert started.status == 200
    await wait_until(lambda: client.app[SESSIONS].run.captured >= 1)
    fill(small_disk, leave=512 * 1024)
    await wait_until(lambda: not client.app[SESSIONS].active, attempts=400)
    reason = client.app[SESSIONS].status()["error"]
    assert "below the floor" in reason
    await client.close()

    restarted = await make_client(captures=captures, min_free_mb=1)
    listed = (await (await restarted.get("/api/sessions")).json())["data"]["sessions"]
    assert [(s["folder"], s["status"], s["error"]) for s in listed] == [("filling", "error", reason)]


async def test_a_session_the_full_disk_ended_keeps_its_reason_across_a_restart_before_space_is_freed(
    make_client, small_disk, config
):
    captures = small_disk / "captures"
    client = await make_client(captures=captures, min_free_mb=0)
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 0.05})).status == 200
    started = await client.post(
        "/api/session/start", json={"name": "filled", "total_images": 5, "total_time_hours": 2.0 / 3600}
    )
    assert started.status == 200
    await wait_until(lambda: client.app[SESSIONS].run.captured >= 1)
    fill(small_disk, leave=0)  # no room for a frame, nor for the metadata that says so
    await wait_until(lambda: not client.app[SESSIONS].active, attempts=400)
    reason = client.app[SESSIONS].status()["error"]
    assert "disk is full" in reason
    assert json.loads((captures / "filled" / "session_metadata.json").read_text())["status"] == "running"
    await client.close()

    # Restarted while the disk is still full: WANDA's own disk remembered how it ended.
    restarted = await make_client(captures=captures, min_free_mb=0)
    listed = (await (await restarted.get("/api/sessions")).json())["data"]["sessions"]
    assert [(s["status"], s["error"], s["saved"]) for s in listed] == [("error", reason, False)]
    (small_disk / "someone_elses_file.bin").unlink()
    restarted.app[SESSIONS].storage_changed()
    await wait_until(
        lambda: json.loads((captures / "filled" / "session_metadata.json").read_text())["status"] == "error"
    )
    await wait_until(lambda: not (config.data_dir / "unwritten_sessions.json").exists())


async def test_a_read_only_data_disk_with_a_leftover_temporary_neither_stops_the_start_nor_a_setting(
    make_client, small_disk
):
    state = small_disk / "state"
    state.mkdir()
    (state / ".camera_settings.json.1.2.tmp").write_text("half a save: a kill")
    remount_read_only(small_disk)
    client = await make_client(data_dir=state)  # it starts
    response = await client.post("/api/camera/settings", json={"exposure_seconds": 0.5})
    body = await response.json()
    assert response.status == 200 and body["data"]["saved"] is False and "restart" in body["message"]
    assert (await (await client.get("/api/camera/status")).json())["data"]["exposure_seconds"] == 0.5


async def test_odd_names_and_numbers_are_a_clear_answer_not_a_500(client, config):
    config.captures.mkdir(parents=True, exist_ok=True)
    (config.captures / os.fsdecode(b"caf\xe9.jpg")).write_bytes(JPEG)  # Latin-1, from another system
    listing = await client.get("/api/captures")
    assert listing.status == 200 and "caf%E9.jpg" in (await listing.json())["data"]["items"][0]["url"]
    zipped = await client.get("/api/captures/x.zip")
    assert zipped.status == 404  # (no such folder; a folder with such a name zips, below)
    folder = config.captures / "night"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.jpg")).write_bytes(JPEG)
    archive = await client.get("/api/captures/night.zip")
    assert archive.status == 200 and len(await archive.read()) > len(JPEG)
    huge = 10**400
    for path, body in [
        ("/api/session/start", {"name": "n", "total_images": huge}),
        ("/api/session/config", {"totalImages": huge}),
        ("/api/camera/settings", {"skip_frames": huge}),
    ]:
        response = await client.post(path, data=json.dumps(body), headers={"Content-Type": "application/json"})
        assert await envelope(response) == (400, "VALIDATION_ERROR"), path
    frame_like = await client.post("/api/session/start", json={"name": "light_0005.json", "total_images": 1})
    assert await envelope(frame_like) == (400, "RESERVED_NAME")


async def test_thumbnails_in_a_folder_with_a_long_name_are_made(client, config):
    folder = config.captures / ("\N{RINGED PLANET}" * 60)  # 240 bytes: a session's longest name
    folder.mkdir(parents=True)
    (folder / "light_0001.jpg").write_bytes(JPEG)
    items = (await (await client.get(f"/api/captures?folder={folder.name}")).json())["data"]["items"]
    thumb = await client.get(items[0]["thumb_url"])
    assert thumb.status == 200 and (await thumb.read())[:2] == b"\xff\xd8"
