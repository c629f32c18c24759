"""The analysis in the server: the `analysis` WebSocket topic, GET /api/analysis, the stretched
stream, and no work when nobody asks."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from helpers import CountingSky, assert_camera_idle, is_reply, read_part, receive_until, wait_until

from wanda.backends.sky import SimulatedSky
from wanda.jpeg import JpegEncoder
from wanda.keys import ANALYSIS, CAMERA, HUB

KEYS = {"histogram", "stars", "star_count", "hfr", "fwhm", "stretch", "median", "clipped", "timestamp"}


async def subscribe(ws, topics, request_id=1):
    await ws.send_json({"id": request_id, "action": "subscribe", "params": {"topics": topics}})
    return await receive_until(ws, is_reply(request_id))


async def test_no_analysis_and_no_camera_work_without_a_listener(make_client):
    client = await make_client(camera=CountingSky())
    analysis = client.app[ANALYSIS]
    camera = client.app[CAMERA]
    ws = await client.ws_connect("/ws")
    hello = await ws.receive_json()
    assert "analysis" in hello["data"]["topics"]  # offered, but by name only
    assert analysis.listeners == 0 and not analysis.wanted
    await assert_camera_idle(camera)  # a connected client alone does not start the camera
    assert camera.backend.preview_calls == 0 and camera.frames_captured == 0 and analysis.analysed == 0


async def test_a_listener_gets_analysis_events_at_most_once_an_interval(make_client):
    client = await make_client(camera=CountingSky())
    analysis = client.app[ANALYSIS]
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.1, "iso": 1600})  # 10 frames a second
    ws = await client.ws_connect("/ws")
    loop = asyncio.get_running_loop()
    subscribed = loop.time()  # the loop's clock is the worker's (monotonic)
    await subscribe(ws, ["analysis"])
    events = []
    while len(events) < 4:
        message = await ws.receive_json(timeout=15)
        if message.get("topic") == "analysis":
            events.append(message)
    # Frames come five times an interval; the worker takes one an interval at most. However slow
    # the machine, four results cannot have come sooner than three intervals after subscribing.
    assert loop.time() - subscribed >= 3 * analysis.interval
    frame = events[-1]
    assert frame["event"] == "frame" and KEYS <= set(frame["data"])
    data = frame["data"]
    assert len(data["histogram"]["luminance"]) == 256 and data["star_count"] > 20
    assert 0.5 < data["hfr"] < 3 and len(data["stars"]) == 50
    assert {"x", "y", "flux", "hfr"} == set(data["stars"][0])
    # Leaving the topic stops the work: nothing wants the analysis, and the camera, which worked
    # only for it, goes idle (so no frame is offered to it any more).
    await subscribe(ws, ["camera"], 2)
    await wait_until(lambda: analysis.listeners == 0)
    assert not analysis.wanted
    await assert_camera_idle(client.app[CAMERA])


async def test_get_analysis_answers_with_a_fresh_result(client):
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.1, "iso": 1600})
    response = await client.get("/api/analysis")
    assert response.status == 200
    data = (await response.json())["data"]
    assert KEYS <= set(data) and data["star_count"] > 20 and data["analysis_ms"] > 0
    assert data["width"] == 1440 and data["height"] == 1080
    second = (await (await client.get("/api/analysis")).json())["data"]
    assert second["timestamp"] >= data["timestamp"]


async def test_the_stretched_stream_is_encoded_once_for_its_viewers_and_brighter(client):
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.05, "iso": 800})
    plain = await client.get("/stream")
    stretched = [await client.get("/stream?stretch=auto") for _ in range(3)]
    camera = client.app[CAMERA]
    await wait_until(lambda: client.app[ANALYSIS].stretch is not None)
    # Frames are stretched from the first one encoded after the stretch exists; those before it,
    # still on their way to the viewers of a busy machine, are not.
    stretched_from = client.app[HUB].latest.seq + 1
    for _ in range(100):
        _, plain_jpeg = await read_part(plain.content)
        parts = [await read_part(s.content) for s in stretched]
        if all(int(headers["x-sequence"]) > stretched_from for headers, _ in parts):
            break
    # The same frame for the three stretched viewers: one encode, shared.
    assert len({headers["x-sequence"] for headers, _ in parts}) == 1
    before = (camera.frames_captured, camera.encoder.encodes)
    for _ in range(5):
        await read_part(plain.content)
        for s in stretched:
            await read_part(s.content)
    captured, encodes = camera.frames_captured - before[0], camera.encoder.encodes - before[1]
    assert encodes <= 2 * captured + 2  # plain + stretched per frame, not one per viewer
    decoder = JpegEncoder()
    plain_level = np.median(decoder.decode(plain_jpeg))
    stretched_level = np.median(decoder.decode(parts[0][1]))
    assert stretched_level > plain_level + 20  # the faint sky lifted to about a quarter
    bad = await client.get("/stream?stretch=loud")
    assert bad.status == 400 and (await bad.json())["code"] == "VALIDATION_ERROR"


class QuickSky(SimulatedSky):
    """The simulated sky at any exposure, but a frame at the stream's rate: the longest exposure's
    frames are rendered as 230 s of light without waiting 230 s for each."""

    def frame_interval(self, max_fps: float) -> float:
        return 1.0 / max_fps


@pytest.mark.parametrize("setting", ["shortest at the lowest ISO", "100 ms at ISO 400", "longest at the highest ISO"])
async def test_the_stretched_stream_lifts_the_sky_at_every_setting_and_never_blackens_it(make_client, setting):
    """The issue: at 100 ms and ISO 400 the sky's MAD is 0, the shadows clipped at the median and
    the stretched stream turned the sky (16) black. Through /stream?stretch=auto, at the faintest
    and the brightest settings the camera allows."""
    client = await make_client(camera=QuickSky())
    limits = (await (await client.get("/api/camera/status")).json())["data"]["limits"]
    exposure, iso = {
        "shortest at the lowest ISO": (limits["exposure_seconds"][0], limits["iso"][0]),
        "100 ms at ISO 400": (0.1, 400),
        "longest at the highest ISO": (limits["exposure_seconds"][1], limits["iso"][1]),
    }[setting]
    response = await client.post("/api/camera/settings", json={"exposure_seconds": exposure, "iso": iso})
    assert response.status == 200
    await client.post("/api/mount/tracking", json={"action": "start"})  # no trails to render for 230 s
    plain = await client.get("/stream")
    stretched = await client.get("/stream?stretch=auto")
    await wait_until(lambda: client.app[ANALYSIS].stretch is not None)
    stretched_from = client.app[HUB].latest.seq + 1  # frames before the stretch existed are as shot
    for _ in range(200):
        plain_headers, plain_jpeg = await read_part(plain.content)
        headers, stretched_jpeg = await read_part(stretched.content)
        if int(headers["x-sequence"]) > stretched_from and int(plain_headers["x-sequence"]) > stretched_from:
            break
    else:
        raise AssertionError("no frame made after the stretch began came on both streams")
    decoder = JpegEncoder()
    shot = decoder.decode(plain_jpeg)[..., 0]
    lifted = decoder.decode(stretched_jpeg)[..., 0]
    sky, stretched_sky = np.median(shot), np.median(lifted)
    if sky >= 250:  # saturated (the longest exposure at the highest ISO): not made worse
        assert stretched_sky >= sky
        return
    assert sky < 40  # a faint sky, as the issue's
    assert stretched_sky > sky + 20  # lifted (to about a quarter), not clipped to 0
    # The stars are still brighter than the sky, by more than as shot: the brightest ten, where the
    # sky's truth has them (the mount tracks, so every frame since has them there).
    truth = client.app[CAMERA].backend.truth()
    inside = (truth.x > 5) & (truth.x < 1434) & (truth.y > 5) & (truth.y < 1074)
    brightest = np.argsort(-np.where(inside, truth.flux_e_per_s, 0))[:10]

    def peak(image: np.ndarray) -> float:
        return float(
            np.median(
                [
                    image[
                        round(truth.y[i]) - 1 : round(truth.y[i]) + 2, round(truth.x[i]) - 1 : round(truth.x[i]) + 2
                    ].max()
                    for i in brightest
                ]
            )
        )

    assert peak(lifted) - stretched_sky > max(peak(shot) - sky, 10)
