"""Typed keys of the shared objects on the aiohttp application (never module globals)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from wanda.alpaca.server import AlpacaServer
from wanda.analysis import AnalysisWorker
from wanda.auth import Guard
from wanda.backends.sky import SimulatedSky
from wanda.calibration import CalibrationLibrary
from wanda.camera import CameraWorker
from wanda.centring import Centring
from wanda.clock import SystemClock
from wanda.config import Config
from wanda.control import CameraControl
from wanda.events import EventBus
from wanda.frames import FrameHub
from wanda.monitor import LoopLagMonitor
from wanda.mount import MountControl
from wanda.polar_align import PolarAlign
from wanda.sessions.runner import SessionManager
from wanda.site import SiteStore
from wanda.solving import SolveService
from wanda.stacking import StackWorker
from wanda.storage.review import Measurer

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", FrameHub)
STRETCHED_HUB = web.AppKey("stretched_hub", FrameHub)  # /stream?stretch=auto
STACK_HUB = web.AppKey("stack_hub", FrameHub)  # /stream?source=stack: the live stack, stretched
ANALYSIS = web.AppKey("analysis", AnalysisWorker)
STACK = web.AppKey("stack", StackWorker)  # the `stack` thread: live stacking of the preview
CALIBRATION = web.AppKey("calibration", CalibrationLibrary)  # the master darks, flats and bias frames
CAMERA = web.AppKey("camera", CameraWorker)
CONTROL = web.AppKey("control", CameraControl)
BUS = web.AppKey("bus", EventBus)
MOUNT = web.AppKey("mount", MountControl)
SESSIONS = web.AppKey("sessions", SessionManager)
LAG = web.AppKey("lag", LoopLagMonitor)
STARTED = web.AppKey("started", float)  # Unix time the app was built
CLOCK = web.AppKey("clock", SystemClock)  # the Pi's clock (timedatectl)
SITE = web.AppKey("site", SiteStore)  # where the telescope stands
SOLVE = web.AppKey("solve", SolveService)  # the `solve` thread and the latest solution
CENTRING = web.AppKey("centring", Centring)  # centring a target: solve, step the RA axis, repeat
POLAR_ALIGN = web.AppKey("polar_align", PolarAlign)  # the polar alignment assistant
SIM_MOUNT = web.AppKey("sim_mount", SimulatedSky)  # only when the simulated sky follows the simulated mount
CAPTURES = web.AppKey("captures", Path)  # where captures go (chosen once, at start)
MEASURER = web.AppKey("measurer", Measurer)  # the `measure` thread: stars and HFR of each saved frame
TRUSTED_HOSTS = web.AppKey("trusted_hosts", frozenset)  # Host names a browser may use to reach us
ALPACA = web.AppKey("alpaca", AlpacaServer)  # the Alpaca camera and telescope (wanda/alpaca/)
AUTH = web.AppKey("auth", Guard)  # present only when a password is set
