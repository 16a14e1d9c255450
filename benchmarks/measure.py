"""Timing, memory and file-size helpers shared by `run` and `scale`.

Memory is the resident-set size (RSS) the kernel reports, not tracemalloc: the codec's compiled
kernels and HDF5's C library allocate outside Python's allocator, where tracemalloc sees nothing.
"""
from __future__ import annotations

import gc
import re
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

MB = 2**20


def disk_bytes(path: Path) -> int:
    """Size of a file, or of everything in a folder (BPCells and zarr write folders)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        match = re.search(rf"^{field}:\s+(\d+) kB", fh.read(), re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {field}")
    return int(match.group(1)) * 1024


def rss_bytes() -> int:
    """Resident memory of this process now."""
    return _status_kib("VmRSS")


def peak_rss_bytes() -> int:
    """Highest resident memory of this process since it started (or since reset_peak_rss)."""
    return _status_kib("VmHWM")


def reset_peak_rss() -> bool:
    """Restart the high-water mark at the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def timed_peak(fn: Callable[[], object]) -> tuple[object, float, float | None]:
    """fn()'s result, seconds, and the RSS peak during the call above the RSS before it (bytes),
    or None where the kernel does not let a process reset its peak."""
    gc.collect()
    before = rss_bytes()
    resettable = reset_peak_rss()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return result, seconds, (peak_rss_bytes() - before if resettable else None)


def median_seconds(fn: Callable, arguments: Iterable[Sequence], *, budget_s: float, min_samples: int,
                   hard_budget_s: float | None = None, keep: int = 0) -> tuple[float, int, list]:
    """Median time of fn(*args) over the arguments, stopping once `budget_s` is spent and
    `min_samples` are taken, or once `hard_budget_s` is spent with at least one sample (for calls
    that take minutes). Returns the median, the number of samples and the first `keep` results."""
    times, kept = [], []
    started = time.perf_counter()
    for args in arguments:
        start = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - start)
        if len(kept) < keep:
            kept.append(result)
        spent = time.perf_counter() - started
        if len(times) >= min_samples and spent > budget_s or hard_budget_s is not None and spent > hard_budget_s:
            break
    return statistics.median(times), len(times), kept


def warm_median_seconds(call: Callable[[], object], repeats: int) -> float:
    """Median time of `repeats` calls of call() after one call that warms it (caches, pages)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def publish(out: Path, stem: str, argv: list[str] | None, report: Callable[[str], str]) -> int:
    """Write report(command) to out/STEM.md and print it, the command being how this run was asked
    for (python -m benchmarks.STEM and its arguments); a benchmark's main returns what this does."""
    import sys

    command = f"python -m benchmarks.{stem} " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(command.strip())
    (out / f"{stem}.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0
