"""The browser client in a real browser: Playwright driving Debian's Chromium (headless) against a
real `wanda` process on the simulated sky (the fixtures are in tests/in_browser.py)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from in_browser import assert_night_only, eventually, mean_red, small_controls, wait_for_live_frame
from live_server import Wanda
from playwright.sync_api import expect

from wanda.jpeg import JpegEncoder

pytestmark = pytest.mark.slow  # a real browser and a real `wanda`


def test_browser_page_loads_clean_and_shows_live_frames(open_page, wanda, screenshots):
    page, console = open_page(wanda)
    wait_for_live_frame(page)
    # The frame is the sky, not a blank: its pixels vary (stars on a background).
    spread = page.evaluate(
        """() => {
            const image = document.getElementById('live');
            const canvas = Object.assign(document.createElement('canvas'), {width: 360, height: 270});
            const context = canvas.getContext('2d');
            context.drawImage(image, 0, 0, 360, 270);
            const pixels = context.getImageData(0, 0, 360, 270).data;
            let low = 255, high = 0;
            for (let i = 0; i < pixels.length; i += 4) { low = Math.min(low, pixels[i]); high = Math.max(high, pixels[i]); }
            return high - low;
        }"""
    )
    assert spread > 50
    expect(page.locator("#stream-stats")).to_contain_text(re.compile(r"\d+\.\d fps · \d+ viewers?"))
    expect(page.locator("#camera-state")).to_have_text("camera idle")
    expect(page.locator("#storage-state")).to_contain_text("free")
    page.screenshot(path=screenshots / "desktop.png")
    assert console.errors == []


def test_browser_exposure_changes_the_camera_and_a_refused_value_shows_the_servers_message(open_page, wanda):
    page, console = open_page(wanda)
    page.get_by_label("exposure with unit").fill("250 ms")
    page.get_by_label("exposure with unit").press("Enter")
    eventually(lambda: wanda.get("/api/camera/status")["exposure_seconds"] == 0.25)
    page.get_by_label("ISO").fill("400")
    page.get_by_label("ISO").press("Enter")
    eventually(lambda: wanda.get("/api/camera/status")["iso"] == 400)
    # Beyond the sensor: the server refuses, the page says why next to the control.
    page.get_by_label("exposure with unit").fill("10 min")
    page.get_by_label("exposure with unit").press("Enter")
    expect(page.locator("#exposure-error")).to_have_text(re.compile(r"^exposure_seconds: 600 s is outside the limits"))
    assert wanda.get("/api/camera/status")["exposure_seconds"] == 0.25
    # The slider moves on a logarithmic scale: its middle is the geometric mean of the range.
    page.locator("#exposure-slider").fill("500")
    page.locator("#exposure-slider").dispatch_event("change")
    low, high = 1e-4, wanda.get("/api/camera/status")["limits"]["exposure_seconds"][1]
    expected = (low * high) ** 0.5
    eventually(lambda: abs(wanda.get("/api/camera/status")["exposure_seconds"] / expected - 1) < 0.01)
    assert [e for e in console.errors if "400" not in e] == []  # the refused request itself is logged


def test_browser_two_pages_stay_in_step(open_page, wanda):
    first, _ = open_page(wanda)
    second, _ = open_page(wanda)
    first.get_by_label("ISO").fill("1200")
    first.get_by_label("ISO").press("Enter")
    expect(second.get_by_label("ISO")).to_have_value("1200")  # through the WebSocket's status event
    first.get_by_label("Frame type").select_option("dark")
    expect(second.get_by_label("Frame type")).to_have_value("dark")
    wanda.post("/api/camera/settings", {"iso": 800, "frame_type": "light"})
    expect(first.get_by_label("Frame type")).to_have_value("light")


def test_browser_capture_shows_progress_and_adds_the_frame_to_the_gallery(open_page, wanda, screenshots):
    page, console = open_page(wanda)
    wanda.post("/api/camera/settings", {"exposure_seconds": 2.0})
    before = len(wanda.get("/api/captures")["files"])
    page.get_by_role("button", name="Capture", exact=True).click()
    expect(page.locator("#capture-progress-box")).to_be_visible()
    expect(page.locator("#capture-countdown")).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(page.locator("#camera-state")).to_have_text("exposing 2 s")
    page.wait_for_function("() => document.getElementById('capture-progress').value >= 40")
    page.screenshot(path=screenshots / "capture.png")
    expect(page.locator("#capture-progress-box")).to_be_hidden()
    expect(page.locator("#camera-state")).to_have_text("camera idle")
    assert len(wanda.get("/api/captures")["files"]) == before + 1
    newest = wanda.get("/api/captures")["files"][0]
    expect(page.locator("#gallery-grid li").first).to_contain_text(newest)
    expect(page.locator("#last-capture img")).to_have_attribute("alt", f"last capture {newest}")
    assert console.errors == []


def test_browser_cancel_stops_the_exposure(open_page, wanda):
    page, _ = open_page(wanda)
    wanda.post("/api/camera/settings", {"exposure_seconds": 30.0})
    page.get_by_role("button", name="Capture", exact=True).click()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#capture-message")).to_have_text("Cancelled: nothing was saved.")
    expect(page.locator("#camera-state")).to_have_text("camera idle")


def test_browser_gallery_opens_downloads_and_deletes_with_confirmation(open_page, wanda):
    wanda.post("/api/camera/settings", {"exposure_seconds": 0.05})
    saved = wanda.post("/api/camera/capture", {})["file"]
    page, console = open_page(wanda)
    item = page.locator("#gallery-grid li", has_text=saved)
    item.click()
    dialog = page.locator("#image-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#image-title")).to_have_text(saved)
    page.wait_for_function("() => document.getElementById('image-full').naturalWidth > 0")
    with page.expect_download() as download:
        page.locator("#image-download").click()
    assert download.value.suggested_filename == saved
    page.locator("#image-delete").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Keep").click()  # changed my mind
    assert saved in wanda.get("/api/captures")["files"]
    page.locator("#image-delete").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    eventually(lambda: saved not in wanda.get("/api/captures")["files"])
    expect(item).to_have_count(0)
    assert console.errors == []


def test_browser_gallery_shows_a_big_folder_a_page_at_a_time(open_page, wanda):
    folder = wanda.root / "captures" / "long night"
    folder.mkdir(parents=True)
    tiny = JpegEncoder().encode(np.full((48, 64, 3), 40, np.uint8), "RGB")
    for number in range(1, 131):
        (folder / f"light_{number:04d}.jpg").write_bytes(tiny)
        os.utime(folder / f"light_{number:04d}.jpg", (1_700_000_000 + number,) * 2)
    page, console = open_page(wanda)
    page.get_by_label("Folder").select_option("long night")
    grid = page.locator("#gallery-grid li")
    more = page.get_by_role("button", name=re.compile("Show more"))
    expect(grid).to_have_count(60)
    expect(grid.first).to_contain_text("light_0130.jpg")  # newest first
    expect(more).to_have_text("Show more (70 older)")
    more.click()
    expect(grid).to_have_count(120)
    more.click()
    expect(grid).to_have_count(130)
    expect(grid.last).to_contain_text("light_0001.jpg")
    expect(more).to_be_hidden()
    page.get_by_label("Folder").select_option("")  # another folder starts from its newest page again
    page.get_by_label("Folder").select_option("long night")
    expect(grid).to_have_count(60)
    assert console.errors == []


def test_browser_session_started_from_the_page_shows_progress(open_page, wanda, screenshots):
    wanda.post("/api/camera/settings", {"exposure_seconds": 0.5})
    page, console = open_page(wanda)
    page.get_by_label("Name").fill("M42 browser")
    page.get_by_label("Frames").fill("4")
    page.get_by_label("Rapid").check()
    page.get_by_role("button", name="Start session").click()
    expect(page.locator("#session-summary")).to_contain_text(re.compile(r"M42 browser: [0-3] of 4 frames"))
    expect(page.locator("#session-state")).to_contain_text("M42 browser")
    expect(page.get_by_role("button", name="Capture", exact=True)).to_be_disabled()
    page.screenshot(path=screenshots / "session.png")
    expect(page.locator("#session-form")).to_be_visible(timeout=30000)  # the session completed
    status = wanda.get("/api/session/status")
    assert status["captured_images"] == 4 and status["status"] == "completed"
    # The form is remembered by the server for the next visit.
    assert wanda.get("/api/session/config")["name"] == "M42 browser"
    page.reload()
    expect(page.get_by_label("Name")).to_have_value("M42 browser")
    page.get_by_label("Folder").select_option("M42 browser")
    expect(page.locator("#gallery-grid li")).to_have_count(4)
    expect(page.locator("#folder-zip")).to_have_attribute("href", "/api/captures/M42%20browser.zip")
    assert console.errors == []


def test_browser_stop_and_resume_a_session(open_page, wanda):
    wanda.post("/api/camera/settings", {"exposure_seconds": 0.3})
    page, _ = open_page(wanda)
    page.get_by_label("Name").fill("resumable")
    page.get_by_label("Frames").fill("50")
    page.get_by_role("button", name="Start session").click()
    expect(page.locator("#session-summary")).to_contain_text("resumable")
    page.get_by_role("button", name="Stop session").click()
    resume = page.locator("#session-resume")
    expect(resume).to_contain_text(re.compile(r"Resume resumable \(\d+/50\)"))
    resume.click()
    expect(page.locator("#session-running")).to_be_visible()
    eventually(lambda: wanda.get("/api/session/status")["running"])
    page.get_by_role("button", name="Stop session").click()
    eventually(lambda: not wanda.get("/api/session/status")["running"])


def test_browser_tracking_toggles_and_follows_the_mount(open_page, wanda):
    page, _ = open_page(wanda)
    toggle = page.get_by_label("Sidereal tracking")
    toggle.check()
    eventually(lambda: wanda.get("/api/mount/status")["tracking"])
    expect(page.locator("#mount-status")).to_contain_text("Tracking")
    page.get_by_label("Direction").select_option("ccw")
    eventually(lambda: wanda.get("/api/mount/status")["direction"] is False)
    wanda.post("/api/mount/tracking", {"action": "stop"})  # from elsewhere: the page follows
    expect(toggle).not_to_be_checked()
    expect(page.locator("#mount-status")).to_contain_text("Stopped")


def test_browser_night_mode_turns_everything_red_and_is_remembered(browser, open_page, wanda, screenshots):
    page, console = open_page(wanda)
    page.get_by_role("button", name="Night").click()
    expect(page.get_by_role("button", name="Night")).to_have_attribute("aria-pressed", "true")
    page.locator("#analysis-panel summary").click()  # open everything there is to see
    wait_for_live_frame(page)
    assert_night_only(browser, page)
    page.screenshot(path=screenshots / "night.png")
    page.reload()  # remembered
    expect(page.locator("html")).to_have_class("night")
    assert console.errors == []


def test_browser_phone_layout_has_no_sideways_scroll_and_touch_sized_controls(open_page, wanda, screenshots):
    page, console = open_page(wanda, width=390, height=844, is_mobile=True, has_touch=True)
    wait_for_live_frame(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert small_controls(page) == []
    page.get_by_role("button", name="1:1").click()  # focusing: 1:1 pans inside the view, not the page
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("button", name="Fit").click()
    page.screenshot(path=screenshots / "phone.png", full_page=True)
    assert console.errors == []


def test_browser_analysis_panel_fills_from_the_server_and_the_stretch_lifts_the_sky(open_page, wanda, screenshots):
    wanda.post("/api/camera/settings", {"exposure_seconds": 0.1, "iso": 1600})
    page, console = open_page(wanda)
    assert wanda.get("/state")["analysis"]["listeners"] == 0  # closed panel: no analysis asked for
    page.locator("#analysis-panel summary").click()
    expect(page.locator("#star-count")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(page.locator("#hfr")).to_have_text(re.compile(r"^\d+\.\d\d$"))
    assert wanda.get("/state")["analysis"]["listeners"] == 1
    drawn = """(id) => {
        const canvas = document.getElementById(id);
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let lit = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) lit += 1;
        return lit;
    }"""
    assert page.evaluate(drawn, "histogram") > 500
    page.wait_for_function(f"() => ({drawn})('hfr-trend') > 50")  # two analyses make a line
    # The stretch: the live image comes from the stretched stream, and it is brighter.
    brightness = mean_red("live")
    wait_for_live_frame(page)
    plain = page.evaluate(brightness)
    page.get_by_role("button", name="Stretch").click()
    expect(page.locator("#live")).to_have_attribute("src", re.compile(r"stretch=auto"))
    page.wait_for_function(f"() => ({brightness})() > {plain} + 20")
    page.screenshot(path=screenshots / "stretch.png")
    page.locator("#analysis-panel").screenshot(path=screenshots / "analysis.png")
    page.locator("#analysis-panel summary").click()  # closed again: the server stops analysing
    eventually(lambda: wanda.get("/state")["analysis"]["listeners"] == 0)
    assert console.errors == []


def test_browser_every_control_is_labelled_and_reachable_by_keyboard(open_page, wanda):
    page, _ = open_page(wanda)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
                .map(e => e.id)"""
    )
    assert unlabelled == []
    # Tab reaches the capture button, and Enter on it starts a capture.
    page.locator("#night-toggle").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "capture-button":
            break
    else:
        raise AssertionError("Tab never reached the Capture button")
    before = len(wanda.get("/api/captures")["files"])
    page.keyboard.press("Enter")
    eventually(lambda: len(wanda.get("/api/captures")["files"]) == before + 1)


def test_browser_survives_a_server_restart(open_page, tmp_path):
    with Wanda(tmp_path) as server:
        page, console = open_page(server)
        wait_for_live_frame(page)
        server.stop()
        expect(page.locator("#ws-state")).to_have_attribute("data-state", "closed")
        expect(page.locator("#ws-state")).to_contain_text("reconnecting in")
        server.start()
        expect(page.locator("#ws-state")).to_have_text("connected", timeout=30000)
        wait_for_live_frame(page)
        # The state came back with the connection: a change made now shows in the page.
        server.post("/api/camera/settings", {"iso": 1500})
        expect(page.get_by_label("ISO")).to_have_value("1500")
        # Only the failed connections while the server was down may be logged.
        assert [e for e in console.errors if "ERR_CONNECTION_REFUSED" not in e and "WebSocket" not in e] == []


def test_browser_with_a_password_logs_in_once_and_works(open_page, tmp_path, screenshots):
    with Wanda(tmp_path, password="dark skies") as server:
        page, console = open_page(server, connected=False)
        expect(page).to_have_url(server.url + "/login")  # the page itself needs the password
        page.get_by_label("Password").fill("light pollution")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#message")).to_have_text("wrong password")
        page.screenshot(path=screenshots / "login.png")
        page.get_by_label("Password").fill("dark skies")
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(server.url + "/")
        expect(page.locator("#ws-state")).to_have_text("connected")  # the cookie opened the WebSocket
        wait_for_live_frame(page)  # and the stream
        page.get_by_label("ISO").fill("1000")
        page.get_by_label("ISO").press("Enter")
        eventually(lambda: server.get("/api/camera/status")["iso"] == 1000)
        assert [e for e in console.errors if "401" not in e] == []  # the refused login is logged
