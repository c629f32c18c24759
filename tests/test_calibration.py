"""Master calibration frames (wanda/calibration.py) against constructed frames with a known
answer, and through the API from a session of the simulated sky's darks, with the stack taking
the master it fits."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from helpers import is_reply, receive_until, wait_until

import wanda.calibration as calibration_module
from wanda.calibration import CalibrationLibrary
from wanda.errors import WandaError
from wanda.keys import CALIBRATION, CAMERA, SESSIONS, STACK
from wanda.storage.fits import fits_bytes

SHAPE = (60, 80)


def write_frames(folder, kind: str, frames: list[np.ndarray], *, exposure=10.0, gain=8.0, temperature=20.0, black=None):
    folder.mkdir(parents=True, exist_ok=True)
    for k, data in enumerate(frames, 1):
        cards = [
            ("IMAGETYP", f"{kind.capitalize()} Frame", ""),
            ("EXPTIME", exposure, ""),
            ("GAIN", gain, ""),
            ("CCD-TEMP", temperature, ""),
            ("BLKLEVEL", black, ""),
        ]
        (folder / f"{kind}_{k:04d}.fits").write_bytes(fits_bytes(np.clip(data, 0, 65535).astype(np.uint16), cards))


@pytest.mark.parametrize("method", ["median", "sigma_clip"])
def test_a_master_dark_is_the_pattern_under_the_noise_without_the_cosmic_ray(tmp_path, method):
    rng = np.random.default_rng(1)
    pattern = 4096 + rng.uniform(0, 300, SHAPE)  # bias, hot pixels, glow: fixed on the sensor
    frames = [pattern + rng.normal(0, 20, SHAPE) for _ in range(15)]
    frames[7][30, 40] += 20000  # a cosmic ray in one frame
    write_frames(tmp_path / "darks", "dark", frames)
    library = CalibrationLibrary(tmp_path / "library")
    progress = []
    master = library.build(tmp_path / "darks", method, progress=lambda done, total: progress.append((done, total)))
    assert (master.kind, master.frames, master.method, master.width, master.height) == ("dark", 15, method, 80, 60)
    assert (master.exposure_s, master.gain, master.temperature) == (10.0, 8.0, 20.0)
    data = library.load(master)
    assert np.abs(data - pattern).max() < 6 * 20 / np.sqrt(15) * 1.25  # the median's noise is 1.25 the mean's
    assert abs(data[30, 40] - pattern[30, 40]) < 40  # the cosmic ray is gone
    assert progress[-1] == (60, 60)
    with fits.open(tmp_path / "library" / master.name) as hdus:  # a float FITS any program reads
        assert hdus[0].header["BITPIX"] == -32 and hdus[0].header["NCOMBINE"] == 15
        assert np.allclose(hdus[0].data, data)


def test_a_master_flat_is_the_shading_alone_once_its_bias_is_off(tmp_path):
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    shading = 1 - 0.2 * ((xx - 40) ** 2 + (yy - 30) ** 2) / (40**2 + 30**2)
    bias = 4096 + rng.uniform(-50, 50, SHAPE)
    write_frames(tmp_path / "bias", "bias", [bias + rng.normal(0, 10, SHAPE) for _ in range(9)], exposure=0.0001)
    library = CalibrationLibrary(tmp_path / "library")
    library.build(tmp_path / "bias")
    flats = [bias + 30000 * shading + rng.normal(0, 50, SHAPE) for _ in range(9)]
    write_frames(tmp_path / "flats", "flat", flats, exposure=0.1)
    flat = library.load(library.build(tmp_path / "flats"))
    assert np.allclose(flat, shading / shading.mean(), atol=0.005)


def test_colour_flats_are_freed_of_a_colour_master_bias_plane_by_plane(tmp_path):
    rng = np.random.default_rng(5)
    planes = (3, *SHAPE)
    shading = np.stack([np.linspace(0.8, 1.0, SHAPE[1])[None, :].repeat(SHAPE[0], 0) * k for k in (0.9, 1.0, 1.1)])
    bias = 4096 + rng.uniform(-200, 200, planes)  # each plane its own pattern
    write_frames(tmp_path / "bias", "bias", [bias + rng.normal(0, 5, planes) for _ in range(7)], exposure=0.0001)
    library = CalibrationLibrary(tmp_path / "library")
    library.build(tmp_path / "bias")
    write_frames(tmp_path / "flats", "flat", [bias + 30000 * shading + rng.normal(0, 30, planes) for _ in range(7)])
    flat = library.load(library.build(tmp_path / "flats"))  # (height, width, planes)
    expected = (shading / shading.mean()).transpose(1, 2, 0)
    assert flat.shape == (*SHAPE, 3) and np.allclose(flat, expected, atol=0.005)


def test_masters_are_found_by_what_they_fit_and_the_miss_says_what_was_looked_for(tmp_path):
    rng = np.random.default_rng(3)
    write_frames(tmp_path / "darks", "dark", [4096 + rng.normal(0, 5, SHAPE) for _ in range(3)], temperature=20.0)
    library = CalibrationLibrary(tmp_path / "library")
    master = library.build(tmp_path / "darks")
    assert library.match("dark", width=80, height=60, exposure_s=10.2, gain=8.0, temperature=23.0)[0] == master
    for changed in ({"exposure_s": 12.0}, {"gain": 4.0}, {"temperature": 30.0}, {"width": 40}):
        terms = {"width": 80, "height": 60, "exposure_s": 10.0, "gain": 8.0, "temperature": 20.0, **changed}
        found, wanted = library.match("dark", **terms)
        assert found is None and wanted.startswith(f"dark of {terms['width']}x60")
    assert library.match("flat", width=80, height=60)[0] is None
    library.delete(master.name)
    assert library.masters() == [] and not (tmp_path / "library" / master.name).exists()
    with pytest.raises(WandaError, match="no master named"):
        library.delete(master.name)


def test_a_master_is_combined_in_blocks_of_rows_with_the_same_result(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    write_frames(tmp_path / "darks", "dark", [4096 + rng.normal(0, 30, SHAPE) for _ in range(5)])
    whole = CalibrationLibrary(tmp_path / "whole")
    expected = whole.load(whole.build(tmp_path / "darks", "sigma_clip"))
    monkeypatch.setattr(calibration_module, "BLOCK_BYTES", 5 * SHAPE[1] * 4 * 3)  # three rows at a time
    blocks = CalibrationLibrary(tmp_path / "blocks")
    progress = []
    result = blocks.load(blocks.build(tmp_path / "darks", "sigma_clip", progress=lambda d, t: progress.append(d)))
    assert np.array_equal(result, expected) and len(progress) == 20


def test_sessions_that_are_not_calibration_frames_are_refused(tmp_path):
    library = CalibrationLibrary(tmp_path / "library")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WandaError, match="no FITS frames"):
        library.build(tmp_path / "empty")
    write_frames(tmp_path / "lights", "light", [np.full(SHAPE, 5000.0)])
    with pytest.raises(WandaError, match="not darks, flats or bias"):
        library.build(tmp_path / "lights")
    write_frames(tmp_path / "mixed", "dark", [np.full(SHAPE, 5000.0)], gain=8.0)
    write_frames(tmp_path / "mixed2", "dark", [np.full(SHAPE, 5000.0)], gain=4.0)
    (tmp_path / "mixed2" / "dark_0001.fits").rename(tmp_path / "mixed" / "dark_0002.fits")
    with pytest.raises(WandaError, match="GAIN differs"):
        library.build(tmp_path / "mixed")
    with pytest.raises(WandaError, match="method"):
        library.build(tmp_path / "mixed", "mean")


async def test_darks_taken_by_a_session_become_a_master_the_stack_takes_off_its_frames(client, config):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["calibration", "session"]}})
    await receive_until(ws, is_reply(1))
    # Darks at the preview's exposure and gain (1/30 s, ISO 800): what the live stack needs.
    body = {"name": "darks", "total_images": 5, "frame_type": "dark", "file_format": "fits"}
    assert (await client.post("/api/session/start", json=body)).status == 200
    ended = await receive_until(ws, lambda m: m.get("event") == "session_complete", limit=2000)
    folder = ended[-1]["data"]["folder"]
    response = await client.post("/api/calibration", json={"session": folder})
    answer = await response.json()
    assert response.status == 200, answer
    built = answer["data"]
    assert response.status == 200 and built["kind"] == "dark" and built["frames"] == 5
    assert (built["width"], built["height"], built["gain"]) == (1440, 1080, 8.0)
    events = await receive_until(ws, lambda m: m.get("event") == "calibration_done")
    assert any(m.get("event") == "calibration_progress" for m in events)
    listed = (await (await client.get("/api/calibration")).json())["data"]["masters"]
    assert [m["name"] for m in listed] == [built["name"]]

    # The stack takes it off every frame, and says there is no flat.
    await client.post("/api/mount/tracking", json={"action": "start"})
    await client.post("/api/stack/start")
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 3, attempts=600)
    used = client.app[STACK].state["calibration"]
    assert used["dark"] == built["name"] and used["flat"] is None
    assert any("no master flat of 1440x1080" in m for m in used["missing"])
    # The hot pixels are gone from the stack: within a few sigma of their surroundings.
    await client.post("/api/stack/stop")
    sky = client.app[CAMERA].backend
    truth = sky.truth()
    saved = (await (await client.post("/api/stack/save")).json())["data"]
    with fits.open(config.captures / saved["fits"]) as stacked:
        image = stacked[0].data[1]  # the green plane
    inner = (truth.hot_x > 5) & (truth.hot_x < 1434) & (truth.hot_y > 5) & (truth.hot_y < 1074)
    residual = [
        image[y, x] - np.nanmedian(image[y - 3 : y + 4, x - 3 : x + 4])
        for x, y in zip(truth.hot_x[inner], truth.hot_y[inner], strict=True)
    ]
    noise = client.app[STACK].state["noise"]
    assert np.median(np.abs(residual)) < 3 * noise

    deleted = await client.delete(f"/api/calibration/{built['name']}")
    assert deleted.status == 200
    missing = await client.delete(f"/api/calibration/{built['name']}")
    assert missing.status == 404
    await ws.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "session"), ({"session": "darks", "method": "mean"}, "method"), ({"session": "x", "z": 1}, "z")],
)
async def test_bad_calibration_requests_are_refused(client, body, field):
    response = await client.post("/api/calibration", json=body)
    answer = await response.json()
    assert response.status == 400 and answer["error"].startswith(field), answer


async def test_a_session_that_is_not_there_is_a_404(client):
    response = await client.post("/api/calibration", json={"session": "nowhere"})
    assert response.status == 404
    assert client.app[CALIBRATION].masters() == []


def test_a_damaged_index_or_frame_is_said_not_a_crash(tmp_path):
    library = CalibrationLibrary(tmp_path / "library")
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "master_dark_0001.fits").write_bytes(b"x")
    (tmp_path / "library" / "calibration.json").write_text('[{"name": "master_dark_0001.fits", "kind": "dark"}]')
    assert library.masters() == []  # another version's index, or edited by hand: none, and a warning
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dark_0001.fits").write_bytes(b"SIMPLE  = not really" + b" " * 3000)
    with pytest.raises(WandaError, match="dark_0001.fits"):
        library.build(tmp_path / "broken")


async def test_a_session_stack_takes_the_dark_of_its_frames_sensor_temperature(client, config):
    """Saved frames carry the sensor's temperature (CCD-TEMP): a dark taken 15 °C cooler does not
    fit them, and the stack says what it looked for."""
    own = {"total_images": 3, "use_current_settings": False, "exposure_seconds": 0.05, "file_format": "fits"}

    async def session(name: str, frame_type: str) -> None:
        assert (
            await client.post("/api/session/start", json={"name": name, "frame_type": frame_type, **own})
        ).status == 200
        await wait_until(lambda: not client.app[SESSIONS].active, attempts=600)

    async def stacked(name: str) -> dict:
        await client.post("/api/stack/start", json={"source": "session", "session": name})
        await wait_until(lambda: client.app[STACK].state["done"], attempts=600)
        return client.app[STACK].state

    await session("darks", "dark")
    built = (await (await client.post("/api/calibration", json={"session": "darks"})).json())["data"]
    assert built["temperature"] == 20.0
    await client.post("/api/mount/tracking", json={"action": "start"})
    await session("warm", "light")
    used = (await stacked("warm"))["calibration"]
    assert used["dark"] == built["name"]
    client.app[CAMERA].backend.temperature_c = 35.0  # the night warmed up the sensor
    await session("hot", "light")
    state = await stacked("hot")
    assert state["stacked"] == 3 and state["calibration"]["dark"] is None
    assert any("no master dark of 1440x1080 at 0.05 s, gain 8, 35 °C" in m for m in state["calibration"]["missing"])
