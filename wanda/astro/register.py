"""Registration of one frame's stars on another's: triangle-invariant matching and RANSAC, the
method of astroalign (Beroiz et al. 2020) and Siril, in numpy.

A star field is matched by shapes that do not change when the frame is shifted, turned, scaled or
flipped: the triangles each bright star makes with its nearest neighbours, described by two ratios
of their sorted sides. Triangles of the two frames with nearly the same ratios propose which star
is which; RANSAC picks the transform that most proposals agree with (a few stars gone behind a
cloud, a satellite taken for a star, a hot pixel: outliers), and a least-squares fit over all the
stars it then pairs refines it.

The transform maps the frame's pixels onto the reference's: ``reference = A @ frame + t``, a
similarity (rotation, one scale, shift; a flip is its own case, as a meridian flip or a mirror
gives) or a full affine transform. Pure: arrays in, arrays out.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 5  # each star's triangles are made with these nearest neighbours
MATCH_TOLERANCE = 0.02  # two triangles are alike when their side ratios differ by less than this
INLIER_PX = 2.0  # a star pair agrees with a transform when it maps within this many pixels
MIN_INLIERS = 6  # fewer stars agreeing: no registration
RANSAC_TRIALS = 300
ENOUGH_AGREE = 0.6  # a transform most stars agree with ends the search


class RegistrationFailed(ValueError):
    """The frames could not be registered; the message says why (for the rejection reason)."""


@dataclass(frozen=True)
class Transform:
    matrix: np.ndarray  # 2x2
    shift: np.ndarray  # 2
    inliers: int  # star pairs that agree with it
    rms: float  # their residual, pixels

    def apply(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = self.matrix @ np.vstack((np.asarray(x, float), np.asarray(y, float))) + self.shift[:, None]
        return points[0], points[1]

    @property
    def rotation(self) -> float:
        """Degrees, counter-clockwise in pixel axes (x right, y down: clockwise on the screen)."""
        return float(np.degrees(np.arctan2(self.matrix[1, 0], self.matrix[0, 0])))

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def flipped(self) -> bool:
        return bool(np.linalg.det(self.matrix) < 0)

    def affine(self) -> np.ndarray:
        """The 2x3 matrix [A | t] (as OpenCV's warpAffine takes it)."""
        return np.hstack((self.matrix, self.shift[:, None]))


def _triangles(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each star with two of its nearest neighbours: (invariants (T, 2), vertex indices (T, 3)),
    the vertices ordered by the sides opposite them (shortest first) so that matched triangles
    pair their stars."""
    count = len(points)
    if count < 3:
        return np.empty((0, 2)), np.empty((0, 3), np.int64)
    distance = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    nearest = np.argsort(distance, axis=1)[:, 1 : NEIGHBOURS + 1]
    combos = np.array(list(itertools.combinations(range(nearest.shape[1]), 2)))
    triangles = np.concatenate(
        [
            np.column_stack((np.full(len(combos), i), nearest[i, combos[:, 0]], nearest[i, combos[:, 1]]))
            for i in range(count)
        ]
    )
    triangles = np.unique(np.sort(triangles, axis=1), axis=0)  # each triangle once
    a, b, c = (points[triangles[:, k]] for k in range(3))
    # Side k is opposite vertex k.
    sides = np.column_stack((np.hypot(*(b - c).T), np.hypot(*(a - c).T), np.hypot(*(a - b).T)))
    order = np.argsort(sides, axis=1)
    sides = np.take_along_axis(sides, order, axis=1)
    ok = sides[:, 0] > 1e-6
    vertices = np.take_along_axis(triangles, order, axis=1)[ok]
    sides = sides[ok]
    invariants = np.column_stack((sides[:, 2] / sides[:, 1], sides[:, 1] / sides[:, 0]))
    return invariants, vertices


def _fit(source: np.ndarray, target: np.ndarray, affine: bool) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares transform (A, t) with target = A @ source + t: a similarity (with a flip when
    it fits better: Umeyama's solution with the reflection allowed) or an affine map."""
    if affine:
        design = np.column_stack((source, np.ones(len(source))))
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        return solution[:2].T, solution[2]
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mean_s, target - mean_t
    u, sigma, vt = np.linalg.svd(t.T @ s)
    rotation = u @ vt  # may be a reflection: a flipped frame is allowed
    variance = (s**2).sum()
    scale = sigma.sum() / variance if variance > 0 else 1.0
    matrix = scale * rotation
    return matrix, mean_t - matrix @ mean_s


def register(
    frame: np.ndarray,
    reference: np.ndarray,
    *,
    affine: bool = False,
    rng: np.random.Generator | None = None,
) -> Transform:
    """The transform taking ``frame``'s star positions ((N, 2) x, y, brightest first) onto
    ``reference``'s. Raises RegistrationFailed with the reason."""
    frame, reference = np.asarray(frame, float), np.asarray(reference, float)
    if len(frame) < MIN_INLIERS or len(reference) < MIN_INLIERS:
        raise RegistrationFailed(
            f"too few stars to register ({len(frame)} in the frame, {len(reference)} in the reference)"
        )
    inv_f, tri_f = _triangles(frame)
    inv_r, tri_r = _triangles(reference)
    if not len(inv_f) or not len(inv_r):
        raise RegistrationFailed("no triangles of stars to match")
    # Every frame triangle with its nearest reference triangle in invariant space.
    difference = np.hypot(*(inv_f[:, None, :] - inv_r[None, :, :]).transpose(2, 0, 1))
    best = np.argmin(difference, axis=1)
    close = difference[np.arange(len(inv_f)), best] < MATCH_TOLERANCE
    pairs_f, pairs_r = tri_f[close], tri_r[best[close]]
    if len(pairs_f) == 0:
        raise RegistrationFailed("no triangle of stars in the frame matches the reference's")
    rng = rng or np.random.default_rng(0)
    best_inliers: np.ndarray | None = None
    for trial in range(min(RANSAC_TRIALS, len(pairs_f))):
        k = trial if len(pairs_f) <= RANSAC_TRIALS else int(rng.integers(len(pairs_f)))
        matrix, shift = _fit(frame[pairs_f[k]], reference[pairs_r[k]], affine=False)
        inliers = _pairs(frame, reference, matrix, shift)
        if best_inliers is None or len(inliers) > len(best_inliers):
            best_inliers = inliers
            if len(inliers) >= ENOUGH_AGREE * min(len(frame), len(reference)):
                break  # most stars agree: no other transform could do better
    assert best_inliers is not None
    if len(best_inliers) < MIN_INLIERS:
        raise RegistrationFailed(f"only {len(best_inliers)} stars agree on a transform (at least {MIN_INLIERS} needed)")
    # Refine over every pair the transform finds, twice (the refined one may find more).
    inliers = best_inliers
    for _ in range(2):
        matrix, shift = _fit(frame[inliers[:, 0]], reference[inliers[:, 1]], affine)
        inliers = _pairs(frame, reference, matrix, shift)
        if len(inliers) < MIN_INLIERS:
            raise RegistrationFailed(f"only {len(inliers)} stars agree after refining")
    mapped = frame[inliers[:, 0]] @ matrix.T + shift
    rms = float(np.sqrt(np.mean(np.sum((mapped - reference[inliers[:, 1]]) ** 2, axis=1))))
    return Transform(matrix=matrix, shift=shift, inliers=len(inliers), rms=rms)


def _pairs(frame: np.ndarray, reference: np.ndarray, matrix: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(frame index, reference index) of the stars that land within INLIER_PX of a reference star
    under the transform, each reference star taken once (by its nearest)."""
    mapped = frame @ matrix.T + shift
    distance = np.hypot(*(mapped[:, None, :] - reference[None, :, :]).transpose(2, 0, 1))
    nearest = np.argmin(distance, axis=1)
    within = distance[np.arange(len(frame)), nearest] < INLIER_PX
    found = np.flatnonzero(within)
    # A reference star claimed twice keeps the closer frame star.
    order = found[np.argsort(distance[found, nearest[found]])]
    _, first = np.unique(nearest[order], return_index=True)
    chosen = order[first]
    return np.column_stack((chosen, nearest[chosen]))
