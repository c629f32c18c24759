"""Registration (wanda/astro/register.py) and the accumulator (wanda/astro/stack.py): against
constructed star lists with a known transform and outliers, against the simulated sky's truth
(two frames of the real sky, turned and shifted), and the stack's noise and clipping."""

from __future__ import annotations

import numpy as np
import pytest

from wanda.astro.measure import analyse
from wanda.astro.register import RegistrationFailed, register
from wanda.astro.stack import Accumulator, warp
from wanda.backends.sky import SimulatedSky


def rotation(degrees: float, flip: bool = False) -> np.ndarray:
    a = np.radians(degrees)
    matrix = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return matrix @ np.diag([1.0, -1.0]) if flip else matrix


@pytest.mark.parametrize(("degrees", "flip"), [(0.2, False), (37.0, False), (-120.0, False), (180.0, True)])
def test_a_turned_shifted_field_with_lost_and_false_stars_is_registered(degrees, flip):
    rng = np.random.default_rng(3)
    reference = rng.uniform(0, 1, (60, 2)) * [1440, 1080]
    matrix, shift = rotation(degrees, flip), np.array([25.3, -12.8])
    # reference = matrix @ frame + shift, so the frame is the inverse image, with centroid noise.
    frame = (reference - shift) @ np.linalg.inv(matrix).T + rng.normal(0, 0.05, reference.shape)
    frame = np.vstack((frame[8:], rng.uniform(0, 1, (10, 2)) * [1440, 1080]))  # 8 lost, 10 false
    transform = register(frame, reference)
    assert transform.flipped is flip and transform.scale == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(transform.matrix, matrix, atol=1e-3) and np.allclose(transform.shift, shift, atol=0.2)
    assert transform.inliers >= 50 and transform.rms < 0.15


def test_unrelated_fields_and_too_few_stars_say_why_they_fail():
    rng = np.random.default_rng(4)
    with pytest.raises(RegistrationFailed, match="too few stars"):
        register(rng.uniform(0, 100, (4, 2)), rng.uniform(0, 100, (40, 2)))
    with pytest.raises(RegistrationFailed, match="agree|matches"):
        register(rng.uniform(0, 1000, (40, 2)), rng.uniform(0, 1000, (40, 2)))


def star_list(sky: SimulatedSky) -> np.ndarray:
    frame = analyse(sky.render_luminance(2.0, 8.0).astype(np.uint8), 255)
    return np.array([(s["x"], s["y"]) for s in frame["stars"]])


def test_two_frames_of_the_simulated_sky_are_registered_as_their_truth_maps_them():
    """The sky turned by 0.3° and moved by a few arcminutes between the frames (a dither, a field
    rotation): the transform found from the analysed stars maps the frame's pixels onto the
    reference's as the simulator's two WCSs do, to a tenth of a pixel."""
    # Held exactly (no stepper sawtooth to smear the 2 s exposures).
    first = SimulatedSky(pointing=(210.8, 54.35, 10.0), focal_length_mm=135, step_interval_s=None)  # M101
    second = SimulatedSky(pointing=(210.83, 54.37, 10.3), focal_length_mm=135, step_interval_s=None)
    for sky in (first, second):
        sky.set_tracking(True)
    reference, frame = star_list(first), star_list(second)
    transform = register(frame, reference)
    # The truth: a grid of the second frame's pixels through its WCS to the sky and back into
    # the first frame's pixels.
    gx, gy = np.meshgrid(np.linspace(100, 1340, 8), np.linspace(100, 980, 6))
    wcs_ref, wcs_frame = first.truth().pointing.wcs, second.truth().pointing.wcs
    ra, dec = wcs_frame.pixel_to_sky(gx.ravel(), gy.ravel())
    tx, ty, _ = wcs_ref.sky_to_pixel(ra, dec)
    mx, my = transform.apply(gx.ravel(), gy.ravel())
    error = np.hypot(mx - tx, my - ty)
    assert np.sqrt(np.mean(error**2)) < 0.1, error.max()
    # The rotation: of the truth's map of a line across the middle (0.3° of roll, less the turn of
    # north between the two places: 0.03° of RA at Dec 54°).
    (ra0, ra1), (dec0, dec1) = wcs_frame.pixel_to_sky(np.array([620.0, 820.0]), np.array([540.0, 540.0]))
    (x0, x1), (y0, y1), _ = wcs_ref.sky_to_pixel(np.array([ra0, ra1]), np.array([dec0, dec1]))
    assert transform.rotation == pytest.approx(np.degrees(np.arctan2(y1 - y0, x1 - x0)), abs=0.01)


def test_the_stack_of_noise_falls_as_the_square_root_of_the_frames():
    rng = np.random.default_rng(5)
    stack = Accumulator((200, 300), kappa=3.0, noise_floor=10.0)
    for count in range(1, 65):
        stack.add(rng.normal(100.0, 10.0, (200, 300)).astype(np.float32))
        if count in (4, 16, 64):
            assert np.std(stack.image()) == pytest.approx(10.0 / np.sqrt(count), rel=0.1)
    assert stack.nbytes == 200 * 300 * 10


def test_a_satellite_trail_and_a_hot_pixel_are_clipped_as_they_arrive():
    rng = np.random.default_rng(6)
    # The floor: the frames' background noise (a few values' own spread is often far less).
    stack = Accumulator((100, 100), kappa=3.0, warmup=5, noise_floor=2.0)
    clipped = []
    for k in range(20):
        frame = rng.normal(50.0, 2.0, (100, 100)).astype(np.float32)
        if k == 12:
            frame[40, :] += 500.0  # a satellite crosses
            frame[10, 10] += 1000.0  # a cosmic ray
        clipped.append(stack.add(frame).clipped)
    assert clipped[12] >= 101 and max(clipped[:5]) == 0  # nothing is clipped before the warmup
    image = stack.image()
    assert abs(image[40].mean() - 50.0) < 1.0 and abs(image[10, 10] - 50.0) < 3 * 2.0
    assert stack.count[40].max() == 19 and stack.count[40].min() >= 17  # the trail's values left out


def test_the_warp_moves_an_image_as_its_transform_says_and_marks_what_it_cannot_fill():
    image = np.zeros((100, 120, 3), np.float32)
    image[40, 50] = (1.0, 2.0, 3.0)
    affine = np.array([[1.0, 0.0, 7.0], [0.0, 1.0, -3.0]])  # the image's pixel (x, y) -> (x + 7, y - 3)
    out = warp(image, affine, (120, 100))
    assert tuple(out[37, 57]) == (1.0, 2.0, 3.0)
    # Bilinear: a pixel whose neighbour is outside is outside too (NaN weighs in even at weight 0).
    assert np.isnan(out[:, :7]).all() and np.isnan(out[-3:]).all() and np.isfinite(out[:96, 8:]).all()
