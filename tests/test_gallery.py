"""Where captures go, the gallery API, thumbnails, zips, deletes and confinement."""

from __future__ import annotations

import asyncio
import io
import json
import os
import zipfile

import pytest
from helpers import wait_until

from wanda.jpeg import JpegEncoder
from wanda.keys import CONTROL, SESSIONS
from wanda.storage.disk import choose_captures_dir

# -- where captures go -------------------------------------------------------------------------


def test_the_captures_option_wins(tmp_path):
    assert choose_captures_dir(tmp_path / "mine", media_root=tmp_path / "media", user="pi") == (
        tmp_path / "mine",
        "--captures",
    )


def test_a_usb_drive_under_media_is_chosen_with_its_subfolder(tmp_path):
    drives = tmp_path / "media" / "pi"
    (drives / "NIKON").mkdir(parents=True)
    (drives / "ASTRO").mkdir()
    path, reason = choose_captures_dir(None, media_root=tmp_path / "media", user="pi", home=tmp_path / "home")
    assert path == drives / "ASTRO" / "wanda_captures"  # the first by name, the same every time
    assert "USB drive ASTRO" in reason


def test_read_only_drives_and_other_users_drives_are_skipped(tmp_path):
    media = tmp_path / "media"
    (media / "someone" / "THEIRS").mkdir(parents=True)
    read_only = media / "pi" / "LOCKED"
    read_only.mkdir(parents=True)
    read_only.chmod(0o500)
    home = tmp_path / "home"
    try:
        path, reason = choose_captures_dir(None, media_root=media, user="pi", home=home)
    finally:
        read_only.chmod(0o700)
    if os.geteuid() == 0:  # root may write anywhere: the drive counts as writable
        assert path == read_only / "wanda_captures"
    else:
        assert path == home / "wanda_captures" and "no writable USB drive" in reason


def test_without_a_drive_captures_go_home(tmp_path):
    path, reason = choose_captures_dir(None, media_root=tmp_path / "nothing", user="pi", home=tmp_path / "home")
    assert path == tmp_path / "home" / "wanda_captures" and "no writable USB drive" in reason


# -- the gallery --------------------------------------------------------------------------------


async def capture(client, n: int = 1) -> list[dict]:
    results = []
    for _ in range(n):
        response = await client.post("/api/camera/capture")
        assert response.status == 200
        results.append((await response.json())["data"])
    return results


@pytest.fixture
async def gallery_client(client):
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.01})
    await capture(client, 2)
    await client.post("/api/session/start", json={"name": "M42", "total_images": 3})
    await wait_until(lambda: not client.app[SESSIONS].active)
    return client


async def test_storage_reports_space_and_frames_left(gallery_client, config):
    data = (await (await gallery_client.get("/api/storage")).json())["data"]
    assert data["path"] == str(config.captures)
    assert 0 < data["free"] <= data["total"]
    assert data["estimated_frame_bytes"] == gallery_client.app[CONTROL].estimated_still_bytes() > 1000
    assert data["frames_left"] == (data["free"] - data["reserve"]) // data["estimated_frame_bytes"]


async def test_listings_keep_the_original_shape_newest_first(gallery_client, config):
    root = (await (await gallery_client.get("/api/captures")).json())["data"]
    assert root["files"] == ["light_0002.jpg", "light_0001.jpg"]  # images only, newest first
    first = root["items"][1]
    assert first["url"] == "/api/captures/light_0001.jpg" and first["sidecar"] == "light_0001.json"
    assert first["size"] == (config.captures / "light_0001.jpg").stat().st_size
    session = (await (await gallery_client.get("/api/captures?folder=M42")).json())["data"]
    assert session["files"] == ["light_0003.jpg", "light_0002.jpg", "light_0001.jpg"]
    assert session["items"][0]["url"] == "/api/captures/M42/light_0003.jpg"
    folders = (await (await gallery_client.get("/api/captures/folders")).json())["data"]
    assert folders["folders"] == ["M42"]
    assert folders["details"][0]["images"] == 3 and folders["details"][0]["session"] is True
    missing = await gallery_client.get("/api/captures?folder=nope")
    assert missing.status == 404 and (await missing.json())["code"] == "FILE_NOT_FOUND"


async def test_a_big_folder_lists_every_name_and_the_details_of_one_page(client, config):
    folder = config.captures / "night 1"
    folder.mkdir(parents=True)
    for number in range(1, 251):  # a night of frames, each a second newer than the one before
        image = folder / f"light_{number:04d}.jpg"
        image.write_bytes(b"\xff\xd8" + bytes(number) + b"\xff\xd9")
        os.utime(image, (1_700_000_000 + number, 1_700_000_000 + number))
    (folder / "light_0048.json").write_text("{}")

    default = (await (await client.get("/api/captures", params={"folder": "night 1"})).json())["data"]
    assert default["total"] == 250 and len(default["files"]) == 250 and default["files"][0] == "light_0250.jpg"
    assert [item["name"] for item in default["items"]] == default["files"][:100]
    assert (default["offset"], default["limit"]) == (0, 100)

    page = (
        await (await client.get("/api/captures", params={"folder": "night 1", "offset": "200", "limit": "60"})).json()
    )["data"]
    assert [item["name"] for item in page["items"]] == [f"light_{n:04d}.jpg" for n in range(50, 0, -1)]
    oldest_with_notes = page["items"][2]
    assert oldest_with_notes["sidecar"] == "light_0048.json" and page["items"][3]["sidecar"] is None
    assert oldest_with_notes["url"] == "/api/captures/night%201/light_0048.jpg"
    assert oldest_with_notes["path"] == "night 1/light_0048.jpg" and oldest_with_notes["size"] == 52
    assert (await client.get(oldest_with_notes["url"])).status == 200
    beyond = (await (await client.get("/api/captures", params={"folder": "night 1", "offset": "250"})).json())["data"]
    assert beyond["items"] == [] and beyond["total"] == 250

    for bad in ({"limit": "0"}, {"limit": "1001"}, {"limit": "ten"}, {"offset": "-1"}, {"offset": "1e3"}):
        response = await client.get("/api/captures", params=bad)
        payload = await response.json()
        field = next(iter(bad))
        assert response.status == 400 and payload["code"] == "VALIDATION_ERROR", bad
        assert payload["error"].startswith(f"{field}: must be a whole number"), payload


async def test_hidden_temporaries_never_show(gallery_client, config):
    (config.captures / ".light_0003.jpg.123.tmp").write_bytes(b"half a frame")
    (config.captures / ".thumbs").mkdir(exist_ok=True)
    files = (await (await gallery_client.get("/api/captures")).json())["data"]["files"]
    assert all(not name.startswith(".") for name in files)
    assert (await gallery_client.get("/api/captures/.light_0003.jpg.123.tmp")).status == 400
    assert "/.thumbs" not in json.dumps(await (await gallery_client.get("/api/captures/folders")).json())


async def test_thumbnails_are_small_made_once_and_cached(gallery_client, config):
    response = await gallery_client.get("/api/captures/M42/light_0001.jpg?thumb=1")
    assert response.status == 200 and response.content_type == "image/jpeg"
    thumb = JpegEncoder().decode(await response.read())
    assert 320 <= thumb.shape[1] <= 720 and thumb.shape[1] < 1440
    cached = list((config.captures / ".thumbs").glob("M42__light_0001.jpg.*.jpg"))
    assert len(cached) == 1
    made = cached[0].stat().st_mtime_ns
    again = await gallery_client.get("/api/captures/M42/light_0001.jpg?thumb=1")
    assert await again.read() == cached[0].read_bytes() and cached[0].stat().st_mtime_ns == made
    sidecar = await gallery_client.get("/api/captures/M42/light_0001.json?thumb=1")
    assert sidecar.status == 415


async def test_a_folder_zip_streams_every_file_and_reads_back(gallery_client, config):
    response = await gallery_client.get("/api/captures/M42.zip")
    assert response.status == 200 and response.content_type == "application/zip"
    assert 'filename="M42.zip"' in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(await response.read()))
    folder = config.captures / "M42"
    expected = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert sorted(archive.namelist()) == expected
    for name in expected:
        assert archive.read(name) == (folder / name).read_bytes()
    assert archive.testzip() is None
    assert (await gallery_client.get("/api/captures/nope.zip")).status == 404


async def test_a_zip_is_built_as_it_is_sent_not_in_memory(gallery_client, config):
    big = config.captures / "big"
    big.mkdir()
    for i in range(6):
        (big / f"image_{i:04d}.jpg").write_bytes(os.urandom(1024 * 1024))
    response = await gallery_client.get("/api/captures/big.zip")
    first = await response.content.readexactly(256 * 1024)  # arrives before the whole zip exists
    assert first[:4] == b"PK\x03\x04"
    rest = await response.read()
    archive = zipfile.ZipFile(io.BytesIO(first + rest))
    assert len(archive.namelist()) == 6 and archive.testzip() is None


async def test_deletes_take_files_with_their_sidecars_and_whole_folders(gallery_client, config):
    await gallery_client.get("/api/captures/M42/light_0002.jpg?thumb=1")
    response = await gallery_client.delete("/api/captures/M42/light_0002.jpg")
    assert response.status == 200
    assert (await response.json())["data"] == {"deleted": "M42/light_0002.jpg", "files": 2}
    assert not (config.captures / "M42" / "light_0002.jpg").exists()
    assert not (config.captures / "M42" / "light_0002.json").exists()
    assert not list((config.captures / ".thumbs").glob("M42__light_0002.jpg.*"))
    response = await gallery_client.delete("/api/captures/light_0001.jpg")
    assert response.status == 200 and not (config.captures / "light_0001.jpg").exists()
    response = await gallery_client.delete("/api/captures/M42")
    assert response.status == 200 and (await response.json())["data"]["deleted"] == "M42"
    assert not (config.captures / "M42").exists()
    assert (await gallery_client.delete("/api/captures/M42")).status == 404


async def test_the_running_sessions_folder_cannot_be_deleted(client, config):
    await client.post("/api/camera/settings", json={"exposure_seconds": 30})
    await client.post("/api/session/start", json={"name": "busy", "total_images": 2})
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    response = await client.delete("/api/captures/busy")
    assert response.status == 409 and (await response.json())["code"] == "FOLDER_IN_USE"
    assert (config.captures / "busy").is_dir()
    await client.post("/api/session/stop")
    assert (await client.delete("/api/captures/busy")).status == 200


async def test_deletes_follow_the_origin_rule(gallery_client, config):
    response = await gallery_client.delete("/api/captures/light_0001.jpg", headers={"Origin": "http://evil.example"})
    assert response.status == 403
    assert (config.captures / "light_0001.jpg").exists()


ESCAPES = [
    "../secret.txt",
    "..%2fsecret.txt",
    "%2e%2e/secret.txt",
    "%2e%2e%2fsecret.txt",
    "M42/../../secret.txt",
    "M42/%2e%2e/%2e%2e/secret.txt",
    "..\\secret.txt",
    "M42\\..\\..\\secret.txt",
    "%2fetc%2fpasswd",
    "//etc/passwd",
    "secret%00.jpg",
    "link_out",
    "link_out/secret.txt",
    "dirlink",
    "dirlink/secret.txt",
    ".",
    "..",
]


async def test_nothing_outside_the_capture_directory_is_read_listed_zipped_or_deleted(gallery_client, config, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("the observer's private notes")
    (tmp_path / "secret.txt").write_text("also private")
    (config.captures / "link_out").symlink_to(secret)
    (config.captures / "dirlink").symlink_to(outside, target_is_directory=True)
    (config.captures / "M42" / "evil.jpg").symlink_to(secret)  # a link inside a session folder
    for path in ESCAPES:
        for method, suffix in (("GET", ""), ("GET", "?thumb=1"), ("DELETE", "")):
            response = await gallery_client.request(method, f"/api/captures/{path}{suffix}")
            assert response.status in (400, 404), (method, path, response.status)
            assert (await response.json())["success"] is False
        listing = await gallery_client.get(f"/api/captures?folder={path}")
        assert listing.status in (400, 404), path
        zipped = await gallery_client.get(f"/api/captures/{path}.zip")
        assert zipped.status in (400, 404), path
    assert secret.read_text() == "the observer's private notes" and (tmp_path / "secret.txt").exists()
    # The symlinks inside are neither listed nor zipped.
    listed = (await (await gallery_client.get("/api/captures?folder=M42")).json())["data"]["files"]
    assert "evil.jpg" not in listed
    archive = zipfile.ZipFile(io.BytesIO(await (await gallery_client.get("/api/captures/M42.zip")).read()))
    assert "evil.jpg" not in archive.namelist()
    assert b"private" not in b"".join(archive.read(n) for n in archive.namelist())


def test_paths_are_checked_without_the_server(tmp_path):
    from wanda.errors import WandaError
    from wanda.storage.gallery import resolve_inside

    root = tmp_path / "captures"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"x")
    assert resolve_inside(root, "a.jpg") == (root / "a.jpg").resolve()
    for bad in ("/etc/passwd", "", "a.jpg\x00", "../captures/a.jpg", "sub/../../x"):
        with pytest.raises(WandaError):
            resolve_inside(root, bad)


async def test_raw_requests_that_no_client_would_normalise_are_refused_too(gallery_client, config, tmp_path):
    (tmp_path / "secret.txt").write_text("private")
    for path in (
        "/api/captures/../secret.txt",
        "/api/captures/M42/../../secret.txt",
        "/api/captures/%2e%2e/secret.txt",
        "/api/captures/..%5csecret.txt",
        "/api/captures/M42%2f..%2f..%2fsecret.txt",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", gallery_client.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
        writer.close()
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 404), (path, answer[:200])
        assert b"private" not in answer
