"""Freed memory handed back to the system between chunks.

glibc raises its threshold for mapping large blocks each time one is freed, so the temporaries of
later chunks (a few MB to tens of MB each, on several threads) come from its arenas, and what they
free stays resident there: a long encode's resident memory grew chunk after chunk with nothing
live (ten 6e6-nonzero files concatenated: 1.0 GB peak, 0.66 GB with a trim after each chunk).
malloc_trim(0) returns the arenas' free pages. Trimming after every chunk costs time, though: the
next chunk's temporaries fault their pages in again, each zeroed by the kernel (a fifth of the CPU
time of encoding visium at 6e7 from its 10x file). So the encoder trims only once the process holds
more than TRIM_ABOVE_BYTES, and below that reuses what it freed: visium and pbmc4k at 6e7 encode
5-10% faster (system time 1.9-2.6 -> 1.3-1.7 s; peak 0.62-0.72 -> 0.93-1.0 GB then, 0.57-0.85 GB once
each thread kept arrange's arrays, now encoder.chunk.ChunkBuffers);
at any size the peak stays within that bound and the chunks in flight. The bound counts what the
encode adds to what the process held when it began (ChunkMemory): a matrix encoded from memory
(720 MB at 6e7) had put every chunk past a bound on the whole process, so each chunk's temporaries
came back as zeroed pages (a sixth of the CPU time of encoding pbmc4k at 6e7 from memory). Where
the C library has no malloc_trim (not glibc), this does nothing.
"""
from __future__ import annotations

import ctypes
import functools
import os

TRIM_ABOVE_BYTES = 1 << 30  # resident memory beyond which freed pages go back to the system


@functools.cache
def _malloc_trim():
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def _resident_bytes() -> int:
    """This process's resident memory (Linux's /proc/self/statm; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_freed_memory(above: int) -> None:
    """Give the C allocator's free pages back to the system (glibc's malloc_trim) once the
    process holds more than `above` bytes (where resident memory cannot be read: always)."""
    trim = _malloc_trim()
    if trim is not None:
        resident = _resident_bytes()
        if resident == 0 or resident > above:
            trim(0)


class ChunkMemory:
    """An encode's trimming: freed pages go back once the process holds TRIM_ABOVE_BYTES more than
    when the encode began (its input, loaded by the caller, is not the encoder's to bound)."""

    def __init__(self) -> None:
        self.above = _resident_bytes() + TRIM_ABOVE_BYTES

    def after_chunk(self) -> None:
        """Trim once a chunk is written, if the encode holds more than its bound."""
        release_freed_memory(self.above)
