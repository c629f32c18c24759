#!/usr/bin/env bash
# Install what WANDA needs on Debian 12 / Raspberry Pi OS Bookworm into ./.venv.
#   scripts/setup.sh        the server
#   scripts/setup.sh test   the server and everything its test suite needs
# System packages come from apt (as root, or through sudo); Python packages from PyPI.
# On a Raspberry Pi it also runs scripts/pi-camera.sh: picamera2 and lgpio from apt, upgraded (they
# are not on PyPI in a form that works with the Pi's libcamera), and the HQ camera's on-sensor
# defective pixel correction off; the venv gets the system's site packages to see them.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libturbojpeg0)
extras=""
if [ "${1:-}" = "test" ]; then
    extras="[test]"
    packages+=(chromium)  # the browser tests drive Debian's Chromium through Playwright
fi
on_pi=false
if grep -qs "Raspberry Pi" /proc/device-tree/model; then
    on_pi=true
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "WANDA needs Python 3.11 or newer; this python3 is $(python3 --version)" >&2
    exit 1
}
# Debian's python3 needs python3-venv for `python3 -m venv` to bring pip along.
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# The plate solver: astrometry.net and the Tycho-2 index files for fields of 1 to 30 degrees (36 MB:
# lenses up to about 270 mm on the HQ camera's preview; `wanda doctor` names the package a longer
# optic needs). Without its recommends: they are an image toolkit WANDA does not use (100 MB).
solver=(astrometry.net astrometry-data-tycho2-10-19)
missing_solver=()
for package in "${solver[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing_solver+=("$package")
done
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_solver[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    if [ ${#missing[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [ ${#missing_solver[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing_solver[@]}" >/dev/null
    fi
fi

if $on_pi; then
    scripts/pi-camera.sh
    # picamera2 lives in the system's site packages; a venv made without them cannot see it.
    if [ -x .venv/bin/python ] && ! grep -qs "include-system-site-packages = true" .venv/pyvenv.cfg; then
        echo "recreating .venv with --system-site-packages (picamera2 comes from apt)" >&2
        rm -rf .venv
    fi
    [ -x .venv/bin/python ] || python3 -m venv --system-site-packages .venv
else
    [ -x .venv/bin/python ] || python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
