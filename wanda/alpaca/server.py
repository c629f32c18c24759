"""The Alpaca server: its devices, their lasting unique IDs and the management API's answers."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from pathlib import Path
from typing import Any

from wanda import __version__
from wanda.alpaca.device import AlpacaDevice
from wanda.alpaca.discovery import DiscoveryResponder
from wanda.alpaca.protocol import BadRequest, TransactionCounter, shown
from wanda.storage.disk import write_atomic

log = logging.getLogger(__name__)

IDS_FILE = "alpaca.json"
API_VERSIONS = [1]


def unique_ids(state_dir: Path, device_types: list[str]) -> dict[str, str]:
    """Each device type's UniqueID: made once, kept in ``alpaca.json``, the same after a restart
    (a client recognises its devices by it). Blocking: call from a thread."""
    path = state_dir / IDS_FILE
    try:
        known = json.loads(path.read_text())
        ids = {kind: str(known[kind]) for kind in device_types if isinstance(known.get(kind), str)}
    except FileNotFoundError:
        ids = {}
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s is unreadable (%s): the Alpaca devices get new unique IDs", path, exc)
        ids = {}
    if len(ids) < len(device_types):
        ids = {kind: ids.get(kind) or str(uuid.uuid4()) for kind in device_types}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(ids, indent=1).encode())
        except OSError as exc:  # they hold for this run; clients see new devices after a restart
            log.warning("the Alpaca devices' unique IDs could not be kept in %s: %s", path, exc)
    return ids


class AlpacaServer:
    """Device 0 of each type, the server's transaction numbers and where it is reached."""

    def __init__(self, devices: list[AlpacaDevice], *, http_port: int):
        self.devices = {device.device_type: device for device in devices}
        self.transactions = TransactionCounter()
        self.http_port = http_port  # what discovery answers (the real one once the server listens)
        self.discovery_port: int | None = None  # the UDP port discovery listens on, once it does
        self.responder: DiscoveryResponder | None = None

    def device(self, device_type: str, number: str) -> AlpacaDevice:
        device = self.devices.get(device_type)
        if device is None:
            known = ", ".join(sorted(self.devices))
            raise BadRequest(f"there is no device type {shown(device_type)} here (this server has: {known})")
        if number != "0":
            raise BadRequest(f"there is no {device_type} {shown(number)} here: this server has {device_type} 0 only")
        return device

    def description(self) -> dict[str, Any]:
        return {
            "ServerName": "WANDA",
            "Manufacturer": "WANDA, the open telescope controller",
            "ManufacturerVersion": __version__,
            "Location": socket.gethostname(),
        }

    def configured_devices(self) -> list[dict[str, Any]]:
        return [device.configured(0) for device in self.devices.values()]
