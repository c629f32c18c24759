"""The code's own checks, run with the suite (and so by CI): ruff's lint and format, mypy, and the
layer contracts of pyproject.toml (import-linter). Each prints what it found when it fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "wanda", "tests", "bench", "examples"),
        ("ruff", "format", "--check", "wanda", "tests", "bench", "examples"),
        ("mypy",),
        ("lint-imports", "--no-cache"),
    ],
    ids=["ruff-lint", "ruff-format", "mypy", "layers"],
)
def test_the_code_passes(command):
    result = run(str(BIN / command[0]), *command[1:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
