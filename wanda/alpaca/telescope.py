"""Alpaca Telescope 0: WANDA's mount as ITelescopeV4. It drives the RA axis only, so it tracks,
knows where it points and guides east and west; it cannot slew, sync, park or move in declination,
says so in its Can* properties, and those members answer 0x400.

- Tracking: on and off at the sidereal rate (the only one: TrackingRates is [driveSidereal]).
- RightAscension/Declination: the newest plate solution of the live view (J2000, as
  EquatorialSystem says) while it holds: solved in the last five minutes, the mount tracking since
  (the rule a still's solution follows); ValueNotSet otherwise, never a stale place. WANDA solves
  the live view on request and continuously while the page's Sky panel listens; a client that
  wants the pointing kept current solves itself (N.I.N.A. does) or asks WANDA to (`POST /api/solve`).
- SiderealTime and SiteLatitude/SiteLongitude from the site in force (the configuration's, or the
  one set from the page); ValueNotSet while there is none.
- PulseGuide east and west: each pulse shifts the stepper's tracking schedule by the guide rate
  times its duration (0.5 x sidereal: a 1 s pulse west brings the next steps 0.5 s earlier), so the
  correction lands in the mount's next steps; never so early that the motor would step faster than
  a move (StepperMount.shift). One pulse at a time, of at most 10 s. North and south answer 0x400:
  there is no declination motor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from wanda.alpaca.device import AlpacaDevice, constant
from wanda.alpaca.protocol import (
    INVALID_OPERATION,
    INVALID_VALUE,
    NOT_IMPLEMENTED,
    VALUE_NOT_SET,
    AlpacaError,
    Parameters,
)
from wanda.astro.sidereal import SIDEREAL_DEG_PER_S, local_sidereal_time
from wanda.errors import WandaError
from wanda.mount import MountControl
from wanda.site import Site
from wanda.solving import SolveService
from wanda.timestamps import utc_iso

log = logging.getLogger(__name__)

GUIDE_RATE = 0.5  # of the sidereal rate, for guide pulses
MAX_PULSE_MS = 10_000
DRIVE_SIDEREAL = 0
# ASCOM's GuideDirections.
NORTH, SOUTH, EAST, WEST = range(4)
EQUATORIAL_J2000 = 2


class AlpacaTelescope(AlpacaDevice):
    device_type = "telescope"
    interface_version = 4

    def __init__(
        self,
        mount: MountControl,
        solve: SolveService,
        site: Callable[[], Site],
        unique_id: str,
        *,
        focal_length_mm: float,
    ):
        super().__init__("WANDA mount", "WANDA's equatorial mount: a stepper on the RA axis", unique_id)
        self.mount = mount
        self.solve = solve
        self.site = site
        self._guiding_until = 0.0  # monotonic time the last guide pulse ends
        capabilities = {
            "canfindhome": False,
            "canpark": False,
            "canpulseguide": True,
            "cansetdeclinationrate": False,
            "cansetguiderates": False,
            "cansetpark": False,
            "cansetpierside": False,
            "cansetrightascensionrate": False,
            "cansettracking": True,
            "canslew": False,
            "canslewaltaz": False,
            "canslewaltazasync": False,
            "canslewasync": False,
            "cansync": False,
            "cansyncaltaz": False,
            "canunpark": False,
            "athome": False,  # no home, no park: never at either
            "atpark": False,
            "slewing": False,
            "declinationrate": 0.0,
            "rightascensionrate": 0.0,
            "equatorialsystem": EQUATORIAL_J2000,
            "focallength": focal_length_mm / 1000,  # metres
            "guideraterightascension": GUIDE_RATE * SIDEREAL_DEG_PER_S,
            "trackingrate": DRIVE_SIDEREAL,
            "trackingrates": [DRIVE_SIDEREAL],
        }
        self.gets.update({name: constant(value) for name, value in capabilities.items()})
        self.gets.update(
            {
                "rightascension": lambda p: self._pointing()[0] / 15.0,  # hours
                "declination": lambda p: self._pointing()[1],
                "siderealtime": lambda p: self._sidereal_time(),
                "sitelatitude": lambda p: self._site()[0],
                "sitelongitude": lambda p: self._site()[1],
                "tracking": lambda p: self.mount.tracking,
                "ispulseguiding": lambda p: self.pulse_guiding,
                "utcdate": lambda p: utc_iso(time.time()),
                "canmoveaxis": lambda p: self._axis(p) and False,
                "axisrates": lambda p: self._axis(p) and [],
            }
        )
        self.puts.update(
            {
                "tracking": self._set_tracking,
                "trackingrate": self._set_tracking_rate,
                "pulseguide": self._pulse_guide,
            }
        )
        self.read_only.update(
            {
                "declinationrate": "",
                "rightascensionrate": "",
                "guideraterightascension": "",
                "sitelatitude": "set the site on WANDA's page",
                "sitelongitude": "set the site on WANDA's page",
                "utcdate": "WANDA's page sets the Pi's clock",
            }
        )
        self.not_implemented |= {
            "abortslew",
            "alignmentmode",
            "altitude",
            "aperturearea",
            "aperturediameter",
            "azimuth",
            "destinationsideofpier",
            "doesrefraction",
            "findhome",
            "guideratedeclination",
            "moveaxis",
            "park",
            "setpark",
            "sideofpier",
            "siteelevation",
            "slewsettletime",
            "slewtoaltaz",
            "slewtoaltazasync",
            "slewtocoordinates",
            "slewtocoordinatesasync",
            "slewtotarget",
            "slewtotargetasync",
            "synctoaltaz",
            "synctocoordinates",
            "synctotarget",
            "targetdeclination",
            "targetrightascension",
            "unpark",
        }

    @staticmethod
    def _axis(parameters: Parameters) -> bool:
        axis = parameters.integer("Axis")
        if axis not in (0, 1, 2):
            raise AlpacaError(INVALID_VALUE, f"Axis must be 0 (RA), 1 (Dec) or 2 (tertiary), not {axis}")
        return True

    @property
    def pulse_guiding(self) -> bool:
        return asyncio.get_running_loop().time() < self._guiding_until

    def operational(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        place = self._place()
        if place is not None:
            values["RightAscension"], values["Declination"] = place[0] / 15.0, place[1]
        values["IsPulseGuiding"] = self.pulse_guiding
        if self.site().known:
            values["SiderealTime"] = self._sidereal_time()
        values.update(
            AtHome=False, AtPark=False, Slewing=False, Tracking=self.mount.tracking, UTCDate=utc_iso(time.time())
        )
        return values

    def _place(self) -> tuple[float, float] | None:
        """RA and Dec (degrees, J2000) of the newest plate solution of the live view, while it holds:
        solved in the last five minutes and tracked since (the rule a still's solution follows)."""
        held = self.solve.holding(self.mount.tracking_since)
        return (held[1].ra % 360.0, held[1].dec) if held is not None else None

    def _pointing(self) -> tuple[float, float]:
        place = self._place()
        if place is None:
            raise AlpacaError(
                VALUE_NOT_SET,
                "WANDA does not know where it points now: plate-solve the live view while the mount tracks (Sky panel)",
            )
        return place

    def _site(self) -> tuple[float, float]:
        site = self.site()
        if site.latitude is None or site.longitude is None:
            raise AlpacaError(VALUE_NOT_SET, "the site is not set: give WANDA a latitude and longitude")
        return site.latitude, site.longitude

    def _sidereal_time(self) -> float:
        """Local mean sidereal time, hours."""
        return local_sidereal_time(time.time(), self._site()[1]) / 15.0

    async def _set_tracking(self, parameters: Parameters) -> None:
        """On at the speed and direction the mount has (the configured sidereal step, or what the
        page set: a southern site turns the other way); a mount already tracking is left as it is."""
        try:
            if parameters.boolean("Tracking"):
                if not self.mount.tracking:
                    status = self.mount.status()
                    self.mount.start(status["speed"], status["direction"])
            else:
                await self.mount.stop()
        except WandaError as exc:
            raise AlpacaError(INVALID_OPERATION, exc.message) from None

    @staticmethod
    def _set_tracking_rate(parameters: Parameters) -> None:
        rate = parameters.integer("TrackingRate")
        if rate != DRIVE_SIDEREAL:
            raise AlpacaError(
                INVALID_VALUE, f"TrackingRate must be 0 (sidereal): the only rate this mount has, not {rate}"
            )

    def _pulse_guide(self, parameters: Parameters) -> None:
        direction = parameters.integer("Direction")
        duration_ms = parameters.integer("Duration")
        if direction not in (NORTH, SOUTH, EAST, WEST):
            raise AlpacaError(INVALID_VALUE, f"Direction must be 0..3 (north, south, east, west), not {direction}")
        if not 0 <= duration_ms <= MAX_PULSE_MS:
            raise AlpacaError(INVALID_VALUE, f"Duration must be 0..{MAX_PULSE_MS} ms, not {duration_ms}")
        if direction in (NORTH, SOUTH):
            raise AlpacaError(
                NOT_IMPLEMENTED,
                "this mount has no declination motor: guide in RA only (PHD2: Dec guide mode Off)",
            )
        if self.pulse_guiding:
            raise AlpacaError(INVALID_OPERATION, "a guide pulse is under way: wait until IsPulseGuiding is false")
        # East: the axis falls behind the sky (its steps come later); west: it gains on it.
        seconds = GUIDE_RATE * duration_ms / 1000 * (1 if direction == EAST else -1)
        try:
            made = self.mount.shift(seconds)
        except WandaError as exc:
            raise AlpacaError(INVALID_OPERATION, exc.message) from None
        if made != seconds:  # the client cannot be told: the log says it
            log.info(
                "a %d ms guide pulse west was cut short to %.3f s of sky: the motor steps no faster", duration_ms, -made
            )
        self._guiding_until = asyncio.get_running_loop().time() + duration_ms / 1000  # none overlaps
