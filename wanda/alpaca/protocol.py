"""ASCOM Alpaca's rules, apart from HTTP: errors, parameters, transaction numbers, the envelope.

The Alpaca device API (ASCOM's "Alpaca API" reference) answers every device call with HTTP 200 and
``{"Value"?, "ClientTransactionID", "ServerTransactionID", "ErrorNumber", "ErrorMessage"}``: a
device's failure is an ASCOM error number in the body (``AlpacaError``). A request the server
cannot read (an unknown device, a member that does not exist, a parameter that does not parse or
is missing) is HTTP 400 with a plain-text reason (``BadRequest``). GET parameters are matched
whatever their case; PUT parameters are form fields matched exactly, as the specification asks
(the ASCOM simulators refuse ``ID`` for ``Id``); a ``ClientID`` or ``ClientTransactionID`` in the
wrong case is not ours to trust, and reads as absent.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from typing import Any

# ASCOM's reserved error numbers (the ones WANDA answers with).
NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
VALUE_NOT_SET = 0x402
NOT_CONNECTED = 0x407
INVALID_OPERATION = 0x40B
ACTION_NOT_IMPLEMENTED = 0x40C
DRIVER_ERROR = 0x500  # 0x500..0xFFF: the driver's own failures

UINT32_MAX = 2**32 - 1
# Where Alpaca's paths begin (none meets WANDA's own /api/<part>/...).
PATH_PREFIXES = ("/api/v1/", "/management/", "/setup")


# Numbers as the specification writes them: ASCII digits (Python's int() would take "1_000" and
# other scripts' digits).
INTEGER = re.compile(r"[+-]?[0-9]+")
DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def is_alpaca_path(path: str) -> bool:
    return path.startswith(PATH_PREFIXES)


def asks_for_basic(path: str) -> bool:
    """Where a 401 asks for HTTP Basic: the device and management API, which clients call. Not the
    setup page, which browsers open: a browser that learned Basic credentials would send them with
    every request to WANDA, from any site, until it is closed."""
    return path.startswith(PATH_PREFIXES[:2])


def shown(text: str, limit: int = 40) -> str:
    """A client's text as a reason quotes it: repr, cut short."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


class AlpacaError(Exception):
    """A device's answer that is an ASCOM error (HTTP 200, ``ErrorNumber`` set)."""

    def __init__(self, number: int, message: str):
        super().__init__(message)
        self.number = number
        self.message = message


class BadRequest(Exception):
    """A request the server cannot read: HTTP 400 with this text."""


def not_implemented(member: str) -> AlpacaError:
    return AlpacaError(NOT_IMPLEMENTED, f"{member} is not implemented by this device")


class Parameters:
    """A request's parameters: the query of a GET (names in any case) or the form of a PUT
    (names exactly as the specification spells them)."""

    def __init__(self, values: Mapping[str, str], *, exact: bool):
        self._exact = exact
        self._values: dict[str, str] = {}
        for name, value in values.items():
            self._values.setdefault(name if exact else name.lower(), value)

    def raw(self, name: str) -> str | None:
        return self._values.get(name if self._exact else name.lower())

    def required(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            hint = ""
            if self._exact and any(key.lower() == name.lower() for key in self._values):
                hint = f" (the form field is spelt {name}: Alpaca's PUT fields are case-sensitive)"
            raise BadRequest(f"the parameter {name} is missing{hint}")
        return value

    def number(self, name: str) -> float:
        text = self.required(name)
        if not DECIMAL.fullmatch(text) or not math.isfinite(value := float(text)):
            raise BadRequest(f"{name}: {shown(text)} is not a number")
        return value

    def integer(self, name: str) -> int:
        text = self.required(name)
        if not INTEGER.fullmatch(text):
            raise BadRequest(f"{name}: {shown(text)} is not an integer")
        return int(text)

    def boolean(self, name: str) -> bool:
        text = self.required(name)
        if text.lower() not in ("true", "false"):
            raise BadRequest(f"{name}: {shown(text)} is not True or False")
        return text.lower() == "true"

    def transaction_ids(self) -> tuple[int, int]:
        """ClientID and ClientTransactionID: 0 when absent, 400 when not a uint32."""
        return _uint32(self, "ClientID"), _uint32(self, "ClientTransactionID")


def _uint32(parameters: Parameters, name: str) -> int:
    text = parameters.raw(name)
    if text is None or text == "":
        return 0
    if not INTEGER.fullmatch(text):
        raise BadRequest(f"{name}: {shown(text)} is not an unsigned 32-bit integer")
    value = int(text)
    if not 0 <= value <= UINT32_MAX:
        raise BadRequest(f"{name}: {value} is not an unsigned 32-bit integer (0..{UINT32_MAX})")
    return value


class TransactionCounter:
    """The server's transaction numbers: 1, 2, 3, ... (wrapping within a uint32, never 0)."""

    def __init__(self) -> None:
        self._count = itertools.count(1)

    def next(self) -> int:
        return (next(self._count) - 1) % UINT32_MAX + 1


def envelope(
    client_transaction: int, server_transaction: int, value: Any = None, error: AlpacaError | None = None
) -> dict[str, Any]:
    """The body of a device call's answer (``Value`` only when there is one and no error)."""
    body: dict[str, Any] = {}
    if value is not None and error is None:
        body["Value"] = value
    body.update(
        ClientTransactionID=client_transaction,
        ServerTransactionID=server_transaction,
        ErrorNumber=error.number if error else 0,
        ErrorMessage=error.message if error else "",
    )
    return body
