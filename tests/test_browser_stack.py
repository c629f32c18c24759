"""The Stack panel in a real browser (web_static/stack.js): start stacking the live view, watch the
stack build in the view, the counts, save it into the gallery, switch back to the live frames.
Fixtures: tests/in_browser.py."""

from __future__ import annotations

import re

import pytest
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
