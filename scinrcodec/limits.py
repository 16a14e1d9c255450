"""Every limit of the format and of the implementation, in one place: the check of an integer
argument against its limits, and of a large allocation against the memory free to this process.

Readers and writers import these; the spec (spec/sinr-format.md) states the same numbers.
"""
from __future__ import annotations

import functools
import math
import operator
import os
from collections.abc import Iterator

from .errors import InvalidInputError, ResultTooLargeError

MAX_DIMENSION = 2**31 - 1  # genes or cells
MAX_COUNT = 2**31 - 1  # the largest value an entry may hold
MAX_TILE_ENTRIES = 2**24 - 1  # rows x columns of one tile
MAX_CHUNK_NNZ = 2**40  # nonzeros in one chunk: bounds every histogram count
MAX_NAME_BYTES = 4096  # UTF-8 bytes of one gene or cell name
MAX_TEXT_CHUNK_BYTES = 64 << 20  # what a zarr chunk of strings may inflate to, at the least (a long uns string)
MAX_FOOTER_BYTES = 256 << 20
MSGPACK_DEPTH = 64  # the deepest value a MessagePack payload may hold (spec §3.5; the core's msgpack.cpp too)
MAX_CHUNK_HEADER_BYTES = 64 << 20
MAX_SECTION_BYTES = 1 << 40
MAX_SIREN_LAYERS = 16
MAX_SIREN_WIDTH = 512
MAX_SIREN_SHIFT = 62
MAX_SIREN_MULTIPLIER = 2**40
SIREN_ACCUMULATOR_BOUND = 2**62  # |W x| * |w_mult| + |b| * |b_mult| of every neuron
MAX_ERROR_LIMIT = 2**31 - 2  # --max-error E
MAX_TILE_NNZ = 2**20  # the tile_nnz target the encoder may be given
MAX_PATCH_NNZ = 2**40  # the patch_nnz target (nonzeros of a band over the whole matrix)
DEFAULT_CHUNK_CELLS = 2048  # a default chunk's cells, more where cells are small, fewer where deep
CHUNK_NNZ_AIM = 2**21  # the nonzeros a default chunk aims at (encoder.options.default_chunk_cells)
MAX_DEFAULT_CHUNK_CELLS = 16 * DEFAULT_CHUNK_CELLS  # raw matrices 3.7-4.5% smaller than at 8x (benchmarks.raw)
DEEP_CHUNK_CELLS_STEP = 64  # deep cells' default chunks hold a multiple of this many cells (default_chunk_cells)
DEFAULT_TILE_NNZ = 256  # at every size: 130 at 1e9 cost 3% of the file for reads 5-15% faster
DEFAULT_MAX_BANDS = 512  # bands a default plan stops at (about 9e7 nonzeros): a cell read decodes one tile per band
MAX_JOBS = 4096  # threads of one read or encode (jobs=)
LARGE_ALLOCATION = 1 << 30  # arrays from this size are checked against the memory free (check_allocation)


def checked_integer(name: str, value, low: int, high: int) -> int:
    """`value` as an int, InvalidInputError naming `name` unless it is an integer (not a bool, not
    a float however whole) within low..high: what every option and argument of a count is checked by."""
    try:
        if isinstance(value, bool):  # an int to Python, never a count here
            raise TypeError
        value = operator.index(value)  # ints and numpy's integers (0-d arrays too), never a float
    except TypeError:
        raise InvalidInputError(f"{name} must be an integer, not {value!r}") from None
    if not low <= value <= high:
        raise InvalidInputError(f"{name} must be between {low:,} and {high:,}, not {value:,}")
    return value


def checked_jobs(jobs) -> int | None:
    """jobs= as every read and encode takes it: None (usable_cpus), or 1 to MAX_JOBS threads."""
    return None if jobs is None else checked_integer("jobs", jobs, 1, MAX_JOBS)


def read_threads(jobs: int | None) -> int:
    """Threads a read runs for jobs=: usable_cpus() by default; an explicit jobs= is honoured beyond a
    container's quota (which may be wrong) but not beyond the CPUs the process runs on, where its
    kernels, all CPU-bound, only add thread starts (jobs=256 on 2 cores: a cell read 8.6 ms instead
    of 1.4, a gene 3.2 ms instead of 0.4) and chunk-sized scratch per thread."""
    return usable_cpus() if jobs is None else max(1, min(jobs, runnable_cpus()))


def runnable_cpus() -> int:
    """The CPUs this process can run on: its affinity where the system has one (a batch scheduler's
    cpuset, taskset), which no thread leaves, else every CPU of the machine (os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def usable_cpus() -> int:
    """The CPUs this process may use: what `jobs=None` means. Those it runs on (runnable_cpus), and
    no more than its cgroup's CPU quota allows (a container's --cpus, a Kubernetes limit):
    os.cpu_count() counts every core of the machine, and 64 threads on 2 usable cores made a cell
    read 7x slower. The affinity is asked each time (a call, 0.4 us), the quota once per process
    (files to read, tens of us: a tenth of a cell's read)."""
    cpus = runnable_cpus()
    quota = _process_cpu_quota()
    return max(1, min(cpus, quota)) if quota is not None else cpus


@functools.cache
def _process_cpu_quota() -> int | None:
    return cgroup_cpu_quota()


def available_memory() -> int | None:
    """Bytes this process can still be given: what the machine has free (Linux's MemAvailable), or
    less where its memory cgroup (a batch scheduler's job or a container) allows less; None where
    neither says."""
    free = None
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    allowed = cgroup_headroom()
    return allowed if free is None or (allowed is not None and allowed < free) else free


# cgroup version -> (its memory controller's limit, usage, reclaimable line in memory.stat)
_CGROUP_MEMORY = {2: ("memory.max", "memory.current", "inactive_file"),
                  1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}
PROC_CGROUP, CGROUP_MOUNT = "/proc/self/cgroup", "/sys/fs/cgroup"


def _cgroups(controller: str, proc_cgroup: str, mount: str) -> Iterator[tuple[int, str]]:
    """(cgroup version, folder) of this process's group of `controller` ('memory', 'cpu') and of each
    group above it, its own first; nothing where the system has no cgroups."""
    try:
        with open(proc_cgroup, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if not path.startswith("/"):
            continue
        if hierarchy == "0" and not controllers:
            version, bases = 2, [mount]
        elif controller in controllers.split(","):  # v1: a folder per hierarchy, named by its controllers
            version, bases = 1, [os.path.join(mount, controllers), os.path.join(mount, controller)]
        else:
            continue
        base = next((b for b in bases if os.path.isdir(b)), None)
        if base is None:
            continue
        parts = [part for part in path.split("/") if part]
        if ".." in parts or not os.path.isdir(os.path.join(base, *parts)):  # a container's own namespace, whose
            parts = []  # group is the mount's root (a group outside it is listed through '..')
        for depth in range(len(parts), -1, -1):
            yield version, os.path.join(base, *parts[:depth])


def cgroup_headroom(proc_cgroup: str = PROC_CGROUP, mount: str = CGROUP_MOUNT) -> int | None:
    """Bytes this process's memory cgroup and each one above it still allow (the least of their
    limits less what they hold, file cache that can be dropped not counted), or None where none has
    a limit: a job given 8 GB of a 256 GB machine is killed past its 8 GB, whatever MemAvailable says."""
    allowed = [_group_headroom(group, *_CGROUP_MEMORY[version])
               for version, group in _cgroups("memory", proc_cgroup, mount)]
    return min((a for a in allowed if a is not None), default=None)


def cgroup_cpu_quota(proc_cgroup: str = PROC_CGROUP, mount: str = CGROUP_MOUNT) -> int | None:
    """The CPUs this process's cgroup and each one above it let it use (the least quota over its
    period, rounded up), or None where none has a quota."""
    quotas = []
    for version, group in _cgroups("cpu", proc_cgroup, mount):
        try:
            if version == 2:
                with open(os.path.join(group, "cpu.max"), encoding="ascii") as fh:
                    quota, _, period = fh.read().strip().partition(" ")
                if quota == "max":
                    continue
            else:
                with open(os.path.join(group, "cpu.cfs_quota_us"), encoding="ascii") as fh:
                    quota = fh.read().strip()
                with open(os.path.join(group, "cpu.cfs_period_us"), encoding="ascii") as fh:
                    period = fh.read().strip()
            quota, period = int(quota), int(period)
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if quota > 0 and period > 0:  # v1 writes "no quota" as -1
            quotas.append(-(-quota // period))
    return min(quotas, default=None)


def _group_headroom(group: str, limit_file: str, usage_file: str, reclaimable: str) -> int | None:
    """One cgroup's limit less what it holds, or None without a limit (or files to read)."""
    try:
        with open(os.path.join(group, limit_file), encoding="ascii") as fh:
            limit = fh.read().strip()
        if limit == "max" or int(limit) >= 1 << 62:  # v1 writes "no limit" as about 2**63
            return None
        with open(os.path.join(group, usage_file), encoding="ascii") as fh:
            used = int(fh.read())
        cache = 0
        with open(os.path.join(group, "memory.stat"), encoding="ascii") as fh:
            for line in fh:
                key, _, value = line.partition(" ")
                if key == reclaimable:
                    cache = int(value)
                    break
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return max(0, int(limit) - max(0, used - cache))


def check_allocation(nbytes: int, what: str) -> None:
    """Raise ResultTooLargeError where `what` needs arrays of `nbytes` bytes, more than this process
    can be given (available_memory): Linux grants a larger request (overcommit) and kills the process
    as it fills the memory, past any except (a file of 18 KB may declare 2**31-1 genes, whose
    gene-major index alone is 16 GiB)."""
    if nbytes < LARGE_ALLOCATION:
        return
    free = available_memory()
    if free is not None and nbytes > free:
        raise ResultTooLargeError(f"{what} needs {nbytes / 2**30:,.1f} GiB of memory, more than the "
                                  f"{free / 2**30:,.1f} GiB free to this process")


def check_chunk(name: str, chunks: tuple[int, ...], shape: tuple[int, ...], itemsize: int, what: str,
                reader: str) -> None:
    """Refuse an array's chunk, which `reader` (HDF5, zarr) inflates whole to read any item of it,
    where it is LARGE_ALLOCATION or more yet larger than the part of the array it holds (3 items in
    a chunk of 2**28, a 2 MB file, took 2.1 GB and 2 s to read; no writer makes such chunks), or
    more than the memory free."""
    items = math.prod(chunks)
    held = math.prod(min(c, n) for c, n in zip(chunks, shape))
    if items > held and items * itemsize >= LARGE_ALLOCATION:
        raise InvalidInputError(f"{what}: {name} stores {held:,} items ({held * itemsize:,} bytes) in a chunk of "
                                f"{items:,} ({items * itemsize:,} bytes), which {reader} inflates whole to read any "
                                "of them")
    check_allocation(items * itemsize, f"{what}: a chunk of {name}")
