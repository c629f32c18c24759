"""The auto-stretch in the PixInsight STF manner: shadows c0 = median - 2.8 x 1.4826 x MAD,
midtones m = MTF(0.25, median - c0), on data normalised to 0..1. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Spread(Protocol):
    """What the stretch needs of an image's statistics (wanda.astro.measure.Statistics has it)."""

    @property
    def median(self) -> float: ...

    @property
    def mad(self) -> float: ...


def mtf(midtones: float, x: np.ndarray | float) -> np.ndarray | float:
    """PixInsight's midtones transfer function: 0 -> 0, midtones -> 0.5, 1 -> 1."""
    return ((midtones - 1) * x) / ((2 * midtones - 1) * x - midtones)


@dataclass(frozen=True)
class Stretch:
    shadows: float  # c0, normalised 0..1
    midtones: float  # m
    highlights: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return {"shadows": round(self.shadows, 6), "midtones": round(self.midtones, 6), "highlights": self.highlights}

    def lookup_table(self, levels: int = 256) -> np.ndarray:
        """The stretch as a table from ``levels`` input values to 8-bit output."""
        x = np.linspace(0.0, 1.0, levels)
        clipped = np.clip((x - self.shadows) / (self.highlights - self.shadows), 0.0, 1.0)
        return np.round(255 * mtf(self.midtones, clipped)).astype(np.uint8)


def auto_stretch(
    stats: Spread, full_scale: int, target_background: float = 0.25, shadows_clip: float = -2.8
) -> Stretch:
    median = stats.median / full_scale
    mad = 1.4826 * stats.mad / full_scale
    shadows = min(max(0.0, median + shadows_clip * mad), median)
    offset = median - shadows
    if offset <= 0:  # a flat image: nothing to stretch
        return Stretch(shadows, 0.5)
    midtones = float(mtf(target_background, offset))
    return Stretch(shadows, min(max(midtones, 1e-6), 1 - 1e-6))
