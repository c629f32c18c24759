#!/usr/bin/env bash
# Install what WANDA needs on Debian 12 / Raspberry Pi OS Bookworm into ./.venv.
#   scripts/setup.sh        the server
#   scripts/setup.sh test   the server and everything its test suite needs
# System packages come from apt (as root, or through sudo); Python packages from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libturbojpeg0)
extras=""
if [ "${1:-}" = "test" ]; then
    extras="[test]"
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
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
