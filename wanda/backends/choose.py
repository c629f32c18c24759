"""Which camera backend a configuration gets: picamera2 where it can drive a camera, else the
simulated sky (``--camera auto``), and why."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from wanda.backends import CameraBackend, CameraUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Picamera2Probe:
    """Can picamera2 be imported, and does it list a camera? If not, why, and what fixes it."""

    ok: bool
    reason: str
    fix: str = ""


def probe_picamera2(tuning_file: str = "") -> Picamera2Probe:
    """Whether picamera2 can drive a camera here. The tuning file is selected first: libcamera
    reads it once, when the camera listing below starts its camera manager (a bad one raises
    CameraUnavailable, since picamera2 exists and the configuration asks for it)."""
    try:
        from picamera2 import Picamera2  # here, not at the top: it exists only on a Pi
    except ImportError as exc:
        if "numpy" in str(exc):
            return _numpy_mismatch(exc)
        return Picamera2Probe(
            False,
            f"picamera2 is not importable ({exc})",
            "on a Raspberry Pi install python3-picamera2 with apt and create the virtual environment "
            "with --system-site-packages",
        )
    except ValueError as exc:  # "numpy.dtype size changed": compiled against another numpy
        return _numpy_mismatch(exc)
    from wanda.backends.picam import UPGRADE_FIX, missing_features, select_tuning_file

    missing = missing_features(Picamera2)
    if missing:
        return Picamera2Probe(False, f"picamera2 is too old: it lacks {', '.join(missing)}", UPGRADE_FIX)
    select_tuning_file(tuning_file)
    try:
        cameras = Picamera2.global_camera_info()
    except Exception as exc:  # libcamera errors come in many types
        return Picamera2Probe(
            False, f"picamera2 could not list cameras ({exc})", "check libcamera: rpicam-hello --list-cameras"
        )
    if not cameras:
        return Picamera2Probe(
            False,
            "picamera2 lists no camera",
            "check the ribbon cable and dtoverlay=imx477 in /boot/firmware/config.txt, then reboot",
        )
    models = ", ".join(str(c.get("Model", "?")) for c in cameras)
    return Picamera2Probe(True, f"picamera2 lists {len(cameras)} camera(s): {models}")


def _numpy_mismatch(exc: Exception) -> Picamera2Probe:
    return Picamera2Probe(
        False,
        f"picamera2 does not load with the numpy of this environment ({exc})",
        "picamera2 from apt needs Debian's numpy: .venv/bin/pip uninstall -y numpy, so the virtual "
        "environment uses the system one",
    )


def simulated_sky(
    config, *, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time
) -> CameraBackend:
    """The simulated sky ``config`` describes, on these clocks (a bench's sky stands still at a
    date)."""
    from wanda.backends.sky import SimulatedSky, optic_scale

    return SimulatedSky(
        fwhm=config.sim_fwhm,
        # The random field has the optic's scale too, so both skies drift alike.
        plate_scale=optic_scale(config.focal_length_mm, config.pixel_size_um),
        seed=config.sim_seed,
        pointing=config.sim_pointing if config.sim_sky == "catalog" else None,
        focal_length_mm=config.focal_length_mm,
        pixel_size_um=config.pixel_size_um,
        latitude=config.latitude,
        longitude=config.longitude,
        step_interval_s=config.mount_step_interval,
        clouds=config.sim_clouds,
        temperature_c=config.sim_temperature,
        polar_error=(config.sim_polar_error_alt, config.sim_polar_error_az),
        clock=clock,
        wall_clock=wall_clock,
    )


def create_backend(config) -> CameraBackend:
    """The backend ``config.camera`` asks for; ``auto`` falls back to the simulated sky."""
    if config.camera == "sim":
        log.info("camera: simulated sky (--camera sim)")
        return simulated_sky(config)
    probe = probe_picamera2(config.tuning_file)
    if config.camera == "picamera2" and not probe.ok:
        raise CameraUnavailable(f"--camera picamera2: {probe.reason}: {probe.fix}")
    if probe.ok:
        from wanda.backends.picam import Picamera2Backend

        log.info("camera: picamera2, because %s (--camera %s)", probe.reason, config.camera)
        return Picamera2Backend(
            colour_gains=config.colour_gains,
            tuning_file=config.tuning_file,
            preview_encoder=config.preview_encoder,
            sensor_dpc=config.sensor_dpc,
        )
    log.info("camera: simulated sky, because %s (--camera auto)", probe.reason)
    return simulated_sky(config)
