"""The frame path: MJPEG streams, snapshots, /state, through the real app on the simulated sky."""

from __future__ import annotations

import asyncio
import re
import socket
import time

from helpers import CountingSky, assert_camera_idle, read_part, wait_until, was_reset

from wanda.jpeg import JpegEncoder
from wanda.keys import CAMERA, HUB, LAG


async def test_a_frame_reaches_several_viewers(client):
    responses = [await client.get(path) for path in ("/stream", "/video_feed", "/stream")]
    for response in responses:
        assert response.status == 200
        assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
    seen: list[dict[int, bytes]] = []
    for response in responses:
        frames = {}
        for _ in range(3):
            headers, jpeg = await read_part(response.content)
            assert headers["content-type"] == "image/jpeg"
            assert int(headers["content-length"]) == len(jpeg)
            assert abs(float(headers["x-timestamp"]) - time.time()) < 5
            assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
            frames[int(headers["x-sequence"])] = jpeg
        seen.append(frames)
    # The viewers got the very same frames: one capture and one encode serve them all.
    common = set(seen[0]) & set(seen[1]) & set(seen[2])
    assert common, "viewers reading side by side should share at least one frame"
    for seq in common:
        assert seen[0][seq] == seen[1][seq] == seen[2][seq]


async def test_each_frame_is_encoded_once_whatever_the_number_of_viewers(client):
    hub = client.app[HUB]
    camera = client.app[CAMERA]

    async def watch(viewers: int, parts: int) -> int:
        responses = [await client.get("/stream") for _ in range(viewers)]
        received = 0
        for _ in range(parts):
            for response in responses:
                await read_part(response.content)
                received += 1
        for response in responses:
            response.close()
        await wait_until(lambda: not hub.viewers)
        return received

    for viewers in (1, 8):
        received = await watch(viewers, 5)
        assert received == 5 * viewers
        # Every encode was published as one frame, and frames are shared, not re-encoded.
        await wait_until(lambda: hub.published == camera.encoder.encodes)
        assert camera.encoder.encodes == camera.frames_encoded
    assert camera.encoder.encodes < 8 * 5, "eight viewers must not cost eight encodes a frame"


async def test_no_viewer_means_no_encoding(make_client):
    client = await make_client(camera=CountingSky())
    camera = client.app[CAMERA]
    await assert_camera_idle(camera)
    assert camera.encoder.encodes == 0
    response = await client.get("/stream")
    await read_part(response.content)
    response.close()
    await wait_until(lambda: not client.app[HUB].viewers)
    # A frame that was being made when the viewer left may still land; once the camera thread is
    # idle, nothing more is encoded.
    await assert_camera_idle(camera)
    settled = camera.encoder.encodes
    await assert_camera_idle(camera)
    assert camera.encoder.encodes == settled


def _stalled_viewer(port: int) -> socket.socket:
    """A client that asks for the stream and never reads a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return sock


async def test_a_viewer_that_never_reads_does_not_stop_the_others_and_is_dropped(make_client):
    client = await make_client(write_timeout=0.5)
    hub = client.app[HUB]
    stalled = _stalled_viewer(client.port)
    try:
        await wait_until(lambda: len(hub.viewers) == 1)
        reader = await client.get("/stream")
        received = 0
        # Keep reading until the server gives up on the stalled viewer; frames must keep coming.
        for _ in range(3000):
            await read_part(reader.content)
            received += 1
            if len(hub.viewers) == 1 and received > 10:
                break
        assert len(hub.viewers) == 1, "the stalled viewer was never dropped"
        assert hub.frames_skipped > 0  # the stalled viewer skipped frames instead of queueing them
        for _ in range(10):  # and the reader goes on as before
            await read_part(reader.content)
        assert await asyncio.to_thread(was_reset, stalled), "the dropped viewer was not told"
    finally:
        stalled.close()


async def test_a_closed_viewer_task_ends(client):
    hub = client.app[HUB]
    response = await client.get("/stream")
    await read_part(response.content)
    (viewer,) = hub.viewers
    response.close()
    await wait_until(lambda: not hub.viewers)
    await wait_until(lambda: viewer.task.done())


async def test_fps_parameter_caps_one_viewer(client):
    capped = await client.get("/stream?fps=4")
    free = await client.get("/stream")
    counts = {"capped": 0, "free": 0}

    async def count(name, response):
        while True:
            await read_part(response.content)
            counts[name] += 1

    tasks = [asyncio.create_task(count("capped", capped)), asyncio.create_task(count("free", free))]
    await wait_until(lambda: counts["free"] >= 30, attempts=400)
    for task in tasks:
        task.cancel()
    assert counts["capped"] * 3 < counts["free"]
    viewers = {v.fps_limit: v for v in client.app[HUB].viewers}
    assert viewers[4.0].frames_skipped > 0


async def test_bad_fps_is_a_400_in_the_envelope(client):
    for value in ("abc", "0", "-3", "nan", "1000"):
        response = await client.get(f"/stream?fps={value}")
        assert response.status == 400
        body = await response.json()
        assert body["success"] is False and body["code"] == "VALIDATION_ERROR"
        assert "fps" in body["error"]


async def test_unknown_path_is_a_404_in_the_envelope(client):
    response = await client.get("/no/such/thing")
    assert response.status == 404
    body = await response.json()
    assert body == {"success": False, "code": "NOT_FOUND", "error": "no such endpoint: GET /no/such/thing"}
    response = await client.post("/state")
    assert response.status == 405
    assert (await response.json())["code"] == "METHOD_NOT_ALLOWED"


async def test_snapshot_is_a_fresh_decodable_jpeg_of_the_preview_size(client):
    requested = time.time()
    response = await client.get("/snapshot")
    assert response.status == 200
    assert response.content_type == "image/jpeg"
    assert float(response.headers["X-Timestamp"]) >= requested
    pixels = JpegEncoder().decode(await response.read())
    assert pixels.shape == (1080, 1440, 3)
    assert pixels.max() > 200  # stars, not an empty frame
    second = await client.get("/snapshot")
    assert int(second.headers["X-Sequence"]) > int(response.headers["X-Sequence"])


class _SilentCamera:
    """A backend that never produces a frame (a camera that hangs)."""

    name = "silent"
    preview_size = (1440, 1080)
    exposure_limits = (0.0001, 230.0)
    gain_limits = (1.0, 16.0)
    exposure_s = 0.01
    gain = 1.0
    encodes_preview = False
    preview_linear = True
    instrument = "a hung camera"
    pixel_size_um = 1.55

    def open(self):
        pass

    def close(self):
        pass

    def set_controls(self, **_):
        pass

    def capture_preview(self, wake, max_fps):
        wake.wait(0.2)
        return None

    def capture_still(self, exposure_s, gain, cancel, skip_frames=0, *, raw=False, dng=False):
        raise RuntimeError("a hung camera takes no stills")


async def test_snapshot_without_frames_is_a_503(aiohttp_client, config):
    import dataclasses

    from wanda.app import create_app

    app = create_app(dataclasses.replace(config, snapshot_timeout=0.3), camera=_SilentCamera())
    client = await aiohttp_client(app)
    response = await client.get("/snapshot")
    assert response.status == 503
    body = await response.json()
    assert body["success"] is False and body["code"] == "NO_FRAME"


async def test_state_reports_viewers_and_rates(client):
    response = await client.get("/stream")
    for _ in range(20):
        await read_part(response.content)
    state = (await (await client.get("/state")).json())["data"]
    assert state["backend"] == "sim"
    assert state["resolution"] == {"width": 1440, "height": 1080}
    assert state["viewer_count"] == 1
    (viewer,) = state["viewers"]
    assert viewer["frames_sent"] >= 20 and viewer["fps"] > 0 and viewer["path"] == "/stream"
    assert state["encoded_fps"] > 0 and state["captured_fps"] >= state["encoded_fps"] * 0.5
    assert state["latest_frame"]["seq"] >= 20


async def test_health_reports_loop_lag_uptime_and_viewers(client):
    lag = client.app[LAG]
    measured = asyncio.Event()
    record = lag.record

    def recorded(now: float, late: float) -> None:
        record(now, late)
        measured.set()

    lag.record = recorded  # the monitor's own task calls it
    await asyncio.wait_for(measured.wait(), 10)  # the monitor has measured the loop at least once
    body = await (await client.get("/api/health")).json()
    data = body["data"]
    assert body["success"] is True
    assert data["status"] == "ok" and data["camera"] == {"backend": "sim", "alive": True}
    assert data["viewers"] == 0
    assert data["uptime_s"] >= 0
    assert 0 <= data["loop_lag"]["now_ms"] <= data["loop_lag"]["max_1m_ms"] + 1e-9


async def test_index_page_and_its_assets_are_served(client):
    response = await client.get("/")
    assert response.status == 200 and response.headers["Cache-Control"] == "no-cache"
    assert '<script type="module" src="/static/app.js">' in await response.text()
    # Every module the entry imports, and the modules they import, come with a JavaScript type (or
    # the browser refuses to run them) and no-cache (an upgrade reaches the browser at once).
    seen, wanted = set(), ["app.js"]
    while wanted:
        name = wanted.pop()
        seen.add(name)
        script = await client.get(f"/static/{name}")
        assert script.status == 200 and script.content_type in ("text/javascript", "application/javascript"), name
        assert script.headers["Cache-Control"] == "no-cache"
        wanted += [m for m in re.findall(r"from \"\./([\w-]+\.js)\"", await script.text()) if m not in seen]
    assert {"app.js", "api.js", "socket.js", "live.js"} <= seen
    assert "/stream" in await (await client.get("/static/live.js")).text()
    assert (await client.get("/static/style.css")).content_type == "text/css"


async def test_a_viewer_pacing_itself_ends_when_the_hub_closes(client):
    """A viewer of ?fps=0.01 waits 100 s between frames: shutdown (SIGTERM) must not wait with it."""
    from wanda.keys import HUB

    response = await client.get("/stream?fps=0.01")
    await read_part(response.content)  # the first frame; the next is 100 s away
    client.app[HUB].close()
    rest = await asyncio.wait_for(response.content.read(), 10)  # the stream ends: EOF, not 100 s
    assert b"--frame" not in rest
