"""The encoder hands freed memory back between chunks once it holds more than its bound
(encoder.memory): glibc keeps freed blocks below its risen mapping threshold resident, and
malloc_trim returns them; below the bound they stay, for the next chunk to reuse."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, re, numpy as np
from scinrcodec.encoder.memory import release_freed_memory
rss = lambda: int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1)) // 1024
M_MMAP_THRESHOLD = -3
ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 32 << 20)  # where glibc's threshold rises to once large blocks are freed
blocks = [np.ones(4 << 20, np.uint8) for _ in range(50)]  # 200 MB from the heap
keep = blocks[-1]  # the heap's top stays in use, so only a trim of the middle returns the rest
del blocks
before = rss()
release_freed_memory(above=1 << 40)  # below the bound: kept
kept = rss()
release_freed_memory(above=0)
print(before, kept, rss())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_freed_heap_memory_goes_back_to_the_system_above_the_bound():
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    before, kept, after = map(int, run.stdout.split())
    assert abs(kept - before) < 20 and before - after > 150, (before, kept, after)


RELATIVE = r"""
import ctypes, re, numpy as np
from scinrcodec.encoder import memory
rss = lambda: int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1)) // 1024
ctypes.CDLL(None).mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD, as glibc's risen one
held = np.ones(400 << 20, np.uint8)  # the caller's input: 400 MB before the encode begins
memory.TRIM_ABOVE_BYTES = 300 << 20
loose = memory.ChunkMemory()  # bound: what the process holds now + 300 MB
memory.TRIM_ABOVE_BYTES = 100 << 20
tight = memory.ChunkMemory()  # + 100 MB
blocks = [np.ones(4 << 20, np.uint8) for _ in range(50)]  # a chunk's 200 MB of temporaries
keep = blocks[-1]
del blocks
before = rss()
loose.after_chunk()  # above 300 MB held, but only 200 MB more than at its start: kept
kept = rss()
tight.after_chunk()  # 200 MB more than at its start, above its 100 MB: trimmed
print(before, kept, rss())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_an_encodes_bound_counts_what_it_adds_not_its_input():
    """An encode from a matrix in memory keeps reusing its chunks' freed pages (encoder.memory):
    the bound is on what the process holds beyond what it held when the encode began."""
    run = subprocess.run([sys.executable, "-c", RELATIVE], capture_output=True, text=True, check=True)
    before, kept, after = map(int, run.stdout.split())
    assert before > 500 and abs(kept - before) < 20 and kept - after > 150, (before, kept, after)
