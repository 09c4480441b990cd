"""Timing shared by the benchmarks: every side timed in the same process, interleaved."""

import statistics
import time


def interleaved_medians(sides, repeats):
    """Run each side once to compile and warm up, then time `repeats` rounds of all sides in
    turn (so a noisy moment on a shared machine hits every side alike). Returns the median
    seconds of each side."""
    for run in sides.values():
        run()
    times = {name: [] for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
