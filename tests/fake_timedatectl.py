#!/usr/bin/env python3
"""A stand-in for `timedatectl`, for the tests: copied as `timedatectl` into a folder on PATH, it
keeps its state in `timedatectl.json` beside itself and answers as systemd-timedated does (as
read in systemd's timedatectl.c and timedated.c): `show --property=...` prints key=value lines,
`set-time` is refused while NTP is on ("Automatic time synchronization is enabled") and without
polkit's permission ("Access denied"), `set-ntp` switches NTP. The clock itself is not touched:
the time set is recorded (`set_to`), and every call (`calls`)."""

import json
import sys
from pathlib import Path

STATE = Path(__file__).with_suffix(".json")


def main(args: list[str]) -> int:
    state = json.loads(STATE.read_text())
    state["calls"].append(args)
    try:
        if args[:1] == ["show"]:
            wanted = [a.split("=", 1)[1] for a in args[1:] if a.startswith("--property=")]
            values = {"NTP": state["ntp"], "NTPSynchronized": state["synchronized"]}
            for name in wanted:
                print(f"{name}={'yes' if values[name] else 'no'}")
            return 0
        if args[:1] == ["set-ntp"] and len(args) == 2:
            if args[1] == "true" and state.get("ntp_on_fails"):
                print("Failed to set ntp: Connection timed out", file=sys.stderr)
                return 1
            if state["denied"]:
                print("Failed to set ntp: Access denied", file=sys.stderr)
                return 1
            state["ntp"] = args[1] == "true"
            return 0
        if args[:1] == ["set-time"] and len(args) == 2:
            if state["denied"]:
                print("Failed to set time: Access denied", file=sys.stderr)
                return 1
            if state["ntp"]:
                print("Failed to set time: Automatic time synchronization is enabled", file=sys.stderr)
                return 1
            if not args[1].startswith("@"):
                print(f"Failed to parse time specification '{args[1]}': Invalid argument", file=sys.stderr)
                return 1
            state["set_to"] = float(args[1][1:])
            return 0
        print(f"Unknown command verb {args[:1]}.", file=sys.stderr)
        return 1
    finally:
        temporary = STATE.with_suffix(".tmp")  # whole or not at all: the test reads it meanwhile
        temporary.write_text(json.dumps(state))
        temporary.replace(STATE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
