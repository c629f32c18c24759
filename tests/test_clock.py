"""The Pi's clock: its state and setting it from the observer's device, through the API, with
`timedatectl` stood in for at the system's edge (tests/fake_timedatectl.py)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from helpers import is_reply, receive_until

from wanda.app import create_app
from wanda.clock import SystemClock
from wanda.doctor import WARN, check_clock
from wanda.keys import CLOCK

FAKE = Path(__file__).with_name("fake_timedatectl.py")


class FakeTimedatectl:
    """The stand-in in a folder of its own, and its state."""

    def __init__(self, folder: Path, *, ntp: bool = True, synchronized: bool = False, denied: bool = False):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "timedatectl"
        shutil.copy(FAKE, self.path)
        self.path.chmod(0o755)
        self.state_file = folder / "timedatectl.json"
        self.state_file.write_text(
            json.dumps({"ntp": ntp, "synchronized": synchronized, "denied": denied, "calls": [], "set_to": None})
        )

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())


@pytest.fixture
def make_clock_client(aiohttp_client, config, tmp_path):
    async def make(**state):
        fake = FakeTimedatectl(tmp_path / "bin", **state)
        app = create_app(config)
        app[CLOCK] = SystemClock(str(fake.path))
        return await aiohttp_client(app), fake

    return make


async def test_an_unsynchronised_clock_is_set_from_the_device_with_ntp_switched_off_and_on_around_it(make_clock_client):
    client, fake = await make_clock_client(ntp=True, synchronized=False)
    before = time.time()
    status = (await (await client.get("/api/clock")).json())["data"]
    assert (status["synchronized"], status["ntp"]) == (False, True)
    assert "not synchronised" in status["detail"]
    assert before - 1 <= status["server_time"] <= time.time() + 1
    phone = 1_800_000_000.4  # the device says so
    response = await client.post("/api/clock", json={"unix_time": phone})
    assert response.status == 200, await response.json()
    state = fake.state
    assert state["set_to"] == 1_800_000_000
    sets = [call for call in state["calls"] if call[0] != "show"]
    assert sets == [["set-ntp", "false"], ["set-time", "@1800000000"], ["set-ntp", "true"]]
    assert state["ntp"] is True  # NTP takes over again when a network comes


async def test_a_synchronised_clock_is_never_set_by_hand(make_clock_client):
    client, fake = await make_clock_client(ntp=True, synchronized=True)
    response = await client.post("/api/clock", json={"unix_time": 1_800_000_000})
    body = await response.json()
    assert (response.status, body["code"]) == (409, "CLOCK_SYNCHRONIZED")
    assert fake.state["set_to"] is None


async def test_without_polkits_permission_the_answer_says_what_to_install_and_ntp_is_back_on(make_clock_client):
    client, fake = await make_clock_client(ntp=False, synchronized=False, denied=True)
    response = await client.post("/api/clock", json={"unix_time": 1_800_000_000})
    body = await response.json()
    assert (response.status, body["code"]) == (403, "PERMISSION_DENIED")
    assert body["error"] == (
        "could not set the time: Failed to set time: Access denied: "
        "install wanda-clock.rules as README.md says (Running under systemd)"
    )
    assert fake.state["set_to"] is None


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({}, "unix_time: must be seconds since 1970"),
        ({"unix_time": "now"}, "unix_time: must be seconds since 1970"),
        ({"unix_time": True}, "unix_time: must be seconds since 1970"),
        ({"unix_time": 86400}, "unix_time: 86400 is not between 2026 and 2100"),
        ({"unix_time": 1_800_000_000, "tz": "UTC"}, "tz: unknown field"),
    ],
)
async def test_a_bad_time_is_refused_before_the_clock_is_touched(make_clock_client, body, text):
    client, fake = await make_clock_client()
    response = await client.post("/api/clock", json=body)
    payload = await response.json()
    assert (response.status, payload["code"]) == (400, "VALIDATION_ERROR")
    assert payload["error"].startswith(text), payload
    assert [call for call in fake.state["calls"] if call[0] != "show"] == []


async def test_the_clock_over_the_websocket(make_clock_client):
    client, fake = await make_clock_client()
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "clock.status"})
    reply = (await receive_until(ws, is_reply(1)))[-1]
    assert reply["ok"] and reply["data"]["ntp"] is True
    await ws.send_json({"id": 2, "action": "clock.set", "params": {"unix_time": 1_800_000_100}})
    reply = (await receive_until(ws, is_reply(2)))[-1]
    assert reply["ok"], reply
    assert fake.state["set_to"] == 1_800_000_100
    await ws.close()


async def test_a_machine_without_timedated_says_so(aiohttp_client, config, tmp_path):
    app = create_app(config)
    app[CLOCK] = SystemClock(str(tmp_path / "no-such-timedatectl"))
    client = await aiohttp_client(app)
    status = (await (await client.get("/api/clock")).json())["data"]
    assert status["synchronized"] is None and "is not installed" in status["detail"]
    response = await client.post("/api/clock", json={"unix_time": 1_800_000_000})
    assert (response.status, (await response.json())["code"]) == (503, "CLOCK_ERROR")


def test_doctor_reports_the_clocks_sync_state(tmp_path):
    fake = FakeTimedatectl(tmp_path / "bin", ntp=True, synchronized=False)
    check = check_clock(SystemClock(str(fake.path)))
    assert check.status == WARN and "not synchronised" in check.detail and "browser" in check.fix
    synced = FakeTimedatectl(tmp_path / "bin2", ntp=True, synchronized=True)
    assert check_clock(SystemClock(str(synced.path))).status == "ok"


async def test_ntp_that_will_not_switch_back_on_is_logged_and_shown_not_put_in_the_place_of_the_set(
    make_clock_client, caplog
):
    client, fake = await make_clock_client(ntp=True, synchronized=False)
    state = fake.state
    state["ntp_on_fails"] = True
    fake.state_file.write_text(json.dumps(state))
    response = await client.post("/api/clock", json={"unix_time": 1_800_000_000})
    body = await response.json()
    assert response.status == 200 and fake.state["set_to"] == 1_800_000_000  # the time was set
    assert body["data"]["ntp"] is False  # and the answer shows NTP is off now
    assert any("NTP could not be switched back on" in r.message for r in caplog.records)
