"""Where captures go, the gallery API, thumbnails, zips, deletes and confinement; the gallery as a
place to judge frames: FITS previews, frames of several files, stretched views, a frame's details
and its measurement, selections deleted or zipped together."""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import zipfile
from urllib.parse import unquote

import numpy as np
import pytest
from astropy.io import fits
from helpers import wait_for, wait_until

from wanda.backends.sky import SimulatedSky
from wanda.jpeg import JpegEncoder
from wanda.keys import CONTROL, MEASURER, SESSIONS
from wanda.storage import gallery
from wanda.storage.disk import choose_captures_dir
from wanda.storage.fits import fits_bytes
from wanda.storage.review import Measurer

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
    await wait_until(lambda: client.app[MEASURER].idle)  # every frame's measurement is in its sidecar
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
    (config.captures / "busy" / "light_0009.jpg").write_bytes(b"\xff\xd8\xff\xd9")  # as if just saved
    (config.captures / "light_0009.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    response = await client.post("/api/captures/delete", json={"paths": ["light_0009.jpg", "busy/light_0009.jpg"]})
    assert response.status == 409 and (await response.json())["code"] == "FOLDER_IN_USE"
    assert (config.captures / "busy" / "light_0009.jpg").exists() and (config.captures / "light_0009.jpg").exists()
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
        for endpoint in ("delete", "zip"):  # a selection: one path that leads out refuses it all
            response = await gallery_client.post(
                f"/api/captures/{endpoint}", json={"paths": ["light_0001.jpg", unquote(path)]}
            )
            assert response.status in (400, 404), (endpoint, path, response.status)
            assert (await response.json())["success"] is False
        listing = await gallery_client.get(f"/api/captures?folder={path}")
        assert listing.status in (400, 404), path
        zipped = await gallery_client.get(f"/api/captures/{path}.zip")
        assert zipped.status in (400, 404), path
    assert secret.read_text() == "the observer's private notes" and (tmp_path / "secret.txt").exists()
    assert (config.captures / "light_0001.jpg").exists()
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


# -- the gallery as a place to judge frames -------------------------------------------------------


async def capture_as(client, file_format: str, n: int = 1) -> list[dict]:
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.05, "file_format": file_format})
    return await capture(client, n)


async def listing(client, **params) -> dict:
    return (await (await client.get("/api/captures", params=params)).json())["data"]


async def jpeg_of(response) -> np.ndarray:
    assert response.status == 200 and response.content_type == "image/jpeg", response.status
    return JpegEncoder().decode(await response.read())


async def measured(client, info_url: str) -> dict:
    """The frame's details once its measurement is in."""

    async def done():
        data = (await (await client.get(info_url)).json())["data"]
        return data if data["measurement"]["state"] != "pending" else None

    return await wait_until(done)


def sky_fits(cards=(), bayer: bool = False) -> bytes:
    """A frame of the simulated sky as another program might have saved it (no sidecar)."""
    sky = SimulatedSky(fwhm=3.0)
    sky.set_tracking(True)  # round stars
    linear = sky.render_luminance(1.0, 8.0, 0.0, bits=16).astype(np.uint16)
    if bayer:  # a mosaic twice the size: each pixel of the sky in a 2x2 cell
        linear = np.repeat(np.repeat(linear, 2, axis=0), 2, axis=1)
        cards = [*cards, ("BAYERPAT", "RGGB", "")]
    return fits_bytes(linear, list(cards))


async def test_a_fits_only_frame_has_a_stretched_thumbnail_made_once_and_cached(client, config):
    (saved,) = await capture_as(client, "fits")
    assert saved["file"] == "light_0001.fits"
    (item,) = (await listing(client))["items"]
    assert item["thumb_url"] == "/api/captures/light_0001.fits?thumb=1"
    assert item["preview_url"] == "/api/captures/light_0001.fits?preview=1"
    thumb = await jpeg_of(await client.get(item["thumb_url"]))
    assert thumb.shape == (270, 360, 3)  # a quarter of the 1440 px frame, as the JPEG ones
    # Stretched: the linear data is nearly black to the eye; the thumbnail lifts its sky.
    with fits.open(config.captures / "light_0001.fits") as hdus:
        linear_sky = np.median(hdus[0].data) / 65535 * 255
    assert linear_sky < 25 and np.median(thumb) > linear_sky + 25
    cached = list((config.captures / ".thumbs").glob("light_0001.fits.*.jpg"))
    assert len(cached) == 1
    made = cached[0].stat().st_mtime_ns
    again = await client.get(item["thumb_url"])
    assert await again.read() == cached[0].read_bytes() and cached[0].stat().st_mtime_ns == made
    (config.captures / "broken.fits").write_bytes(b"SIMPLE  = " + b"nonsense" * 400)
    broken = await client.get("/api/captures/broken.fits?thumb=1")
    assert broken.status == 415 and (await broken.json())["code"] == "NO_THUMBNAIL"


async def test_a_frame_saved_as_jpeg_and_fits_is_one_item_with_both_downloads(client, config):
    await capture_as(client, "jpeg+fits", 2)
    data = await listing(client)
    assert data["total"] == 2 and len(data["items"]) == 2  # two frames...
    assert sorted(data["files"]) == ["light_0001.fits", "light_0001.jpg", "light_0002.fits", "light_0002.jpg"]
    newest = data["items"][0]
    assert newest["name"] == "light_0002.jpg" and newest["sidecar"] == "light_0002.json"
    assert [(d["name"], d["format"]) for d in newest["downloads"]] == [
        ("light_0002.jpg", "jpeg"),
        ("light_0002.fits", "fits"),
    ]
    for download in newest["downloads"]:
        response = await client.get(download["url"])
        body = await response.read()
        assert body == (config.captures / download["name"]).read_bytes() and len(body) == download["size"]
    assert newest["thumb_url"] == "/api/captures/light_0002.jpg?thumb=1"
    assert newest["preview_url"] == "/api/captures/light_0002.jpg"
    assert newest["stretched_url"] == "/api/captures/light_0002.fits?preview=1&stretch=auto"  # from the linear data
    page = await listing(client, offset="1", limit="1")  # pages count frames
    assert [item["name"] for item in page["items"]] == ["light_0001.jpg"] and page["total"] == 2
    # One file of a frame goes alone, and the frame keeps its notes while an image of it is left.
    await wait_until(lambda: client.app[MEASURER].idle)
    response = await client.delete("/api/captures/light_0002.jpg")
    assert (await response.json())["data"]["files"] == 1
    assert (config.captures / "light_0002.json").exists()
    left = (await listing(client))["items"][0]
    assert left["name"] == "light_0002.fits" and left["thumb_url"] == "/api/captures/light_0002.fits?thumb=1"
    response = await client.delete("/api/captures/light_0002.fits")
    assert (await response.json())["data"]["files"] == 2 and not (config.captures / "light_0002.json").exists()


async def test_a_frame_is_viewed_whole_linear_or_stretched(client, config, monkeypatch):
    await capture_as(client, "fits")
    await capture_as(client, "jpeg")
    fits_url, jpeg_url = "/api/captures/light_0001.fits", "/api/captures/light_0002.jpg"
    linear = await jpeg_of(await client.get(f"{fits_url}?preview=1"))
    stretched = await jpeg_of(await client.get(f"{fits_url}?preview=1&stretch=auto"))
    assert linear.shape == stretched.shape == (1080, 1440, 3)  # full size, for 1:1
    assert np.median(stretched) > np.median(linear) + 25
    assert len(list((config.captures / ".thumbs" / "views").glob("light_0001.fits.*.view-auto.jpg"))) == 1
    plain = await client.get(f"{jpeg_url}?preview=1")  # a browser shows a JPEG as it is
    assert await plain.read() == (config.captures / "light_0002.jpg").read_bytes()
    lifted = await jpeg_of(await client.get(f"{jpeg_url}?preview=1&stretch=auto"))
    assert lifted.shape == (1080, 1440, 3)
    assert np.median(lifted) > np.median(JpegEncoder().decode((config.captures / "light_0002.jpg").read_bytes())) + 25
    bad = await client.get(f"{fits_url}?preview=1&stretch=max")
    assert bad.status == 400 and (await bad.json())["error"].startswith("stretch: must be one of auto, none")
    assert (await client.get("/api/captures/light_0001.json?preview=1")).status == 415
    # Full-size views are big: the cache keeps the newest few.
    views = config.captures / ".thumbs" / "views"
    assert len(list(views.iterdir())) == 3
    monkeypatch.setattr(gallery, "BOUNDED_CACHE", 2)
    await capture_as(client, "jpeg")
    assert (await client.get("/api/captures/light_0003.jpg?preview=1&stretch=auto")).status == 200
    kept = sorted(path.name.split(".")[0] for path in views.iterdir())
    assert len(kept) == 2 and "light_0003" in kept


async def test_a_frames_details_come_from_its_sidecar_and_it_is_measured_once_when_saved(client, config):
    (saved,) = await capture_as(client, "jpeg+fits")
    sidecar = config.captures / "light_0001.json"
    # Measured on its own, as it was saved: nobody asked.
    notes = await wait_until(lambda: json.loads(sidecar.read_text()).get("measurement"))
    assert notes["source"] == "light_0001.fits"  # the linear data, where the frame has it
    (item,) = (await listing(client))["items"]
    response = await client.get(item["info_url"])
    assert response.status == 200
    info = (await response.json())["data"]
    assert info["files"] == ["light_0001.jpg", "light_0001.fits"] and info["source"] == "sidecar"
    assert (info["exposure_seconds"], info["gain"], info["iso"], info["frame_type"]) == (0.05, 8.0, 800.0, "light")
    assert info["date_obs"] == saved["started"] and info["sensor_temperature"] == 20.0  # the sim's sensor
    assert (info["width"], info["height"]) == (1440, 1080)
    measurement = info["measurement"]
    assert measurement["state"] == "measured" and measurement == {"state": "measured", **notes}
    assert measurement["star_count"] > 50 and 1.0 < measurement["hfr"] < 2.2  # FWHM 3 px: HFR about 1.5 px
    count = client.app[MEASURER].measured
    for url in (item["info_url"], "/api/captures/light_0001.fits?info=1"):
        assert (await (await client.get(url)).json())["data"]["measurement"] == measurement
    assert client.app[MEASURER].measured == count  # once per frame
    assert json.loads(sidecar.read_text())["exposure_seconds"] == 0.05  # the rest of the notes kept


async def test_a_frame_saved_before_is_measured_when_first_asked_and_told_from_its_header(client, config):
    config.captures.mkdir(parents=True, exist_ok=True)
    cards = [
        ("DATE-OBS", "2026-11-28T04:07:45.890", ""),
        ("EXPTIME", 30.0, ""),
        ("GAIN", 4.0, ""),
        ("IMAGETYP", "Light Frame", ""),
        ("CCD-TEMP", 21.5, ""),
    ]
    (config.captures / "m31_0007.fits").write_bytes(sky_fits(cards))
    (config.captures / "broken_0001.fits").write_bytes(b"SIMPLE  = " + b"nonsense" * 400)
    first = (await (await client.get("/api/captures/m31_0007.fits?info=1")).json())["data"]
    assert first["source"] == "fits header" and first["measurement"] == {"state": "pending"}
    assert (first["exposure_seconds"], first["gain"], first["frame_type"]) == (30.0, 4.0, "light")
    assert first["date_obs"] == "2026-11-28T04:07:45.890Z" and first["sensor_temperature"] == 21.5
    info = await measured(client, "/api/captures/m31_0007.fits?info=1")
    assert info["measurement"]["state"] == "measured" and info["measurement"]["star_count"] > 50
    assert 1.2 < info["measurement"]["hfr"] < 1.8  # FWHM 3 px
    assert (
        json.loads((config.captures / "m31_0007.json").read_text())["measurement"]["hfr"]
        == (info["measurement"]["hfr"])
    )
    broken = await measured(client, "/api/captures/broken_0001.fits?info=1")
    assert broken["measurement"]["state"] == "failed" and "not a FITS image" in broken["measurement"]["error"]
    count = client.app[MEASURER].measured
    await client.get("/api/captures/broken_0001.fits?info=1")
    assert client.app[MEASURER].measured == count  # a frame that cannot be measured is not tried again
    # A sidecar that is not WANDA's JSON object is left as it is; the measurement is kept in memory.
    (config.captures / "odd_0001.fits").write_bytes(sky_fits())
    (config.captures / "odd_0001.json").write_text("[1, 2]")
    odd = await measured(client, "/api/captures/odd_0001.fits?info=1")
    assert odd["measurement"]["state"] == "measured" and odd["source"] == "fits header"
    count = client.app[MEASURER].measured
    assert (await (await client.get("/api/captures/odd_0001.fits?info=1")).json())["data"]["measurement"] == (
        odd["measurement"]
    )
    assert client.app[MEASURER].measured == count and (config.captures / "odd_0001.json").read_text() == "[1, 2]"


async def test_a_raw_bayer_frame_is_shown_and_measured_in_superpixels(client, config):
    config.captures.mkdir(parents=True, exist_ok=True)
    (config.captures / "raw_0001.fits").write_bytes(sky_fits(bayer=True))
    thumb = await jpeg_of(await client.get("/api/captures/raw_0001.fits?thumb=1"))
    assert thumb.shape == (270, 360, 3)  # 2880 px of mosaic, 1440 superpixels, a quarter of them
    view = await jpeg_of(await client.get("/api/captures/raw_0001.fits?preview=1&stretch=auto"))
    assert view.shape == (1080, 1440, 3)
    info = await measured(client, "/api/captures/raw_0001.fits?info=1")
    assert 2.4 < info["measurement"]["hfr"] < 3.6  # in pixels of the mosaic: twice the sky's 1.5


async def test_several_captures_are_deleted_together_or_not_at_all(gallery_client, config):
    client = gallery_client
    for url in ("/api/captures/light_0001.jpg?thumb=1", "/api/captures/M42/light_0002.jpg?thumb=1"):
        await client.get(url)
    for body in (
        {"paths": ["light_0002.jpg", "nope.jpg"]},  # one missing
        {"paths": ["light_0002.jpg", "../secret.txt"]},  # one outside
    ):
        response = await client.post("/api/captures/delete", json=body)
        assert response.status in (400, 404) and (await response.json())["success"] is False
        assert (config.captures / "light_0002.jpg").exists()
    refused = await client.post(
        "/api/captures/delete", json={"paths": ["light_0002.jpg"]}, headers={"Origin": "http://evil.example"}
    )
    assert refused.status == 403 and (config.captures / "light_0002.jpg").exists()
    response = await client.post("/api/captures/delete", json={"paths": ["light_0001.jpg", "M42/light_0002.jpg"]})
    assert response.status == 200
    assert (await response.json())["data"] == {"deleted": ["light_0001.jpg", "M42/light_0002.jpg"], "files": 4}
    for gone in ("light_0001.jpg", "light_0001.json", "M42/light_0002.jpg", "M42/light_0002.json"):
        assert not (config.captures / gone).exists(), gone
    assert not list((config.captures / ".thumbs").glob("light_0001.jpg.*"))
    assert not list((config.captures / ".thumbs").glob("M42__light_0002.jpg.*"))
    assert (await listing(client))["files"] == ["light_0002.jpg"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"paths": []},
        {"paths": "light_0001.jpg"},
        {"paths": [1]},
        {"paths": [""]},
        {"paths": ["light_0001.jpg"], "also": True},
        {"paths": ["light_0001.jpg"] * 1001},
    ],
)
async def test_a_selection_is_a_list_of_paths(gallery_client, config, body):
    for endpoint in ("delete", "zip"):
        response = await gallery_client.post(f"/api/captures/{endpoint}", json=body)
        payload = await response.json()
        assert response.status == 400 and payload["code"] == "VALIDATION_ERROR", payload
        assert payload["error"].split(":")[0] in ("paths", "also"), payload
    assert (config.captures / "light_0001.jpg").exists()


async def test_a_selection_zips_with_its_sidecars_from_json_or_a_form(gallery_client, config):
    wanted = ["light_0001.jpg", "M42/light_0003.jpg"]
    expected = ["light_0001.jpg", "light_0001.json", "M42/light_0003.jpg", "M42/light_0003.json"]
    for request in ({"json": {"paths": wanted}}, {"data": [("paths", path) for path in wanted]}):
        response = await gallery_client.post("/api/captures/zip", **request)
        assert response.status == 200 and response.content_type == "application/zip"
        assert 'filename="wanda-selection.zip"' in response.headers["Content-Disposition"]
        archive = zipfile.ZipFile(io.BytesIO(await response.read()))
        assert archive.namelist() == expected and archive.testzip() is None
        for name in expected:
            assert archive.read(name) == (config.captures / name).read_bytes()
    missing = await gallery_client.post("/api/captures/zip", json={"paths": ["light_0001.jpg", "nope.jpg"]})
    assert missing.status == 404 and (await missing.json())["code"] == "FILE_NOT_FOUND"
    not_json = await gallery_client.post("/api/captures/zip", data=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status == 400 and (await not_json.json())["code"] == "INVALID_REQUEST"


def test_frames_wait_for_their_measurement_in_a_queue_that_cannot_grow(tmp_path):
    release = threading.Event()
    started = threading.Event()
    measured = []

    def slow_measure(image, encoder):
        started.set()
        release.wait(10)
        measured.append(image.name)
        return {"star_count": 1}

    measurer = Measurer(limit=2, measure_frame=slow_measure)
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        (tmp_path / name).write_bytes(b"\xff\xd8\xff\xd9")
    measurer.start()
    try:
        assert measurer.submit(tmp_path / "a.jpg")
        assert started.wait(10)  # a is being measured: the queue is empty again
        assert measurer.submit(tmp_path / "b.jpg") and measurer.submit(tmp_path / "c.jpg")
        assert measurer.submit(tmp_path / "b.fits")  # the same frame as b: already queued
        assert not measurer.submit(tmp_path / "d.jpg") and measurer.refused == 1  # full: measured when asked
        release.set()
        wait_for(lambda: measurer.idle, what="the queue to be measured")
    finally:
        release.set()
        measurer.stop()
    assert measured == ["a.jpg", "b.jpg", "c.jpg"]
    assert json.loads((tmp_path / "b.json").read_text()) == {"measurement": {"star_count": 1}}


def _fits_header(*cards: tuple[str, object]) -> bytes:
    """A bare FITS header (for files fits_bytes would not write)."""
    lines = [f"{key:<8}= {value!s:>20}".ljust(80) for key, value in cards] + ["END".ljust(80)]
    text = "".join(lines)
    return (text + " " * (-len(text) % 2880)).encode("ascii")


async def test_fits_files_the_renderer_cannot_take_are_a_clear_415_and_measured_as_failed_once(client, config):
    config.captures.mkdir(exist_ok=True)
    (config.captures / "light_0101.fits").write_bytes(fits_bytes(np.zeros((1, 50), np.uint16)))  # a row
    # Bigger than a 12-megapixel colour frame: decoding it would take gigabytes. (Sparse on disk.)
    header = _fits_header(
        ("SIMPLE", "T"), ("BITPIX", 8), ("NAXIS", 3), ("NAXIS1", 4200), ("NAXIS2", 3200), ("NAXIS3", 3)
    )
    with open(config.captures / "light_0102.fits", "wb") as file:
        file.write(header)
        file.truncate(len(header) + 4200 * 3200 * 3)
    for name in ("light_0101.fits", "light_0102.fits"):
        for query in ("thumb=1", "preview=1", "preview=1&stretch=auto"):
            response = await client.get(f"/api/captures/{name}?{query}")
            body = await response.json()
            assert (response.status, body["code"]) == (415, "NO_THUMBNAIL"), (name, query, body)
        details = await measured(client, f"/api/captures/{name}?info=1")
        assert details["measurement"]["state"] == "failed", details
    # DATAMAX below 1 would make the full scale 0: it is not taken as the scale.
    (config.captures / "light_0103.fits").write_bytes(
        fits_bytes(np.arange(600, dtype=np.uint16).reshape(20, 30), [("DATAMAX", 0.5, "")])
    )
    assert (await client.get("/api/captures/light_0103.fits?thumb=1")).status == 200
    details = await measured(client, "/api/captures/light_0103.fits?info=1")
    assert details["measurement"]["state"] in ("measured", "failed"), details
