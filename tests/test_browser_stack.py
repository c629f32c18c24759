"""The Stack panel in a real browser (web_static/stack.js): start stacking the live view, watch the
stack build in the view, the counts, save it into the gallery, switch back to the live frames.
Fixtures: tests/in_browser.py."""

from __future__ import annotations

import re

import pytest
from helpers import wait_for
from in_browser import wait_for_live_frame
from playwright.sync_api import expect

pytestmark = pytest.mark.slow  # a real browser and a real `wanda`


def test_browser_stack_builds_in_the_view_and_is_saved(open_page, wanda):
    wanda.post("/api/mount/tracking", {"action": "start"})
    page, console = open_page(wanda)
    wait_for_live_frame(page)
    page.locator("#stack-panel summary").click()
    page.get_by_role("button", name="Start stacking").click()
    # The view shows the stack at once: watching it build is the point.
    expect(page.get_by_role("button", name="Stack view")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#live")).to_have_attribute("src", re.compile(r"source=stack"))
    wait_for_live_frame(page)
    status = page.locator("#stack-status")
    expect(status).to_have_text(re.compile(r"^Stacking · ([3-9]|\d\d+) stacked · \d+ rejected"), timeout=30000)
    assert "noise" in status.inner_text() and "× lower than one frame" in status.inner_text()
    # No masters on this server: the panel says what it looked for.
    expect(page.locator("#stack-calibration")).to_have_text(
        re.compile(r"^Calibration: no dark, no flat · no master dark of 1440x1080 at 0\.0333\d* s, gain 8")
    )
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(status).to_have_text(re.compile(r"^Stopped · "))
    page.get_by_role("button", name="Save").click()
    link = page.locator("#stack-saved a")
    expect(link).to_have_text(re.compile(r"^stacks/stack_\d{4}\.jpg$"))
    saved = link.inner_text()
    assert saved.split("/")[-1] in wanda.get("/api/captures?folder=stacks")["files"]  # in the gallery
    # Back to the live frames.
    page.get_by_role("button", name="Stack view").click()
    expect(page.locator("#live")).not_to_have_attribute("src", re.compile(r"source=stack"))
    expect(page.get_by_role("button", name="Stretch")).to_be_enabled()
    page.get_by_role("button", name="Reset").click()
    expect(status).to_have_text(re.compile(r"^Stopped · 0 stacked"))
    assert console.errors == []


def session_of(wanda, name: str, **body) -> str:
    """A session of three frames taken through the API, ended; its folder."""
    started = wanda.post("/api/session/start", {"name": name, "total_images": 3, **body})
    folder = started["folder"]
    wait_for(lambda: not wanda.get("/api/session/status")["active"], timeout=60, what=f"session {name}")
    return folder


def test_browser_builds_a_master_dark_and_stacks_a_session_with_it(open_page, wanda):
    own = {"use_current_settings": False, "file_format": "fits", "exposure_seconds": 0.05}
    darks = session_of(wanda, "darks", frame_type="dark", **own)
    wanda.post("/api/mount/tracking", {"action": "start"})
    lights = session_of(wanda, "lights", frame_type="light", **own)
    page, console = open_page(wanda)
    page.locator("#stack-panel summary").click()
    # A master dark, built from the darks' session in the panel.
    page.get_by_label("Build a master from").select_option(label="darks: 3 darks")
    page.get_by_role("button", name="Build master").click()
    expect(page.locator("#calibration-progress")).to_have_text(
        re.compile(r"^Built master_dark_\d{4}\.fits from 3 frames")
    )
    master = page.locator("#calibration-masters li").filter(has_text="dark master_dark_")
    expect(master).to_contain_text("1440x1080, 0.05 s, gain")
    name = re.search(r"master_dark_\d{4}\.fits", master.inner_text()).group(0)
    # The lights' session stacked with it, to its end.
    page.get_by_label("Stack").select_option(label="session lights (3 frames)")
    page.get_by_role("button", name="Start stacking").click()
    status = page.locator("#stack-status")
    expect(status).to_have_text(re.compile(r"^Stacked session " + lights + r" · 3 stacked · 0 rejected"), timeout=60000)
    expect(page.locator("#stack-calibration")).to_contain_text(f"dark {name}")
    # The master goes with its button.
    master.get_by_role("button", name=f"Delete {name}").click()
    expect(page.locator("#calibration-masters")).not_to_contain_text(name)
    assert name not in [m["name"] for m in wanda.get("/api/calibration")["masters"]]
    assert darks != lights and console.errors == []


def test_browser_session_form_dithers(open_page, wanda):
    page, console = open_page(wanda)
    page.get_by_label("Name").fill("dithered")
    page.get_by_label("Frames").fill("2")
    page.get_by_label("Track during the session").check()
    page.get_by_label("Dither every").fill("2")
    page.get_by_label("steps at most").fill("4")
    page.get_by_role("button", name="Start session").click()
    wait_for(lambda: wanda.get("/api/session/status")["name"] == "dithered", what="the session")
    assert wanda.get("/api/session/status")["dither"] == {"every": 2, "max_steps": 4, "settle_s": 2.0}
    assert wanda.get("/api/session/config")["ditherEvery"] == 2  # the form is remembered
    assert console.errors == []
