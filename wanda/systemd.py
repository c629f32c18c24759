"""systemd's notify protocol, spoken directly (no library): one datagram per message to the
socket in $NOTIFY_SOCKET. Nothing happens when that is unset (not run by systemd).

READY=1 when the server serves, WATCHDOG=1 from the event loop every half $WATCHDOG_USEC (a frozen
loop stops the pings, and systemd kills and restarts the service: the failure of the old backend,
healed by itself), STOPPING=1 at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        self.address = address
        self.watchdog_interval: float | None = None
        usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
        if address and usec and (not pid or pid == str(os.getpid())):
            try:
                self.watchdog_interval = int(usec) / 1e6 / 2
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, message: str) -> bool:
        """Send one state change; False (and a log line) when systemd cannot be told."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a datagram either goes at once or not at all
                sock.sendto(message.encode(), self.address)
            return True
        except OSError as exc:
            log.warning("could not notify systemd (%s): %s", message.split("\n")[0], exc)
            return False

    async def watchdog(self) -> None:
        """Ping from the event loop itself: if the loop freezes, the pings stop."""
        assert self.watchdog_interval is not None
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
