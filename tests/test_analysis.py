"""The analysis on constructed images with known answers, and against the simulated sky's truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wanda.astro.measure import analyse, exact_histogram, find_stars, statistics
from wanda.astro.stretch import auto_stretch, mtf
from wanda.backends.sky import SimulatedSky, pixel_profile

SIGMA_PER_FWHM = 1 / (2 * math.sqrt(2 * math.log(2)))


def sky_image(shape=(400, 600), level=40.0, noise=2.0, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level + noise * rng.standard_normal(shape)


def add_star(image: np.ndarray, x: float, y: float, flux: float, fwhm: float) -> None:
    """A pixel-integrated Gaussian star (the simulated sky's own profile)."""
    sigma = fwhm * SIGMA_PER_FWHM
    half = int(5 * sigma) + 2
    x0, y0 = int(x) - half, int(y) - half
    px = pixel_profile(np.arange(2 * half + 1), np.array([x - x0]), sigma)[0]
    py = pixel_profile(np.arange(2 * half + 1), np.array([y - y0]), sigma)[0]
    image[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1] += flux * py[:, None] * px[None, :]


def flux_for_peak(peak: float, fwhm: float) -> float:
    """The flux of a Gaussian star whose centre stands ``peak`` above the sky."""
    return peak * 2 * math.pi * (fwhm * SIGMA_PER_FWHM) ** 2


def as_8bit(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def test_histogram_and_statistics_of_known_values():
    image = np.zeros((10, 20), np.uint8)
    image[:, :10] = 10
    image[:, 10:19] = 20
    image[:, 19] = 255  # one column clipped
    counts = exact_histogram(image, 255)
    assert counts.sum() == 200 and counts[10] == 100 and counts[20] == 90 and counts[255] == 10
    stats = statistics(counts)
    assert (stats.minimum, stats.maximum, stats.median) == (10, 255, 15.0)
    assert stats.clipped_high == pytest.approx(0.05) and stats.clipped_low == 0
    result = analyse(image, 255)
    assert result["histogram"]["luminance"] == counts.tolist()
    assert (result["min"], result["median"], result["max"], result["clipped"]) == (10, 15.0, 255, 0.05)


def test_the_odd_sized_and_16_bit_histograms_agree_with_numpy():
    rng = np.random.default_rng(2)
    odd = rng.integers(0, 256, (7, 9), dtype=np.uint8)  # an odd pixel count: no pairing trick
    assert exact_histogram(odd, 255).tolist() == np.bincount(odd.ravel(), minlength=256).tolist()
    even = rng.integers(0, 256, (8, 9), dtype=np.uint8)
    assert exact_histogram(even, 255).tolist() == np.bincount(even.ravel(), minlength=256).tolist()
    deep = rng.integers(0, 65536, (50, 60), dtype=np.uint16)
    result = analyse(deep, 65535)
    assert len(result["histogram"]["luminance"]) == 256
    assert result["histogram"]["luminance"] == np.histogram(deep, bins=256, range=(0, 65536))[0].tolist()


def test_background_and_noise_by_sigma_clipping_ignore_stars():
    image = sky_image(level=40, noise=3)
    for i in range(30):  # bright stars would pull a plain mean and deviation up
        add_star(image, 30 + 18 * i, 50 + 10 * i, 20000, 3)
    stats = statistics(exact_histogram(as_8bit(image), 255))
    assert stats.background == pytest.approx(40, abs=0.3)
    assert stats.noise == pytest.approx(3, rel=0.08)
    assert 1.4826 * stats.mad == pytest.approx(3, rel=0.15)


def test_auto_stretch_in_the_pixinsight_manner():
    image = as_8bit(sky_image(level=30, noise=2))
    stats = statistics(exact_histogram(image, 255))
    stretch = auto_stretch(stats, 255)
    # The MAD the shadows clip at is the values' spread over their steps: on noise of 2 steps, the
    # MAD of the integers give or take the rounding.
    assert stats.spread == pytest.approx(stats.mad, abs=0.5)
    median, mad = stats.median / 255, 1.4826 * stats.spread / 255
    assert stretch.shadows == pytest.approx(median - 2.8 * mad)
    assert stretch.midtones == pytest.approx(mtf(0.25, median - stretch.shadows))
    table = stretch.lookup_table()
    # The sky's median lands near a quarter of the display range (exactly a quarter before the
    # rescale by 1 - c0); black stays black, white white, and the order of values is kept.
    expected = mtf(stretch.midtones, (median - stretch.shadows) / (1 - stretch.shadows))
    assert table[int(stats.median)] == pytest.approx(255 * expected, abs=1)
    assert table[int(stats.median)] == pytest.approx(0.25 * 255, abs=8)
    assert table[0] == 0 and table[255] == 255 and np.all(np.diff(table.astype(int)) >= 0)


@pytest.mark.parametrize("noise", [0.0, 0.2, 0.4])
def test_the_stretch_lifts_a_faint_sky_quantised_to_a_few_values(noise):
    """The issue's sky: 100 ms at ISO 400 on the simulated sky, 8 bits, its background at 16 with
    less than a step of noise, so most pixels hold 16 and the MAD of the integers is 0."""
    image = sky_image(level=16.2, noise=noise)
    for i in range(20):
        add_star(image, 40 + 25 * i, 60 + 15 * i, flux_for_peak(60, 3.0), 3.0)
    image = as_8bit(image)
    stats = statistics(exact_histogram(image, 255))
    assert (stats.median, stats.mad) == (16.0, 0.0)  # the trap: shadows at median - 2.8 x 0 = the median
    assert stats.spread >= 0.25  # a quarter of a step at least, whatever the data
    table = auto_stretch(stats, 255).lookup_table()
    # The sky goes up to about a quarter of the display (not to 0), and what is brighter than
    # the sky stays brighter: the stars, and the noise one step above it.
    assert table[16] == pytest.approx(0.25 * 255, abs=8)
    assert table[15] < table[16] < table[17] < table[76] <= 255
    assert table[0] == 0 and table[255] == 255 and np.all(np.diff(table.astype(int)) >= 0)


def test_the_stretch_never_darkens_a_bright_or_saturated_frame():
    bright = as_8bit(sky_image(level=180, noise=3))
    stats = statistics(exact_histogram(bright, 255))
    table = auto_stretch(stats, 255).lookup_table()
    assert table[180] >= 180 and table[255] == 255  # STF would take this sky down to 64
    # All at full scale: nothing to lift, and a stretch with its shadows at full scale divided by
    # zero and turned the frame black. The frame is left as it is.
    saturated = np.full((100, 100), 255, np.uint8)
    saturated[50, 50] = 200
    stats = statistics(exact_histogram(saturated, 255))
    table = auto_stretch(stats, 255).lookup_table()
    assert table.tolist() == list(range(256))


def test_the_spread_of_a_gamma_encoded_preview_is_its_steps():
    """On a Pi the analysis undoes the preview's gamma: 8-bit values become every 20th or so of
    65536. A faint sky on one 8-bit value then spreads over that value's step, not over 1/65535."""
    linear = np.array([0, 400, 430, 460, 490, 65535], np.uint16)  # evenly spaced codes near 430
    image = np.repeat(linear[[1, 2, 2, 2, 2, 2, 3, 4, 5]], 1000)
    stats = statistics(exact_histogram(image, 65535))
    assert stats.mad == 0 and 7 <= stats.spread <= 20  # of the order of the 30-unit step, not of 1
    stretch = auto_stretch(stats, 65535)
    assert 0 < stretch.shadows < 430 / 65535 and stretch.midtones < 0.5


@pytest.mark.parametrize("fwhm", [2.5, 4.0, 6.0])
def test_a_single_gaussian_star_has_half_its_fwhm_as_hfr(fwhm):
    image = sky_image(noise=1.0)
    flux = flux_for_peak(80, fwhm)
    add_star(image, 300.3, 200.6, flux, fwhm)
    result = analyse(as_8bit(image), 255)
    assert result["star_count"] == 1 and result["saturated_stars"] == 0
    (star,) = result["stars"]
    assert star["x"] == pytest.approx(300.3, abs=0.1) and star["y"] == pytest.approx(200.6, abs=0.1)
    # One star at one place on the pixel grid: within the 10% (the median over many
    # stars, at every phase, is closer; see the accuracy test).
    assert result["hfr"] == pytest.approx(fwhm / 2, rel=0.10)
    assert result["fwhm"] == pytest.approx(fwhm, rel=0.08)
    assert star["flux"] == pytest.approx(flux, rel=0.05)


def test_an_empty_field_has_no_stars():
    result = analyse(as_8bit(sky_image(noise=2.0, seed=7)), 255)
    assert result["star_count"] == 0 and result["hfr"] is None and result["stars"] == []


def test_a_crowded_field_counts_every_star():
    image = sky_image(noise=1.5)
    rng = np.random.default_rng(3)
    for row in range(10):
        for column in range(15):
            add_star(
                image,
                25 + 37 * column + rng.uniform(-2, 2),
                25 + 37 * row + rng.uniform(-2, 2),
                rng.uniform(300, 3000),
                3.5,
            )
    result = analyse(as_8bit(image), 255)
    assert result["star_count"] == 150
    assert result["hfr"] == pytest.approx(1.75, rel=0.06)


def test_hot_pixels_are_not_stars():
    image = sky_image(noise=1.5)
    add_star(image, 100.5, 100.5, 5000, 3)
    rng = np.random.default_rng(4)
    for y, x in rng.integers(20, 380, (40, 2)):
        image[y, x] += rng.uniform(60, 215)  # single hot pixels, some saturating
    result = analyse(as_8bit(image), 255)
    assert result["star_count"] == 1
    assert result["stars"][0]["x"] == pytest.approx(100.5, abs=0.2)


def test_a_saturated_star_counts_once_and_does_not_spoil_the_hfr():
    image = sky_image(noise=1.5)
    add_star(image, 200.5, 200.5, 3_000_000, 4)  # a flat top far above 255
    for i in range(8):
        add_star(image, 60 + 60 * i, 330, flux_for_peak(70, 4), 4)
    eight_bit = as_8bit(image)
    assert (eight_bit == 255).sum() > 20
    stats = statistics(exact_histogram(eight_bit, 255))
    stars = find_stars(eight_bit, stats, 255)
    assert stars.count == 9 and stars.saturated.sum() == 1
    assert np.isnan(stars.hfr[stars.saturated]).all()
    result = analyse(eight_bit, 255)
    assert result["saturated_stars"] == 1 and result["hfr"] == pytest.approx(2.0, rel=0.06)


@pytest.mark.parametrize("phase", [(0.5, 0.5), (0.1, 0.8), (0.75, 0.3), (0.0, 0.0)])
def test_saturated_stars_are_found_once_at_their_middle_and_rank_by_their_light(phase):
    """What a plate solver matches first: the brightest stars. Clipped flat tops, wider than the
    3x3 search, must give one star each, at the middle of the clipped profile (the first moment
    about the top's first pixel is up to a pixel off), and the brighter star first."""
    image = sky_image(noise=1.5)
    px, py = phase
    add_star(image, 200 + px, 150 + py, 3_000_000, 3)  # a top far above 255: about 7 px across
    add_star(image, 400 + px, 250 + py, 300_000, 3)  # fainter, still clipped
    add_star(image, 100 + px, 300 + py, flux_for_peak(60, 3), 3)  # not clipped
    result = analyse(as_8bit(image), 255)
    assert result["star_count"] == 3 and result["saturated_stars"] == 2
    first, second, third = result["stars"]
    assert (first["x"], first["y"]) == (pytest.approx(200 + px, abs=0.1), pytest.approx(150 + py, abs=0.1))
    assert (second["x"], second["y"]) == (pytest.approx(400 + px, abs=0.1), pytest.approx(250 + py, abs=0.1))
    assert first["flux"] > second["flux"] > third["flux"]


def test_the_brightest_simulated_stars_are_listed_where_the_truth_has_them():
    """A one-second frame of the real sky through the 135 mm lens: dozens of clipped stars among
    the brightest listed, each once and within a tenth of a pixel of the truth's star (the
    stars of the Trapezium and other close pairs are one blob to any detector: those are left out
    of the errors)."""
    sky = SimulatedSky(pointing=(83.82, -5.39, 0.0), focal_length_mm=135, fillers=False)
    sky.set_tracking(True)
    image = sky.render_luminance(1.0, 8.0).astype(np.uint8)
    truth = sky.truth()
    result = analyse(image, 255)
    listed = np.array([(s["x"], s["y"]) for s in result["stars"]])
    clipped = [bool(image[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2].max() == 255) for x, y in listed]
    errors = []
    for (x, y), is_clipped in zip(listed, clipped, strict=True):
        distance = np.hypot(truth.x - x, truth.y - y)
        near = np.flatnonzero(distance < 3)
        merged = (distance < 5).sum() >= 2  # two clipped tops that touch are one blob
        assert near.size or merged, (x, y)  # every listed star is a star
        if not near.size:
            continue
        star = near[np.argmax(truth.flux_e_per_s[near])]
        neighbours = np.hypot(truth.x - truth.x[star], truth.y - truth.y[star]) < 8
        blended = (truth.flux_e_per_s[neighbours] > 0.01 * truth.flux_e_per_s[star]).sum() > 1
        if is_clipped and not blended:
            errors.append(distance[star])
    assert len(errors) >= 10 and np.median(errors) < 0.05 and max(errors) < 0.2, sorted(errors)[-5:]
    separations = np.hypot(*(listed[:, None, :] - listed[None, :, :]).transpose(2, 0, 1))
    assert separations[np.triu_indices(len(listed), 1)].min() >= 3  # no star twice


def test_a_reduced_image_reports_full_frame_pixels():
    image = sky_image(noise=1.0)
    add_star(image, 300.5, 200.5, flux_for_peak(80, 4), 4)
    full = analyse(as_8bit(image), 255)
    reduced = analyse(as_8bit(image), 255, scale=2.0)
    assert reduced["hfr"] == pytest.approx(2 * full["hfr"], abs=0.002)  # each rounded to 3 places
    assert reduced["stars"][0]["x"] == pytest.approx(2 * full["stars"][0]["x"], abs=0.002)
    assert (reduced["width"], reduced["height"]) == (1200, 800)


@pytest.mark.parametrize("fwhm", [2, 3, 4, 6, 8])
def test_accuracy_against_the_simulated_sky(fwhm):
    """The issue's tolerance: median HFR within 10% of FWHM/2, the star count within 10% of the
    simulated stars brighter than 5 sigma (bench/analysis.py prints the same table)."""
    sky = SimulatedSky(fwhm=fwhm, seed=11)
    sky.set_tracking(True)
    image = sky.render_luminance(0.5, 16.0).astype(np.uint8)  # the faintest stars near the limit
    truth = sky.truth()
    result = analyse(image, 255)
    assert result["hfr"] == pytest.approx(fwhm / 2, rel=0.10)
    assert result["star_count"] == pytest.approx(truth.count_above(5), rel=0.10)


def test_a_clipped_star_cut_by_the_frames_edge_is_listed_on_the_frame():
    image = sky_image((400, 640), noise=1.5)
    add_star(image, 594.5, 100.5, 3_000_000, 3)  # its clipped top reaches the right edge
    image = image[:, :599]
    result = analyse(as_8bit(image), 255)
    assert result["star_count"] == 1 and result["saturated_stars"] == 1
    (star,) = result["stars"]
    assert 590 <= star["x"] <= 598 and star["y"] == pytest.approx(100.5, abs=0.5)
