"""Plate solving through the API on the simulated real sky: POST/GET /api/solve, a saved capture,
continuous mode over the WebSocket, the failures, and the `solve` thread's slot of one."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from helpers import is_reply, receive_until, wait_until

from wanda.keys import CAMERA, SOLVE
from wanda.solver import Failure, SolveFailure
from wanda.solving import SolveService


async def truth_centre(client) -> tuple[float, float]:
    pointing = client.app[CAMERA].backend.truth().pointing
    ra, dec = pointing.wcs.pixel_to_sky(np.array([(1440 - 1) / 2]), np.array([(1080 - 1) / 2]))
    return float(ra[0]), float(dec[0])


def separation(ra1, dec1, ra2, dec2) -> float:
    a = np.radians([ra1, dec1, ra2, dec2])
    cos = np.sin(a[1]) * np.sin(a[3]) + np.cos(a[1]) * np.cos(a[3]) * np.cos(a[0] - a[2])
    return float(np.degrees(np.arccos(min(1.0, cos))))


async def test_the_live_view_is_solved_where_the_simulated_sky_points(client):
    nothing = await client.get("/api/solve")
    assert (await nothing.json())["data"] == {"solved": None, "continuous": False}  # nothing asked yet
    await client.post("/api/mount/tracking", json={"action": "start"})  # the sky held, within a step
    response = await client.post("/api/solve")
    body = await response.json()
    assert response.status == 200, body
    solved = body["data"]
    ra, dec = await truth_centre(client)
    # Within the stepper's sawtooth (one 53" step) and the frames between: the bench measures
    # the solver's own accuracy (bench/solve.py).
    assert separation(solved["ra"], solved["dec"], ra, dec) < 0.03, (solved, ra, dec)
    assert solved["scale"] == pytest.approx(18.0, rel=0.005)  # the 50 mm lens's 18.0"/px
    assert min(solved["roll"], 360 - solved["roll"]) < 0.2  # north up, as sim_roll 0 draws it
    assert solved["source"]["kind"] == "preview" and solved["matched"] >= 10 and not solved["mirrored"]
    latest = (await (await client.get("/api/solve")).json())["data"]
    assert latest["ra"] == solved["ra"] and latest["continuous"] is False


async def test_the_objects_in_the_solved_frame_are_where_the_simulated_sky_draws_them(client):
    before = await client.get("/api/objects", params={"in_view": "1"})
    assert (before.status, (await before.json())["code"]) == (404, "NOT_FOUND")
    await client.post("/api/mount/tracking", json={"action": "start"})
    assert (await client.post("/api/solve")).status == 200
    data = (await (await client.get("/api/objects", params={"in_view": "1"})).json())["data"]
    assert data["frame"]["width"] == 1440 and data["frame"]["source"]["kind"] == "preview"
    by_name = {o["name"]: o for o in data["objects"]}
    assert {"M42", "M43", "NGC 1977"} <= set(by_name)  # the sim points at M42: these are beside it
    wcs = client.app[CAMERA].backend.truth().pointing.wcs
    for name in ("M42", "M43"):
        found = by_name[name]
        x, y, _ = wcs.sky_to_pixel(np.array([found["ra"]]), np.array([found["dec"]]))
        assert np.hypot(found["x"] - x[0], found["y"] - y[0]) < 5  # the stepper's sawtooth: 3 px a step
    magnitudes = [o["magnitude"] for o in data["objects"] if o["magnitude"] is not None]
    assert magnitudes == sorted(magnitudes)  # brightest first
    for item in data["objects"]:
        reach = item["size_px"] / 2
        assert -reach <= item["x"] <= 1439 + reach and -reach <= item["y"] <= 1079 + reach


async def test_the_named_stars_in_the_solved_frame_are_where_the_simulated_sky_draws_them(make_client):
    client = await make_client(sim_ra="84.05", sim_dec=-1.2)  # Orion's belt
    await client.post("/api/mount/tracking", json={"action": "start"})
    assert (await client.post("/api/solve")).status == 200
    data = (await (await client.get("/api/objects", params={"in_view": "1"})).json())["data"]
    stars = {o["name"]: o for o in data["objects"] if o["type"] == "star"}
    assert {"Alnitak", "Alnilam", "Mintaka"} <= set(stars)
    truth = client.app[CAMERA].backend.truth()
    for star in stars.values():
        drawn = np.argmin(np.hypot(truth.x - star["x"], truth.y - star["y"]))  # the star the sky drew there
        assert np.hypot(truth.x[drawn] - star["x"], truth.y[drawn] - star["y"]) < 5  # the sawtooth: 3 px a step
        assert truth.magnitude[drawn] < 3.5 and star["magnitude"] < 3.5
    assert data["objects"][0]["type"] == "star"  # the brightest first: a second-magnitude star


async def test_a_saved_capture_is_solved_by_its_path(client):
    await client.post("/api/mount/tracking", json={"action": "start"})
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.5, "file_format": "jpeg+fits"})
    saved = (await (await client.post("/api/camera/capture")).json())["data"]
    response = await client.post("/api/solve", json={"path": saved["file"]})
    solved = (await response.json())["data"]
    assert response.status == 200 and solved["source"] == {"kind": "capture", "path": saved["file"]}
    ra, dec = await truth_centre(client)
    assert separation(solved["ra"], solved["dec"], ra, dec) < 0.03
    bad = await client.post("/api/solve", json={"path": "../outside.fits"})
    assert bad.status in (400, 404)


async def test_a_capped_telescope_is_too_few_stars_said_plainly(client):
    await client.post("/api/camera/settings", json={"frame_type": "dark"})
    response = await client.post("/api/solve")
    body = await response.json()
    assert (response.status, body["code"]) == (422, "SOLVE_FAILED")
    assert body["data"]["reason"] == "too_few_stars" and body["error"].startswith("not solved: ")


async def test_clouds_are_a_clear_failure_and_the_sky_solves_again_when_they_pass(client):
    sky = client.app[CAMERA].backend
    sky.transparency = 0.002  # thick cloud: the brightest stars a few sigma, the rest gone
    response = await client.post("/api/solve")
    body = await response.json()
    assert (response.status, body["code"]) == (422, "SOLVE_FAILED")
    assert body["data"]["reason"] in ("too_few_stars", "not_found") and body["error"].startswith("not solved: ")
    assert body["data"]["stars"] < 10
    sky.transparency = 1.0
    await client.post("/api/mount/tracking", json={"action": "start"})

    async def clear() -> bool:  # the live view's analysis sees the stars again
        return (await (await client.get("/api/analysis")).json())["data"]["star_count"] > 20

    for _ in range(100):  # waits for the event: frames taken after the clouds went
        if await clear():
            break
        await asyncio.sleep(0.1)
    response = await client.post("/api/solve")
    assert response.status == 200, await response.json()


async def test_continuous_mode_solves_each_new_frame_while_someone_listens(client):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["solve"]}})
    await receive_until(ws, is_reply(1))
    await ws.send_json({"id": 2, "action": "solve", "params": {"continuous": True}})
    reply = (await receive_until(ws, is_reply(2)))[-1]
    assert reply["data"] == {"continuous": True, "listeners": 1}
    solutions = []
    while len(solutions) < 3:  # no request but the mode: the frames come by themselves
        message = await ws.receive_json(timeout=30)
        if message.get("topic") == "solve":
            solutions.append(message["data"])
    assert all(s["solved"] for s in solutions)
    assert len({s["source"]["timestamp"] for s in solutions}) == 3  # three frames, not one thrice
    await ws.send_json({"id": 3, "action": "solve", "params": {"continuous": False}})
    await receive_until(ws, is_reply(3))
    assert client.app[SOLVE].continuous is False
    await ws.close()


class BlockingSolver:
    """A stand-in for the subprocess edge: each solve waits until the test lets it go."""

    def __init__(self):
        self.go = threading.Event()
        self.started = threading.Event()
        self.calls = 0

    def solve(self, x, y, flux, width, height, **hints):
        self.calls += 1
        self.started.set()
        self.go.wait(10)
        return SolveFailure(Failure.TOO_FEW_STARS, f"{len(x)} stars", 0.0, len(x))


async def test_a_newer_list_supersedes_one_still_waiting_never_the_solve_under_way():
    solver = BlockingSolver()
    results = []
    service = SolveService(asyncio.get_running_loop(), solver, results.append, lambda width: 18.0)
    service.start()
    try:
        star = {"x": 1.0, "y": 1.0, "flux": 1.0}
        first = service.submit([star], 100, 100, {"n": 1})
        await asyncio.to_thread(solver.started.wait, 10)  # the first is being solved
        second = service.submit([star] * 2, 100, 100, {"n": 2})
        third = service.submit([star] * 3, 100, 100, {"n": 3})
        with pytest.raises(Exception, match="a newer frame"):
            await second
        solver.go.set()
        assert (await first)["source"] == {"n": 1} and (await third)["source"] == {"n": 3}
        assert solver.calls == 2 and service.superseded == 1
        await wait_until(lambda: len(results) == 2)
    finally:
        service.stop()


async def test_a_continuous_frame_never_supersedes_a_solve_somebody_asked_for():
    """A centring's or a script's solve waits behind the one under way; continuous mode's frames
    arriving meanwhile are the ones left out."""
    solver = BlockingSolver()
    service = SolveService(asyncio.get_running_loop(), solver, lambda result: None, lambda width: 18.0)
    service.continuous = True
    service.start()
    try:
        star = {"x": 1.0, "y": 1.0, "flux": 1.0}
        frame = {"stars": [star], "width": 100, "height": 100, "timestamp": 1.0}
        service.offer(frame)  # continuous: being solved
        await asyncio.to_thread(solver.started.wait, 10)
        asked = service.submit([star] * 2, 100, 100, {"n": "asked"})
        for _ in range(3):
            service.offer(frame)  # the live view's next frames
        solver.go.set()
        assert (await asked)["source"] == {"n": "asked"}
        assert service.superseded == 3 and solver.calls == 2
    finally:
        service.stop()


async def test_a_still_taken_while_the_mount_tracks_since_a_solve_carries_the_solution(client, config):
    import json
    import re

    from astropy.io import fits
    from astropy.wcs import WCS

    await client.post("/api/camera/settings", json={"exposure_seconds": 0.2, "file_format": "fits"})
    await client.post("/api/mount/tracking", json={"action": "start"})
    solved = (await (await client.post("/api/solve")).json())["data"]
    saved = (await (await client.post("/api/camera/capture")).json())["data"]
    with fits.open(config.captures / saved["file"]) as hdus:
        header = hdus[0].header
    assert header["CTYPE1"].startswith("RA---TAN") and header["CTYPE2"].startswith("DEC--TAN")
    assert (header["RADESYS"], header["EQUINOX"]) == ("ICRS", 2000.0)
    centre = WCS(header).pixel_to_world_values((1440 - 1) / 2, (1080 - 1) / 2)  # astropy reads our cards
    assert float(centre[0]) == pytest.approx(solved["ra"], abs=1e-5) and float(centre[1]) == pytest.approx(
        solved["dec"], abs=1e-5
    )
    assert header["RA"] == pytest.approx(solved["ra"]) and header["DEC"] == pytest.approx(solved["dec"])
    assert re.fullmatch(r"05 3\d \d\d\.\d\d", header["OBJCTRA"]) and re.fullmatch(
        r"-05 \d\d \d\d\.\d", header["OBJCTDEC"]
    )
    ra, dec = await truth_centre(client)
    assert separation(float(centre[0]), float(centre[1]), ra, dec) < 0.03
    sidecar = json.loads((config.captures / saved["sidecar"]).read_text())
    assert sidecar["solution"]["ra"] == solved["ra"] and "fits_cards" not in sidecar["solution"]

    # The mount stopped: the sky moves, the solution no longer holds, and nothing claims it does.
    await client.post("/api/mount/tracking", json={"action": "stop"})
    loose = (await (await client.post("/api/camera/capture")).json())["data"]
    with fits.open(config.captures / loose["file"]) as hdus:
        assert "CTYPE1" not in hdus[0].header and "OBJCTRA" not in hdus[0].header
    assert "solution" not in json.loads((config.captures / loose["sidecar"]).read_text())


async def test_a_capture_of_another_place_solved_by_path_never_becomes_the_live_views_solution(client, config):
    """Another night's frame (M31) solved by path: its answer is M31, but the labels, the next hint
    and the stills still follow the live view (M42)."""
    from astropy.io import fits

    from wanda.backends.sky import SimulatedSky
    from wanda.storage.fits import fits_bytes

    elsewhere = SimulatedSky(fwhm=3.0, pointing=(10.6847, 41.2690, 0.0))  # M31, the default 50 mm optic
    elsewhere.set_tracking(True)
    frame = elsewhere.render_luminance(1.0, 8.0, 0.0, bits=16).astype(np.uint16)
    config.captures.mkdir(parents=True, exist_ok=True)
    (config.captures / "light_0900.fits").write_bytes(fits_bytes(frame))
    await client.post("/api/mount/tracking", json={"action": "start"})
    assert (await client.post("/api/solve")).status == 200  # the live view: M42
    other = (await (await client.post("/api/solve", json={"path": "light_0900.fits"})).json())["data"]
    assert separation(other["ra"], other["dec"], 10.6847, 41.2690) < 0.1  # it is M31
    names = {
        o["name"] for o in (await (await client.get("/api/objects", params={"in_view": "1"})).json())["data"]["objects"]
    }
    assert "M42" in names and "M31" not in names
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.2, "file_format": "fits"})
    saved = (await (await client.post("/api/camera/capture")).json())["data"]
    with fits.open(config.captures / saved["file"]) as hdus:
        assert separation(hdus[0].header["RA"], hdus[0].header["DEC"], 83.82, -5.39) < 1.0  # M42's field


def test_a_linear_fit_carries_no_distortion_and_scales_to_a_full_size_still():
    from wanda.solver import wcs_from_header

    header = {
        "CTYPE1": "RA---TAN-SIP",
        "CTYPE2": "DEC--TAN-SIP",
        "CRVAL1": 83.8,
        "CRVAL2": -5.4,
        "CRPIX1": 2028.5,
        "CRPIX2": 1521.5,
        "CD1_1": -1.4e-4,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": 1.4e-4,
        "IMAGEW": 4056,
        "IMAGEH": 3042,
        "A_ORDER": 1,
        "A_0_0": 0.0,
        "A_0_1": 0.0,
        "B_ORDER": 1,
        "B_0_0": 0.0,
    }  # as solve-field writes a --tweak-order 1 fit, for the analysis's full-frame pixels (1080 x 4056/1440)
    wcs = wcs_from_header(header)
    assert wcs.sip == {}
    still = wcs.scaled_to(4056, 3040)  # the sensor's stills
    assert still is not None and still.crval == wcs.crval
    distorted = wcs_from_header({**header, "A_ORDER": 2, "A_2_0": 1e-7})
    assert distorted.sip and distorted.scaled_to(2028, 1520) is None  # distortion is not rescaled
