"""The long fuzzing run: tests/test_fuzz.py with many more examples per operation.

    python bench/fuzz.py                  # 300 examples per REST operation, then the WebSocket fuzzer
    python bench/fuzz.py --examples 1000

The same tests as in CI (schemathesis from WANDA's OpenAPI description against a live `wanda` on
the simulated sky; no 5xx, every 4xx in the envelope, answers as described; the WebSocket
fuzzer), only longer. Prints pytest's summary; the exit code is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=300, help="examples per operation (default 300)")
    args = parser.parse_args()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "3600", "tests/test_fuzz.py"],
        cwd=ROOT,
        env={**os.environ, "WANDA_FUZZ_EXAMPLES": str(args.examples)},
    )
    print(
        f"\n{args.examples} examples per operation in {time.monotonic() - started:.0f} s: "
        f"{'PASS' if result.returncode == 0 else 'FAIL'}"
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
