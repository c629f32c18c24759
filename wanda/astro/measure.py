"""What the camera sees, measured: histogram, statistics, stars and focus figures.

Pure functions on a 2-D luminance image (uint8 or uint16 with its ``full_scale``), so they can be
tested on constructed images; wanda/analysis.py runs them on the newest preview frame.

- **Statistics** come from the exact histogram of the image (one ``bincount``): median, MAD,
  min/max, clipped shares, the background and its noise by sigma clipping, and the spread the
  auto-stretch clips at (a MAD that quantisation cannot make 0), all in O(bins).
- **Auto-stretch**: see wanda/astro/stretch.py.
- **Stars**: pixels above background + 5 sigma (a coarse background map follows gradients and
  vignetting), local maxima, hot pixels refused (a lone bright pixel), neighbours of a brighter
  star suppressed, background-subtracted centroids. Focus figures in the PHD2 manner: flux above a
  local background accumulated by radius from the centroid, the half-flux radius interpolated;
  HFR and FWHM are medians over the well-exposed, unsaturated stars, in pixels of the full frame
  (``scale`` converts when the analysed image is a reduced one).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from wanda.astro.stretch import auto_stretch

log = logging.getLogger(__name__)

DETECTION_SIGMA = 5.0  # a star's 3x3 box stands this many sigma above the sky
RECHECK_SIGMA = 4.5  # and still this many with the box on its centroid (see find_stars)
CLIP_SIGMA = 3.0
BLOCK = 32  # background map cell, pixels
MAX_CANDIDATES = 3000  # brightest local maxima examined (a frame of noise must not explode)
MAX_MEASURED = 100  # stars whose HFR is measured (the brightest unsaturated ones)
MIN_MEASURE_SNR = 15.0  # peak SNR a star needs for its HFR to count
MEASURE_BELOW = 0.5  # of full scale: the brightest pixel of a star whose HFR counts
BRIGHT_WING = 3  # px of wing around a bright star's top in the disk its centroid is taken in
MAX_BRIGHT_RADIUS = 30  # px: that disk's largest radius
MAX_BRIGHT_SHIFT = 1.5  # px: a clipped star's centroid moving further took in a neighbour
MAX_UNCLIPPED_SHIFT = 0.5  # px: the same for an unclipped bright star
BRIGHTEST_LISTED = 50
HOT_PIXEL_RATIO = 0.12  # a candidate whose neighbours hold less than this share of its peak is a hot pixel
RADIAL_BINS_PER_PX = 4
SIGMA_PER_FWHM = 1 / (2 * math.sqrt(2 * math.log(2)))
PIXEL_VARIANCE = 1 / 12  # of a uniform pixel, per axis, px^2


# -- statistics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statistics:
    minimum: int
    maximum: int
    median: float
    mad: float  # median absolute deviation (not scaled)
    background: float  # sigma-clipped mean
    noise: float  # sigma-clipped standard deviation
    clipped_high: float  # share of pixels at full scale
    clipped_low: float  # share of pixels at zero
    spread: float  # the MAD with each value spread over its quantisation step: never 0 (see _spread)


def exact_histogram(image: np.ndarray, full_scale: int) -> np.ndarray:
    """Counts of every value 0..full_scale."""
    flat = image.ravel()
    if flat.dtype == np.uint8 and flat.size % 2 == 0 and flat.flags.c_contiguous:
        # Counting pixel pairs as 16-bit values halves what bincount has to widen and walk;
        # the pair counts fold back into single counts along each axis.
        pairs = np.bincount(flat.view(np.uint16), minlength=65536).reshape(256, 256)
        return (pairs.sum(axis=0) + pairs.sum(axis=1))[: full_scale + 1]
    return np.bincount(flat, minlength=full_scale + 1)[: full_scale + 1]


def _median_of(counts: np.ndarray) -> float:
    total = counts.sum()
    cumulative = np.cumsum(counts)
    low = int(np.searchsorted(cumulative, (total - 1) // 2 + 1))
    if total % 2:
        return float(low)
    high = int(np.searchsorted(cumulative, total // 2 + 1))
    return (low + high) / 2


def _spread(counts: np.ndarray, occupied: np.ndarray) -> float:
    """The MAD of the light the values stand for: each value's pixels spread evenly over its
    quantisation step (half-way to the next occupied value on either side; a lone value, one
    step), the MAD of that continuous distribution.

    The MAD of the integers themselves is 0 as soon as more than half the pixels hold one value:
    a faint sky quantised to 15, 16 and 17 (at 100 ms and ISO 400 on 8 bits) has a MAD of 0,
    and a stretch that clips its shadows at median - 2.8 sigma then clips at the median and turns
    the sky black. Spread over the steps, no value holds more than its step's width, so this is
    at least a quarter of the smallest step; on well-sampled noise it is the MAD. The step is
    what the data shows: a gamma-encoded preview made linear occupies every 20th value or so."""
    values = occupied.astype(np.float64)
    if values.size == 1:
        edges = np.array([values[0] - 0.5, values[0] + 0.5])
    else:
        middles = (values[1:] + values[:-1]) / 2
        edges = np.concatenate(([2 * values[0] - middles[0]], middles, [2 * values[-1] - middles[-1]]))
    cdf = np.concatenate(([0.0], np.cumsum(counts[occupied]) / counts.sum()))  # at the edges, linear between
    centre = float(np.interp(0.5, cdf, edges))
    # The share within d of the centre grows linearly in d between the distances of the edges.
    distances = np.concatenate(([0.0], np.sort(np.abs(edges - centre))))
    inside = np.interp(centre + distances, edges, cdf) - np.interp(centre - distances, edges, cdf)
    k = int(np.searchsorted(inside, 0.5))  # the first distance holding half; inside[0] is 0
    below, above = inside[k - 1], inside[k]
    share = (0.5 - below) / (above - below) if above > below else 0.0
    return float(distances[k - 1] + share * (distances[k] - distances[k - 1]))


def statistics(counts: np.ndarray) -> Statistics:
    values = np.arange(counts.size, dtype=np.float64)
    total = counts.sum()
    nonzero = np.flatnonzero(counts)
    median = _median_of(counts)
    # |x - median| has its own histogram; its median is the MAD (to half a step on integers).
    deviations = np.abs(values - median)
    order = np.argsort(deviations, kind="stable")
    cumulative = np.cumsum(counts[order])
    mad = float(deviations[order][np.searchsorted(cumulative, total / 2)])
    # Sigma clipping on the histogram: mean and deviation of what lies within k sigma, repeated.
    low, high = values[nonzero[0]], values[nonzero[-1]]
    mean = std = 0.0
    for _ in range(10):
        inside = (values >= low) & (values <= high)
        weights = counts * inside
        n = weights.sum()
        mean = float((weights * values).sum() / n)
        std = float(math.sqrt(max((weights * (values - mean) ** 2).sum() / n, 0.0)))
        new_low, new_high = mean - CLIP_SIGMA * std, mean + CLIP_SIGMA * std
        if std == 0 or (new_low <= low and new_high >= high):
            break
        low, high = max(low, new_low), min(high, new_high)
    return Statistics(
        minimum=int(nonzero[0]),
        maximum=int(nonzero[-1]),
        median=median,
        mad=mad,
        background=mean,
        noise=std,
        clipped_high=float(counts[-1] / total),
        clipped_low=float(counts[0] / total),
        spread=_spread(counts, nonzero),
    )


def display_histogram(counts: np.ndarray, bins: int = 256) -> list[int]:
    """The exact histogram folded into ``bins`` equal bins."""
    if counts.size == bins:
        return counts.tolist()
    return counts[: counts.size // bins * bins].reshape(bins, -1).sum(axis=1).tolist()


# -- stars ----------------------------------------------------------------------------------------


def background_map(image: np.ndarray, stats: Statistics) -> np.ndarray:
    """A coarse map of the sky level, one value per BLOCK x BLOCK cell: the mean of each cell
    after stars are clipped to the global background + 3 sigma, so gradients are followed."""
    height, width = image.shape
    rows, cols = height // BLOCK, width // BLOCK
    if rows == 0 or cols == 0:
        return np.full((max(rows, 1), max(cols, 1)), stats.background, np.float32)
    ceiling = min(stats.background + CLIP_SIGMA * max(stats.noise, 0.5), np.iinfo(image.dtype).max)
    cells = np.minimum(image[: rows * BLOCK, : cols * BLOCK], image.dtype.type(ceiling))
    sums = cells.reshape(rows, BLOCK, cols, BLOCK).sum(axis=(1, 3), dtype=np.uint64)
    return (sums / (BLOCK * BLOCK)).astype(np.float32)


def _sky_at(sky: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return sky[np.minimum(y // BLOCK, sky.shape[0] - 1), np.minimum(x // BLOCK, sky.shape[1] - 1)]


@dataclass(frozen=True)
class Stars:
    x: np.ndarray  # centroids, analysed-image pixels
    y: np.ndarray
    flux: np.ndarray  # above background, within the measuring radius (measured stars) or 3x3
    peak: np.ndarray  # above background
    hfr: np.ndarray  # NaN where not measured
    fwhm: np.ndarray
    saturated: np.ndarray

    @property
    def count(self) -> int:
        return int(self.x.size)


def box_sum(image: np.ndarray) -> np.ndarray:
    """The sum of each pixel's 3x3 neighbourhood, for the pixels one away from the edge
    (element [y, x] is centred on image pixel [y + 1, x + 1])."""
    wide = image.astype(np.uint16) if image.dtype == np.uint8 else image.astype(np.uint32)
    rows = wide[:, :-2] + wide[:, 1:-1] + wide[:, 2:]
    return rows[:-2] + rows[1:-1] + rows[2:]


def find_stars(image: np.ndarray, stats: Statistics, full_scale: int) -> Stars:
    noise = max(stats.noise, 0.5)  # an 8-bit image of a dark sky can have less than one step of noise
    sky = background_map(image, stats)
    empty = np.empty(0)
    # Detection on the 3x3 box sums: a star is where the light of a 3x3 box stands DETECTION_SIGMA
    # above the sky's noise in that box (3 sigma for nine pixels). Summing first lets faint broad
    # stars, a few steps above the sky in each pixel, stand out of the noise, and no longer lets
    # the noise of one pixel decide.
    boxes = box_sum(image)
    box_noise = 3 * noise
    # Maxima of the box sums: of their 3x3 neighbourhood first, over the whole frame at once
    # (greater than the neighbours before in raster order, not less than those after, so a flat
    # saturated top gives one), then of the disk of 3 px around them (noise on a star's top or
    # wing is no second star).
    candidates = boxes > 9 * float(sky.min()) + DETECTION_SIGMA * box_noise
    height, width = boxes.shape
    candidates[0] = candidates[-1] = False
    candidates[:, 0] = candidates[:, -1] = False
    inner, inner_candidates = boxes[1:-1, 1:-1], candidates[1:-1, 1:-1]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (dy, dx) == (0, 0):
                continue
            neighbour = boxes[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx]
            inner_candidates &= (inner > neighbour) if (dy, dx) < (0, 0) else (inner >= neighbour)
    # flatnonzero on the whole contiguous mask: a 2-D nonzero costs ten times as much.
    ys, xs = np.divmod(np.flatnonzero(candidates), width)  # box coordinates
    above = boxes[ys, xs] > 9 * _sky_at(sky, ys + 1, xs + 1) + DETECTION_SIGMA * box_noise
    ys, xs = ys[above], xs[above]
    keep = _local_maxima(boxes, ys, xs, 3.0)
    ys, xs = ys[keep] + 1, xs[keep] + 1  # back to image coordinates
    # Each star at its brightest pixel in the box.
    offsets = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    around = np.stack([_pixels(image, ys + dy, xs + dx) for dy, dx in offsets], axis=1)
    brightest = offsets[np.argmax(around, axis=1)]
    ys, xs = ys + brightest[:, 0], xs + brightest[:, 1]
    centre = image[ys, xs].astype(np.float64)
    local_sky = _sky_at(sky, ys, xs).astype(np.float64)
    peak = centre - local_sky
    # Hot pixels: one bright pixel, its 4 neighbours at the sky. A star, however sharp, spreads.
    neighbours = (
        _pixels(image, ys - 1, xs)
        + _pixels(image, ys + 1, xs)
        + _pixels(image, ys, xs - 1)
        + _pixels(image, ys, xs + 1)
    ) / 4 - local_sky
    keep = neighbours > HOT_PIXEL_RATIO * peak
    order = np.argsort(-peak[keep], kind="stable")[:MAX_CANDIDATES]
    ys, xs, centre, peak, local_sky = (a[keep][order] for a in (ys, xs, centre, peak, local_sky))
    if ys.size == 0:
        return Stars(empty, empty, empty, empty, empty, empty, np.empty(0, bool))
    cx, cy, flux = _centroids(image, ys, xs, local_sky)
    # The detection again, with the box on the star's centroid: a box placed on the brightest
    # sum is lifted by the noise that put it there, which lets faint stars through by the score.
    ry, rx = np.round(cy).astype(np.int64), np.round(cx).astype(np.int64)
    centred = sum(_pixels(image, ry + dy, rx + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) - 9 * local_sky
    keep = centred >= RECHECK_SIGMA * box_noise
    ys, xs, centre, peak, local_sky, cx, cy, flux = (a[keep] for a in (ys, xs, centre, peak, local_sky, cx, cy, flux))
    if ys.size == 0:
        return Stars(empty, empty, empty, empty, empty, empty, np.empty(0, bool))
    saturated = centre >= full_scale
    hfr = np.full(ys.size, np.nan)
    fwhm = np.full(ys.size, np.nan)
    # Focus is measured on stars well inside the range: near full scale, the stars that stay
    # unclipped are those centred between pixels, which would bias the HFR of sharp stars.
    measurable = np.flatnonzero((centre < MEASURE_BELOW * full_scale) & (peak >= MIN_MEASURE_SNR * noise))[
        :MAX_MEASURED
    ]
    if measurable.size:
        cx[measurable], cy[measurable], hfr[measurable], fwhm[measurable], flux[measurable] = _measure(
            image, cx[measurable], cy[measurable], noise
        )
    typical_fwhm = np.nanmedian(fwhm[measurable]) if measurable.size and np.isfinite(fwhm[measurable]).any() else 0.0
    # The bright stars (and the clipped ones) have no HFR, but their places matter most: they are
    # what a plate solver matches first. The 5x5 moment about the first of a flat top's pixels is
    # pulled towards it by up to a pixel; moments in a disk wide enough for the wings, recentred,
    # find the middle of the (symmetric) clipped profile, and the disk's flux ranks them rightly.
    bright = np.flatnonzero(centre >= MEASURE_BELOW * full_scale)
    if bright.size:
        # The disk reaches BRIGHT_WING px of wing past the clipped top (its half-width along the
        # row and the column: a neighbour's top is not counted): 5 px for an unclipped star, 8
        # for a top 5 px across.
        top_x, top_y, half_width = _clipped_top(image, ys[bright], xs[bright], full_scale)
        clipped = half_width > 0
        cx[bright] = np.where(clipped, top_x, cx[bright])  # the top's middle, to start from
        cy[bright] = np.where(clipped, top_y, cy[bright])
        radii = np.clip(half_width + BRIGHT_WING, BRIGHT_WING + 2, MAX_BRIGHT_RADIUS)
        for radius in np.unique(radii):
            group = bright[radii == radius]
            gx, gy = cx[group], cy[group]
            for _ in range(3):
                gx, gy, _hfr, _fwhm, group_flux = _radial(image, gx, gy, int(radius), noise)
            # A disk that took in a close neighbour's light drifts towards it: such a pair keeps
            # the first estimates (a blend is no better placed by either).
            # An unclipped star's first estimate is already close: a disk that moved it far took in a
            # neighbour. A clipped top's middle is within a pixel or so.
            limit = np.where(clipped[radii == radius], MAX_BRIGHT_SHIFT, MAX_UNCLIPPED_SHIFT)
            alone = np.hypot(gx - cx[group], gy - cy[group]) <= limit
            # A star cut by the frame's edge stays on it (its disk reads the edge's pixels again).
            alone &= (gx >= 0) & (gx <= image.shape[1] - 1) & (gy >= 0) & (gy <= image.shape[0] - 1)
            cx[group] = np.where(alone, gx, cx[group])
            cy[group] = np.where(alone, gy, cy[group])
            flux[group] = np.where(alone & (group_flux > 0), group_flux, flux[group])
    # Noise on a star's flat or broad top makes several maxima; recentred they meet. One star per
    # 3 px, or per 0.6 FWHM of broad stars (closer pairs are one blob to any detector).
    keep = _not_near_brighter(cx, cy, max(3.0, 0.6 * typical_fwhm))
    cx, cy, flux, peak, hfr, fwhm, saturated = (a[keep] for a in (cx, cy, flux, peak, hfr, fwhm, saturated))
    return Stars(cx, cy, flux, peak, hfr, fwhm, saturated)


def _not_near_brighter(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """For stars in order of brightness: those with no brighter one within ``radius``. A sweep
    along x: each star against its k-th neighbour in x for k = 1, 2, ... while any pair is still
    within ``radius`` in x (a few dozen passes over the list, not its thousands squared)."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    limit = radius * radius
    drop = np.zeros(x.size, bool)
    for k in range(1, x.size):
        dx = xs[k:] - xs[:-k]
        close = dx <= radius
        if not close.any():
            break  # x is sorted: the pairs further apart in the order are further apart in x too
        dy = ys[k:] - ys[:-k]
        near = close & (dx * dx + dy * dy <= limit)
        drop[np.maximum(order[:-k][near], order[k:][near])] = True  # the fainter of each pair
    return ~drop


def _clipped_top(
    image: np.ndarray, ys: np.ndarray, xs: np.ndarray, full_scale: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The middle of each star's run of full-scale pixels through (ys, xs) along its row and its
    column, taken twice (from the first pixel of a flat top, then from the middle found), and how
    far the run reaches from it (0 for a star that is not clipped): the top of a neighbour is not
    part of the run."""
    mid_x, mid_y = xs.astype(np.float64), ys.astype(np.float64)
    reach = np.zeros(len(ys), np.int64)
    for _ in range(2):
        at_y, at_x = np.round(mid_y).astype(np.int64), np.round(mid_x).astype(np.int64)
        runs = []
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            run = np.zeros(len(ys), np.int64)
            running = _pixels(image, at_y, at_x) >= full_scale
            for k in range(1, MAX_BRIGHT_RADIUS):
                y, x = at_y + k * dy, at_x + k * dx
                inside = (y >= 0) & (y < image.shape[0]) & (x >= 0) & (x < image.shape[1])
                running &= inside & (_pixels(image, y, x) >= full_scale)  # a top cut by the edge ends there
                if not running.any():
                    break
                run += running
            runs.append(run)
        right, left, down, up = runs
        clipped = _pixels(image, at_y, at_x) >= full_scale
        mid_x = np.where(clipped, at_x + (right - left) / 2, mid_x)
        mid_y = np.where(clipped, at_y + (down - up) / 2, mid_y)
        reach = np.where(clipped, np.maximum.reduce(runs) + 1, 0)
    return mid_x, mid_y, reach


def _pixels(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    return image[np.clip(ys, 0, image.shape[0] - 1), np.clip(xs, 0, image.shape[1] - 1)].astype(np.float64)


def _local_maxima(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: float) -> np.ndarray:
    """Which of the pixels (ys, xs) are the brightest within ``radius``: greater than every pixel
    of the disk before them in raster order and not less than those after, so that a flat
    (saturated) top yields one maximum, not many."""
    if ys.size == 0:
        return np.zeros(0, bool)
    reach = math.floor(radius)
    offsets = np.arange(-reach, reach + 1)
    oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
    disk = (oy * oy + ox * ox <= radius * radius) & ((oy != 0) | (ox != 0))
    oy, ox = oy[disk], ox[disk]
    before = (oy < 0) | ((oy == 0) & (ox < 0))
    height, width = image.shape
    # Flat indices; pixels within reach of the edge are compared with the edge row or column.
    cy = np.clip(ys, reach, height - 1 - reach)
    cx = np.clip(xs, reach, width - 1 - reach)
    flat = image.ravel()
    around = flat[(cy * width + cx)[:, None] + (oy * width + ox)[None, :]]
    centre = flat[ys * width + xs][:, None]
    return ((centre > around) | (~before[None, :] & (centre == around))).all(axis=1)


def _centroids(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, local_sky: np.ndarray):
    """Background-subtracted first moments in the 5x5 box around each maximum."""
    offsets = np.arange(-2, 3)
    box_y = np.clip(ys[:, None, None] + offsets[None, :, None], 0, image.shape[0] - 1)
    box_x = np.clip(xs[:, None, None] + offsets[None, None, :], 0, image.shape[1] - 1)
    values = np.maximum(image[box_y, box_x] - local_sky[:, None, None], 0).astype(np.float64)
    total = values.sum(axis=(1, 2))
    total[total == 0] = 1.0
    cy = ys + (values.sum(axis=2) * offsets).sum(axis=1) / total
    cx = xs + (values.sum(axis=1) * offsets).sum(axis=1) / total
    return cx, cy, total


def _measure(image: np.ndarray, cx: np.ndarray, cy: np.ndarray, noise: float, passes: int = 3):
    """Centroid, half-flux radius, FWHM and flux of each star, measured out to a radius that grows
    with the stars (8 px first, then 4 sigma of the median star), recentred on each pass."""
    radius = 8
    for done in range(1, passes + 1):
        cx, cy, hfr, fwhm, flux = _radial(image, cx, cy, radius, noise)
        typical = np.nanmedian(hfr) if np.isfinite(hfr).any() else 2.0
        wanted = int(min(max(math.ceil(3.4 * typical), 4), 30))  # 4 sigma = 3.4 HFR for a Gaussian
        if wanted == radius and done >= 2:  # measured twice at this radius: recentred
            break
        radius = wanted
    return cx, cy, hfr, fwhm, flux


def _radial(image: np.ndarray, cx: np.ndarray, cy: np.ndarray, radius: int, noise: float):
    height, width = image.shape
    ring = 3  # the local background: an annulus just outside the measuring radius
    half = radius + ring
    offsets = np.arange(-half, half + 1)
    iy = np.round(cy).astype(np.int64)
    ix = np.round(cx).astype(np.int64)
    box_y = np.clip(iy[:, None, None] + offsets[None, :, None], 0, height - 1)
    box_x = np.clip(ix[:, None, None] + offsets[None, None, :], 0, width - 1)
    values = image[box_y, box_x].astype(np.float32)
    dy = (box_y - cy[:, None, None]).astype(np.float32)
    dx = (box_x - cx[:, None, None]).astype(np.float32)
    r = np.sqrt(dx * dx + dy * dy)
    count = values.shape[0]
    # The same ring of pixels around each star's nearest pixel. Its mean within 3 sigma of its
    # median: the median alone is a whole step of an 8-bit image, which over the star's area is
    # a large share of a faint star's light; the clip keeps neighbouring stars out.
    grid_r = np.hypot(offsets[:, None], offsets[None, :])
    annulus = (grid_r > radius + 0.5) & (grid_r <= radius + ring)
    ring_values = values[:, annulus]
    median = np.median(ring_values, axis=1)
    near = np.abs(ring_values - median[:, None]) <= 3 * noise
    sky = (ring_values * near).sum(axis=1) / np.maximum(near.sum(axis=1), 1)
    signal = np.where(r <= radius, values - sky[:, None, None], np.float32(0))
    flux = signal.sum(axis=(1, 2), dtype=np.float64)
    safe_flux = np.where(flux > 0, flux, np.nan)
    # The centroid within the measuring radius, for the next pass.
    new_cx = cx + (signal * dx).sum(axis=(1, 2)) / safe_flux
    new_cy = cy + (signal * dy).sum(axis=(1, 2)) / safe_flux
    # Flux by radius in quarter-pixel bins, each bin placed at its flux-weighted mean radius and
    # accumulated; the half-flux radius is where the cumulative flux crosses half the total,
    # interpolated between the bins on either side (the PHD2 manner).
    bins = radius * RADIAL_BINS_PER_PX + 1
    bin_index = np.minimum((r * RADIAL_BINS_PER_PX).astype(np.int64), bins - 1)
    flat = (np.arange(count)[:, None, None] * bins + bin_index).ravel()
    weights = signal.ravel().astype(np.float64)
    profile = np.bincount(flat, weights=weights, minlength=count * bins).reshape(count, bins)
    moment = np.bincount(flat, weights=weights * r.ravel(), minlength=count * bins).reshape(count, bins)
    centres = (np.arange(bins) + 0.5) / RADIAL_BINS_PER_PX
    at_radius = np.where(profile > 0, moment / np.where(profile > 0, profile, 1.0), centres[None, :])
    # A bin's flux is all in by the time the next bin starts: the cumulative flux of bin k holds
    # half-way between the radius of bin k and that of bin k + 1.
    at_radius[:, :-1] = (at_radius[:, :-1] + at_radius[:, 1:]) / 2
    cumulative = np.cumsum(profile, axis=1)
    crossed = cumulative >= (flux / 2)[:, None]
    rows = np.arange(count)
    first = np.argmax(crossed, axis=1)
    previous = np.maximum(first - 1, 0)
    c0 = np.where(first > 0, cumulative[rows, previous], 0.0)
    r0 = np.where(first > 0, at_radius[rows, previous], 0.0)
    c1, r1 = cumulative[rows, first], at_radius[rows, first]
    share = np.clip((flux / 2 - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0, 1.0)
    hfr_pixels = r0 + share * (r1 - r0)
    # The pixels' own size widens a star by 1/12 px^2 in variance on each axis; take it out.
    hfr = np.sqrt(np.maximum(hfr_pixels**2 - 2 * math.log(2) * PIXEL_VARIANCE, 0.0))
    # FWHM from the second moment: E[r^2] = 2 sigma^2 for a circular Gaussian.
    second = (signal * r * r).sum(axis=(1, 2)) / safe_flux
    fwhm = np.sqrt(np.maximum(second / 2 - PIXEL_VARIANCE, 0)) / SIGMA_PER_FWHM
    bad = (flux <= 0) | ~crossed.any(axis=1)
    hfr[bad] = np.nan
    fwhm[bad] = np.nan
    new_cx = np.where(bad, cx, new_cx)
    new_cy = np.where(bad, cy, new_cy)
    return new_cx, new_cy, hfr, fwhm, flux


# -- everything, as published ---------------------------------------------------------------------


def analyse(
    image: np.ndarray, full_scale: int, *, scale: float = 1.0, channels: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """The figures of one frame, as the `analysis` event and ``GET /api/analysis`` carry them.

    ``image`` is the linear luminance; ``scale`` multiplies positions and sizes into pixels of the
    full frame; ``channels`` (name -> 2-D image) adds a histogram per colour channel."""
    counts = exact_histogram(image, full_scale)
    stats = statistics(counts)
    stretch = auto_stretch(stats, full_scale)
    stars = find_stars(image, stats, full_scale)
    measured = np.isfinite(stars.hfr)
    histogram = {"luminance": display_histogram(counts)}
    for name, channel in (channels or {}).items():
        histogram[name] = display_histogram(exact_histogram(channel, full_scale))
    brightest = np.argsort(-stars.flux, kind="stable")[:BRIGHTEST_LISTED]
    return {
        "width": int(image.shape[1] * scale),
        "height": int(image.shape[0] * scale),
        "full_scale": full_scale,
        "histogram": histogram,
        "min": stats.minimum,
        "median": stats.median,
        "max": stats.maximum,
        "mad": stats.mad,
        "background": round(stats.background, 3),
        "noise": round(stats.noise, 3),
        "clipped": round(stats.clipped_high, 6),
        "clipped_low": round(stats.clipped_low, 6),
        "stretch": stretch.as_dict(),
        "star_count": stars.count,
        "saturated_stars": int(stars.saturated.sum()),
        "measured_stars": int(measured.sum()),
        "hfr": _rounded(np.median(stars.hfr[measured]) * scale) if measured.any() else None,
        "fwhm": _rounded(np.median(stars.fwhm[measured]) * scale) if measured.any() else None,
        "stars": [
            {
                "x": _rounded(stars.x[i] * scale),
                "y": _rounded(stars.y[i] * scale),
                "flux": _rounded(float(stars.flux[i])),
                "hfr": _rounded(stars.hfr[i] * scale) if np.isfinite(stars.hfr[i]) else None,
            }
            for i in brightest
        ],
    }


def _rounded(value: float, digits: int = 3) -> float:
    return round(float(value), digits)
