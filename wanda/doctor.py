"""`wanda doctor`: checks the things that cost users hours on a fresh Pi, each with its fix.

Prints a table and exits non-zero when a required check fails. Nothing here changes the system.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from wanda import SERVER
from wanda.backends import CameraUnavailable
from wanda.backends.choose import probe_picamera2
from wanda.backends.picam import read_sensor_dpc, resolve_tuning_file, sensor_dpc_fix
from wanda.backends.sky import PREVIEW_SIZE, optic_scale
from wanda.clock import SystemClock
from wanda.config import Config
from wanda.solver import INSTALL_SOLVER, SOLVE_FIELD, missing_packages
from wanda.storage.disk import choose_captures_dir, disk_space, writable

OK, WARN, FAIL = "ok", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info >= (3, 11):  # noqa: UP036  (doctor may run under an older python3 than WANDA needs)
        return Check("python", OK, f"Python {version}")
    return Check(
        "python", FAIL, f"Python {version}", "WANDA needs Python 3.11 or newer (Raspberry Pi OS Bookworm has it)"
    )


def check_picamera2(config: Config) -> Check:
    try:
        probe = probe_picamera2(config.tuning_file)
    except CameraUnavailable:  # the tuning file (its own check says why): list the cameras without it
        probe = probe_picamera2()
    if probe.ok:
        return Check("picamera2", OK, probe.reason)
    return Check("picamera2", FAIL if config.camera == "picamera2" else WARN, probe.reason, probe.fix)


def check_tuning(config: Config) -> Check:
    if not config.tuning_file:
        return Check("tuning file", OK, "none configured: the sensor's default tuning")
    try:
        path = resolve_tuning_file(config.tuning_file)
    except CameraUnavailable as exc:
        return Check(
            "tuning file", FAIL if config.camera != "sim" else WARN, str(exc), "fix tuning_file in the configuration"
        )
    return Check("tuning file", OK, path)


def check_sensor_dpc(config: Config) -> Check:
    """The HQ camera's on-sensor defective pixel correction, as its driver will set it."""
    current = read_sensor_dpc()
    wanted = "on" if config.sensor_dpc else "off"
    if current is None:
        return Check("sensor DPC", OK, "no imx477 driver loaded here: nothing to set")
    state = "on" if current else "off"
    if current == config.sensor_dpc:
        return Check("sensor DPC", OK, f"{state}, as configured" + ("" if current else ": faint stars are kept"))
    return Check("sensor DPC", WARN, f"{state}, but sensor_dpc is {wanted}", sensor_dpc_fix(config.sensor_dpc))


def check_turbojpeg() -> Check:
    from wanda.jpeg import JpegEncoder, JpegUnavailable

    try:
        JpegEncoder()
    except JpegUnavailable as exc:
        return Check("libturbojpeg", FAIL, "not loadable", str(exc))
    return Check("libturbojpeg", OK, "loads")


def check_gpio(config: Config) -> Check:
    required = config.mount == "gpio"
    chips = sorted(Path("/dev").glob("gpiochip*"))
    if not chips:
        return Check("gpio", FAIL if required else WARN, "no /dev/gpiochip*", "GPIO exists on a Raspberry Pi only")
    usable = [c for c in chips if os.access(c, os.R_OK | os.W_OK)]
    if not usable:
        return Check("gpio", FAIL if required else WARN, f"{chips[0]} not accessible", "add the user to the gpio group")
    try:
        import lgpio  # noqa: F401
        from gpiozero.pins.lgpio import LGPIOFactory  # noqa: F401
    except ImportError as exc:
        return Check(
            "gpio",
            FAIL if required else WARN,
            f"gpiozero/lgpio not importable ({exc})",
            "sudo apt install python3-gpiozero python3-lgpio (venv with --system-site-packages)",
        )
    return Check("gpio", OK, ", ".join(c.name for c in usable))


def check_captures(config: Config) -> Check:
    root, reason = choose_captures_dir(config.captures)
    if not writable(root):  # the same test as /api/storage's: read-only disks too
        return Check(
            "captures", FAIL, f"{root} is not writable", "chown it to the user running wanda, or pass --captures"
        )
    free, _ = disk_space(root)
    detail = f"{root} ({reason}), {free / 2**30:.1f} GiB free"
    if free < config.min_free_mb * 2**20:
        return Check(
            "captures", WARN, detail, f"less than the {config.min_free_mb} MB reserve: sessions will refuse to start"
        )
    return Check("captures", OK, detail)


def check_port(config: Config) -> Check:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError as exc:
            refused = exc
        else:
            return Check("port", OK, f"{config.host}:{config.port} is free")
    # Taken: by WANDA itself (the service, running while its installation is checked) is as it
    # should be; by anything else, `wanda` could not start.
    running = wanda_on(config.host, config.port)
    if running is not None:
        return Check("port", OK, f"{config.host}:{config.port} is WANDA's own: {running}")
    return Check(
        "port",
        FAIL,
        f"{config.host}:{config.port}: {refused.strerror or refused}",
        "stop what listens there (sudo ss -ltnp) or pick --port",
    )


WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "localhost": "127.0.0.1", "::": "::1"}


def wanda_on(host: str, port: int, timeout: float = 2.0) -> str | None:
    """What WANDA listening at ``host``:``port`` says of itself, or None if what listens there is
    not WANDA (or says nothing within ``timeout``). WANDA answers every request with its Server
    header, a 401 too, so it is recognised without the password: the doctor may not know it, and
    sending a wrong one would spend one of this address's tries."""
    connection = http.client.HTTPConnection(WILDCARDS.get(host, host), port, timeout=timeout)
    try:
        connection.request("GET", "/api/health")
        response = connection.getresponse()
        body = response.read(1 << 16)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    if response.getheader("Server") != SERVER:
        return None
    if response.status == 401:
        return "WANDA is running there (with a password: its health is for those who know it)"
    try:
        health = json.loads(body)["data"]
        return f"WANDA {health['version']} is running there ({health['status']}, up {health['uptime_s']:.0f} s)"
    except (ValueError, KeyError, TypeError):
        return f"WANDA is running there (/api/health: {response.status} {response.reason})"


LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


def check_password(config: Config) -> Check:
    if config.password:
        return Check("password", OK, "set: only who knows it can drive the telescope")
    if config.host in LOCAL_HOSTS:
        return Check("password", OK, f"none, and listening on {config.host} only")
    return Check(
        "password",
        WARN,
        f"none, and listening on {config.host}: anyone on the network can move the mount and delete captures",
        "set WANDA_PASSWORD in /etc/default/wanda (or password in the config file)",
    )


def check_systemd() -> Check:
    if shutil.which("systemctl") is None:
        return Check("systemd unit", WARN, "systemctl not found", "run wanda by hand, or on a systemd system")
    try:
        enabled = subprocess.run(["systemctl", "is-enabled", "wanda"], capture_output=True, text=True, timeout=5)
        active = subprocess.run(["systemctl", "is-active", "wanda"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("systemd unit", WARN, f"cannot ask systemd ({exc})")
    state = f"{enabled.stdout.strip() or 'not installed'}, {active.stdout.strip() or 'unknown'}"
    if enabled.returncode != 0:
        return Check("systemd unit", WARN, state, "install it: see 'Install on a Raspberry Pi' in the README")
    return Check("systemd unit", OK, state)


def check_solver(config: Config, index_dirs: list[Path] | None = None, solve_field: str = SOLVE_FIELD) -> Check:
    """astrometry.net, and the index packages the configured optic's preview field needs."""
    width, height = PREVIEW_SIZE
    scale = optic_scale(config.focal_length_mm, config.pixel_size_um, width)
    field = (
        f'{config.focal_length_mm:g} mm: {scale:.1f}"/px, {width * scale / 3600:.1f}° x {height * scale / 3600:.1f}°'
    )
    if shutil.which(solve_field) is None:
        return Check(
            "plate solver",
            FAIL,
            f"{solve_field} is not installed ({field})",
            f"{INSTALL_SOLVER} --no-install-recommends",
        )
    missing = missing_packages(scale, width, height, index_dirs)
    if missing:
        return Check(
            "plate solver",
            FAIL,
            f"no index files for {field}",
            f"sudo apt install --no-install-recommends {' '.join(missing)}",
        )
    return Check("plate solver", OK, f"astrometry.net with the index files for {field}")


def check_clock(clock: SystemClock | None = None) -> Check:
    """Solving, altitudes and FITS dates need the time; a Pi without network has only its guess."""
    state = (clock or SystemClock()).state()
    if state.synchronized:
        return Check("clock", OK, state.detail)
    return Check(
        "clock",
        WARN,
        state.detail,
        "connect the Pi to a network once, or set its clock from the browser (the page offers your phone's time)",
    )


def run_checks(config: Config) -> list[Check]:
    return [
        check_python(),
        check_picamera2(config),
        check_tuning(config),
        check_sensor_dpc(config),
        check_turbojpeg(),
        check_gpio(config),
        check_captures(config),
        check_port(config),
        check_password(config),
        check_systemd(),
        check_solver(config),
        check_clock(),
    ]


def main(config: Config) -> int:
    checks = run_checks(config)
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{check.status:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != OK:
            print(f"      {'':<{width}}  fix: {check.fix}")
    failed = [c.name for c in checks if c.status == FAIL]
    print(f"\n{len(failed)} required check(s) failed: {', '.join(failed)}" if failed else "\nall required checks pass")
    return 1 if failed else 0
