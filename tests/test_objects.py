"""Objects by name through the API (GET /api/objects?q=, objects.find): OpenNGC's places, and
altitude and azimuth now checked against astropy's."""

from __future__ import annotations

import pytest
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import iers
from helpers import is_reply, receive_until

iers.conf.auto_download = False  # offline, as a field is: the bundled tables are close enough here
iers.conf.auto_max_age = None


async def find(client, query: str):
    response = await client.get("/api/objects", params={"q": query})
    return response.status, await response.json()


async def test_an_object_by_name_with_its_altitude_now_as_astropy_puts_it(make_client):
    client = await make_client(latitude=52.0, longitude=5.0)
    status, body = await find(client, "andromeda galaxy")
    assert status == 200, body
    data = body["data"]
    found = data["object"]
    assert (found["name"], found["catalogue_name"], found["type"]) == ("M31", "NGC0224", "galaxy")
    assert found["common_names"] == ["Andromeda Galaxy"] and found["constellation"] == "And"
    assert data["site"] == {"latitude": 52.0, "longitude": 5.0, "source": "config", "known": True}
    truth = SkyCoord(found["ra"] * u.deg, found["dec"] * u.deg).transform_to(
        AltAz(obstime=Time(data["time"], format="unix"), location=EarthLocation(lat=52 * u.deg, lon=5 * u.deg))
    )
    # No refraction, nutation or aberration here: a hundredth of a degree, far below a field's size.
    assert found["altitude"] == pytest.approx(truth.alt.deg, abs=0.05)
    assert found["azimuth"] == pytest.approx(truth.az.deg, abs=0.05)
    assert found["above_horizon"] is (found["altitude"] > 0)


async def test_without_a_site_there_is_no_altitude_and_the_answer_says_why(client):
    status, body = await find(client, "M42")
    data = body["data"]
    assert status == 200 and data["object"]["name"] == "M42" and data["object"]["altitude"] is None
    assert data["warning"] == "the site is not set (latitude and longitude): no altitude"


async def test_an_object_that_never_rises_at_the_site_is_said_to_be_below_the_horizon(make_client):
    client = await make_client(latitude=-80.0, longitude=0.0)
    status, body = await find(client, "NGC 188")  # declination +85: never seen from the far south
    assert status == 200
    assert body["data"]["object"]["above_horizon"] is False
    assert body["data"]["warning"].startswith("NGC 188 is below the horizon now (altitude -")


async def test_an_unknown_name_is_a_404_with_suggestions(client):
    status, body = await find(client, "Andromeda")
    assert (status, body["code"]) == (404, "NOT_FOUND")
    assert body["error"].startswith("no object named 'Andromeda' in OpenNGC") and "M31" in body["error"]
    assert "M31" in body["data"]["suggestions"]
    status, body = await find(client, "Planet X")
    assert (status, body["code"]) == (404, "NOT_FOUND") and body["data"]["suggestions"] == []


@pytest.mark.parametrize("query", [{}, {"q": ""}, {"q": "M" * 65}, {"q": "M31", "limit": "3"}])
async def test_a_bad_question_is_a_400(client, query):
    response = await client.get("/api/objects", params=query)
    body = await response.json()
    assert (response.status, body["code"]) == (400, "VALIDATION_ERROR"), body


async def test_objects_over_the_websocket(client):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "objects.find", "params": {"q": "m 45"}})
    reply = (await receive_until(ws, is_reply(1)))[-1]
    assert reply["ok"] and reply["data"]["object"]["common_names"] == ["Pleiades"]
    await ws.send_json({"id": 2, "action": "objects.find", "params": {"q": "nothing like it"}})
    reply = (await receive_until(ws, is_reply(2)))[-1]
    assert not reply["ok"] and reply["error"]["code"] == "NOT_FOUND"
    await ws.close()


async def test_the_site_set_from_a_device_is_kept_across_a_restart_and_wins_over_the_configuration(
    make_client, aiohttp_client, config
):
    client = await make_client(latitude=52.0, longitude=5.0)
    assert (await (await client.get("/api/site")).json())["data"]["source"] == "config"
    ws = await client.ws_connect("/ws")
    response = await client.post("/api/site", json={"latitude": -31.27, "longitude": 149.06, "source": "device"})
    site = (await response.json())["data"]
    assert site == {"latitude": -31.27, "longitude": 149.06, "source": "device", "known": True}
    event = (await receive_until(ws, lambda m: m.get("event") == "site"))[-1]
    assert event["topic"] == "system" and event["data"] == site  # every page hears of it
    await ws.close()
    status, body = await find(client, "NGC 188")  # +85: never up from Siding Spring
    assert status == 200
    assert body["data"]["object"]["above_horizon"] is False
    await client.close()
    again = await make_client(latitude=52.0, longitude=5.0)  # a restart, same data directory
    assert (await (await again.get("/api/site")).json())["data"]["source"] == "device"
    east = await again.post("/api/site", json={"latitude": 0, "longitude": 350})  # 0..360 is -180..180
    assert (await east.json())["data"]["longitude"] == -10.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"latitude": 91, "longitude": 0}, "latitude"),
        ({"latitude": 10}, "longitude"),
        ({"latitude": "north", "longitude": 0}, "latitude"),
        ({"latitude": 10, "longitude": 400}, "longitude"),
        ({"latitude": 10, "longitude": 0, "source": "config"}, "source"),
        ({"latitude": 10, "longitude": 0, "altitude": 3}, "altitude"),
    ],
)
async def test_a_bad_site_is_refused_and_the_old_one_stays(client, body, field):
    response = await client.post("/api/site", json=body)
    payload = await response.json()
    assert (response.status, payload["code"]) == (400, "VALIDATION_ERROR") and payload["error"].startswith(f"{field}:")
    assert (await (await client.get("/api/site")).json())["data"]["known"] is False
