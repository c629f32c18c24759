"""What every Alpaca device has: the common members, connection, and the table of members.

A device lists its members as ``gets`` and ``puts``: lower-case name to a function of the
request's parameters (which may be a coroutine function). Members of the ASCOM interface that the
device lacks are named in ``not_implemented`` and answer 0x400 to either verb, as a PUT to a
property in ``read_only`` does; a name in none of them is no member of the interface, and the
request is malformed (HTTP 400). While a device is not connected, only the members in ``ALWAYS``
answer; the rest answer 0x407.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from wanda import __version__
from wanda.alpaca.protocol import (
    ACTION_NOT_IMPLEMENTED,
    NOT_CONNECTED,
    AlpacaError,
    Parameters,
    not_implemented,
    shown,
)
from wanda.timestamps import utc_iso

Member = Callable[[Parameters], Any | Awaitable[Any]]

# Members that answer whether or not the device is connected (the client's way in).
ALWAYS = frozenset(
    {
        "connected",
        "connect",
        "disconnect",
        "connecting",
        "description",
        "driverinfo",
        "driverversion",
        "interfaceversion",
        "name",
        "supportedactions",
    }
)


def constant(value: Any) -> Member:
    """A member that always answers ``value``."""
    return lambda parameters: value


def fits_time(unix: float) -> str:
    """An instant as ASCOM writes it (FITS DATE-OBS style, UTC, no zone): 2026-12-02T08:11:49.123."""
    return utc_iso(unix).removesuffix("Z")


class AlpacaDevice:
    """The members every device has; subclasses add theirs to ``gets``, ``puts``, ``not_implemented``."""

    device_type = ""  # "camera", "telescope"
    interface_version = 0

    def __init__(self, name: str, description: str, unique_id: str):
        self.name = name
        self.description = description
        self.unique_id = unique_id
        self.connected = False
        self.gets: dict[str, Member] = {
            "connected": lambda p: self.connected,
            "connecting": lambda p: False,  # connecting takes no time: nothing to wait for
            "description": lambda p: self.description,
            "driverinfo": lambda p: f"WANDA {__version__}: the telescope controller's own Alpaca server",
            "driverversion": lambda p: __version__,
            "interfaceversion": lambda p: self.interface_version,
            "name": lambda p: self.name,
            "supportedactions": lambda p: [],
            "devicestate": self._device_state,
        }
        self.puts: dict[str, Member] = {
            "connected": self._set_connected,
            "connect": lambda p: self.connect(),
            "disconnect": lambda p: self.disconnect(),
            "action": self._action,
        }
        self.not_implemented: set[str] = {"commandblind", "commandbool", "commandstring"}
        # Properties that are read here and set elsewhere (or nowhere): a PUT answers 0x400, with
        # where to set it when there is such a place.
        self.read_only: dict[str, str] = {}

    def configured(self, number: int) -> dict[str, Any]:
        """The device as /management/v1/configureddevices lists it."""
        return {
            "DeviceName": self.name,
            "DeviceType": self.device_type.capitalize(),
            "DeviceNumber": number,
            "UniqueID": self.unique_id,
        }

    def member(self, name: str, verb: str) -> Member | None:
        """The function that answers ``verb`` (GET or PUT) on ``name``; None when the other verb has it."""
        table = self.gets if verb == "GET" else self.puts
        if verb == "PUT" and name in self.read_only:
            hint = self.read_only[name]
            error = not_implemented(f"setting {name}")
            raise AlpacaError(error.number, f"{error.message} ({hint})" if hint else error.message)
        if name in table:
            if not self.connected and name not in ALWAYS:
                raise AlpacaError(NOT_CONNECTED, f"the {self.device_type} is not connected: connect it first")
            return table[name]
        if name in self.not_implemented:
            raise not_implemented(name)
        return None

    def knows(self, name: str) -> bool:
        return name in self.gets or name in self.puts or name in self.not_implemented or name in self.read_only

    # -- connection -----------------------------------------------------------------------------

    def connect(self) -> None:
        self.connected = True

    async def disconnect(self) -> None:
        self.connected = False

    async def _set_connected(self, parameters: Parameters) -> None:
        if parameters.boolean("Connected"):
            self.connect()
        else:
            await self.disconnect()

    def _action(self, parameters: Parameters) -> None:
        action = parameters.required("Action")
        raise AlpacaError(
            ACTION_NOT_IMPLEMENTED, f"the action {shown(action)} is not supported (SupportedActions is empty)"
        )

    # -- DeviceState ----------------------------------------------------------------------------

    def operational(self) -> dict[str, Any]:
        """The operational properties DeviceState reports (each one that answers now)."""
        return {}

    def _device_state(self, parameters: Parameters) -> list[dict[str, Any]]:
        values = [{"Name": name, "Value": value} for name, value in self.operational().items()]
        values.append({"Name": "TimeStamp", "Value": fits_time(time.time())})
        return values
