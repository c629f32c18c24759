"""scripts/pi-camera.sh, the Raspberry Pi part of setup, against a system root of the test's own
and an apt-get that records what it is asked (the only thing replaced)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "pi-camera.sh"


@pytest.fixture
def pi(tmp_path):
    """A system root with the imx477 driver loaded (its default: correction on)."""
    root = tmp_path / "root"
    parameter = root / "sys/module/imx477/parameters/dpc_enable"
    parameter.parent.mkdir(parents=True)
    parameter.write_text("1\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "apt.log"}\n')
    apt.chmod(0o755)
    return root, tmp_path / "apt.log", bin_dir


def run(pi, **env) -> subprocess.CompletedProcess:
    root, _, bin_dir = pi
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "WANDA_SYSTEM_ROOT": str(root),
        "SUDO": "",
        **env,
    }
    return subprocess.run(["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=30)


def test_pi_setup_upgrades_picamera2_and_turns_the_star_eater_off(pi):
    root, apt_log, _ = pi
    result = run(pi)
    assert result.returncode == 0, result.stderr
    calls = apt_log.read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].startswith("install -y") and "python3-picamera2" in calls[1] and "python3-libcamera" in calls[1]
    assert (root / "etc/modprobe.d/wanda-imx477.conf").read_text() == "options imx477 dpc_enable=0\n"
    assert (root / "sys/module/imx477/parameters/dpc_enable").read_text() == "0\n"  # now, not only after a reboot
    assert "correction: off" in result.stderr


def test_pi_setup_leaves_the_correction_on_when_asked_and_refuses_nonsense(pi):
    root, _, _ = pi
    assert run(pi, WANDA_SENSOR_DPC="on").returncode == 0
    assert (root / "etc/modprobe.d/wanda-imx477.conf").read_text() == "options imx477 dpc_enable=1\n"
    result = run(pi, WANDA_SENSOR_DPC="maybe")
    assert result.returncode == 2 and "must be on or off" in result.stderr


def test_pi_setup_without_the_hq_camera_driver_still_writes_the_option(pi):
    root, _, _ = pi
    (root / "sys/module/imx477/parameters/dpc_enable").unlink()
    assert run(pi).returncode == 0
    assert (root / "etc/modprobe.d/wanda-imx477.conf").exists()
