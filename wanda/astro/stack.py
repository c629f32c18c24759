"""Adding registered frames: the warp onto the reference's pixels, and a running mean and variance
per pixel that rejects what does not belong as each frame arrives.

The warp is OpenCV's ``warpAffine`` (bilinear, pixels outside the frame marked NaN): about 19 ms
for a 1440x1080 colour float32 frame on this machine, where numpy's own gathers take several times
that and scipy's ``affine_transform`` 56 ms a plane.

The accumulator keeps, per pixel and channel, the mean and the sum of squared deviations of the
values taken so far (Welford's update, in float32), and their count. From the ``warmup``-th frame
on, a value further than ``kappa`` standard deviations from the mean is left out (a satellite's
trail, a cosmic ray, a hot pixel a dark missed): each pixel is sigma-clipped as it arrives, without
keeping the frames. Memory: 10 bytes per pixel and channel (mean, squares, count): 365 MB for a
12 MP colour stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BYTES_PER_SAMPLE = 4 + 4 + 2  # mean, squared deviations (float32), count (uint16)
BLOCK_ROWS = 32  # rows of a frame added at a time (see Accumulator.add)


def warp(image: np.ndarray, affine: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W) or (H, W, C) float32 resampled onto a ``size`` (width, height) frame whose
    pixel p comes from the image's pixel ``A @ p + t`` inverted: ``affine`` (2x3) maps the image's
    pixels onto the output's. Outside the image: NaN."""
    import cv2  # here: the stack is the only user, and a server without it still starts

    return cv2.warpAffine(
        np.ascontiguousarray(image, np.float32),
        np.asarray(affine, np.float64),
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(float("nan"),) * 4,
    )


@dataclass
class Added:
    """What one frame gave the stack."""

    pixels: int  # values taken
    clipped: int  # values left out as outliers
    outside: int  # values with no data (off the frame after the warp)


class Accumulator:
    """Per-pixel running mean and variance with sigma clipping on arrival. Not thread-safe: one
    owner (the stacking thread)."""

    def __init__(self, shape: tuple[int, ...], *, kappa: float = 3.0, warmup: int = 5, noise_floor: float = 0.0):
        """``noise_floor``: the smallest standard deviation clipping assumes (a few identical
        values would otherwise clip every later one that differs at all)."""
        self.shape = shape
        self.kappa = kappa
        self.warmup = warmup
        self.noise_floor = noise_floor
        self.mean = np.zeros(shape, np.float32)
        self.squares = np.zeros(shape, np.float32)  # sum of squared deviations from the mean
        self.count = np.zeros(shape, np.uint16)
        self.frames = 0

    @property
    def nbytes(self) -> int:
        return self.mean.nbytes + self.squares.nbytes + self.count.nbytes

    def add(self, frame: np.ndarray) -> Added:
        if frame.shape != self.shape:
            raise ValueError(f"a frame of {frame.shape} added to a stack of {self.shape}")
        clip = self.frames >= self.warmup
        totals = np.zeros(3, np.int64)  # taken, clipped, outside
        # In blocks of rows that stay in the processor's cache: the same work over the whole frame
        # at once streams each of its temporaries through memory, twice as slow here.
        for start in range(0, self.shape[0], BLOCK_ROWS):
            rows = slice(start, start + BLOCK_ROWS)
            totals += self._add_rows(frame[rows], self.mean[rows], self.squares[rows], self.count[rows], clip)
        self.frames += 1
        return Added(pixels=int(totals[0]), clipped=int(totals[1]), outside=int(totals[2]))

    def _add_rows(
        self, frame: np.ndarray, mean: np.ndarray, squares: np.ndarray, count: np.ndarray, clip: bool
    ) -> tuple[int, int, int]:
        """Welford's update of a block of rows (views into the stack), in place."""
        valid = np.isfinite(frame)
        outside = valid.size - np.count_nonzero(valid)
        delta = np.where(valid, frame, mean)
        delta -= mean  # 0 where the frame has no value
        clipped = 0
        if clip:
            # |x - mean| > kappa sigma, squared: no square roots. sigma^2 = squares / (n - 1), at
            # least the noise floor's.
            limit = np.maximum(count, 2).astype(np.float32)
            limit -= 1
            np.divide(squares, limit, out=limit)
            np.maximum(limit, np.float32(self.noise_floor**2), out=limit)
            limit *= np.float32(self.kappa**2)
            deviant = np.square(delta) > limit
            deviant &= count >= self.warmup
            clipped = int(np.count_nonzero(deviant))
            if clipped:
                valid &= ~deviant
                delta[deviant] = 0.0
        count += valid
        step = delta / np.maximum(count, 1)  # 0 where nothing was taken
        mean += step
        # Welford: squares += delta * (x - new mean) = delta * (delta - step).
        step -= delta
        step *= delta
        squares -= step
        return int(np.count_nonzero(valid)), clipped, int(outside)

    def image(self) -> np.ndarray:
        """The stack: the mean (NaN where no frame gave a value)."""
        return np.where(self.count > 0, self.mean, np.float32(np.nan))

    def standard_deviation(self) -> np.ndarray:
        """Of the values taken per pixel (NaN below two)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 1, np.sqrt(self.squares / (self.count - 1.0)), np.nan).astype(np.float32)
