"""The `wanda` command (also `python -m wanda`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import socket
import sys
from pathlib import Path

from aiohttp import web

from wanda import __version__
from wanda.app import create_app
from wanda.backends import CameraUnavailable
from wanda.config import (
    CAMERA_CHOICES,
    LOG_LEVELS,
    MOUNT_CHOICES,
    PREVIEW_ENCODERS,
    SIM_SKIES,
    Config,
    ConfigError,
    load_config,
)
from wanda.connections import GATE, GatedSite, raise_descriptor_limit
from wanda.jpeg import JpegUnavailable
from wanda.keys import ALPACA
from wanda.mount import MountUnavailable
from wanda.systemd import SystemdNotifier

log = logging.getLogger("wanda")


class CannotListen(Exception):
    """The site could not bind (only then is "cannot listen" the right thing to say)."""


class RateLimit(logging.Filter):
    """At most ``burst`` records a minute from a logger that clients can make speak: aiohttp logs
    a traceback for each malformed request (a NUL in a header, a broken gzip body), and anyone
    could fill the SD card with them. What is held back is counted in the next record let through."""

    def __init__(self, burst: int = 10, period: float = 60.0):
        super().__init__()
        self.burst, self.period = burst, period
        self._window_start = -period
        self._passed = 0
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.created - self._window_start >= self.period:
            self._window_start, self._passed = record.created, 0
        if self._passed >= self.burst:
            self._held += 1
            return False
        self._passed += 1
        if self._held:
            record.msg = f"{record.msg} ({self._held} like it held back in the last minutes)"
            self._held = 0
        return True


CLIENT_DRIVEN_LOGGERS = ("aiohttp.server", "aiohttp.web", "asyncio")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wanda",
        description="WANDA telescope controller: live view, camera, mount and captures in the browser.",
        epilog="Each option can also come from the environment (WANDA_PORT=...) or the --config file. "
        "`wanda doctor [options]` checks the installation instead of serving.",
    )
    # Defaults are None so the command line only overrides what was given (see wanda.config).
    add = parser.add_argument
    add("--host", help="address to listen on (default 0.0.0.0: every interface)")
    add("--port", type=int, help="port to listen on (default 5000)")
    add("--camera", choices=CAMERA_CHOICES, help="camera backend (default auto: picamera2 if present, else sim)")
    add("--mount", choices=MOUNT_CHOICES, help="mount driver (default auto: GPIO on a Raspberry Pi, else sim)")
    add("--captures", type=Path, metavar="DIR", help="where captured images go")
    add("--data-dir", type=Path, metavar="DIR", help="where WANDA keeps its state (default ~/.local/share/wanda)")
    add("--config", type=Path, metavar="FILE", help="TOML configuration file")
    add("--log-level", type=str.upper, choices=LOG_LEVELS, help="logging level (default INFO)")
    add("--password", help="require this password (better: WANDA_PASSWORD or the config file)")
    add("--preview-encoder", choices=PREVIEW_ENCODERS, help="preview JPEG encoder on the Pi (default auto)")
    add("--tuning-file", metavar="FILE", help="libcamera tuning file for the Pi camera, e.g. imx477_scientific.json")
    add(
        "--sensor-dpc",
        choices=("on", "off"),
        help="the HQ camera's on-sensor hot pixel correction (default off: it eats faint stars)",
    )
    add("--focal-length-mm", type=float, metavar="MM", help="focal length of the lens or telescope (default 50)")
    add("--latitude", type=float, metavar="DEG", help="the site's latitude, degrees north")
    add("--longitude", type=float, metavar="DEG", help="the site's longitude, degrees east")
    add("--sim-sky", choices=SIM_SKIES, help="the simulated sky: the star catalogue (default) or a random field")
    add("--sim-ra", metavar="DEG|NAME", help="where the simulated sky points: RA in degrees, or a name (default M42)")
    add("--sim-dec", type=float, metavar="DEG", help="the simulated pointing's Dec, degrees (with --sim-ra in degrees)")
    add("--sim-roll", type=float, metavar="DEG", help="the simulated camera's roll, degrees (north through east)")
    add("--sim-fwhm", type=float, metavar="PX", help="star size (FWHM, pixels) of the simulated sky (default 3)")
    add("--sim-clouds", type=float, metavar="SHARE", help="passing clouds in the simulated sky: 0 clear (default) to 1")
    add("--sim-temperature", type=float, metavar="C", help="the simulated sensor's temperature (default 20 C)")
    add(
        "--sim-polar-error-alt",
        type=float,
        metavar="ARCMIN",
        help="the simulated mount's axis above (+) or below the pole, arcminutes (needs --latitude/--longitude)",
    )
    add(
        "--sim-polar-error-az",
        type=float,
        metavar="ARCMIN",
        help="the simulated mount's axis east (+) or west of the pole",
    )
    add(
        "--alpaca-port",
        type=int,
        metavar="PORT",
        help="serve the Alpaca devices on this port too (default: the page's)",
    )
    add(
        "--alpaca-discovery",
        choices=("on", "off"),
        help="answer Alpaca discovery on UDP port 32227 (default on)",
    )
    add("--alpaca-save", choices=("on", "off"), help="keep a FITS copy of each Alpaca exposure (default off)")
    add("--version", action="version", version=f"wanda {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    doctor = bool(argv) and argv[0] == "doctor"  # `wanda doctor [options]`: check, do not serve
    parser = build_parser()
    if doctor:
        parser.prog = "wanda doctor"
        argv = argv[1:]
    args = vars(parser.parse_args(argv))
    config_file = args.pop("config")
    try:
        config = load_config(args, config_file=config_file)
    except ConfigError as exc:
        parser.exit(2, f"wanda: error: {exc}\n")
    if doctor:
        from wanda.doctor import main as run_doctor

        return run_doctor(config)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in CLIENT_DRIVEN_LOGGERS:
        logging.getLogger(name).addFilter(RateLimit())
    try:
        asyncio.run(serve(config))
    except (CameraUnavailable, JpegUnavailable, MountUnavailable) as exc:
        print(f"wanda: error: {exc}", file=sys.stderr)
        return 1
    except CannotListen as exc:  # the port is taken, the address does not exist, ...
        print(f"wanda: error: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    # What the imports made lives as long as the server: keep it out of the garbage collector's
    # full passes, which otherwise hold the GIL for 20 ms and more (late mount steps, API latency
    # spikes). Done before the app starts, so the loop-lag monitor does not see this one pass.
    gc.collect()
    gc.freeze()
    descriptors = raise_descriptor_limit()  # before the app sizes its connection limit by it
    app = create_app(config)
    systemd = SystemdNotifier()
    watchdog: asyncio.Task | None = None
    access_log = logging.getLogger("aiohttp.access") if config.log_level == "DEBUG" else None
    runner = web.AppRunner(app, shutdown_timeout=config.shutdown_timeout, access_log=access_log)
    try:
        await runner.setup()  # a start that fails half-way is unwound by the cleanup below
        ports = [config.port]
        if config.alpaca_port and config.alpaca_port != config.port:
            ports.append(config.alpaca_port)  # the same server on a second port, for Alpaca clients
        for port in ports:
            site = GatedSite(runner, config.host, port, app[GATE])
            try:
                await site.start()
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise CannotListen(reason if port == config.port else f"the Alpaca port {port}: {reason}") from exc
        log.info(
            "at most %d connections (open files: %d); %g s for a request's headers, %g s for its body",
            app[GATE].limit,
            descriptors,
            config.header_timeout,
            config.body_timeout,
        )
        port = runner.addresses[0][1] if runner.addresses else config.port
        app[ALPACA].http_port = config.alpaca_port or port  # what discovery answers
        urls = await asyncio.to_thread(_urls, config.host, port)  # name lookups may block
        log.info("wanda %s serving: open %s", __version__, " or ".join(urls))
        systemd.notify(f"READY=1\nSTATUS=serving on port {port}")
        if systemd.watchdog_interval is not None:
            watchdog = asyncio.create_task(systemd.watchdog(), name="systemd-watchdog")
            log.info("systemd watchdog: pinging every %.1f s", systemd.watchdog_interval)
        await stop.wait()
        log.info("stopping")
        systemd.notify("STOPPING=1")
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await runner.cleanup()
    log.info("stopped")


def _urls(host: str, port: int) -> list[str]:
    """URLs a person can open: the machine's name and addresses when listening everywhere."""
    if host not in ("0.0.0.0", "::", ""):
        return [f"http://{host}:{port}/"]
    urls = [f"http://{socket.gethostname()}.local:{port}/"]
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        urls += sorted({f"http://{info[4][0]}:{port}/" for info in infos if not str(info[4][0]).startswith("127.")})
    except OSError:
        pass
    urls.append(f"http://127.0.0.1:{port}/")
    return urls
