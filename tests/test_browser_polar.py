"""The Polar alignment panel in a real browser (web_static/polar.js) against a real `wanda` whose
simulated mount is misaligned: the observer starts the assistant, turns the RA axis by hand when the
panel says so, then turns the knobs as the panel's arrows say until it says aligned; the target
circle and the arrow are drawn over the live view while the knobs are turned."""

from __future__ import annotations

import time

import pytest
from in_browser import eventually
from live_server import Wanda
from playwright.sync_api import expect

pytestmark = pytest.mark.slow  # a real browser and a real `wanda`

MISALIGNED = [
    "--latitude=48",
    "--longitude=11",
    "--sim-ra=40",
    "--sim-dec=55",
    "--sim-polar-error-alt=8",
    "--sim-polar-error-az=-5",
]


def knob(page, element_id: str) -> tuple[str, float]:
    element = page.locator(f"#{element_id}")
    return element.get_attribute("data-direction"), float(element.get_attribute("data-arcmin"))


def test_the_observer_follows_the_arrows_until_the_panel_says_aligned(open_page, tmp_path, screenshots):
    with Wanda(tmp_path, args=MISALIGNED) as server:
        server.post("/api/camera/settings", {"exposure_seconds": 0.5, "gain": 2})
        page, console = open_page(server)
        page.locator("#polar-panel summary").click()
        page.select_option("#polar-mode", "hand")
        page.get_by_role("button", name="Start", exact=True).click()
        status = page.locator("#polar-status")
        expect(status).to_contain_text("release the RA clutch", timeout=30000)
        expect(page.locator("#polar-steps li[aria-current=step]")).to_have_text("Turn the RA axis")
        server.post("/api/sim/mount", {"ra_by_hand_deg": 15, "seconds": 1})  # the observer's hands
        expect(page.locator("#polar-figures")).to_be_visible(timeout=60000)
        expect(page.locator("#polar-steps li[aria-current=step]")).to_have_text("Turn the knobs as the arrows show")
        # Mounted 8' high and 5' west: down and east (to the right, facing the north pole).
        assert knob(page, "polar-alt")[0] == "down" and knob(page, "polar-az")[0] == "east"
        expect(page.locator("#polar-alt")).to_contain_text("↓ lower the axis")
        expect(page.locator("#polar-az")).to_contain_text("→ turn the mount")
        # Over the live view: where the star at the centre must go, and the two knobs' legs.
        overlay = page.locator("#polar-overlay")
        expect(overlay).to_be_visible()
        expect(overlay.locator("circle.polar-target")).to_have_count(1)
        expect(overlay.locator("line.polar-leg")).to_have_count(2)
        target = overlay.locator("circle.polar-target").bounding_box()
        picture = page.locator("#live").bounding_box()
        assert target["width"] > 0 and picture["width"] > 0
        for panel in ("camera", "capture", "session", "mount"):  # open by default: the polar panel up top
            page.locator(f"#{panel}-panel summary").click()
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=screenshots / "polar.png")
        for _ in range(5):
            if status.get_attribute("data-phase") == "done":
                break
            (alt_way, alt), (az_way, az) = knob(page, "polar-alt"), knob(page, "polar-az")
            turned_at = time.time()
            server.post(
                "/api/sim/mount",
                {
                    "alt_knob_arcmin": alt if alt_way == "up" else -alt,
                    "az_knob_arcmin": az if az_way == "east" else -az,
                },
            )
            # An error from a frame (0.5 s) exposed after the turn.
            page.wait_for_function(
                "(t) => { const s = document.getElementById('polar-status');"
                " return s.dataset.phase !== 'adjusting' || Number(s.dataset.frameTime) - 0.5 > t; }",
                arg=turned_at,
                timeout=30000,
            )
        expect(status).to_have_attribute("data-phase", "done", timeout=30000)
        expect(status).to_contain_text("Aligned: aligned: the axis is")
        expect(page.locator("#polar-overlay")).to_be_hidden()
        expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
        truth = server.get("/api/sim/mount")["polar_error"]
        assert truth["total_error_arcmin"] < 1.0
        eventually(lambda: not server.get("/api/polar-align")["running"])
        assert console.errors == []


def test_a_failure_is_said_in_the_panel_and_cancel_ends_a_run(open_page, tmp_path):
    with Wanda(tmp_path, args=MISALIGNED) as server:
        page, console = open_page(server)
        page.locator("#polar-panel summary").click()
        page.select_option("#polar-mode", "hand")
        page.get_by_role("button", name="Start", exact=True).click()
        expect(page.locator("#polar-advice")).to_contain_text("0.5 s or more")  # the live view is at 1/30 s
        expect(page.locator("#polar-status")).to_contain_text("release the RA clutch", timeout=30000)
        page.get_by_role("button", name="Cancel", exact=True).click()
        expect(page.locator("#polar-status")).to_have_text("Cancelled: polar alignment was cancelled")
        expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_disabled()
        page.fill("#polar-rotate", "1")
        page.get_by_role("button", name="Start", exact=True).click()
        expect(page.locator("#polar-message")).to_contain_text("rotate_deg")
        # The browser logs the refused request itself; the page threw nothing.
        assert [e for e in console.errors if "status of 400" not in e] == []
