"""bench/pi.py, the script a Pi's first owner runs, against a real `wanda` on the simulated sky."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port
from live_server import Wanda

from wanda.storage.fits import fits_bytes

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "pi.py"
PASSWORD = "dark skies"


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "WANDA_PASSWORD": "", **(env or {})},
    )


def load_script():
    spec = importlib.util.spec_from_file_location("bench_pi", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def locked_wanda(tmp_path_factory):
    with Wanda(tmp_path_factory.mktemp("wanda"), password=PASSWORD) as server:
        yield server


@pytest.mark.slow
def test_the_pi_bench_passes_on_the_simulated_sky_and_restores_the_settings(tmp_path):
    with Wanda(tmp_path, password=PASSWORD) as server:
        # Settings of the owner's own, unlike the defaults and unlike what the script sets.
        server.post("/api/camera/settings", {"exposure_seconds": 0.02, "iso": 400, "file_format": "jpeg"})
        result = run_script(
            "--url",
            server.url,
            "--exposures",
            "0.05,0.2,1",
            "--cancel-after",
            "0.3",
            env={"WANDA_PASSWORD": PASSWORD},  # the environment's password, as the docstring shows
        )
        after = server.get("/api/camera/status")
        captures = server.get("/api/captures")["files"]

    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "Traceback" not in output + result.stderr
    lines = output.splitlines()
    assert all(re.match(r"(PASS|FAIL|INFO|N/A) {2,3}\S", line) for line in lines[:-1]), output
    for exposure in ("0.05", "0.2", "1"):
        assert any(line.startswith(f"PASS  still {exposure} s: applied ") for line in lines), output
        assert any(line.startswith(f"INFO  still {exposure} s FITS ") and "data min" in line for line in lines), output
    # The simulated sky has no sensor keywords: not applicable, never failed.
    assert "N/A   still 0.05 s FITS black level: BLKLEVEL not reported (simulated sky)" in lines, output
    assert any(
        line.startswith("PASS  cancel after 0.3 s of a 1 s exposure: capture answered 409 CAPTURE_CANCELLED")
        and "fresh preview frame after" in line
        for line in lines
    ), output
    assert any(line.startswith("PASS  cancel after 0.3 s of a 1 s exposure: no file written") for line in lines), output
    assert any(line.startswith("PASS  preview: frames reach a viewer") for line in lines), output
    assert "PASS  settings restored: exposure 0.02 s, iso 400, file_format jpeg" in lines, output
    assert re.fullmatch(r"summary: \d+ passed, 0 failed, \d+ not applicable", lines[-1]), output
    assert (after["exposure_seconds"], after["iso"], after["file_format"]) == (0.02, 400.0, "jpeg")
    # Three stills in two formats; the cancelled one left nothing.
    assert sorted(captures) == sorted(f"light_000{n}.{ext}" for n in (1, 2, 3) for ext in ("jpg", "fits"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "password, says",
    [("light pollution", "refused the password (401 UNAUTHORIZED)"), ("", "wants a password (401 UNAUTHORIZED)")],
)
def test_a_wrong_or_missing_password_is_one_line_and_exit_2(locked_wanda, password, says):
    result = run_script("--url", locked_wanda.url, "--password", password)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    assert says in output


@pytest.mark.slow
def test_no_server_is_one_line_and_exit_2():
    result = run_script("--url", f"http://127.0.0.1:{free_port()}")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    assert "cannot reach WANDA" in output


def test_the_built_in_fits_reader_agrees_with_what_wanda_writes():
    """The fallback for machines without astropy (which the tests have, so it needs a test)."""
    pi = load_script()
    rng = np.random.default_rng(3)
    mosaic = rng.integers(0, 4096, (31, 45), dtype=np.uint16)
    mosaic[0, 0], mosaic[0, 1] = 0, 4095
    cards = [
        ("BITDEPTH", 12, ""),
        ("DATAMAX", 4095, ""),
        ("BLKLEVEL", 256.0, "data units"),
        ("SENSDPC", "off", ""),
        ("BAYERPAT", "RGGB", ""),
        ("OBJECT", "O'Neil's 'cluster'", ""),
        ("EXPTIME", 0.500012, "seconds"),
    ]
    header, data = pi.read_fits_minimal(fits_bytes(mosaic, cards))
    assert data.dtype == np.uint16 and np.array_equal(data, mosaic)
    assert (header["BITDEPTH"], header["DATAMAX"], header["BLKLEVEL"]) == (12, 4095, 256.0)
    assert (header["SENSDPC"], header["BAYERPAT"], header["OBJECT"]) == ("off", "RGGB", "O'Neil's 'cluster'")
    assert header["EXPTIME"] == 0.500012 and header["BZERO"] == 32768

    colour = rng.integers(0, 65536, (3, 8, 5), dtype=np.uint16)
    header, data = pi.read_fits_minimal(fits_bytes(colour))
    assert header["NAXIS"] == 3 and np.array_equal(data, colour)
    # astropy, when installed, reads the same.
    astropy_header, astropy_data, reader = pi.read_fits(fits_bytes(mosaic, cards))
    if reader == "astropy":
        assert np.array_equal(astropy_data, mosaic) and astropy_header["BLKLEVEL"] == 256.0
