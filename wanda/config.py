"""WANDA's configuration: one frozen dataclass.

Sources, strongest first: the command line, ``WANDA_*`` environment variables, the TOML file
(``--config FILE`` or ``WANDA_CONFIG``), the defaults below. Every field may come from any source;
the environment variable of a field is ``WANDA_`` + its name in upper case (``WANDA_PORT``).
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from wanda.alpaca.discovery import DISCOVERY_PORT
from wanda.astro.targets import resolve_pointing

CAMERA_CHOICES = ("auto", "sim", "picamera2")
PREVIEW_ENCODERS = ("auto", "software", "hardware")
MOUNT_CHOICES = ("auto", "sim", "gpio")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SIM_SKIES = ("catalog", "random")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the field and the source."""


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 5000  # the original backend's port: existing scripts and bookmarks keep working
    camera: str = "auto"
    captures: Path | None = None  # default: a USB drive under /media/<user>/, else ~/wanda_captures
    data_dir: Path | None = None  # WANDA's own state (settings); default: ~/.local/share/wanda
    log_level: str = "INFO"
    # Web pages from these origins may change state (POST, WebSocket) besides the page WANDA serves.
    allowed_origins: tuple[str, ...] = ()
    # When set, every endpoint but the login page needs it (Bearer header or the login cookie).
    # Better in the environment or the config file than on the command line (ps shows that).
    password: str = ""

    # The mount: a unipolar stepper on four BCM pins (the original wiring).
    mount: str = "auto"  # auto: GPIO on a Raspberry Pi, else simulated pins
    mount_pins: tuple[int, ...] = (23, 24, 25, 8)
    mount_step_interval: float = 3.523  # seconds per half step at the sidereal rate
    mount_clockwise: bool = True

    # Written into FITS headers (TELESCOP, OBSERVER, OBJECT); a session's object is its name
    # unless it gives one.
    telescope: str = ""
    observer: str = ""
    object: str = ""

    # Sessions refuse to start, and stop, when free space would fall below this.
    min_free_mb: int = 200

    # The Raspberry Pi camera (picamera2).
    # Fixed white balance for stills and preview: (red, blue) gains. Auto white balance would shift
    # the colour of every frame of a night differently.
    colour_gains: tuple[float, ...] = (2.4, 1.7)
    # A libcamera tuning file: a name looked up where libcamera keeps them (imx477_scientific.json)
    # or a path. Empty: the sensor's default tuning.
    tuning_file: str = ""
    # How the preview is JPEG-encoded: libjpeg-turbo (software), picamera2's hardware MJPEG encoder
    # (hardware, VC4 = Raspberry Pi 4 and older), or auto (hardware where there is one).
    preview_encoder: str = "auto"
    # The IMX477's on-sensor defective pixel correction: off for astronomy, since it removes faint
    # stars with the hot pixels (darks and the stacker deal with those). A kernel module parameter:
    # scripts/setup.sh writes it on a Pi; `wanda doctor` shows what is in force.
    sensor_dpc: bool = False

    # The optic: the lens or telescope in front of the camera, and the sensor's pixel (the HQ
    # camera's 1.55 um; the 1440 px preview bins its 4056 px, so a preview pixel is 4.37 um). A
    # 50 mm camera lens sees 7.2 x 5.4 degrees at 18"/px: a stepper that moves 53" a step suits a
    # lens, and the catalogue (to magnitude 10) has hundreds of stars in such a field (see
    # docs/architecture.md). The simulated sky is drawn through it; plate solving will use it.
    focal_length_mm: float = 50.0
    pixel_size_um: float = 1.55
    # The site, degrees (north and east positive); None until set. Sidereal time, altitudes.
    latitude: float | None = None
    longitude: float | None = None

    # The simulated sky: the catalogue's stars (catalog) or the old random field (random, for
    # tests that need its statistics), pointed at sim_ra / sim_dec (degrees, J2000) or at a name
    # given as sim_ra (M42, M31, ...), turned by sim_roll (degrees, north through east).
    sim_sky: str = "catalog"
    sim_ra: str = "M42"
    sim_dec: float | None = None
    sim_roll: float = 0.0
    sim_fwhm: float = 3.0  # star FWHM in preview pixels
    sim_seed: int = 1
    sim_clouds: float = 0.0  # the share of minutes a cloud passes (0: a clear night)
    sim_temperature: float = 20.0  # the simulated sensor's, Celsius: its dark current doubles every 6 degrees
    # The simulated mount's polar misalignment, arcminutes: its axis above (+) or below the
    # refracted pole, east (+) or west of it (on the sky). Needs the real sky and the site.
    sim_polar_error_alt: float = 0.0
    sim_polar_error_az: float = 0.0

    # ASCOM Alpaca (docs/alpaca.md): the camera and the mount for N.I.N.A., PHD2, Ekos. Served on
    # the page's port, or also on alpaca_port when set; discovery answers on UDP alpaca_discovery_port.
    alpaca_port: int = 0
    alpaca_discovery: bool = True
    alpaca_discovery_port: int = DISCOVERY_PORT
    alpaca_save: bool = False  # keep a FITS copy of each Alpaca exposure in captures/alpaca/
    # The frame path.
    max_fps: float = 30.0
    jpeg_quality: int = 80
    write_timeout: float = 10.0  # a viewer that takes longer to accept a frame is dropped
    snapshot_timeout: float = 5.0  # on top of the current frame interval
    shutdown_timeout: float = 1.0  # handlers still running after this are cancelled

    # The door (wanda/connections.py): a client has this long to send a request's headers, then
    # its body; at most this many connections, and always a reserve of descriptors below the limit.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 512

    def __post_init__(self) -> None:
        _check(self.mount in MOUNT_CHOICES, "mount", f"must be one of {', '.join(MOUNT_CHOICES)}")
        _check(len(self.mount_pins) == 4, "mount_pins", "must be 4 BCM pin numbers")
        _check(0.1 <= self.mount_step_interval <= 10, "mount_step_interval", "must be 0.1..10 seconds per step")
        _check(self.min_free_mb >= 0, "min_free_mb", "must be >= 0")
        _check(self.camera in CAMERA_CHOICES, "camera", f"must be one of {', '.join(CAMERA_CHOICES)}")
        _check(
            self.preview_encoder in PREVIEW_ENCODERS,
            "preview_encoder",
            f"must be one of {', '.join(PREVIEW_ENCODERS)}",
        )
        _check(
            len(self.colour_gains) == 2 and all(0 < g <= 32 for g in self.colour_gains),
            "colour_gains",
            "must be two gains (red, blue), each above 0 and at most 32",
        )
        _check(self.log_level in LOG_LEVELS, "log_level", f"must be one of {', '.join(LOG_LEVELS)}")
        for name in ("port", "alpaca_port", "alpaca_discovery_port"):
            _check(0 <= getattr(self, name) <= 65535, name, "must be 0..65535")
        _check(0.5 <= self.sim_fwhm <= 30, "sim_fwhm", "must be 0.5..30 pixels")
        _check(1 <= self.focal_length_mm <= 10000, "focal_length_mm", "must be 1..10000 mm")
        _check(0.5 <= self.pixel_size_um <= 30, "pixel_size_um", "must be 0.5..30 microns")
        _check(self.latitude is None or -90 <= self.latitude <= 90, "latitude", "must be -90..90 degrees")
        _check(self.longitude is None or -180 <= self.longitude <= 360, "longitude", "must be -180..360 degrees")
        _check(self.sim_sky in SIM_SKIES, "sim_sky", f"must be one of {', '.join(SIM_SKIES)}")
        try:
            resolve_pointing(self.sim_ra, self.sim_dec)
        except ValueError as exc:
            raise ConfigError(f"sim_ra: {exc}") from None
        _check(-360 <= self.sim_roll <= 360, "sim_roll", "must be -360..360 degrees")
        _check(0 <= self.sim_clouds <= 1, "sim_clouds", "must be 0..1 (the share of minutes a cloud passes)")
        _check(-40 <= self.sim_temperature <= 80, "sim_temperature", "must be -40..80 degrees Celsius")
        for name in ("sim_polar_error_alt", "sim_polar_error_az"):
            _check(abs(getattr(self, name)) <= 600, name, "must be -600..600 arcminutes (10 degrees)")
        if self.sim_polar_error_alt or self.sim_polar_error_az:
            _check(
                self.sim_sky == "catalog" and self.latitude is not None and self.longitude is not None,
                "sim_polar_error_alt",
                "a misaligned simulated mount needs the real sky (sim_sky catalog) and the site (latitude, longitude)",
            )
        _check(1 <= self.max_fps <= 60, "max_fps", "must be 1..60")
        _check(1 <= self.jpeg_quality <= 100, "jpeg_quality", "must be 1..100")
        _check(self.max_connections >= 16, "max_connections", "must be at least 16")
        for name in ("write_timeout", "snapshot_timeout", "shutdown_timeout", "header_timeout", "body_timeout"):
            _check(getattr(self, name) > 0, name, "must be > 0")

    @property
    def sim_pointing(self) -> tuple[float, float, float]:
        """The simulated sky's pointing at the start: RA, Dec, roll in degrees."""
        ra, dec = resolve_pointing(self.sim_ra, self.sim_dec)
        return ra, dec, self.sim_roll % 360

    @property
    def state_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "wanda"


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{name}: {message}")


_HINTS = typing.get_type_hints(Config)


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a value from a file, the environment or argparse into the field's type."""
    hint = _HINTS[name]
    optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
    base = next(a for a in hint.__args__ if a is not type(None)) if optional else hint
    if optional and value in (None, ""):
        return None
    try:
        if typing.get_origin(base) is tuple:
            element = typing.get_args(base)[0]
            items = [i.strip() for i in value.split(",") if i.strip()] if isinstance(value, str) else value
            if not isinstance(items, list | tuple):
                raise ValueError(value)
            if element is int:
                if any(isinstance(i, bool | float) for i in items):
                    raise ValueError(value)
                return tuple(int(i) for i in items)
            if element is float:
                if any(isinstance(i, bool) for i in items):
                    raise ValueError(value)
                return tuple(float(i) for i in items)
            if not all(isinstance(i, str) for i in items):
                raise ValueError(value)
            return tuple(items)
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base is int and isinstance(value, float | bool):
            raise ValueError(value)  # 5000.7 or true for a port is a mistake, not a number
        if base is Path:
            return Path(str(value)).expanduser()
        if base is str and name == "log_level":
            return str(value).upper()
        return base(value)
    except (TypeError, ValueError):
        kind = f"list of {typing.get_args(base)[0].__name__}" if typing.get_origin(base) is tuple else base.__name__
        raise ConfigError(f"{name} (from {source}): {value!r} is not a valid {kind}") from None


def load_config(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Merge the sources. ``cli`` holds only the options given (None means not given)."""
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    env = os.environ if env is None else env
    names = {f.name for f in fields(Config)}
    values: dict[str, Any] = {}

    path = config_file or (Path(env["WANDA_CONFIG"]) if env.get("WANDA_CONFIG") else None)
    if path is not None:
        try:
            table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        table = table.get("wanda", table)  # a [wanda] table or top-level keys
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in names:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[name] = _coerce(name, value, f"config file {path}")

    for name in names:
        var = f"WANDA_{name.upper()}"
        if var in env:
            values[name] = _coerce(name, env[var], f"${var}")

    for name, value in cli.items():
        if name in names:
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")

    return Config(**values)
