"""Every limit of the format and of the implementation, in one place: the check of an integer
argument against its limits, and of a large allocation against the memory free to this process.

Readers and writers import these; the spec (spec/sinr-format.md) states the same numbers.
"""
from __future__ import annotations

import operator
import os

from .errors import InvalidInputError, ResultTooLargeError

MAX_DIMENSION = 2**31 - 1  # genes or cells
MAX_COUNT = 2**31 - 1  # the largest value an entry may hold
MAX_TILE_ENTRIES = 2**24 - 1  # rows x columns of one tile
MAX_CHUNK_NNZ = 2**40  # nonzeros in one chunk: bounds every histogram count
MAX_NAME_BYTES = 4096  # UTF-8 bytes of one gene or cell name
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
DEFAULT_CHUNK_CELLS = 2048  # the fewest cells a chunk gets by default (encoder.options.default_chunk_cells)
CHUNK_NNZ_AIM = 2**21  # the nonzeros a default chunk aims at: more cells per chunk where cells are small
MAX_DEFAULT_CHUNK_CELLS = 8 * DEFAULT_CHUNK_CELLS
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


def usable_cpus() -> int:
    """The CPUs this process may run on: what `jobs=None` means. Its affinity where the system
    has one (a batch scheduler's or a container's share of a large machine: os.cpu_count() counts
    every core of the machine, and 64 threads on 2 usable cores made a cell read 7x slower), asked
    each time (os.sched_setaffinity may change it), else the machine's CPUs."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


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


# cgroup version -> (its memory controller's folder under the mount, limit, usage, reclaimable line in memory.stat)
_CGROUP_MEMORY = {2: ("", "memory.max", "memory.current", "inactive_file"),
                  1: ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}


def cgroup_headroom(proc_cgroup: str = "/proc/self/cgroup", mount: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this process's memory cgroup and each one above it still allow (the least of their
    limits less what they hold, file cache that can be dropped not counted), or None where none has
    a limit: a job given 8 GB of a 256 GB machine is killed past its 8 GB, whatever MemAvailable says."""
    try:
        with open(proc_cgroup, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    least = None
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        version = 2 if hierarchy == "0" and not controllers else 1 if "memory" in controllers.split(",") else 0
        if not version or not path.startswith("/"):
            continue
        folder, limit_file, usage_file, reclaimable = _CGROUP_MEMORY[version]
        base = os.path.join(mount, folder)
        parts = [part for part in path.split("/") if part]
        if not os.path.isdir(os.path.join(base, *parts)):  # a container's own namespace: the mount's root is the group
            parts = []
        for depth in range(len(parts), -1, -1):  # the group, then each one above it
            headroom = _group_headroom(os.path.join(base, *parts[:depth]), limit_file, usage_file, reclaimable)
            if headroom is not None:
                least = headroom if least is None else min(least, headroom)
    return least


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
