#!/usr/bin/env bash
# The Raspberry Pi part of scripts/setup.sh (it runs this on a Pi; run it again after changing
# WANDA_SENSOR_DPC):
# - brings picamera2 and libcamera up to date: WANDA needs picamera2 0.3.20 or newer, earlier
#   Bookworm images shipped older ones, and apt never upgrades an installed package unasked;
# - sets the HQ camera's on-sensor defective pixel correction (the imx477 driver's dpc_enable),
#   off unless WANDA_SENSOR_DPC=on: it removes faint stars along with the hot pixels. The option
#   in /etc/modprobe.d/ holds from the next boot; the running driver is set now, and takes it at
#   the camera's next start.
# WANDA_SYSTEM_ROOT prefixes the system paths (for the tests); SUDO overrides how root is asked.
set -euo pipefail

root="${WANDA_SYSTEM_ROOT:-}"
if [ -z "${SUDO+set}" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
fi
case "${WANDA_SENSOR_DPC:-off}" in
    on | 1 | true | yes) dpc=1 ;;
    off | 0 | false | no) dpc=0 ;;
    *) echo "WANDA_SENSOR_DPC must be on or off, not ${WANDA_SENSOR_DPC}" >&2; exit 2 ;;
esac

$SUDO apt-get update -qq
# install = upgrade to the newest for packages already there.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-picamera2 python3-libcamera \
    python3-lgpio python3-gpiozero >/dev/null

$SUDO mkdir -p "$root/etc/modprobe.d"
echo "options imx477 dpc_enable=$dpc" | $SUDO tee "$root/etc/modprobe.d/wanda-imx477.conf" >/dev/null
parameter="$root/sys/module/imx477/parameters/dpc_enable"
if [ -e "$parameter" ]; then
    echo "$dpc" | $SUDO tee "$parameter" >/dev/null
fi
echo "imx477 on-sensor defective pixel correction: $([ "$dpc" = 1 ] && echo on || echo off)" >&2
