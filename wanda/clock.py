"""The Pi's clock: whether it is synchronised, and setting it from the observer's phone.

A Raspberry Pi has no battery-backed clock. In a field without a network it starts from the time
systemd-timesyncd saved at the last shutdown, hours or days behind, and plate solving, altitudes
and every FITS date depend on it. The observer's phone knows the time: the page compares the two
and offers to set the Pi's.

WANDA never runs as root. It asks systemd-timedated through `timedatectl`, which the polkit rule
`wanda-clock.rules` (installed beside `wanda.service`) lets the `wanda` user do: set the time, and
switch NTP off and on again around it (timedated refuses to set the time while NTP is on, and NTP
is on, unsynchronised, in a field). A clock NTP has synchronised is never set from a phone.

Blocking (a subprocess): call from a thread.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass

from wanda.errors import ErrorCode, WandaError

# Times a phone may set: from 2026 (earlier is a phone whose own clock is wrong) to 2100.
EARLIEST = 1_767_225_600
LATEST = 4_102_444_800
FIX = "install wanda-clock.rules as README.md says (Running under systemd)"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClockState:
    synchronized: bool | None  # by NTP; None when it cannot be told (no systemd-timedated)
    ntp: bool | None  # whether NTP synchronisation is switched on
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"synchronized": self.synchronized, "ntp": self.ntp, "detail": self.detail}


class SystemClock:
    """The system clock through ``command`` (timedatectl, or a stand-in of the tests)."""

    def __init__(self, command: str = "timedatectl", timeout: float = 5.0):
        self.command = command
        self.timeout = timeout
        self._setting = threading.Lock()  # two sets at once would interleave NTP's off and on

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.command, *args], capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except FileNotFoundError:
            raise WandaError(
                ErrorCode.CLOCK_ERROR, f"{self.command} is not installed: the clock cannot be set"
            ) from None
        except subprocess.TimeoutExpired:
            raise WandaError(ErrorCode.CLOCK_ERROR, f"{self.command} did not answer in {self.timeout:g} s") from None

    def state(self) -> ClockState:
        try:
            result = self._run("show", "--property=NTP", "--property=NTPSynchronized")
        except WandaError as exc:
            return ClockState(None, None, exc.message)
        if result.returncode != 0:
            return ClockState(None, None, _first_line(result.stderr) or f"{self.command} failed")
        values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        synchronized, ntp = _yes(values.get("NTPSynchronized")), _yes(values.get("NTP"))
        if synchronized:
            detail = "synchronised by NTP"
        elif ntp:
            detail = "not synchronised (NTP is on but has no server: no network?)"
        else:
            detail = "not synchronised (NTP is off)"
        return ClockState(synchronized, ntp, detail)

    def set(self, unix_time: float) -> ClockState:
        """Set the clock to ``unix_time`` (seconds since 1970, UTC) unless NTP keeps it."""
        with self._setting:
            before = self.state()
            if before.synchronized:
                raise WandaError(
                    ErrorCode.CLOCK_SYNCHRONIZED, "the Pi's clock is synchronised by NTP: it is not set by hand"
                )
            if before.synchronized is None:
                raise WandaError(ErrorCode.CLOCK_ERROR, f"the clock cannot be set here: {before.detail}")
            if before.ntp:
                self._check(self._run("set-ntp", "false"), "switch NTP off")
            try:
                # The time goes as seconds since the epoch ("@..."): no time zone to get wrong.
                self._check(self._run("set-time", f"@{round(unix_time)}"), "set the time")
            finally:
                if before.ntp:  # NTP takes over again when a network comes (it never jumps a clock back)
                    self._ntp_back_on()
            return self.state()

    def _ntp_back_on(self) -> None:
        """Switch NTP on again; a failure is logged, never put in the place of the set's own answer
        (the state the answer carries then shows NTP off)."""
        try:
            result = self._run("set-ntp", "true")
        except WandaError as exc:
            log.error("NTP could not be switched back on: %s", exc.message)
            return
        if result.returncode != 0:
            log.error("NTP could not be switched back on: %s", _first_line(result.stderr) or self.command)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode == 0:
            return
        reason = _first_line(result.stderr) or f"{self.command} failed"
        code = ErrorCode.PERMISSION_DENIED if "access denied" in reason.lower() else ErrorCode.CLOCK_ERROR
        hint = f": {FIX}" if code is ErrorCode.PERMISSION_DENIED else ""
        raise WandaError(code, f"could not {what}: {reason}{hint}")


def parse_unix_time(value: object) -> float:
    """A time a client sends to set the clock: seconds since 1970 (UTC), 2026 to 2100."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise WandaError(ErrorCode.VALIDATION_ERROR, "unix_time: must be seconds since 1970 (UTC), a number")
    if not EARLIEST <= value <= LATEST:
        raise WandaError(
            ErrorCode.VALIDATION_ERROR,
            f"unix_time: {value:g} is not between 2026 and 2100 (is the sending device's own clock right?)",
        )
    return float(value)


def now() -> dict[str, float]:
    """The server's time, for a client to compare its own with."""
    return {"server_time": round(time.time(), 3)}


def _yes(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get((value or "").strip())


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
