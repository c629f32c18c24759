"""bench/solve.py --frames (the whole chain on simulated frames) and --live, run briefly: they run
to the end and print their figures. Wall-clock figures are printed, never asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "solve.py"


@pytest.fixture(autouse=True)
def solver_installed():
    """The bench needs astrometry.net: missing, the test fails and says what to install (never skips)."""
    if shutil.which("solve-field") is None:
        pytest.fail(
            "astrometry.net is not installed: scripts/setup.sh test (or apt install astrometry.net astrometry-data-tycho2-10-19)"
        )


def run_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_frames_mode_renders_analyses_and_solves_simulated_frames():
    result = run_script(
        "--frames", "--optics", "50", "--pointings", "2", "--polar", "1", "--galactic", "0", timeout=120
    )
    output = result.stdout
    assert result.returncode in (0, 1), output + result.stderr  # 1: a target missed, which is a figure
    assert "Traceback" not in output + result.stderr
    assert "2 pointings an optic (1 north pole, 1 south pole)" in output, output
    # The chain before the solver: the analysis found stars in both frames and listed them.
    chain = re.search(r"^  50mm   1/30 +(\d+) / \S+ / (\d+) +(\d+) / \S+ / (\d+) +(\d+) / \S+ / (\d+) ", output, re.M)
    assert chain, output
    catalogue_min, _, found_min, _, listed_min, listed_max = (int(g) for g in chain.groups())
    assert catalogue_min > 0 and found_min > 0 and 0 < listed_min <= listed_max <= 50, output
    # A row per mode with its share solved; the checks name the targets.
    for mode in ("blind", "scale"):
        assert re.search(rf"^  50mm   1/30 {mode} +\d/2 ", output, re.M), output
        assert re.search(rf"^(PASS|FAIL)  50 mm 1/30 s {mode}: solved >= 98%", output, re.M), output
    assert re.search(r"^(PASS|FAIL)  50 mm 1/30 s scale: centre < 1 px", output, re.M), output


@pytest.mark.slow
def test_the_live_mode_counts_frames_and_solutions_of_a_real_wanda():
    result = run_script("--live", "--viewers", "2", "--seconds", "4", "--warmup", "1", "--nice", "0", timeout=120)
    output = result.stdout
    assert result.returncode in (0, 1), output + result.stderr
    assert "Traceback" not in output + result.stderr
    assert re.search(r"^2 viewers +fps min +\d", output, re.M), output
    assert re.search(r"^2 viewers \+ continuous solve +fps min +\d", output, re.M), output
    assert "idle reference max" in output, output
    assert re.search(r"^ +solutions [1-9]\d* \(", output, re.M), output  # continuous solving solved frames
    assert re.search(r"^(PASS|FAIL)  live: continuous solutions, all solved", output, re.M), output
