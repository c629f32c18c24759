"""The gallery as a place to judge the night's frames, in a real browser (Playwright driving Debian's
Chromium against a real `wanda` on the simulated sky; the fixtures are in tests/in_browser.py): FITS
tiles with thumbnails, a JPEG+FITS frame as one tile, the full view's zoom, stretch and details,
the next and previous frame by key and swipe, and selections zipped or deleted."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from in_browser import eventually, mean_red
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.slow  # a real browser and a real `wanda`

BRIGHTNESS = mean_red("image-full")
LOADED = "() => { const i = document.getElementById('image-full'); return i.complete && i.naturalWidth === 1440; }"


def capture(wanda, file_format: str = "jpeg", exposure: float = 0.05) -> dict:
    wanda.post("/api/camera/settings", {"exposure_seconds": exposure, "file_format": file_format})
    return wanda.post("/api/camera/capture", {})


def scale(page: Page) -> float:
    return float(page.locator("#image-full").get_attribute("data-scale") or "nan")


def view_centre(page: Page) -> tuple[float, float]:
    box = page.locator("#image-view").bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def touch(page: Page, kind: str, points: list[tuple[float, float]]) -> None:
    """A touch event as a finger on a phone makes it (the browser turns it into pointer events)."""
    if not hasattr(page, "_touch_session"):  # one session: a touch goes on from its start
        page._touch_session = page.context.new_cdp_session(page)  # type: ignore[attr-defined]
    touch_points = [
        {"x": x, "y": y, "id": i, "radiusX": 5, "radiusY": 5, "force": 1} for i, (x, y) in enumerate(points)
    ]
    page._touch_session.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points})  # type: ignore[attr-defined]


def test_browser_gallery_full_view_of_a_fits_frame_shows_its_details_and_stretches(open_page, wanda, screenshots):
    wanda.post("/api/mount/tracking", {"action": "start"})  # round stars for the picture
    saved = capture(wanda, "fits", exposure=2.0)["file"]
    wanda.post("/api/mount/tracking", {"action": "stop"})
    assert saved.endswith(".fits")
    page, console = open_page(wanda)
    tile = page.locator("#gallery-grid li", has_text=saved)
    expect(tile).to_contain_text("FITS")
    # A FITS frame has a thumbnail: the server's stretched JPEG of it.
    expect(tile.locator("img")).to_have_attribute("src", re.compile(r"\.fits\?thumb=1$"))
    page.wait_for_function("(li) => li.querySelector('img').naturalWidth === 360", arg=tile.element_handle())
    tile.get_by_role("button").click()
    expect(page.locator("#image-dialog")).to_be_visible()
    expect(page.locator("#image-title")).to_have_text(saved)
    # Its linear data is black to the eye: a FITS-only frame opens stretched.
    stretch = page.locator("#image-stretch")
    expect(stretch).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#image-full")).to_have_attribute("src", re.compile(r"\.fits\?preview=1&stretch=auto$"))
    page.wait_for_function(LOADED)
    stretched = page.evaluate(BRIGHTNESS)
    # The frame's details, and its stars and HFR measured on the server's thread.
    expect(page.locator("#image-exposure")).to_have_text("2 s")
    expect(page.locator("#image-gain")).to_have_text(re.compile(r"^\d+\.\d\d \(ISO \d+\)$"))
    expect(page.locator("#image-type")).to_have_text("Light")
    expect(page.locator("#image-date")).to_have_text(re.compile(r"^20\d\d-\d\d-\d\d \d\d:\d\d:\d\d$"))
    expect(page.locator("#image-temperature")).to_have_text("20.0 °C")  # the simulated sensor's
    expect(page.locator("#image-stars")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(page.locator("#image-hfr")).to_have_text(re.compile(r"^\d+\.\d\d px$"))
    info = wanda.get(f"/api/captures/{saved}?info=1")
    assert page.locator("#image-stars").text_content() == str(info["measurement"]["star_count"])
    page.screenshot(path=screenshots / "gallery.png")
    stretch.click()  # linear: as the data is
    expect(stretch).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#image-full")).to_have_attribute("src", re.compile(r"\.fits\?preview=1$"))
    page.wait_for_function(f"() => ({LOADED})() && ({BRIGHTNESS})() < {stretched} - 20")
    stretch.click()
    page.wait_for_function(f"() => ({LOADED})() && ({BRIGHTNESS})() > {stretched} - 5")
    assert console.errors == []


def test_browser_gallery_a_jpeg_and_fits_frame_is_one_tile_with_both_downloads(open_page, wanda):
    saved = capture(wanda, "jpeg+fits")
    name, fits_name = saved["files"]
    page, console = open_page(wanda)
    tiles = page.locator("#gallery-grid li", has_text=name.rsplit(".", 1)[0] + ".")
    expect(tiles).to_have_count(1)
    expect(tiles).to_contain_text("JPEG + FITS")
    tiles.get_by_role("button").click()
    expect(page.locator("#image-stretch")).to_have_attribute("aria-pressed", "false")  # the JPEG, as it is
    for label, expected in (("Download JPEG", name), ("Download FITS", fits_name)):
        with page.expect_download() as download:
            page.locator("#image-dialog").get_by_role("link", name=label).click()
        assert download.value.suggested_filename == expected
    # Stretched from its linear FITS data.
    page.locator("#image-stretch").click()
    expect(page.locator("#image-full")).to_have_attribute("src", f"/api/captures/{fits_name}?preview=1&stretch=auto")
    assert console.errors == []


def test_browser_gallery_full_view_zooms_fit_one_to_one_wheel_drag_and_pinch(open_page, wanda):
    saved = capture(wanda)["file"]
    page, console = open_page(wanda)
    page.locator("#gallery-grid li", has_text=saved).get_by_role("button").click()
    page.wait_for_function(LOADED)
    fit = scale(page)
    assert 0.2 < fit < 1  # the whole 1440 px frame in the view
    zoom = page.locator("#image-zoom")
    zoom.click()  # 1:1: a pixel of the frame on a pixel of the screen
    expect(zoom).to_have_text("Fit")
    assert scale(page) == 1.0
    assert page.locator("#image-full").bounding_box()["width"] == pytest.approx(1440, abs=1)
    # Drag pans the frame under the pointer.
    x, y = view_centre(page)
    before = page.locator("#image-full").bounding_box()
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 40, steps=4)
    page.mouse.up()
    after = page.locator("#image-full").bounding_box()
    assert (after["x"] - before["x"], after["y"] - before["y"]) == (pytest.approx(60, abs=1), pytest.approx(40, abs=1))
    zoom.click()
    expect(zoom).to_have_text("1:1")
    assert scale(page) == pytest.approx(fit, rel=1e-3)
    # The wheel zooms about the pointer.
    page.mouse.move(x, y)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"() => Number(document.getElementById('image-full').dataset.scale) > {fit * 1.3}")
    assert console.errors == []

    # Two fingers on a phone pinch it open.
    phone, phone_console = open_page(wanda, width=390, height=844, is_mobile=True, has_touch=True)
    phone.locator("#gallery-grid li", has_text=saved).get_by_role("button").click()
    phone.wait_for_function(LOADED)
    fit = scale(phone)
    x, y = view_centre(phone)
    touch(phone, "touchStart", [(x - 30, y), (x + 30, y)])
    for step in range(1, 6):
        touch(phone, "touchMove", [(x - 30 - 15 * step, y), (x + 30 + 15 * step, y)])
    touch(phone, "touchEnd", [])
    assert scale(phone) == pytest.approx(fit * 210 / 60, rel=0.05)  # as far apart as the fingers went
    assert phone_console.errors == []


def test_browser_gallery_arrow_keys_and_swipes_go_to_the_next_and_previous_frame(open_page, wanda):
    older, newer, newest = (capture(wanda)["file"] for _ in range(3))
    page, console = open_page(wanda)
    page.locator("#gallery-grid li", has_text=newest).get_by_role("button").click()
    title = page.locator("#image-title")
    expect(title).to_have_text(newest)
    page.keyboard.press("ArrowRight")  # on to the older frames, as the grid reads
    expect(title).to_have_text(newer)
    page.keyboard.press("ArrowRight")
    expect(title).to_have_text(older)
    page.keyboard.press("ArrowLeft")
    expect(title).to_have_text(newer)
    page.get_by_role("button", name="previous frame").click()
    expect(title).to_have_text(newest)
    assert console.errors == []

    phone, phone_console = open_page(wanda, width=390, height=844, is_mobile=True, has_touch=True)
    phone.locator("#gallery-grid li", has_text=newest).get_by_role("button").click()
    title = phone.locator("#image-title")
    expect(title).to_have_text(newest)
    x, y = view_centre(phone)
    for end in (x - 150, x + 150):  # swipe left: the next frame; right: back
        touch(phone, "touchStart", [(x, y)])
        for step in range(1, 6):
            touch(phone, "touchMove", [(x + (end - x) * step / 5, y + step)])
        touch(phone, "touchEnd", [])
        expect(title).to_have_text(newer if end < x else newest)
    assert phone_console.errors == []


def test_browser_gallery_frames_are_selected_then_zipped_or_deleted_together(open_page, wanda):
    kept, first, second = (capture(wanda)["file"] for _ in range(3))
    page, console = open_page(wanda)
    bar = page.locator("#gallery-selection")
    expect(bar).to_be_hidden()
    for name in (first, second):
        page.get_by_label(f"select {name}").check()
    expect(page.locator("#selection-count")).to_have_text("2 frames selected")
    with page.expect_download() as download:
        bar.get_by_role("button", name="Download zip").click()
    assert download.value.suggested_filename == "wanda-selection.zip"
    with open(download.value.path(), "rb") as file:
        names = zipfile.ZipFile(io.BytesIO(file.read())).namelist()
    stems = [name.rsplit(".", 1)[0] for name in (first, second)]
    assert sorted(names) == sorted(f"{stem}.{ext}" for stem in stems for ext in ("jpg", "json"))
    bar.get_by_role("button", name="Delete").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Keep").click()  # changed my mind
    assert {first, second} <= set(wanda.get("/api/captures")["files"])
    bar.get_by_role("button", name="Delete").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    eventually(lambda: not {first, second} & set(wanda.get("/api/captures")["files"]))
    assert kept in wanda.get("/api/captures")["files"]
    expect(page.locator("#gallery-grid li", has_text=first)).to_have_count(0)
    expect(bar).to_be_hidden()
    assert console.errors == []


def test_browser_gallery_full_view_is_red_at_night_labelled_and_touch_sized(open_page, wanda):
    saved = capture(wanda, "jpeg+fits")["file"]
    page, console = open_page(wanda, width=390, height=844, is_mobile=True, has_touch=True)
    page.get_by_role("button", name="Night").click()
    page.get_by_label(f"select {saved}").check()
    page.locator("#gallery-grid li", has_text=saved).get_by_role("button").click()
    page.wait_for_function(LOADED)
    problems = page.evaluate(
        """() => {
            const bad = [];
            const colour = /rgba?\\((\\d+), (\\d+), (\\d+)(?:, ([\\d.]+))?\\)/g;
            for (const element of document.querySelectorAll('#image-dialog, #image-dialog *, #gallery-panel *')) {
                if (!element.getClientRects().length) continue;  // not shown
                const style = getComputedStyle(element);
                for (const property of ['color', 'background-color', 'border-top-color']) {
                    for (const [, r, g, b, a] of style[property].matchAll(colour)) {
                        if ((g > 0 || b > 0) && a !== '0') bad.push(`${element.id || element.tagName} ${property}`);
                    }
                }
                if (element.tagName === 'IMG' && !style.filter.includes('red-only')) bad.push(`IMG#${element.id} unfiltered`);
                const control = element.matches('button, a.button, select, .pick');
                if (control && element.getBoundingClientRect().height < 44) bad.push(`${element.id || element.className} small`);
                if (element.matches('input, select, button') && !(element.labels && element.labels.length)
                    && !element.getAttribute('aria-label') && !element.textContent.trim()) bad.push(`${element.id} unlabelled`);
            }
            return bad;
        }"""
    )
    assert problems == [], problems
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert console.errors == []
