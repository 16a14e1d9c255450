"""Large result arrays in pages that never wait for huge pages.

numpy asks the kernel for transparent huge pages on every array from 4 MiB (madvise). Where the
kernel's setting makes such a request compact memory on the spot (defrag "madvise", a common
default) and free huge pages are short, as on this project's VM after it sat idle a few seconds,
each first touch waits: a 60M-nonzero whole read spent 2 s of system time instead of 0.2-0.4 s,
1.7 s instead of 0.8-0.9 s wall. So a mapping here asks for huge pages only where the kernel holds
free blocks of a huge page for twice its size (/proc/buddyinfo: none has to be made), and takes
ordinary pages otherwise, at a steady cost: with them a fresh process's whole read (CSC) of 6e7
nonzeros took 0.51-0.62 s instead of 0.66-0.69 s, of 6e6 0.058-0.071 s instead of 0.067-0.078 s
(2026-12-06, 3-5 processes each; 4 KiB pages cost a fault each, 18,000 for a 6e6 read's 72 MB).
A mapping is private: a shared one (mmap's default) is shared memory, whose page faults cost more
(a 60M-nonzero whole read: 0.22 s of system time instead of 0.30, 4% less wall time).
"""
from __future__ import annotations

import mmap

import numpy as np

# Below glibc's largest mmap threshold (32 MiB on 64-bit), numpy's arrays may come from memory the
# allocator already holds, whose pages are in place: the loader's chunk-sized batches reuse theirs
# (mapped afresh each batch, pbmc4k 6e7 gave 44-47k cells/s instead of 48-52k).
_MAPPED_FROM_BYTES = 32 << 20
# a private anonymous mapping where the platform names one (POSIX); Windows maps anonymous memory
# its own way. Its pages come in as they are first touched, by whichever thread touches them: one
# mapped with its pages put in place at once (MAP_POPULATE), though a quarter cheaper per page
# (128 MiB: 43-46 ms against 60-62 here), holds the process's memory map while it fills, and every
# other thread's allocations wait for it (an encode of 6e6 nonzeros from memory, whose chunk threads
# each filled 126 MB so, started its second chunk 50 ms late and took 7% longer).
_PRIVATE = {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS} if hasattr(mmap, "MAP_PRIVATE") else {}


def fresh_array(size: int, dtype) -> np.ndarray:
    """An uninitialised 1-d array of `size` items (zeros where freshly mapped)."""
    dtype = np.dtype(dtype)
    if size * dtype.itemsize < _MAPPED_FROM_BYTES:
        return np.empty(size, dtype)
    return mapped_array(size, dtype)


def mapped_array(size: int, dtype) -> np.ndarray:
    """A 1-d array of `size` zeros in a mapping of its own, whatever its size, in huge pages where
    the kernel has them free (see the module docstring): also for arrays kept and reused (the
    encoder's per-thread buffers), which pay their first touch once."""
    dtype = np.dtype(dtype)
    nbytes = size * dtype.itemsize
    if nbytes == 0:
        return np.empty(size, dtype)
    mapping = mmap.mmap(-1, nbytes, **_PRIVATE)
    if _HUGE_ADVICE is not None and nbytes >= _HUGE_PAGE and huge_pages_free() >= 2 * nbytes:
        mapping.madvise(_HUGE_ADVICE)
    return np.frombuffer(mapping, dtype)


def _huge_page_size() -> int:
    """The size of a transparent huge page (2 MiB on x86-64; 0 where the kernel says none)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "rb") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 0


_HUGE_PAGE = _huge_page_size()
_HUGE_ADVICE = getattr(mmap, "MADV_HUGEPAGE", None) if _HUGE_PAGE else None


def huge_pages_free(buddyinfo: str = "/proc/buddyinfo") -> int:
    """Bytes the kernel holds free in blocks of at least a huge page (`buddyinfo`: per zone, the
    count of free blocks of each order), 0 where it does not say."""
    try:
        with open(buddyinfo, "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return 0
    total = 0
    for line in lines:
        for order, count in enumerate(line.split()[4:]):  # 'Node 0, zone Normal' then counts by order
            block = mmap.PAGESIZE << order
            if block >= _HUGE_PAGE:
                total += int(count) * block
    return total
