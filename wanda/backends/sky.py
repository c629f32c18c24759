"""The simulated sky: a camera backend that renders a realistic star field.

It is the default wherever no Pi camera exists, so that WANDA can be run, tested and benchmarked
on any machine. What makes it useful for astronomy work:

- the real sky (``pointing`` given, the default of the configuration): the catalogue's stars
  (Gaia DR3 to G 10, proper motion applied to the date) at a pointing, projected through the
  configured optic (wanda/backends/starfield.py), with faint random filler stars below the
  catalogue's limit; or the old random field (``pointing`` None), a seeded strip of sky wider than
  the frame with the brightness spread of a real field (N(<m) grows as 10^(0.35 m)), which the
  analysis accuracy tests measure against;
- stars are pixel-integrated Gaussians of a configurable FWHM, smeared into trails when the field
  moves during an exposure;
- sky background with a light-pollution gradient and vignetting, shot noise, read noise, a bias
  level and a few hot pixels;
- the frame type says what is in front of the lens: the sky for lights; for darks and bias frames
  the cap (no light at all: the bias level, read noise and the hot pixels' dark current, a bias
  at the shortest exposure); for flats an evenly lit panel, vignetted like the sky;
- brightness scales with exposure x gain through a sensor model like the IMX477's (12-bit ADC);
- clouds: ``transparency`` (1 clear, 0 overcast) dims the stars, for tests of a sky the solver
  cannot read;
- while the mount is not tracking, the sky turns past the camera at the sidereal rate (the real
  sky through the projection, so it rotates about the pole; the random field slides along x);
  while it tracks, the real sky holds apart from the stepper's sawtooth: it drifts for a step's
  interval and jumps back a step (``step_interval_s`` of sidereal motion, 53" at the default).
  In the server the sky follows the mount's real steps (``follow_mount``, wanda/backends/axis.py),
  so its late steps and the moves that centre a target show; alone, ``set_tracking`` stands for a
  mount stepping on its schedule;
- it knows its truth (star positions, fluxes, FWHM, expected SNR; for the real sky also each
  star's RA/Dec and the frame's pointing and WCS) so measurements can be tested.

Cost: the noise comes from slicing a precomputed normal field at a random offset, the background
from a cached map and stars are stamped in vectorised groups: about 5-10 ms a frame.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wanda.astro import polar
from wanda.astro.catalog import StarCatalogue, load_catalogue
from wanda.astro.projection import arcsec_per_pixel
from wanda.backends import CaptureCancelled, PreviewFrame, StillImage
from wanda.backends.axis import RaAxis
from wanda.backends.defects import Clouds, SensorDefects, Trail
from wanda.backends.starfield import CatalogueSky, SkyPointing

log = logging.getLogger(__name__)

SIDEREAL_RATE = 15.041  # arcseconds per second of time, on the celestial equator

SENSOR_WIDTH = 4056  # the IMX477's pixels across: the 1440 px preview is binned from them
PERIODIC_ERROR_ARCSEC = 10.0  # the mount's gears, peak (a small stepper mount's worm: 10-30")
TRAIL_PIECE_PX = 8  # a trail is drawn in pieces this long at most (see _add_catalogue_stars)

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


def gain_free_adu(sensor: SensorModel, bits: int) -> float:
    """One 12-bit ADU (the bias pattern's unit, which the gain does not scale) in ``bits``-bit ADU."""
    return 1.0 / 2 ** (sensor.adc_bits - bits)


def optic_scale(focal_length_mm: float, pixel_size_um: float, width: int = PREVIEW_SIZE[0]) -> float:
    """Arcseconds per pixel of a frame ``width`` pixels wide through a lens of ``focal_length_mm``
    on the HQ camera (``pixel_size_um``, 1.55): the preview and a still see the same field, binned
    from the sensor's 4056 px to theirs."""
    return arcsec_per_pixel(focal_length_mm, pixel_size_um * SENSOR_WIDTH / width)


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
    # The real sky only: each star's ICRS place at the date, G magnitude and catalogue number
    # (Gaia DR3 source_id, -HIP, or 0 for a random filler star), and where the frame looked.
    ra: np.ndarray | None = None
    dec: np.ndarray | None = None
    magnitude: np.ndarray | None = None
    source_id: np.ndarray | None = None
    pointing: SkyPointing | None = None
    trails: tuple[Trail, ...] = ()  # satellites that crossed the frame

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
    sensor_name = "IMX477 (simulated)"
    raw_bit_depth = 16  # a still's linear data: one 16-bit value a pixel, no mosaic
    raw_bayer: str | None = None

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
        pointing: tuple[float, float, float] | None = None,
        focal_length_mm: float = 50.0,
        pixel_size_um: float = 1.55,
        latitude: float | None = None,
        longitude: float | None = None,
        step_interval_s: float | None = 3.523,
        fillers: bool = True,
        catalogue: Callable[[], StarCatalogue] = load_catalogue,
        clouds: float = 0.0,
        temperature_c: float = 20.0,
        polar_error: tuple[float, float] = (0.0, 0.0),
    ):
        """``pointing`` (RA, Dec, roll in degrees, J2000) asks for the real sky, seen through a lens
        of ``focal_length_mm`` on a sensor of ``pixel_size_um`` pixels (the HQ camera's 1.55 um,
        binned into the 1440 px preview as the Pi's preview is), which sets the plate scale;
        without it the random field at ``plate_scale`` (arcsec per pixel). ``step_interval_s``:
        the mount's step at the sidereal rate (None: a tracking mount holds the sky exactly).
        ``latitude``/``longitude``: the site, for the hour angle and altitude in the truth.
        ``clouds``: the share of minutes a cloud passes (wanda/backends/defects.py); 0: clear.
        ``temperature_c``: the sensor's, for its dark current (settable later). ``polar_error``:
        the mount's axis against the refracted pole (altitude, azimuth in arcminutes, signed as
        wanda/astro/polar.py says; the real sky and the site only)."""
        self.fwhm = float(fwhm)
        self.sigma = self.fwhm / (2 * math.sqrt(2 * math.log(2)))
        # The preview's pixels: the sensor's, binned from its 4056 px to the preview's 1440.
        self.pixel_size_um = round(pixel_size_um * SENSOR_WIDTH / PREVIEW_SIZE[0], 3)
        if pointing is not None:
            plate_scale = optic_scale(focal_length_mm, pixel_size_um)
        self.plate_scale = float(plate_scale)
        self.drift_rate = SIDEREAL_RATE / self.plate_scale  # pixels per second while not tracking
        self.sensor = sensor
        self._clock = clock
        self._wall_clock = wall_clock
        # The moment the sky's turn counts from, on both clocks: frames are timed on the monotonic
        # one, the sky's date (sidereal time, proper motion) is the wall clock's.
        self._start = (clock(), wall_clock())
        self.exposure_s = 1 / 30
        self.gain = 8.0
        self.frame_type = "light"  # what is in front of the lens: see render_luminance
        # The share of the stars' light that clouds let through (1: a clear night); tests set it,
        # and passing clouds (``clouds``) lower it for a minute now and then.
        self.transparency = 1.0
        self.clouds = Clouds(clouds, seed)
        self.temperature_c = float(temperature_c)
        self.satellites_per_hour: float | None = None  # None: the sensor model's rate; tests set it

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
        # Dark current, amp glow, the bias pattern and dust (wanda/backends/defects.py): the dust's
        # shadows are in the light's shape, lights and flats alike.
        self.defects = SensorDefects(PREVIEW_SIZE, seed)
        self._vignetting = ((1.0 - 0.2 * r2) * self.defects.transmission).astype(np.float32)
        self._bg_shape = ((1.0 + 0.25 * (yy / height - 0.5)) * self._vignetting).astype(np.float32)

        # Noise is sliced from a precomputed field at a random offset: a fresh draw per frame
        # would cost more than the whole frame budget.
        self._noise_slack = 256
        self._noise = rng.standard_normal((height + self._noise_slack, width + self._noise_slack), dtype=np.float32)
        self._field: CatalogueSky | None = None
        self.details: dict = {}  # nothing beyond its name to report (the log says which sky)
        if pointing is not None:
            ra, dec, roll = pointing
            self._field = CatalogueSky(
                ra=ra,
                dec=dec,
                roll=roll,
                scale=self.plate_scale,
                size=PREVIEW_SIZE,
                focal_length_mm=focal_length_mm,
                start_unix=self._start[1],
                latitude=latitude,
                longitude=longitude,
                seed=seed,
                fillers=fillers,
                loader=catalogue,
            )
            # Room around the frame for a star just outside it and for a trail's piece.
            self._pad = 2 * self._pad + TRAIL_PIECE_PX
        # The mount's knobs: degrees of altitude raised and of azimuth turned from the pole.
        self._knobs = (0.0, 0.0)
        self._hand_rest = 0.0  # a turn by hand's part of a step not drawn yet
        if any(polar_error):
            self._require_site("a misaligned mount")
        if self._field is not None and latitude is not None:
            # At a site the mount has an axis of its own: on the refracted pole unless misaligned.
            self._knobs = polar.knob_turns(latitude, *polar_error)
            self._field.set_base(self._base_in_ground(self._field), at_start=True)
        self._step_interval = step_interval_s if pointing is not None else None
        self._canvas = np.empty((height + 2 * self._pad, width + 2 * self._pad), np.float32)
        self._bg_cache: tuple[tuple, np.ndarray] | None = None
        self._rgbx_buffers = (np.empty((height, width), np.uint32), np.empty((height, width), np.uint32))
        self._rgbx_turn = 0

        # The sky's turn past the camera, in seconds of sidereal motion since the start: it grows
        # with the clock while the mount is idle and holds while it tracks (plus the sawtooth).
        self._lock = threading.Lock()  # guards the drift state
        self._tracking = False
        self._drift_s = 0.0
        self._drift_since = self._start[0]
        self._axis: RaAxis | None = None  # the mount's steps, once it follows them
        self._next_due: float | None = None
        self._pending: tuple[float, np.ndarray] | None = None  # the next frame's pixels, rendered ahead
        self._last_truth: SkyTruth | None = None

    # -- backend interface ---------------------------------------------------------------------

    def open(self) -> None:
        """On the camera thread: the catalogue is read here (the first time in the process), not
        on the event loop that built the backend."""
        self._next_due = None
        width, height = (n * self.plate_scale / 3600 for n in PREVIEW_SIZE)
        if self._field is None:
            log.info('simulated sky: a random field at %.2f"/px', self.plate_scale)
            return
        started = time.perf_counter()
        self._field.load()
        pointing = self._field.pointing(0.0, self._start[1]).wcs
        log.info(
            'simulated sky: the catalogue at RA %.3f Dec %+.3f roll %.1f, %.2f"/px, %.1f x %.1f degrees '
            "(read in %.1f s)",
            pointing.ra,
            pointing.dec,
            pointing.roll,
            self.plate_scale,
            width,
            height,
            time.perf_counter() - started,
        )

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

    @property
    def sensor_temperature(self) -> float:
        return self.temperature_c

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
        now = self._clock()
        linear = self._render(self.exposure_s, self.gain, self._path(now, self.exposure_s), now, bits=16)
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
            metadata={
                "tracking": self._tracking,
                "drift_px_per_s": 0.0 if self._tracking else self._drift_px_per_s(),
                "SensorTemperature": self.temperature_c,  # as picamera2's metadata names it
            },
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
        # Render during the "exposure" so the frame is ready the moment it is read out; but a sky
        # that follows a mount's steps is rendered once they are made (a step or a move during
        # the exposure must be in it), a render's time after the exposure ends.
        ahead = self._axis is None
        if ahead and (self._pending is None or self._pending[0] != due):
            self._pending = (due, self._render_rgbx(self.exposure_s, self.gain, self._path(due, self.exposure_s), due))
        remaining = due - self._clock()
        if remaining > 0 and wake.wait(remaining):
            return None
        if ahead:
            assert self._pending is not None
            pixels = self._pending[1]
        else:
            pixels = self._render_rgbx(self.exposure_s, self.gain, self._path(due, self.exposure_s), due)
        self._pending = None
        self._next_due = due + interval
        timestamp = self._wall_clock() - max(0.0, self._clock() - due)
        return PreviewFrame(pixels, "RGBX", timestamp, self.exposure_s, self.gain)

    def start_stream(self, on_jpeg: Callable[[bytes, float], None]) -> None:
        raise NotImplementedError("the simulated sky has no encoder of its own (encodes_preview is False)")

    def stop_stream(self) -> None:
        pass  # never started

    # -- the simulated mount's axis: polar alignment ------------------------------------------

    @property
    def has_axis(self) -> bool:
        """Whether the mount's axis is simulated: the real sky, at a site."""
        return self._field is not None and self._field.latitude is not None

    def _require_site(self, what: str) -> CatalogueSky:
        if self._field is None or not self.has_axis:
            raise ValueError(f"{what} needs the real sky (sim_sky catalog) and the site's latitude and longitude")
        return self._field

    def _base_in_ground(self, field: CatalogueSky) -> np.ndarray:
        """The knobs' turn of the base, in the field's ground frame."""
        assert field.latitude is not None
        turn = polar.knob_rotation(polar.pole(field.latitude), *self._knobs)
        enu = field.ground_of_date
        return enu.T @ turn @ enu

    def polar_truth(self) -> polar.PolarError:
        """Where the mount's axis points against the refracted pole: the truth an assistant's
        figures are measured against."""
        field = self._require_site("the mount's axis")
        assert field.latitude is not None
        pole = polar.pole(field.latitude)
        return polar.polar_error(polar.knob_rotation(pole, *self._knobs) @ pole, field.latitude)

    def turn_knobs(self, alt_arcmin: float = 0.0, az_arcmin: float = 0.0) -> polar.PolarError:
        """The observer turns the mount's knobs: the axis rises ``alt_arcmin`` and moves
        ``az_arcmin`` east on the sky (minutes of arc near the pole; negative: down, west). The
        whole mount turns, the camera with it. Returns the new truth."""
        field = self._require_site("turning the knobs")
        assert field.latitude is not None
        raise_deg, azimuth_deg = polar.knob_steps(field.latitude, alt_arcmin, az_arcmin)
        with self._lock:
            raised, azimuth = self._knobs
            self._knobs = (raised + raise_deg, azimuth + azimuth_deg)
            field.set_base(self._base_in_ground(field))
        return self.polar_truth()

    def _following(self) -> RaAxis:
        if self._axis is None:
            raise ValueError("the RA axis is the simulated mount's: the sky must follow it")
        return self._axis

    def turn_ra_by_hand(self, degrees: float) -> None:
        """The observer turns the RA axis by hand: ``degrees`` the way the sky goes (negative:
        against it), drawn in whole steps' worth of the mount's (the rest is kept for the next
        turn). Only while the sky follows a mount's steps."""
        axis = self._following()
        steps = degrees * 3600 / (axis.step_s * SIDEREAL_RATE) + self._hand_rest
        whole = round(steps)
        self._hand_rest = steps - whole
        if whole:
            axis.turned_by_hand(self._clock(), whole)

    def set_clutch(self, locked: bool) -> None:
        """Released, the RA axis no longer turns with the motor's steps (a slipping clutch)."""
        self._following().clutch_locked = locked

    def mount_state(self) -> dict:
        """The simulated mount as the observer's hands left it: its axis's truth and the clutch."""
        return {"polar_error": self.polar_truth().as_dict(), "clutch_locked": self._following().clutch_locked}

    # -- mount coupling ----------------------------------------------------------------------

    @property
    def tracking(self) -> bool:
        return self._tracking

    def follow_mount(
        self, step_s: float, tracking_clockwise: bool, *, periodic_error_arcsec: float = PERIODIC_ERROR_ARCSEC
    ) -> Callable[[float, int], None]:
        """From now on the sky turns with the mount's steps, each ``step_s`` seconds of sidereal
        motion, following the sky when it goes ``tracking_clockwise``, with the gears' periodic
        error: returns what the mount calls at each step (its clock must be this sky's)."""
        with self._lock:
            now = self._clock()
            turn = self._offset_locked(now)
            if self._tracking and self._step_interval is not None:
                turn += self._sawtooth(now)
            self._axis = RaAxis(
                step_s, 1 if tracking_clockwise else -1, now, turn, periodic_error_arcsec=periodic_error_arcsec
            )
            return self._axis.stepped

    def set_tracking(self, tracking: bool) -> None:
        """While the mount tracks the field holds still; otherwise it drifts at sidereal rate. The
        mount says so again when its speed changes: the steps go on, and so does the sawtooth.
        Following a mount (``follow_mount``), this only says whether it tracks: its steps turn
        the sky."""
        with self._lock:
            if tracking and self._tracking:
                return
            now = self._clock()
            self._drift_s = self._offset_locked(now)
            if self._tracking and self._step_interval is not None:
                self._drift_s += self._sawtooth(now)  # where the last step left the sky
            self._drift_since = now
            self._tracking = bool(tracking)

    def _offset_locked(self, at: float) -> float:
        """The sky's turn in seconds at monotonic time ``at``, without the stepper's sawtooth:
        constant while tracking (following a mount: with its steps)."""
        if self._axis is not None:
            return self._axis.turn(at)
        if self._tracking:
            return self._drift_s
        return self._drift_s + (at - self._drift_since)

    def _offset_at(self, at: float) -> float:
        with self._lock:
            return self._offset_locked(at)

    def _sawtooth(self, at: float) -> float:
        """How far (seconds of sidereal motion, in [-interval, 0)) the sky is behind where the
        tracking mount's last step put it: the first step comes when tracking starts (the mount
        energises its coils with one), then one every interval, each a step of sidereal motion."""
        assert self._step_interval is not None
        return (at - self._drift_since) % self._step_interval - self._step_interval

    def _path(self, end: float, exposure_s: float) -> list[tuple[float, float, float]]:
        """The sky's turn during an exposure ending at monotonic ``end``: segments (turn at their
        start, turn at their end, share of the exposure), along which the light is spread."""
        start = end - exposure_s
        if self._axis is not None:
            # Segments closer than a fiftieth of a pixel at the equator's speed are one.
            return self._axis.path(start, end, 0.02 / self.drift_rate)
        with self._lock:
            if not self._tracking:
                return [(self._offset_locked(start), self._offset_locked(end), 1.0)]
            held = self._drift_s
            interval = self._step_interval
            if interval is None:
                return [(held, held, 1.0)]
            if exposure_s >= interval:
                # Whole steps: the light is spread evenly over one step's drift.
                return [(held - interval, held, 1.0)]
            first, last = self._sawtooth(start), self._sawtooth(end)
        if last >= first:
            return [(held + first, held + last, 1.0)]
        # A step came during the exposure: the drift up to it, then the drift after it.
        return [
            (held + first, held, -first / exposure_s),
            (held - interval, held + last, (last + interval) / exposure_s),
        ]

    def _drift_px_per_s(self) -> float:
        if self._field is None:
            return self.drift_rate
        dec = self._field.pointing(self._offset_at(self._clock()), self._wall_clock()).wcs.dec
        return self.drift_rate * math.cos(math.radians(dec))

    def _unix(self, at: float) -> float:
        """The wall-clock time of monotonic ``at``."""
        return self._start[1] + (at - self._start[0])

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

        ``offset``: the sky's turn (seconds of sidereal motion since the start) at the end of the
        exposure; the default is the sky now, the stepper's sawtooth included.

        The view returned points into a reused buffer: copy it to keep it past the next render.
        """
        now = self._clock()
        if offset is None:
            path = self._path(now, exposure_s)
        elif self._tracking:
            path = [(offset, offset, 1.0)]
        else:
            path = [(offset - exposure_s, offset, 1.0)]
        return self._render(exposure_s, gain, path, now, bits=bits)

    def _render(
        self, exposure_s: float, gain: float, path: list[tuple[float, float, float]], end: float, *, bits: int = 8
    ) -> np.ndarray:
        """The frame of an exposure ending at monotonic ``end`` while the sky turned along ``path``."""
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
        # The light's mean (sky or panel) on what the sensor adds with no light (bias level and
        # pattern, dark current, amp glow): one cached map, one add a frame.
        floor_of = (exposure_s, adu_per_e, black, gain_free_adu(sensor, bits), self.temperature_c)
        light = None if light_e <= 0 else "flat" if self.frame_type == "flat" else "sky"
        image += self._background(light, light_e * adu_per_e, floor_of)

        if self._field is not None:
            middle = self._unix(end - exposure_s / 2)
            truth = self._add_catalogue_stars(canvas, exposure_s, gain, adu_per_e, sigma_bg_e, path, middle, stars=sky)
        else:
            # Trails longer than a third of the frame are drawn shortened: an untracked exposure of
            # minutes would otherwise need stamps of hundreds of megabytes.
            offset = path[-1][1] * self.drift_rate
            trail = 0.0 if self._tracking else min(self.drift_rate * exposure_s, width / 3)
            if sky:
                self._add_stars(canvas, exposure_s, adu_per_e, offset, trail)
            truth = self._truth_at(offset, trail, exposure_s, gain, stars=sky)
        trails: list[Trail] = []
        if sky:  # a satellite crossed: a bright line, however long the exposure
            trails = self.defects.trails(exposure_s, self._rng, self.satellites_per_hour)
            for satellite in trails:
                electrons = self.defects.model.satellite_e_per_px
                self.defects.draw_trail(image, satellite, electrons, adu_per_e, self.sigma)
        truth = dataclasses.replace(truth, trails=tuple(trails)) if trails else truth
        # Hot pixels are the sensor's own dark current: in every frame, capped or not.
        heat = self.defects.temperature_factor(self.temperature_c, self.defects.model.doubling_c)
        image[self._hot_y, self._hot_x] += self._hot_rate * (exposure_s * heat * adu_per_e)  # unique positions
        np.clip(image, 0, 2**bits - 1, out=image)
        self._last_truth = truth
        return image

    def _render_rgbx(
        self, exposure_s: float, gain: float, path: list[tuple[float, float, float]], end: float
    ) -> np.ndarray:
        # Two preview buffers in turn: a frame stays valid while the worker encodes it and the
        # next one renders, and no frame allocates (fresh 6 MB arrays make the heap creep).
        self._rgbx_turn ^= 1
        packed = self._rgbx_buffers[self._rgbx_turn]
        np.copyto(packed, self._render(exposure_s, gain, path, end), casting="unsafe")
        # Grey to RGBX in one multiply: the little-endian bytes of L * 0x010101 are L, L, L, 0.
        packed *= np.uint32(0x010101)
        return packed.view(np.uint8).reshape(packed.shape[0], packed.shape[1], 4)

    def _background(self, light: str | None, level: float, floor_of: tuple[float, ...]) -> np.ndarray:
        """The sky's background (gradient, vignetting, dust) or the flat panel's (vignetting, dust)
        at ``level`` on the sensor's floor (``floor_of``: SensorDefects.floor's arguments);
        ``light`` None: the floor alone (capped)."""
        key = (light, round(level, 9), *(round(v, 12) for v in floor_of))
        if self._bg_cache is None or self._bg_cache[0] != key:
            floor = self.defects.floor(*floor_of)
            if light is None:
                self._bg_cache = (key, floor)
            else:
                shape = self._vignetting if light == "flat" else self._bg_shape
                self._bg_cache = (key, shape * np.float32(level) + floor)
        return self._bg_cache[1]

    def _stamp_noisy(self, canvas: np.ndarray, x0: np.ndarray, y0: np.ndarray, signal: np.ndarray, adu_per_e: float):
        """Add stamps of ``signal`` electrons (N, h, w) with their shot noise, in ADU, at the
        origins (frame pixels)."""
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
        _stamp(canvas, x0 + self._pad, y0 + self._pad, values)

    # -- the random field ----------------------------------------------------------------------

    def _frame_x(self, offset: float) -> np.ndarray:
        """Star x in frame coordinates at a drift offset in pixels (the strip wraps around)."""
        return (self._star_x + offset) % self._strip - (self._strip - PREVIEW_SIZE[0]) / 2

    def _add_stars(self, canvas: np.ndarray, exposure_s: float, adu_per_e: float, offset: float, trail: float):
        width = PREVIEW_SIZE[0]
        pad = self._pad
        # A trail runs from the star's position at exposure start to where it is at the end.
        x_start = self._frame_x(offset - trail)
        electrons = self._star_flux * (exposure_s * self.transparency)  # the random field has no dust
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
        self._stamp_noisy(canvas, x0, y0, signal, adu_per_e)

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

    # -- the real sky ----------------------------------------------------------------------------

    def _add_catalogue_stars(
        self,
        canvas: np.ndarray,
        exposure_s: float,
        gain: float,
        adu_per_e: float,
        sigma_bg_e: float,
        path: list[tuple[float, float, float]],
        unix: float,
        *,
        stars: bool,
    ) -> SkyTruth:
        """Draw the catalogue's stars along the sky's ``path`` and say where they are.

        Each segment of the path is cut into pieces of at most TRAIL_PIECE_PX (projected at their
        ends, so a trail near the pole bends as the sky turns); a piece shorter than half a pixel
        is drawn as a pixel-integrated Gaussian at its middle, a longer one as such Gaussians at
        points along it."""
        assert self._field is not None
        width, height = PREVIEW_SIZE
        # Pieces from the fastest motion in the frame: the equator's, in pixels a second. A
        # segment with less than a twentieth of a pixel of motion (a tracked frame, the 30 fps
        # preview) is one position: one projection instead of two.
        fastest = SIDEREAL_RATE / self.plate_scale
        turns: list[float] = []
        pieces: list[tuple[int, int, float]] = []  # (index of its start in turns, of its end, share)
        for start, end, share in path:
            first = len(turns)
            motion = abs(end - start) * fastest
            if motion < 0.05:
                turns.append((start + end) / 2)
                pieces.append((first, first, share))
                continue
            count = max(1, math.ceil(motion / TRAIL_PIECE_PX))
            turns.extend(start + (end - start) * k / count for k in range(count + 1))
            pieces.extend((first + k, first + k + 1, share / count) for k in range(count))
        field, near, placed = self._field.positions(turns, unix - self._start[1])
        middle_turn = sum(share * (turns[a] + turns[b]) / 2 for a, b, share in pieces)
        # The light's centroid: where the truth puts each star.
        x = sum(share * (placed[a][0] + placed[b][0]) / 2 for a, b, share in pieces)
        y = sum(share * (placed[a][1] + placed[b][1]) / 2 for a, b, share in pieces)
        flux = field.flux_e_per_s[near]
        if stars and len(near):
            # Through the clouds of the moment and the dust on the window above each star.
            clear = self.transparency * self.clouds.transparency(unix - self._start[1])
            seen = flux * self.defects.transmission_at(np.asarray(x), np.asarray(y)) * np.float32(clear)
            for a, b, share in pieces:
                self._draw_piece(canvas, placed[a], placed[b], seen * (exposure_s * share), adu_per_e, sigma_bg_e)
        inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1) & stars
        drawn = near[inside]
        return SkyTruth(
            x=np.asarray(x)[inside],
            y=np.asarray(y)[inside],
            flux_e_per_s=flux[inside],
            fwhm=self.fwhm,
            hot_x=self._hot_x.copy(),
            hot_y=self._hot_y.copy(),
            exposure_s=exposure_s,
            gain=gain,
            ra=field.ra[drawn],
            dec=field.dec[drawn],
            magnitude=field.mag[drawn],
            source_id=field.source_id[drawn],
            pointing=self._field.pointing(middle_turn, unix),
        )

    def _draw_piece(
        self,
        canvas: np.ndarray,
        start: tuple[np.ndarray, np.ndarray],
        end: tuple[np.ndarray, np.ndarray],
        electrons: np.ndarray,
        adu_per_e: float,
        sigma_bg_e: float,
    ) -> None:
        width, height = PREVIEW_SIZE
        sigma = self.sigma
        (xa, ya), (xb, yb) = start, end
        dx, dy = xb - xa, yb - ya
        length = np.hypot(dx, dy)
        half = math.ceil(4 * sigma)
        # Only stars whose stamp lies on the canvas, and bright enough to show: a peak under a
        # quarter of the background's noise is invisible, and skipping them is most of the saving.
        peak = electrons / (2 * math.pi * sigma**2 + 2.5 * sigma * length)
        low_x, low_y = np.minimum(xa, xb), np.minimum(ya, yb)
        high_x, high_y = np.maximum(xa, xb), np.maximum(ya, yb)
        margin = self._pad - half - 1
        show = (peak > 0.25 * sigma_bg_e) & (low_x > -margin) & (high_x < width - 1 + margin)
        show &= (low_y > -margin) & (high_y < height - 1 + margin)
        if not show.any():
            return
        xa, ya, dx, dy, length, electrons = xa[show], ya[show], dx[show], dy[show], length[show], electrons[show]
        low_x, low_y = low_x[show], low_y[show]
        if length.max() < 0.5:  # no visible motion: pixel-integrated Gaussians at the middle
            xs, ys = xa + dx / 2, ya + dy / 2
            size = 2 * half + 1
            x0 = np.floor(xs).astype(np.int64) - half
            y0 = np.floor(ys).astype(np.int64) - half
            px = pixel_profile(np.arange(size), xs - x0, sigma).astype(np.float32)
            py = pixel_profile(np.arange(size), ys - y0, sigma).astype(np.float32)
            signal = electrons.astype(np.float32)[:, None, None] * py[:, :, None] * px[:, None, :]
            self._stamp_noisy(canvas, x0, y0, signal, adu_per_e)
            return
        # A moving star: pixel-integrated Gaussians at points along the piece, at most half a
        # sigma apart (closer than the eye or the analysis can tell from a line), on one stamp.
        points = math.ceil(float(length.max()) / (0.5 * sigma))
        x0 = np.floor(low_x).astype(np.int64) - half
        y0 = np.floor(low_y).astype(np.int64) - half
        span_x = 2 * half + 2 + math.ceil(float(np.abs(dx).max()))
        span_y = 2 * half + 2 + math.ceil(float(np.abs(dy).max()))
        share = (electrons / points).astype(np.float32)[:, None, None]
        signal = np.zeros((len(xa), span_y, span_x), np.float32)
        for k in range(points):
            along = (k + 0.5) / points
            px = pixel_profile(np.arange(span_x), xa + along * dx - x0, sigma).astype(np.float32)
            py = pixel_profile(np.arange(span_y), ya + along * dy - y0, sigma).astype(np.float32)
            signal += share * py[:, :, None] * px[:, None, :]
        self._stamp_noisy(canvas, x0, y0, signal, adu_per_e)
