"""Analysis benchmark: accuracy against the simulated sky's truth, and the time per frame.

    python bench/analysis.py                      # FWHM 2..8 px, 0.5 s at gain 16, 20 timed frames
    python bench/analysis.py --exposure 0.1 --frames 50

For each FWHM the simulated sky renders 8-bit 1440x1080 preview frames (tracking, so no trails)
and wanda.analysis measures them: the median HFR against FWHM/2 (the half-flux radius of a
Gaussian) and the star count against the stars the truth says are brighter than 5 sigma (their
3x3 box stands 5 sigma above the sky, the detector's own rule). Then the analysis of a frame is
timed over --frames frames of the default field. Targets (issue 8): HFR and count within 10% for
FWHM 2 to 8 px; under 30 ms a frame.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import report

from wanda.analysis import analyse
from wanda.backends.sky import SimulatedSky


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exposure", type=float, default=0.5, help="seconds (default 0.5)")
    parser.add_argument("--gain", type=float, default=16.0, help="analogue gain (default 16)")
    parser.add_argument("--frames", type=int, default=20, help="frames timed (default 20)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    print(f"accuracy: 1440x1080 8-bit frames, {args.exposure} s at gain {args.gain}, seed {args.seed}")
    print(
        f"{'FWHM':>5} {'HFR truth':>10} {'measured':>9} {'error':>7} {'stars>5σ':>9} {'found':>6} {'error':>7} {'FWHM meas':>10}"
    )
    checks = []
    worst_hfr = worst_count = 0.0
    for fwhm in (2, 3, 4, 5, 6, 8):
        sky = SimulatedSky(fwhm=fwhm, seed=args.seed)
        sky.set_tracking(True)
        image = sky.render_luminance(args.exposure, args.gain).astype(np.uint8)
        truth = sky.truth()
        result = analyse(image, 255)
        want_count = truth.count_above(5)
        hfr_error = result["hfr"] / (fwhm / 2) - 1 if result["hfr"] else float("nan")
        count_error = result["star_count"] / want_count - 1 if want_count else float("nan")
        worst_hfr = max(worst_hfr, abs(hfr_error))
        worst_count = max(worst_count, abs(count_error))
        print(
            f"{fwhm:>5} {fwhm / 2:>10.2f} {result['hfr']:>9.3f} {hfr_error:>+7.1%} {want_count:>9} "
            f"{result['star_count']:>6} {count_error:>+7.1%} {result['fwhm']:>10.2f}"
        )

    sky = SimulatedSky(seed=args.seed)
    sky.set_tracking(True)
    times = []
    for _ in range(args.frames):
        image = sky.render_luminance(args.exposure, args.gain).astype(np.uint8)
        started = time.perf_counter()
        analyse(image, 255)
        times.append(1000 * (time.perf_counter() - started))
    times.sort()
    median = statistics.median(times)
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    print(
        f"\ntime per 1440x1080 frame over {args.frames} frames: median {median:.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms"
    )
    checks.append(("median HFR within 10% of FWHM/2", worst_hfr <= 0.10, f"worst {worst_hfr:.1%}"))
    checks.append(("star count within 10% of truth", worst_count <= 0.10, f"worst {worst_count:.1%}"))
    checks.append(("analysis time per frame < 30 ms", median < 30, f"median {median:.1f} ms"))
    return report(checks)


if __name__ == "__main__":
    sys.exit(main())
