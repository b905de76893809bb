"""Timing shared by the Python benchmark scripts of bench/ (they run as scripts, so their own
folder is on sys.path)."""
import statistics
import time


def median_seconds(fn, runs):
    """The median wall time of `runs` calls of fn()."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
