"""The app factory: the one place that wires WANDA together.

Shared objects live under typed AppKeys (wanda/keys.py); each resource is started and stopped by
its own cleanup context, so a failed start unwinds what had started before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, hdrs, web

from wanda import SERVER
from wanda.alpaca.camera import AlpacaCamera
from wanda.alpaca.discovery import discovery_address, start_discovery
from wanda.alpaca.server import AlpacaServer, unique_ids
from wanda.alpaca.telescope import AlpacaTelescope
from wanda.analysis import AnalysisWorker
from wanda.auth import Guard
from wanda.backends import CameraBackend, still_size
from wanda.backends.choose import create_backend
from wanda.backends.sky import SimulatedSky, optic_scale
from wanda.calibration import CalibrationLibrary
from wanda.camera import CameraWorker
from wanda.centring import Centring
from wanda.clock import SystemClock
from wanda.config import Config
from wanda.connections import GATE, ConnectionGate, connection_limit, current_descriptor_limit, gate_middleware
from wanda.control import CameraControl
from wanda.events import EventBus
from wanda.frames import FrameHub
from wanda.handlers import (
    alpaca_api,
    analysis_api,
    calibration_api,
    camera_api,
    captures,
    clock_api,
    login,
    mount_api,
    objects_api,
    polar_api,
    session_api,
    site_api,
    solve_api,
    stack_api,
    stream,
    system,
    ws,
)
from wanda.handlers.envelope import error_middleware
from wanda.jpeg import JpegEncoder
from wanda.keys import (
    ALPACA,
    ANALYSIS,
    AUTH,
    BUS,
    CALIBRATION,
    CAMERA,
    CAPTURES,
    CENTRING,
    CLOCK,
    CONFIG,
    CONTROL,
    HUB,
    LAG,
    MEASURER,
    MOUNT,
    POLAR_ALIGN,
    SESSIONS,
    SIM_MOUNT,
    SITE,
    SOLVE,
    STACK,
    STACK_HUB,
    STARTED,
    STRETCHED_HUB,
    TRUSTED_HOSTS,
)
from wanda.monitor import LoopLagMonitor
from wanda.mount import MountControl, SimulatedPins, StepperMount, StepperPins, create_pins
from wanda.polar_align import PolarAlign
from wanda.security import auth_middleware, origin_middleware, trusted_hosts
from wanda.sessions.runner import SessionManager
from wanda.site import SiteStore
from wanda.solver import PlateSolver
from wanda.solving import SolveService
from wanda.stacking import StackWorker, saved_frame
from wanda.storage.disk import choose_captures_dir, unwritable_reason
from wanda.storage.review import Measurer

log = logging.getLogger(__name__)


def create_app(
    config: Config, *, camera: CameraBackend | None = None, pins: StepperPins | None = None
) -> web.Application:
    """Build the application. ``camera`` and ``pins`` replace what ``config`` selects."""
    app = web.Application(
        middlewares=[gate_middleware, error_middleware, auth_middleware, origin_middleware],
        client_max_size=1024 * 1024,
    )
    app[CONFIG] = config
    # In front of the sockets once `wanda` serves (wanda/cli.py); test servers go without it.
    app[GATE] = ConnectionGate(
        connection_limit(config.max_connections, current_descriptor_limit()),
        config.header_timeout,
        config.write_timeout,
    )
    if config.password:
        app[AUTH] = Guard(config.password)
    app[HUB] = FrameHub()
    app[STRETCHED_HUB] = FrameHub()
    app[STACK_HUB] = FrameHub()
    app[CALIBRATION] = CalibrationLibrary(config.state_dir / "calibration")
    app[BUS] = EventBus()
    app[LAG] = LoopLagMonitor()
    app[STARTED] = time.time()
    app[TRUSTED_HOSTS] = trusted_hosts(config.allowed_origins)
    app[CLOCK] = SystemClock()
    app[SITE] = SiteStore(config.state_dir, config.latitude, config.longitude)
    app[CAPTURES], reason = choose_captures_dir(config.captures)
    log.info("captures go to %s (%s)", app[CAPTURES], reason)
    unwritable = unwritable_reason(app[CAPTURES])
    if unwritable is not None:  # said at start, not first by a refused session in the small hours
        log.warning("NOTHING CAN BE SAVED: %s; captures and sessions will be refused until it can", unwritable)

    app.cleanup_ctx.append(_measurer_ctx)  # before the camera: stills are offered to it as they are saved
    app.cleanup_ctx.append(_solve_ctx)  # before the camera: its analyses are offered to it
    app.cleanup_ctx.append(_camera_ctx(camera))
    app.cleanup_ctx.append(_mount_ctx(pins))
    app.cleanup_ctx.append(_centring_ctx)
    app.cleanup_ctx.append(_polar_align_ctx)
    app.cleanup_ctx.append(_sessions_ctx)
    app.cleanup_ctx.append(_alpaca_ctx)
    if config.alpaca_discovery:
        app.cleanup_ctx.append(_discovery_ctx)
    app.cleanup_ctx.append(_lag_monitor_ctx)
    app.cleanup_ctx.append(objects_api.deepsky_ctx)
    app.on_shutdown.append(_on_shutdown)
    app.on_response_prepare.append(_identify)

    for module in (
        stream,
        camera_api,
        analysis_api,
        calibration_api,
        mount_api,
        session_api,
        captures,
        clock_api,
        objects_api,
        polar_api,
        site_api,
        solve_api,
        stack_api,
        ws,
        system,
        login,
        alpaca_api,
    ):
        app.add_routes(module.routes)
    captures.setup(app)
    system.add_static_routes(app)
    return app


def _camera_ctx(backend: CameraBackend | None):
    async def camera_ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        chosen = backend if backend is not None else create_backend(config)
        loop = asyncio.get_running_loop()
        bus = app[BUS]
        full_width = still_size(chosen)[0]
        analysis = AnalysisWorker(
            loop,
            partial(_analysed, app),
            scale=full_width / chosen.preview_size[0],  # figures in pixels of the full frame
            linear=chosen.preview_linear,
            stretch_demand=lambda: app[STRETCHED_HUB].wants_frames,
        )
        # The analysis runs for its own listeners, and for a continuous solve's.
        bus.watch_listeners(
            lambda: analysis.set_listeners(
                bus.listeners("analysis") + (bus.listeners("solve") if app[SOLVE].continuous else 0)
            )
        )
        stacker = StackWorker(
            loop,
            lambda event, state: bus.publish("stack", event, state),
            linear=chosen.preview_linear,
            hub=app[STACK_HUB],
            jpeg_quality=config.jpeg_quality,
            calibration_dir=app[CALIBRATION].directory,
        )
        worker = CameraWorker(
            chosen,
            JpegEncoder(config.jpeg_quality),
            app[HUB],
            loop,
            max_fps=config.max_fps,
            stretched_hub=app[STRETCHED_HUB],
            analysis=analysis,
            stacker=stacker,
        )
        app[ANALYSIS] = analysis
        app[STACK] = stacker
        analysis.start()
        stacker.start_thread()
        await asyncio.to_thread(worker.start)
        try:
            log.info("camera %s started (%dx%d preview)", chosen.name, *chosen.preview_size)
            app[CAMERA] = worker
            app[CONTROL] = await CameraControl.start(
                worker,
                app[BUS],
                captures_root=app[CAPTURES],
                data_dir=config.state_dir,
                observatory={"telescope": config.telescope, "observer": config.observer, "object": config.object},
            )
            bus.add_status_provider("stack", lambda: stacker.state)  # after the camera's, on connect
            app[CONTROL].on_saved = lambda saved: app[MEASURER].submit(saved.path)
            # A still carries the live view's plate solution while the mount has tracked since it.
            app[CONTROL].astrometry = lambda width, height: app[SOLVE].for_still(
                width, height, app[MOUNT].tracking_since if MOUNT in app else None
            )
            yield
            await asyncio.to_thread(app[CONTROL].close)
        finally:
            await asyncio.to_thread(worker.stop)
            await asyncio.to_thread(analysis.stop)
            await asyncio.to_thread(stacker.close)

    return camera_ctx


def _analysed(app: web.Application, result: dict[str, Any]) -> None:
    """An analysis of the live view, on the loop: to its listeners, and to a continuous solve."""
    app[BUS].publish("analysis", "frame", result)
    if app[BUS].listeners("solve"):  # a continuous solve nobody hears would be work for nothing
        app[SOLVE].offer(result)


async def _solve_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    bus = app[BUS]

    service = SolveService(
        asyncio.get_running_loop(),
        PlateSolver(),
        lambda result: bus.publish("solve", "solution", result),
        lambda width: optic_scale(config.focal_length_mm, config.pixel_size_um, width),
    )
    service.start()
    app[SOLVE] = service
    yield
    await asyncio.to_thread(service.stop)


async def _measurer_ctx(app: web.Application) -> AsyncIterator[None]:
    measurer = Measurer()
    measurer.start()
    app[MEASURER] = measurer
    yield
    await asyncio.to_thread(measurer.stop)


def _mount_ctx(pins: StepperPins | None):
    async def mount_ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        mount = StepperMount(
            pins if pins is not None else create_pins(config),
            interval=config.mount_step_interval,
            clockwise=config.mount_clockwise,
        )
        # The simulated sky turns with the mount's steps (holds while it tracks, drifts when it
        # does not, moves when it centres a target) and hears whether it tracks.
        backend = app[CAMERA].backend
        if hasattr(backend, "follow_mount"):
            mount.step_listeners.append(backend.follow_mount(config.mount_step_interval, config.mount_clockwise))
            if isinstance(backend, SimulatedSky) and backend.has_axis and isinstance(mount.pins, SimulatedPins):
                app[SIM_MOUNT] = backend  # its knobs and clutch: tests and the browser play the observer
        mount.start()
        try:
            app[MOUNT] = MountControl(mount, app[BUS], on_tracking=getattr(backend, "set_tracking", None))
            yield
        finally:
            await asyncio.to_thread(mount.close)  # coils off

    return mount_ctx


async def _centring_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[CENTRING] = Centring(
        app[MOUNT],
        lambda since: solve_api.solve_live(app, after=since),
        app[BUS],
        step_s=config.mount_step_interval,
        tracking_clockwise=config.mount_clockwise,
        tracking_speed=config.mount_step_interval,
    )
    yield
    await app[CENTRING].stop()  # a move under way stops; the mount's own context turns it off


async def _polar_align_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[POLAR_ALIGN] = PolarAlign(
        app[MOUNT],
        lambda since, blind: solve_api.solve_live_frame(app, after=since, blind=blind),
        app[BUS],
        lambda: app[SITE].current,
        step_s=config.mount_step_interval,
        tracking_clockwise=config.mount_clockwise,
        tracking_speed=config.mount_step_interval,
        exposure_s=lambda: app[CAMERA].backend.exposure_s,
    )
    yield
    await app[POLAR_ALIGN].cancel()  # a move under way stops; the mount's own context turns it off


async def _sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    sessions = SessionManager(
        app[CONTROL],
        app[MOUNT],
        app[BUS],
        captures_root=app[CAPTURES],
        min_free_bytes=config.min_free_mb * 2**20,
        state_dir=config.state_dir,
    )
    await sessions.recover()
    # A stack of a session takes each frame as it lands, and ends with it.
    sessions.listeners.append(partial(_session_event, app[STACK]))
    app[SESSIONS] = sessions
    writer = asyncio.create_task(sessions.keep_writing(), name="session-metadata-retry")
    yield
    await sessions.shutdown()
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer


def _session_event(stacker: StackWorker, kind: str, folder: Path, record: dict[str, Any] | None) -> None:
    """A session's frame saved (or its end), to the stack if it follows that session."""
    if stacker.session_folder != folder:
        return
    try:
        stacker.session_event(kind, folder, saved_frame(folder, record) if record is not None else None)
    except ValueError as exc:  # a record that names no file of the folder
        log.warning("session %s: %s", folder.name, exc)


async def _alpaca_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    ids = await asyncio.to_thread(unique_ids, config.state_dir, ["camera", "telescope"])
    camera = AlpacaCamera(app[CONTROL], ids["camera"], save_to=app[CAPTURES] / "alpaca" if config.alpaca_save else None)
    telescope = AlpacaTelescope(
        app[MOUNT],
        app[SOLVE],
        lambda: app[SITE].current,
        ids["telescope"],
        focal_length_mm=config.focal_length_mm,
    )
    # The port discovery answers: the configured one until the server listens (wanda/cli.py).
    app[ALPACA] = AlpacaServer([camera, telescope], http_port=config.alpaca_port or config.port)
    yield
    await camera.close()  # an exposure under way ends; its copy is written


async def _discovery_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    server = app[ALPACA]
    try:
        transport, server.responder = await start_discovery(
            discovery_address(config.host), config.alpaca_discovery_port, lambda: server.http_port
        )
    except OSError as exc:  # another program has the port without sharing it: the rest still works
        log.warning("Alpaca discovery is off: UDP port %d: %s", config.alpaca_discovery_port, exc.strerror or exc)
        yield
        return
    server.discovery_port = transport.get_extra_info("sockname")[1]
    log.info("Alpaca discovery answers on UDP port %d", server.discovery_port)
    yield
    transport.close()


async def _lag_monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[LAG].run(), name="loop-lag-monitor")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _identify(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer says it is WANDA's (a 401 and a 429 too): `wanda doctor` recognises a port
    held by WANDA itself without the password."""
    response.headers[hdrs.SERVER] = SERVER


async def _on_shutdown(app: web.Application) -> None:
    """End what would keep handlers running: a session, streams, an exposure, WebSockets."""
    await app[SESSIONS].shutdown()  # first, so its metadata says interrupted
    app[HUB].close()
    app[STRETCHED_HUB].close()
    app[STACK_HUB].close()
    app[CONTROL].cancel()
    subscribers = list(app[BUS].subscribers)
    await asyncio.gather(*(s.close(WSCloseCode.GOING_AWAY, "server shutting down") for s in subscribers))
