"""The simulated sky: a camera backend that renders a realistic star field.

It is the default wherever no Pi camera exists, so that WANDA can be run, tested and benchmarked
on any machine. What makes it useful for astronomy work:

- a fixed, seeded star field on a strip of sky wider than the frame, with the brightness spread of
  a real field (many faint stars, few bright ones: N(<m) grows as 10^(0.35 m));
- stars are pixel-integrated Gaussians of a configurable FWHM, smeared into trails when the field
  drifts during an exposure;
- sky background with a light-pollution gradient and vignetting, shot noise, read noise, a bias
  level and a few hot pixels;
- the frame type says what is in front of the lens: the sky for lights; for darks and bias frames
  the cap (no light at all: the bias level, read noise and the hot pixels' dark current, a bias
  at the shortest exposure); for flats an evenly lit panel, vignetted like the sky;
- brightness scales with exposure x gain through a sensor model like the IMX477's (12-bit ADC);
- while the mount is not tracking, the field drifts at the sidereal rate for the plate scale;
- it knows its truth (star positions, fluxes, FWHM, expected SNR) so measurements can be tested.

Cost: the noise comes from slicing a precomputed normal field at a random offset, the background
from a cached map and stars are stamped in one vectorised scatter-add: about 5 ms a frame.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wanda.backends import CaptureCancelled, PreviewFrame, StillImage

SIDEREAL_RATE = 15.041  # arcseconds per second of time, on the celestial equator

PREVIEW_SIZE = (1440, 1080)
EXPOSURE_LIMITS = (0.0001, 230.0)  # seconds; the IMX477 goes to about 230 s
GAIN_LIMITS = (1.0, 16.0)  # analogue gain
CAPPED = ("dark", "bias")  # frame types taken with the telescope capped
# The flat panel fills this share of the 12-bit range at the preview's defaults (1/30 s, gain 8),
# and scales with exposure x gain like the sky: the observer adjusts the exposure to the flat
# target of their stacking software, as with a real panel.
FLAT_LEVEL = 0.5
FLAT_REFERENCE = (1 / 30, 8.0)  # exposure (s), gain


@dataclass(frozen=True)
class SensorModel:
    """Electrons to ADU, like an IMX477 read through a 12-bit ADC."""

    read_noise_e: float = 3.0
    e_per_adu_at_unity: float = 2.0  # electrons per 12-bit ADU at analogue gain 1
    black_level_adu: float = 256.0  # 12-bit bias level, as the IMX477 reports
    sky_e_per_s: float = 6.0  # sky background per pixel at a dark site
    adc_bits: int = 12


@dataclass(frozen=True)
class SkyTruth:
    """Where the stars are in the frame of the last rendered image, and how bright."""

    x: np.ndarray  # frame pixel coordinates of star centres (0 = centre of the first pixel)
    y: np.ndarray
    flux_e_per_s: np.ndarray
    fwhm: float
    hot_x: np.ndarray
    hot_y: np.ndarray
    exposure_s: float
    gain: float

    def adu_per_e(self, sensor: SensorModel = SensorModel(), bits: int = 8) -> float:
        return self.gain / sensor.e_per_adu_at_unity / 2 ** (sensor.adc_bits - bits)

    def sky_noise(self, sensor: SensorModel = SensorModel(), bits: int = 8) -> float:
        """The background's noise in ADU (sky shot noise and read noise)."""
        return math.sqrt(sensor.sky_e_per_s * self.exposure_s + sensor.read_noise_e**2) * self.adu_per_e(sensor, bits)

    def box_signal(self, sensor: SensorModel = SensorModel(), bits: int = 8, box: int = 3) -> np.ndarray:
        """Each star's light in the ``box`` x ``box`` pixels around the pixel holding its centre, in
        ADU of a ``bits``-bit image."""
        sigma = self.fwhm / (2 * math.sqrt(2 * math.log(2)))
        half = box / 2
        fractions = []
        for centre in (self.x, self.y):
            pixel = np.round(centre)
            fractions.append(_gauss_cdf((pixel + half - centre) / sigma) - _gauss_cdf((pixel - half - centre) / sigma))
        return self.flux_e_per_s * self.exposure_s * fractions[0] * fractions[1] * self.adu_per_e(sensor, bits)

    def count_above(self, sigmas: float = 5.0, sensor: SensorModel = SensorModel(), bits: int = 8) -> int:
        """Stars brighter than ``sigmas`` sigma: their light in the 3x3 box around their centre
        stands that many times the sky's noise in the box above the sky (the detection rule of
        wanda.analysis)."""
        return int((self.box_signal(sensor, bits) >= sigmas * 3 * self.sky_noise(sensor, bits)).sum())

    def peak_snr(self, sensor: SensorModel = SensorModel()) -> np.ndarray:
        """Expected peak signal-to-noise of each star at the truth's exposure and gain."""
        sigma = self.fwhm / (2 * math.sqrt(2 * math.log(2)))
        peak_e = self.flux_e_per_s * self.exposure_s / (2 * math.pi * sigma**2)
        bg_e = sensor.sky_e_per_s * self.exposure_s
        return peak_e / np.sqrt(peak_e + bg_e + sensor.read_noise_e**2)


def _erf(x: np.ndarray) -> np.ndarray:
    """Vectorised erf (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7); numpy has none."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gauss_cdf(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(t / math.sqrt(2.0)))


def _gauss_cdf_integral(t: np.ndarray) -> np.ndarray:
    """Antiderivative of the normal CDF: t*Phi(t) + phi(t)."""
    return t * _gauss_cdf(t) + np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def pixel_profile(offsets: np.ndarray, centres: np.ndarray, sigma: float, trail: float = 0.0) -> np.ndarray:
    """Share of a star's light falling on each pixel along one axis.

    ``offsets`` are pixel indices relative to the stamp origin (K,), ``centres`` the star centres
    at the start of the exposure in the same coordinates (N,). The Gaussian is integrated over each pixel and, when ``trail``
    pixels of drift happen during the exposure, averaged along the trail.
    """
    if trail < 0.5:  # smear under half a pixel does not show: a plain profile at its middle
        lo = (offsets[None, :] - 0.5 - (centres[:, None] + trail / 2)) / sigma
        hi = lo + 1.0 / sigma
        return _gauss_cdf(hi) - _gauss_cdf(lo)
    lo = (offsets[None, :] - 0.5 - centres[:, None]) / sigma
    hi = lo + 1.0 / sigma
    s = trail / sigma
    # (1/L) * integral over u in [0, L] of [Phi(hi - u) - Phi(lo - u)] du, in closed form.
    return (
        _gauss_cdf_integral(hi) - _gauss_cdf_integral(hi - s) - _gauss_cdf_integral(lo) + _gauss_cdf_integral(lo - s)
    ) / s


def _stamp(canvas: np.ndarray, x0: np.ndarray, y0: np.ndarray, stamps: np.ndarray) -> None:
    """Add stamps (N, h, w) to ``canvas`` at origins (x0, y0), where stamps may overlap.

    ``np.add.at`` would do it in one call but holds the GIL for milliseconds, which stalls the
    event loop thread. Instead stamps are split into groups that cannot overlap and each group is
    added with plain fancy indexing (which releases the GIL): on a grid of stamp-sized cells, two
    stamps in different cells of the same parity class are at least a stamp apart, and stamps
    sharing a cell go to different groups by their rank in it.
    """
    count, height, width = stamps.shape
    row = canvas.shape[1]
    cell_x, cell_y = x0 // width, y0 // height
    cell = cell_y * (row // width + 2) + cell_x
    order = np.argsort(cell, kind="stable")
    sorted_cells = cell[order]
    first = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.empty(count, np.int64)
    rank[order] = np.arange(count) - first
    group = rank * 4 + (cell_x % 2) * 2 + (cell_y % 2)
    offsets = (np.arange(height)[:, None] * row + np.arange(width)[None, :]).ravel()
    origins = y0 * row + x0
    flat = canvas.reshape(-1)
    values = stamps.reshape(count, -1)
    for g in np.unique(group):
        members = group == g
        flat[(origins[members, None] + offsets[None, :]).ravel()] += values[members].ravel()


class SimulatedSky:
    """Camera backend: see the module docstring. Used from the camera worker thread only,
    except ``set_tracking`` which the mount may call from anywhere."""

    name = "sim"
    preview_size = PREVIEW_SIZE
    exposure_limits = EXPOSURE_LIMITS
    gain_limits = GAIN_LIMITS
    encodes_preview = False
    preview_linear = True
    instrument = "WANDA simulated sky (IMX477 model)"
    # Its 1440 px span the IMX477's 4056 pixels of 1.55 um.
    pixel_size_um = round(1.55 * 4056 / PREVIEW_SIZE[0], 3)

    def __init__(
        self,
        *,
        fwhm: float = 3.0,
        plate_scale: float = 2.0,
        seed: int = 1,
        stars_per_frame: int = 800,
        sensor: SensorModel = SensorModel(),
        clock=time.monotonic,
        wall_clock=time.time,
    ):
        self.details: dict = {}  # nothing beyond its name to report
        self.fwhm = float(fwhm)
        self.sigma = self.fwhm / (2 * math.sqrt(2 * math.log(2)))
        self.plate_scale = float(plate_scale)
        self.drift_rate = SIDEREAL_RATE / self.plate_scale  # pixels per second while not tracking
        self.sensor = sensor
        self._clock = clock
        self._wall_clock = wall_clock
        self.exposure_s = 1 / 30
        self.gain = 8.0
        self.frame_type = "light"  # what is in front of the lens: see render_luminance

        width, height = PREVIEW_SIZE
        self._pad = math.ceil(4 * self.sigma) + 1  # stamps never leave the padded canvas
        self._strip = 4 * width  # the sky strip the frame drifts along; it wraps around
        rng = np.random.default_rng(seed)
        self._rng = np.random.default_rng(seed + 1)  # per-frame draws

        # Star field: uniform on the strip, magnitudes with N(<m) ~ 10^(0.35 m) between 5 and 15.
        count = stars_per_frame * self._strip // width
        self._star_x = rng.uniform(0, self._strip, count)
        self._star_y = rng.uniform(0, height - 1, count)
        m_bright, m_faint, slope = 5.0, 15.0, 0.35
        u = rng.uniform(10 ** (slope * (m_bright - m_faint)), 1.0, count)
        magnitude = m_faint + np.log10(u) / slope
        # A 9th magnitude star just saturates the preview at 1/30 s and gain 8.
        self._star_flux = 1.17e7 * 10 ** (-0.4 * (magnitude - m_bright))

        # Hot pixels: fixed on the sensor, dark current of hundreds to thousands of e-/s.
        hot = rng.choice(width * height, 40, replace=False)
        self._hot_y, self._hot_x = np.divmod(hot, width)
        self._hot_rate = 10 ** rng.uniform(2.5, 4.0, hot.size)

        # Background shape: a light-pollution gradient times vignetting (relative, mean ~1). A
        # flat panel has the optic's vignetting and no gradient.
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (cx**2 + cy**2)
        self._vignetting = (1.0 - 0.2 * r2).astype(np.float32)
        self._bg_shape = ((1.0 + 0.25 * (yy / height - 0.5)) * self._vignetting).astype(np.float32)

        # Noise is sliced from a precomputed field at a random offset: a fresh draw per frame
        # would cost more than the whole frame budget.
        self._noise_slack = 256
        self._noise = rng.standard_normal((height + self._noise_slack, width + self._noise_slack), dtype=np.float32)
        self._canvas = np.empty((height + 2 * self._pad, width + 2 * self._pad), np.float32)
        self._bg_cache: tuple[tuple[str, float, float], np.ndarray] | None = None
        self._rgbx_buffers = (np.empty((height, width), np.uint32), np.empty((height, width), np.uint32))
        self._rgbx_turn = 0

        self._lock = threading.Lock()  # guards the drift state
        self._tracking = False
        self._drift_px = 0.0
        self._drift_since = clock()
        self._next_due: float | None = None
        self._pending: tuple[float, np.ndarray] | None = None  # the next frame's pixels, rendered ahead
        self._last_truth: SkyTruth | None = None

    # -- backend interface ---------------------------------------------------------------------

    def open(self) -> None:
        self._next_due = None

    def close(self) -> None:
        self._pending = None

    def set_controls(
        self, *, exposure_s: float | None = None, gain: float | None = None, frame_type: str | None = None
    ) -> None:
        """``frame_type``: a dark or bias frame is taken with the cap on and a flat on a panel, and
        the preview shows the same (a real camera sees what its frame type puts in front of it)."""
        if frame_type is not None:
            self.frame_type = frame_type
        if exposure_s is not None:
            exposure_s = min(max(float(exposure_s), EXPOSURE_LIMITS[0]), EXPOSURE_LIMITS[1])
            exposure_s = round(exposure_s * 1e6) / 1e6  # whole microseconds, like the sensor
            if exposure_s != self.exposure_s:
                self._next_due = None  # the frame under way is abandoned, as a camera restart does
            self.exposure_s = exposure_s
        if gain is not None:
            self.gain = min(max(float(gain), GAIN_LIMITS[0]), GAIN_LIMITS[1])
        self._pending = None

    def capture_still(
        self,
        exposure_s: float,
        gain: float,
        cancel: threading.Event,
        skip_frames: int = 0,
        *,
        raw: bool = False,
        dng: bool = False,
    ) -> StillImage:
        """A real-time exposure: it takes ``exposure_s`` (cancellable), then renders the sky as it
        moved meanwhile (trails if not tracking) at 16 bits, always with its linear data (``raw``
        is given anyway). ``skip_frames`` has nothing to flush; there is no sensor frame for a DNG."""
        self.set_controls(exposure_s=exposure_s, gain=gain)
        started = self._wall_clock()
        self._next_due = None  # the preview starts afresh after the still, or its cancel
        if cancel.wait(self.exposure_s):
            raise CaptureCancelled("the exposure was cancelled")
        linear = self.render_luminance(self.exposure_s, self.gain, self._offset_at(self._clock()), bits=16)
        linear = linear.astype(np.uint16)
        grey = (linear >> 8).astype(np.uint8)
        pixels = np.repeat(grey[:, :, None], 3, axis=2)
        return StillImage(
            pixels=pixels,
            pixel_format="RGB",
            linear=linear,
            started=started,
            exposure_s=self.exposure_s,
            gain=self.gain,
            metadata={"tracking": self._tracking, "drift_px_per_s": 0.0 if self._tracking else self.drift_rate},
        )

    def frame_interval(self, max_fps: float) -> float:
        return max(1.0 / max_fps, self.exposure_s)

    def capture_preview(self, wake: threading.Event, max_fps: float) -> PreviewFrame | None:
        """Block until the next frame is due and return it, or None as soon as ``wake`` is set.

        Frames are due on a fixed schedule (no drift from processing time); after a pause the
        schedule restarts from now instead of bursting to catch up.
        """
        interval = self.frame_interval(max_fps)
        now = self._clock()
        if self._next_due is None or self._next_due < now - interval:
            self._next_due = now + interval
        due = self._next_due
        if self._pending is None or self._pending[0] != due:
            # Render during the "exposure" so the frame is ready the moment it is read out.
            pixels = self._render_rgbx(self.exposure_s, self.gain, self._offset_at(due))
            self._pending = (due, pixels)
        remaining = due - self._clock()
        if remaining > 0 and wake.wait(remaining):
            return None
        pixels = self._pending[1]
        self._pending = None
        self._next_due = due + interval
        timestamp = self._wall_clock() - max(0.0, self._clock() - due)
        return PreviewFrame(pixels, "RGBX", timestamp, self.exposure_s, self.gain)

    def start_stream(self, on_jpeg: Callable[[bytes, float], None]) -> None:
        raise NotImplementedError("the simulated sky has no encoder of its own (encodes_preview is False)")

    def stop_stream(self) -> None:
        pass  # never started

    # -- mount coupling ----------------------------------------------------------------------

    @property
    def tracking(self) -> bool:
        return self._tracking

    def set_tracking(self, tracking: bool) -> None:
        """While the mount tracks the field holds still; otherwise it drifts at sidereal rate."""
        with self._lock:
            now = self._clock()
            self._drift_px = self._offset_locked(now)
            self._drift_since = now
            self._tracking = bool(tracking)

    def _offset_locked(self, at: float) -> float:
        if self._tracking:
            return self._drift_px
        return self._drift_px + (at - self._drift_since) * self.drift_rate

    def _offset_at(self, at: float) -> float:
        with self._lock:
            return self._offset_locked(at)

    # -- truth -------------------------------------------------------------------------------

    def truth(self) -> SkyTruth:
        """The stars of the last rendered frame (render one if none yet)."""
        if self._last_truth is None:
            self.render_luminance(self.exposure_s, self.gain)
        assert self._last_truth is not None
        return self._last_truth

    # -- rendering ---------------------------------------------------------------------------

    def render_luminance(
        self, exposure_s: float, gain: float, offset: float | None = None, *, bits: int = 8
    ) -> np.ndarray:
        """One exposure as float32 ADU of a ``bits``-bit image (clipped to its range), of what the
        frame type puts in front of the lens: the sky (light), the cap (dark, bias: no light, only
        what the sensor makes by itself; a bias frame is the shortest exposure's, whatever the
        exposure set), or the flat panel (flat: even light, vignetted, no stars).

        The view returned points into a reused buffer: copy it to keep it past the next render.
        """
        if offset is None:
            offset = self._offset_at(self._clock())
        width, height = PREVIEW_SIZE
        sensor = self.sensor
        adu_per_e = gain / sensor.e_per_adu_at_unity / 2 ** (sensor.adc_bits - bits)
        black = sensor.black_level_adu / 2 ** (sensor.adc_bits - bits)
        sky = self.frame_type not in CAPPED and self.frame_type != "flat"
        if self.frame_type == "bias":
            exposure_s = EXPOSURE_LIMITS[0]
        if self.frame_type == "flat":
            reference_exposure, reference_gain = FLAT_REFERENCE
            panel_e_per_s = (
                (FLAT_LEVEL * 2**sensor.adc_bits - sensor.black_level_adu)
                * sensor.e_per_adu_at_unity
                / (reference_exposure * reference_gain)
            )
            light_e = panel_e_per_s * exposure_s
        else:
            light_e = sensor.sky_e_per_s * exposure_s if sky else 0.0
        # The light's shot noise at its mean level (vignetting changes it by a tenth at most).
        sigma_bg_e = math.sqrt(light_e + sensor.read_noise_e**2)

        pad = self._pad
        canvas = self._canvas
        image = canvas[pad : pad + height, pad : pad + width]
        # The border only catches the parts of stamps that fall outside the frame.
        canvas[:pad] = 0
        canvas[-pad:] = 0
        canvas[:, :pad] = 0
        canvas[:, -pad:] = 0
        oy, ox = self._rng.integers(0, self._noise_slack, 2)
        np.multiply(self._noise[oy : oy + height, ox : ox + width], sigma_bg_e * adu_per_e, out=image)
        if light_e > 0:
            image += self._background("flat" if self.frame_type == "flat" else "sky", light_e * adu_per_e, black)
        else:  # capped: the bias level alone, the same everywhere
            image += np.float32(black)

        # Trails longer than a third of the frame are drawn shortened: an untracked exposure of
        # minutes would otherwise need stamps of hundreds of megabytes.
        trail = 0.0 if self._tracking else min(self.drift_rate * exposure_s, width / 3)
        if sky:
            self._add_stars(canvas, exposure_s, adu_per_e, offset, trail)
        # Hot pixels are the sensor's own dark current: in every frame, capped or not.
        image[self._hot_y, self._hot_x] += self._hot_rate * exposure_s * adu_per_e  # unique positions
        np.clip(image, 0, 2**bits - 1, out=image)
        self._last_truth = self._truth_at(offset, trail, exposure_s, gain, stars=sky)
        return image

    def _render_rgbx(self, exposure_s: float, gain: float, offset: float) -> np.ndarray:
        # Two preview buffers in turn: a frame stays valid while the worker encodes it and the
        # next one renders, and no frame allocates (fresh 6 MB arrays make the heap creep).
        self._rgbx_turn ^= 1
        packed = self._rgbx_buffers[self._rgbx_turn]
        np.copyto(packed, self.render_luminance(exposure_s, gain, offset), casting="unsafe")
        # Grey to RGBX in one multiply: the little-endian bytes of L * 0x010101 are L, L, L, 0.
        packed *= np.uint32(0x010101)
        return packed.view(np.uint8).reshape(packed.shape[0], packed.shape[1], 4)

    def _background(self, light: str, level: float, black: float) -> np.ndarray:
        """The sky's background (gradient and vignetting) or the flat panel's (vignetting)."""
        key = (light, round(level, 9), round(black, 9))
        if self._bg_cache is None or self._bg_cache[0] != key:
            shape = self._vignetting if light == "flat" else self._bg_shape
            self._bg_cache = (key, shape * np.float32(level) + np.float32(black))
        return self._bg_cache[1]

    def _frame_x(self, offset: float) -> np.ndarray:
        """Star x in frame coordinates at a drift offset (the strip wraps around)."""
        return (self._star_x + offset) % self._strip - (self._strip - PREVIEW_SIZE[0]) / 2

    def _add_stars(self, canvas: np.ndarray, exposure_s: float, adu_per_e: float, offset: float, trail: float):
        width = PREVIEW_SIZE[0]
        pad = self._pad
        # A trail runs from the star's position at exposure start to where it is at the end.
        x_start = self._frame_x(offset - trail)
        electrons = self._star_flux * exposure_s
        visible = (x_start > -pad - trail) & (x_start < width + pad)
        # Skip stars far below the noise: invisible, and most of the cost.
        visible &= electrons * adu_per_e > 0.02
        xs, ys, es = x_start[visible], self._star_y[visible], electrons[visible]
        if xs.size == 0:
            return
        half = pad - 1
        span_x = 2 * half + 1 + math.ceil(trail)
        x0 = np.floor(xs).astype(np.int64) - half
        y0 = np.floor(ys).astype(np.int64) - half
        # Stamps that would leave the canvas are cut at its edge (only trails can).
        x0 = np.clip(x0, -pad, width + pad - span_x)
        px = pixel_profile(np.arange(span_x), xs - x0, self.sigma, trail)
        py = pixel_profile(np.arange(2 * half + 1), ys - y0, self.sigma)
        px = px.astype(np.float32)
        py = py.astype(np.float32)
        signal = es.astype(np.float32)[:, None, None] * py[:, :, None] * px[:, None, :]
        np.maximum(signal, 0, out=signal)  # the erf approximation can dip a hair below zero
        # Shot noise: sqrt(signal) times normal deviates taken from the precomputed field.
        deviates = self._noise.reshape(-1)
        values = np.sqrt(signal)
        if signal.size < deviates.size:
            start = int(self._rng.integers(0, deviates.size - signal.size))
            values *= deviates[start : start + signal.size].reshape(signal.shape)
        else:  # long trails in a still: too many for the field, draw afresh
            values *= self._rng.standard_normal(signal.shape, dtype=np.float32)
        values += signal
        values *= np.float32(adu_per_e)
        _stamp(canvas, x0 + pad, y0 + pad, values)

    def _truth_at(self, offset: float, trail: float, exposure_s: float, gain: float, *, stars: bool) -> SkyTruth:
        width = PREVIEW_SIZE[0]
        # Report the centre of the trail: where the light's centroid is.
        x = self._frame_x(offset - trail / 2)
        inside = (x >= 0) & (x <= width - 1) & stars  # no stars behind the cap or the panel
        return SkyTruth(
            x=x[inside],
            y=self._star_y[inside],
            flux_e_per_s=self._star_flux[inside],
            fwhm=self.fwhm,
            hot_x=self._hot_x.copy(),
            hot_y=self._hot_y.copy(),
            exposure_s=exposure_s,
            gain=gain,
        )
