"""The observer's night in a real browser (issue 16): the page when the server is gone, how a
session ends, the capture panel during a session, a captures folder that cannot be written, and
the small things a new user stumbled on. Fixtures: tests/in_browser.py."""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest
from in_browser import eventually, wait_for_live_frame
from live_server import Wanda
from playwright.sync_api import expect
from test_clock import FakeTimedatectl

from wanda.jpeg import JpegEncoder

pytestmark = pytest.mark.slow  # a real browser and a real `wanda`


def test_browser_offline_page_marks_everything_stale_and_takes_the_state_afresh_on_reconnect(
    open_page, tmp_path, screenshots
):
    with Wanda(tmp_path) as server:
        page, console = open_page(server)
        wait_for_live_frame(page)
        server.post("/api/camera/settings", {"exposure_seconds": 30.0})
        page.get_by_role("button", name="Capture", exact=True).click()
        expect(page.locator("#camera-state")).to_have_text("exposing 30 s")
        expect(page.locator("#capture-countdown")).to_be_visible()
        server.stop()  # SIGTERM mid-exposure

        status = page.locator("#ws-state")
        expect(status).to_have_text(re.compile(r"^offline since \d\d:\d\d · reconnecting in \d+ s$"))
        expect(page.locator("#camera-state")).to_have_text("camera –")  # not "exposing 30 s" forever
        expect(page.locator("#capture-progress-box")).to_be_hidden()
        expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
        note = page.locator("#live-offline")
        expect(note).to_have_text(re.compile(r"^Offline since \d\d:\d\d: this is the last frame received\.$"))
        since = re.search(r"\d\d:\d\d", note.inner_text())[0]
        assert since in status.inner_text()
        stale = page.evaluate(
            """() => ['camera-panel', 'capture-panel', 'session-panel', 'mount-panel', 'gallery-panel']
                .map(id => [id, document.getElementById(id).inert,
                            getComputedStyle(document.getElementById(id).closest('.controls, .gallery')).opacity])"""
        )
        assert all(inert and float(opacity) < 1 for _, inert, opacity in stale), stale
        page.screenshot(path=screenshots / "offline.png")

        # While it was down a frame landed on the disk (copied in by hand): the page lists it once
        # it is back, because it takes everything afresh.
        server.captures.mkdir(exist_ok=True)
        tiny = JpegEncoder().encode(np.full((48, 64, 3), 40, np.uint8), "RGB")
        (server.captures / "light_0900.jpg").write_bytes(tiny)
        server.start()
        expect(status).to_have_text("connected", timeout=30000)
        expect(note).to_be_hidden()
        expect(page.locator("#camera-state")).to_have_text("camera idle")
        assert page.evaluate("document.getElementById('camera-panel').inert") is False
        expect(page.locator("#gallery-grid li", has_text="light_0900.jpg")).to_have_count(1)
        page.get_by_label("ISO").fill("1100")  # usable again
        page.get_by_label("ISO").press("Enter")
        eventually(lambda: server.get("/api/camera/status")["iso"] == 1100)
        # Logged: the connections refused while it was down, and the capture the shutdown cancelled (409).
        expected = ("ERR_CONNECTION_REFUSED", "WebSocket", "409 (Conflict)")
        assert [e for e in console.errors if not any(text in e for text in expected)] == []


def test_browser_a_session_says_how_it_ended_and_its_folder_count_follows_it(open_page, wanda):
    wanda.post("/api/camera/settings", {"exposure_seconds": 0.3})
    page, console = open_page(wanda)
    page.evaluate("localStorage.removeItem('wanda.sessionDismissed')")
    page.get_by_label("Name").fill("counted")
    page.get_by_label("Frames").fill("40")
    page.get_by_label("Rapid").check()
    page.get_by_role("button", name="Start session").click()
    folder = page.locator("#gallery-folder option[value='counted']")
    # The gallery's count follows the frames as they are saved, not only at the end.
    expect(folder).to_have_text(re.compile(r"^counted \(([2-9]|[1-3]\d)\)$"))
    assert wanda.get("/api/session/status")["active"]
    page.locator("#session-stop").click()
    ended = page.locator("#session-ended")
    expect(ended).to_be_visible()
    status = wanda.get("/api/session/status")
    frames = status["captured_images"]
    expect(page.locator("#session-ended-text")).to_have_text(
        re.compile(rf"^counted stopped: {frames} of 40 frames in \d+ s\. Saved in .*/counted\.$")
    )
    expect(folder).to_have_text(f"counted ({frames})")
    page.get_by_role("button", name="Show in gallery").click()
    expect(page.get_by_label("Folder")).to_have_value("counted")
    expect(page.locator("#gallery-grid li")).to_have_count(frames)
    page.get_by_role("button", name="Dismiss").click()
    expect(ended).to_be_hidden()
    page.reload()  # dismissed stays dismissed on this device
    expect(page.locator("#ws-state")).to_have_text("connected")
    expect(page.locator("#session-form")).to_be_visible()
    expect(ended).to_be_hidden()

    # A session that completes says so too (that its elapsed time stops: tests/test_session.py).
    page.get_by_label("Name").fill("complete")
    page.get_by_label("Frames").fill("2")
    page.get_by_role("button", name="Start session").click()
    expect(page.locator("#session-ended-text")).to_have_text(
        re.compile(r"^complete completed: 2 of 2 frames in \d+ s\. Saved in .*/complete\.$"), timeout=30000
    )
    assert console.errors == []


def test_browser_the_capture_panel_during_a_session_stops_the_session_only_when_confirmed(open_page, wanda):
    page, console = open_page(wanda)  # (before the long exposure: the page's load waits for a frame)
    wanda.post("/api/camera/settings", {"exposure_seconds": 30.0})
    wanda.post("/api/session/start", {"name": "long subs", "total_images": 3})
    expect(page.locator("#capture-owner")).to_have_text("Session long subs: frame 1 of 3")
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_hidden()
    stop = page.get_by_role("button", name="Stop the session…")
    stop.click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Stop the session long subs?")
    dialog.get_by_role("button", name="Keep").click()
    assert wanda.get("/api/session/status")["active"]  # nothing stopped without the confirmation
    stop.click()
    dialog.get_by_role("button", name="Stop session").click()
    eventually(lambda: wanda.get("/api/session/status")["status"] == "stopped")
    expect(page.locator("#session-ended-text")).to_contain_text("long subs stopped: 0 of 3 frames")
    expect(stop).to_be_hidden()
    assert console.errors == []


def test_browser_resume_goes_when_its_folder_is_deleted(open_page, wanda):
    wanda.post("/api/camera/settings", {"exposure_seconds": 30.0})
    wanda.post("/api/session/start", {"name": "to delete", "total_images": 3})
    wanda.post("/api/session/stop", {})
    wanda.post("/api/camera/settings", {"exposure_seconds": 0.1})
    page, console = open_page(wanda)
    resume = page.locator("#session-resume")
    expect(resume).to_have_text("Resume to delete (0/3)")  # the newest resumable session
    page.get_by_label("Folder").select_option("to delete")
    page.get_by_role("button", name="Delete folder").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    # Gone, or offering an older session of the shared server, never the deleted one.
    page.wait_for_function(
        "() => { const b = document.getElementById('session-resume'); return b.hidden || b.dataset.name !== 'to delete'; }"
    )
    assert console.errors == []


def test_browser_a_refused_folder_delete_shows_beside_the_gallery_until_it_no_longer_applies(open_page, wanda):
    page, console = open_page(wanda)
    wanda.post("/api/camera/settings", {"exposure_seconds": 30.0})
    wanda.post("/api/session/start", {"name": "busy", "total_images": 3})
    page.get_by_label("Folder").select_option("busy")
    page.get_by_role("button", name="Delete folder").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    message = page.locator("#gallery-message")
    expect(message).to_contain_text("session")  # the server's reason: a session is writing there
    expect(page.locator("#session-message")).to_be_empty()
    wanda.post("/api/session/stop", {})  # from elsewhere: the reason is gone, and so is the message
    expect(message).to_be_hidden()
    assert [e for e in console.errors if "409" not in e] == []


class WithoutRootsOverride(Wanda):
    """`wanda` as root without the capabilities that let root write anywhere: a folder it may not
    write is one it cannot write, as for the `pi` user."""

    def command(self) -> list[str]:
        return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *super().command()]


def test_browser_a_captures_folder_that_cannot_be_written_is_said_in_the_status_bar_and_by_every_save(
    open_page, tmp_path
):
    captures = tmp_path / "captures"
    captures.mkdir()
    captures.chmod(0o555)
    with WithoutRootsOverride(tmp_path) as server:
        assert "NOTHING CAN BE SAVED" in server.log_text()
        page, console = open_page(server)
        pill = page.locator("#storage-state")
        expect(pill).to_have_text("captures folder is read-only")
        expect(pill).to_have_attribute("title", re.compile(rf"^nothing can be saved: .* may not write in {captures}"))
        page.get_by_role("button", name="Capture", exact=True).click()
        expect(page.locator("#capture-message")).to_have_text(re.compile(rf"^nothing can be saved: .*{captures}"))
        page.get_by_label("Name").fill("refused")
        page.get_by_role("button", name="Start session").click()
        expect(page.locator("#session-message")).to_have_text(
            re.compile(rf"^the session cannot save its frames: .*{captures}")
        )
        assert not (captures / "refused").exists()
        assert "Traceback" not in server.log_text()
        # Only the refused requests are logged (the form, remembered in the captures folder, is refused too).
        assert [e for e in console.errors if "507" not in e and "403" not in e] == []


def test_browser_small_things_at_1280_px(open_page, wanda):
    page, console = open_page(wanda, width=1280, height=800)
    wait_for_live_frame(page)
    band = page.evaluate(
        """() => document.getElementById('gallery-panel').getBoundingClientRect().top
                 - document.getElementById('live-panel').getBoundingClientRect().bottom"""
    )
    assert band <= 16, f"{band:.0f} px of nothing between the live view and the gallery"
    h_on_its_line = page.evaluate(
        """() => {
            const input = document.getElementById('session-hours');
            let node = input.nextSibling;
            while (node && !node.textContent.trim()) node = node.nextSibling;
            const range = document.createRange();
            range.selectNodeContents(node);
            const unit = range.getBoundingClientRect(), box = input.getBoundingClientRect();
            return unit.top >= box.top - 2 && unit.bottom <= box.bottom + 2 && unit.left >= box.right;
        }"""
    )
    assert h_on_its_line, "the 'h' of 'Spread over … h' wrapped onto a line of its own"

    exposure = page.get_by_label("exposure with unit")
    exposure.fill("-1")
    exposure.press("Enter")
    expect(page.locator("#exposure-error")).to_have_text("exposure: must be positive")
    iso = page.get_by_label("ISO")
    before = wanda.get("/api/camera/status")["iso"]
    iso.fill("5")
    iso.press("Enter")
    expect(page.locator("#iso-error")).to_have_text(re.compile(r"100"))  # the range it must be in
    expect(iso).to_have_value(str(round(before)))  # the camera's value again, not the refused one
    assert [e for e in console.errors if "400" not in e] == []


def test_browser_offers_to_set_the_pis_clock_from_the_devices(open_page, browser, tmp_path):
    fake = FakeTimedatectl(tmp_path / "bin", ntp=True, synchronized=False)
    path = f"{fake.path.parent}{os.pathsep}{os.environ['PATH']}"
    with Wanda(tmp_path, env={"PATH": path}) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.clock.install(time=time.time() + 600)  # this phone is ten minutes ahead of the Pi
            page.goto(server.url + "/")
            expect(page.locator("#clock-state")).to_have_text(
                re.compile(r"^Pi clock (9 min 5\d s|10 min( \d s)?) behind this device$")
            )
            before = time.time()
            page.get_by_role("button", name="Set Pi clock").click()
            eventually(lambda: fake.state["set_to"] is not None)
            assert abs(fake.state["set_to"] - (before + 600)) < 5  # the device's time, when clicked
            eventually(lambda: fake.state["ntp"] is True)  # switched back on after
        finally:
            context.close()


def test_browser_sets_the_site_from_the_devices_location_or_typed(open_page, wanda):
    page, console = open_page(
        wanda, geolocation={"latitude": -31.2733, "longitude": 149.0617}, permissions=["geolocation"]
    )
    page.get_by_role("button", name="Use this device's location").click()
    expect(page.locator("#site-text")).to_have_text("31.2733° S, 149.0617° E (from a device's location)")
    assert wanda.get("/api/site") == {"latitude": -31.2733, "longitude": 149.0617, "source": "device", "known": True}
    other, _ = open_page(wanda)  # another page follows
    expect(other.locator("#site-text")).to_contain_text("31.2733° S")
    page.get_by_label("site latitude, degrees north").fill("52.1")
    page.get_by_label("site longitude, degrees east").fill("-4.5")
    page.get_by_role("button", name="Set site").click()
    expect(other.locator("#site-text")).to_have_text("52.1000° N, 4.5000° W (typed in)")
    page.get_by_label("site latitude, degrees north").fill("95")
    page.get_by_role("button", name="Set site").click()
    expect(page.locator("#site-message")).to_contain_text("latitude")
    assert wanda.get("/api/site")["latitude"] == 52.1
    assert [e for e in console.errors if "400" not in e] == []
