"""What a real sensor and optic add to every frame, for the simulated sky: the reasons darks, bias
frames and flats exist, each with its truth for tests.

- dark current, the same small rate in every pixel, and amp glow: a corner of the sensor warmed by
  its read-out amplifier, both doubling every ``doubling_c`` degrees of sensor temperature and
  growing with the exposure (the hot pixels stay in wanda/backends/sky.py, as before);
- a bias pattern: each column's own offset, fixed, in every frame;
- dust: a couple of motes on the sensor window, soft rings that dim the light under them by a few
  per cent, in lights and flats alike (a flat corrects them);
- satellites and aircraft: now and then a bright straight trail across a light frame;
- passing cloud: the sky's transparency dropping for a minute now and then (off unless asked for).

The dark current's own shot noise is left out: it is small beside the sky's in a light frame.
Maps are computed once (fixed on the sensor) and the floor (bias, pattern, dark) is cached per
exposure, gain and temperature, so a preview frame pays one add.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DefectModel:
    dark_e_per_s: float = 0.2  # every pixel, at 20 degrees
    amp_glow_e_per_s: float = 40.0  # at the glowing corner (top right), at 20 degrees
    amp_glow_px: float = 150.0  # how far the glow reaches (its e-folding, preview pixels)
    doubling_c: float = 6.0  # dark current doubles with this many degrees
    bias_columns_adu: float = 0.5  # rms of the columns' offsets, 12-bit ADU
    dust: tuple[tuple[float, float, float, float], ...] = ((430.0, 330.0, 28.0, 0.08), (1010.0, 760.0, 22.0, 0.06))
    satellites_per_hour: float = 6.0  # trails per hour of light-frame exposure
    satellite_e_per_px: float = 400.0  # a trail's light in each pixel it crosses (however long the exposure)


@dataclass(frozen=True)
class Trail:
    """A satellite's path across a frame: from (x0, y0) to (x1, y1), frame pixels."""

    x0: float
    y0: float
    x1: float
    y1: float


class SensorDefects:
    """The fixed maps of one sensor (seeded) and the draws of trails and clouds."""

    def __init__(self, size: tuple[int, int], seed: int, model: DefectModel = DefectModel()):
        width, height = size
        self.model = model
        self.size = size
        rng = np.random.default_rng((seed, 7))
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        corner = np.hypot(xx - (width - 1), yy)  # the amplifier sits at the top right
        self.dark_e_per_s = (model.dark_e_per_s + model.amp_glow_e_per_s * np.exp(-corner / model.amp_glow_px)).astype(
            np.float32
        )
        self.bias_columns_adu = (rng.standard_normal(width) * model.bias_columns_adu).astype(np.float32)
        transmission = np.ones((height, width), np.float32)
        for x, y, radius, depth in model.dust:
            # A mote out of focus: a soft ring (the obstructed cone's shadow), darkest at its rim.
            r = np.hypot(xx - x, yy - y) / radius
            ring = np.exp(-(((r - 0.8) / 0.25) ** 2)) + 0.6 * np.exp(-((r / 0.6) ** 2))
            transmission *= (1.0 - depth * ring / ring.max()).astype(np.float32)
        self.transmission = transmission
        self._floor: tuple[tuple[float, float, float, float], np.ndarray] | None = None

    @staticmethod
    def temperature_factor(temperature_c: float, doubling_c: float) -> float:
        return 2.0 ** ((temperature_c - 20.0) / doubling_c)

    def floor(
        self, exposure_s: float, adu_per_e: float, black: float, adu_per_12bit: float, temperature_c: float
    ) -> np.ndarray:
        """What the sensor adds with no light at all, in ADU: the bias level and the columns'
        pattern (``adu_per_12bit``: one 12-bit ADU in this image's units), and the dark current
        and amp glow of an exposure of ``exposure_s`` at ``temperature_c``."""
        key = (round(exposure_s, 9), round(adu_per_e, 12), round(black, 9), round(temperature_c, 3))
        if self._floor is None or self._floor[0] != key:
            dark = exposure_s * self.temperature_factor(temperature_c, self.model.doubling_c) * adu_per_e
            floor = self.dark_e_per_s * np.float32(dark)
            floor += self.bias_columns_adu[None, :] * np.float32(adu_per_12bit)
            floor += np.float32(black)
            self._floor = (key, floor)
        return self._floor[1]

    def transmission_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The dust's transmission at frame positions (1 off the frame)."""
        width, height = self.size
        inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        values = np.ones(np.shape(x), np.float32)
        xi = np.clip(np.round(x), 0, width - 1).astype(np.int64)
        yi = np.clip(np.round(y), 0, height - 1).astype(np.int64)
        values[inside] = self.transmission[yi[inside], xi[inside]]
        return values

    def trails(self, exposure_s: float, rng: np.random.Generator, rate_per_hour: float | None = None) -> list[Trail]:
        """The satellites that crossed a light frame of ``exposure_s`` (Poisson, at the model's
        rate unless ``rate_per_hour`` is given), each a line across the whole frame."""
        rate = self.model.satellites_per_hour if rate_per_hour is None else rate_per_hour
        count = int(rng.poisson(rate * exposure_s / 3600.0))
        width, height = self.size
        trails = []
        for _ in range(count):
            # Through a random point at a random angle, from edge to edge.
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            angle = rng.uniform(0, math.pi)
            reach = math.hypot(width, height)
            dx, dy = math.cos(angle) * reach, math.sin(angle) * reach
            trails.append(Trail(cx - dx, cy - dy, cx + dx, cy + dy))
        return trails

    def draw_trail(
        self, image: np.ndarray, trail: Trail, electrons_per_px: float, adu_per_e: float, sigma: float
    ) -> None:
        """Add a trail of ``electrons_per_px`` to ``image`` (in place), a Gaussian ``sigma`` wide
        across its line."""
        height, width = image.shape
        dx, dy = trail.x1 - trail.x0, trail.y1 - trail.y0
        length = math.hypot(dx, dy)
        nx, ny = -dy / length, dx / length  # the unit normal
        reach = 4 * sigma
        # Only the rows (or columns) near the line: the band is narrow.
        if abs(dx) >= abs(dy):  # shallow: for each column the rows near the line
            xs = np.arange(width, dtype=np.float32)
            centre = trail.y0 + (xs - trail.x0) * dy / dx
            offsets = np.arange(-math.ceil(reach * length / abs(dx)) - 1, math.ceil(reach * length / abs(dx)) + 2)
            rows = np.round(centre)[None, :].astype(np.int64) + offsets[:, None]
            cols = np.broadcast_to(np.arange(width), rows.shape)
        else:
            ys = np.arange(height, dtype=np.float32)
            centre = trail.x0 + (ys - trail.y0) * dx / dy
            offsets = np.arange(-math.ceil(reach * length / abs(dy)) - 1, math.ceil(reach * length / abs(dy)) + 2)
            cols = np.round(centre)[None, :].astype(np.int64) + offsets[:, None]
            rows = np.broadcast_to(np.arange(height), cols.shape)
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        rows, cols = rows[inside], cols[inside]
        distance = (cols - trail.x0) * nx + (rows - trail.y0) * ny
        image[rows, cols] += (electrons_per_px * adu_per_e * np.exp(-0.5 * (distance / sigma) ** 2)).astype(np.float32)


class Clouds:
    """Passing cloud: over each minute, with probability ``cover``, a cloud drifts across the field
    and the sky's transparency dips (to 5-70%) and recovers, smoothly. Seeded: the same night each
    run. ``cover`` 0: a clear night."""

    MINUTE = 60.0

    def __init__(self, cover: float, seed: int):
        self.cover = cover
        self.seed = seed

    def transparency(self, t: float) -> float:
        """At ``t`` seconds since the start."""
        if self.cover <= 0:
            return 1.0
        value = 1.0
        minute = math.floor(t / self.MINUTE)
        for m in (minute - 1, minute, minute + 1):  # a cloud lasts up to a minute and a half
            rng = np.random.default_rng((self.seed, 11, m % 2**32))  # seeds are non-negative
            if rng.random() >= self.cover:
                continue
            start = (m + rng.random()) * self.MINUTE
            duration = rng.uniform(20.0, 90.0)
            depth = rng.uniform(0.3, 0.95)
            phase = (t - start) / duration
            if 0.0 <= phase <= 1.0:
                value *= 1.0 - depth * math.sin(math.pi * phase) ** 2
        return value
