"""The browser tests' fixtures (registered by conftest.py as a pytest plugin, so that every
tests/test_browser*.py file shares them): Playwright driving Debian's Chromium (headless) against a
real `wanda` process on the simulated sky.

Screenshots go to a temporary folder, or to $WANDA_SCREENSHOTS (`WANDA_SCREENSHOTS=docs/screenshots
.venv/bin/python -m pytest tests/test_browser*.py` refreshes the README's set)."""

from __future__ import annotations

import base64
import contextlib
import os
import urllib.error
from pathlib import Path

import pytest
from helpers import wait_for
from live_server import Wanda
from playwright.sync_api import Page, expect, sync_playwright

from wanda.settings import SETTABLE

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches for the internet (this machine and the field have none).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15000


# What the server lets a client set, as it started: put back before each test (iso is the gain
# again, and both given must agree).
CAMERA_SETTINGS = tuple(name for name in SETTABLE if name != "iso")


def eventually(check, timeout: float = WAIT_MS / 1000):
    """Poll the server until ``check()`` is true; fail otherwise."""
    return wait_for(check, timeout=timeout, what=check.__doc__ or "the check")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh test does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shared_wanda(tmp_path_factory):
    """One server for the module's tests (a start costs a second or two), and what it started with."""
    with Wanda(tmp_path_factory.mktemp("wanda")) as server:
        camera = server.get("/api/camera/status")
        mount = server.get("/api/mount/status")
        server.initial = {
            "camera": {name: camera[name] for name in CAMERA_SETTINGS},
            "mount": {"speed": mount["speed"], "direction": mount["direction"]},
            "form": server.get("/api/session/config"),
        }
        yield server


@pytest.fixture
def wanda(shared_wanda):
    """The shared server as every test expects to find it, whatever the test before did or left
    behind when it failed: no session or capture running, the mount stopped, the camera, the mount's
    direction and the session form as the server started with them. (Files taken stay: the tests
    count from what is there.)"""
    reset(shared_wanda)
    return shared_wanda


def reset(server: Wanda) -> None:
    initial = server.initial
    if server.get("/api/session/status")["active"]:
        with contextlib.suppress(urllib.error.HTTPError):  # 409: it ended meanwhile
            server.post("/api/session/stop", {})
        wait_for(lambda: not server.get("/api/session/status")["active"], what="the session to end")
    if server.get("/api/camera/status")["exposure"] is not None:
        with contextlib.suppress(urllib.error.HTTPError):  # 409: it ended meanwhile
            server.post("/api/camera/capture/cancel", {})
        wait_for(lambda: server.get("/api/camera/status")["exposure"] is None, what="the capture to end")
    mount = server.get("/api/mount/status")
    if mount["direction"] != initial["mount"]["direction"] or mount["speed"] != initial["mount"]["speed"]:
        server.post("/api/mount/tracking", {"action": "start", **initial["mount"]})  # how they are set
    if server.get("/api/mount/status")["tracking"]:
        server.post("/api/mount/tracking", {"action": "stop"})
    if server.get("/api/stack")["stacked"] or server.get("/api/stack")["running"]:
        server.post("/api/stack/stop", {})
        server.post("/api/stack/reset", {})
    server.post("/api/camera/settings", initial["camera"])
    server.post("/api/session/config", initial["form"])


@pytest.fixture
def open_page(browser):
    """``open_page(server)``: the page in a browser context of its own, connected; every context
    is closed after the test, whether it passed or failed."""
    contexts = []

    def open_(
        server: Wanda, width: int = 1280, height: int = 900, connected: bool = True, **options
    ) -> tuple[Page, Console]:
        context = browser.new_context(viewport={"width": width, "height": height}, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        console = Console(page)
        page.goto(server.url + "/")
        if connected:
            expect(page.locator("#ws-state")).to_have_text("connected")
        return page, console

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("WANDA_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Console:
    """What the page said on its console and the errors it threw."""

    def __init__(self, page: Page):
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))


def wait_for_live_frame(page: Page) -> None:
    page.wait_for_function("() => document.getElementById('live').naturalWidth === 1440")


def mean_red(element_id: str) -> str:
    """A page function: the mean red of the image ``element_id``, drawn small (what the eye gets
    of it)."""
    return """() => {
        const image = document.getElementById('ID');
        const canvas = Object.assign(document.createElement('canvas'), {width: 144, height: 108});
        const context = canvas.getContext('2d');
        context.drawImage(image, 0, 0, 144, 108);
        const pixels = context.getImageData(0, 0, 144, 108).data;
        let sum = 0;
        for (let i = 0; i < pixels.length; i += 4) sum += pixels[i];
        return sum / (pixels.length / 4);
    }""".replace("ID", element_id)


def night_offenders(page: Page) -> list[str]:
    """Every element the page shows whose text, background, border or outline colour gives green or
    blue light, and every image not drawn through the red-only filter (night mode's promise)."""
    return page.evaluate(
        """() => {
            const bad = [];
            const colour = /rgba?\\((\\d+), (\\d+), (\\d+)(?:, ([\\d.]+))?\\)/g;
            for (const element of document.querySelectorAll('*')) {
                if (!element.getClientRects().length) continue;  // not shown
                const style = getComputedStyle(element);
                for (const property of ['color', 'background-color', 'border-top-color', 'outline-color', 'accent-color']) {
                    for (const [, r, g, b, a] of style[property].matchAll(colour)) {
                        if ((g > 0 || b > 0) && a !== '0') bad.push(`${element.tagName}#${element.id}.${element.getAttribute('class') || ''} ${property} ${style[property]}`);
                    }
                }
                if (element.tagName === 'IMG' && !style.filter.includes('red-only')) bad.push(`IMG#${element.id} unfiltered`);
            }
            return bad;
        }"""
    )


def green_or_blue_light(browser, png: bytes, threshold: int = 8) -> tuple[int, int]:
    """How many pixels of a PNG screenshot have green or blue above ``threshold``, and the most,
    counted exactly (a lossless decode in a blank page's canvas)."""
    page = browser.new_page()
    try:
        return tuple(
            page.evaluate(
                """async (data) => {
                const image = new Image();
                image.src = 'data:image/png;base64,' + data;
                await image.decode();
                const canvas = Object.assign(document.createElement('canvas'), {width: image.width, height: image.height});
                const context = canvas.getContext('2d');
                context.drawImage(image, 0, 0);
                const pixels = context.getImageData(0, 0, image.width, image.height).data;
                let lit = 0, brightest = 0;
                for (let i = 0; i < pixels.length; i += 4) {
                    const light = Math.max(pixels[i + 1], pixels[i + 2]);
                    if (light > THRESHOLD) lit += 1;
                    brightest = Math.max(brightest, light);
                }
                return [lit, brightest];
            }""".replace("THRESHOLD", str(threshold)),
                base64.b64encode(png).decode(),
            )
        )
    finally:
        page.close()


def assert_night_only(browser, page: Page, scrolls: tuple[int, ...] = (0, 900, 1800)) -> None:
    """Night mode holds on the page as it is now: no shown element styled with green or blue, and
    no pixel of the rendered page (at each scroll position) giving green or blue light, native
    widgets and images included (JPEG noise aside)."""
    assert night_offenders(page) == []
    for y in scrolls:
        page.evaluate(f"window.scrollTo(0, {y})")
        lit, brightest = green_or_blue_light(browser, page.screenshot())
        assert lit == 0, f"{lit} pixels give green or blue light at scroll {y} (up to {brightest})"
    page.evaluate("window.scrollTo(0, 0)")


def small_controls(page: Page) -> list[str]:
    """The shown buttons, fields, selects and panel headings under touch size (44 px high)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('button, select, input[type=text], input[type=number], summary')]
                .filter(e => e.getClientRects().length && e.getBoundingClientRect().height < 44)
                .map(e => e.id || e.textContent.trim())"""
    )
