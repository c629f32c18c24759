"""The auto-stretch in the PixInsight STF manner: shadows c0 = median - 2.8 x 1.4826 x MAD,
midtones m = MTF(0.25, median - c0), on data normalised to 0..1. Pure functions.

Two departures, both so that the stretch lifts every sky that is not saturated and never makes
a frame worse:

- the MAD is the spread of the values over their quantisation steps (``Statistics.spread``), not
  the MAD of the integers, which is 0 on a faint sky of one or two values: the shadows then clip
  at the median and the sky goes black instead of up;
- the background goes to 0.25 or stays where it is if it is brighter (STF would darken a bright
  sky to 0.25), and a saturated frame (median at full scale: nothing to tell apart) is left as
  it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Spread(Protocol):
    """What the stretch needs of an image's statistics (wanda.astro.measure.Statistics has it)."""

    @property
    def median(self) -> float: ...

    @property
    def spread(self) -> float: ...  # a MAD that is never 0 on quantised data


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
        span = max(self.highlights - self.shadows, 1e-9)  # never a division by zero (NaN is black)
        clipped = np.clip((x - self.shadows) / span, 0.0, 1.0)
        return np.round(255 * mtf(self.midtones, clipped)).astype(np.uint8)


def auto_stretch(
    stats: Spread, full_scale: int, target_background: float = 0.25, shadows_clip: float = -2.8
) -> Stretch:
    median = stats.median / full_scale
    if median >= 1.0:  # saturated: every stretch would clip the sky, and nothing is left to lift
        return IDENTITY
    sigma = 1.4826 * stats.spread / full_scale
    shadows = min(max(0.0, median + shadows_clip * sigma), median)
    offset = median - shadows
    if offset <= 0:  # the median is 0: nothing above the shadows to lift
        return IDENTITY
    # MTF(m, offset) = target for m = MTF(target, offset); a sky brighter than the target keeps
    # its level (the rescale by 1 - c0 then lifts it a little) instead of being darkened to it.
    midtones = float(mtf(max(target_background, median), offset))
    return Stretch(shadows, min(max(midtones, 1e-6), 1 - 1e-6))


IDENTITY = Stretch(0.0, 0.5)  # the frame as it is
