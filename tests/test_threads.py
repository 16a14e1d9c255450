"""How many threads work: jobs=None means the CPUs this process may use (limits.usable_cpus)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import scinrcodec as sinr
from conftest import DATA
from scinrcodec.encoder.options import EncodeOptions
from scinrcodec import limits
from scinrcodec.limits import usable_cpus
from scinrcodec.reader import assemble


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """pbmc4k's test cut (80 cells) in chunks of 16 cells."""
    path = tmp_path_factory.mktemp("threads") / "pbmc.sinr"
    sinr.encode(sinr.read_matrix(DATA / "pbmc4k_v2_soupx_half"), path, chunk_cells=16, siren="never", progress=False)
    return path


class NotedCore:
    """A matrix's core reader whose thread counts are noted in `asked`."""

    def __init__(self, core, asked: list) -> None:
        self.core, self.asked = core, asked

    def set_threads(self, n):
        self.asked.append(n)
        self.core.set_threads(n)

    def cells(self, cells):
        return self.core.cells(cells)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs a CPU affinity of two CPUs or more to narrow")
def test_default_threads_are_the_cpus_this_process_may_use(chunked):
    """jobs=None means the CPUs the process may run on (a batch scheduler's or a container's share of
    a machine), not os.cpu_count(), which counts every core: 64 threads on 2 usable cores had made a
    cell read 7x slower."""
    allowed = os.sched_getaffinity(0)
    asked = []

    os.sched_setaffinity(0, {min(allowed)})
    try:
        assert usable_cpus() == 1 and EncodeOptions().n_jobs == 1
        assert assemble.chunk_threads(np.array([100, 100]), None) == (1, 1)
        with sinr.open(chunked) as m:
            expected = m.to_scipy().getcol(3).toarray().ravel()
            m._core_reader = NotedCore(m._core(), asked)
            assert np.array_equal(m.cell(3), expected) and asked == [1]
    finally:
        os.sched_setaffinity(0, allowed)
    assert usable_cpus() == min(len(allowed), limits._process_cpu_quota() or len(allowed))


@pytest.mark.parametrize("jobs", [0, -1, 2.5, "2", True, 10**7])
def test_a_block_refuses_the_jobs_every_read_refuses(chunked, jobs):
    """cells_block and chunks_block take jobs= as open() and iter_cells do: 0, -1 and 10**7 had been
    taken silently (0 as the default, -1 as one thread), 2.5 and '2' had failed with a TypeError of
    scipy's or numpy's ('>' not supported between instances of 'str' and 'int')."""
    with sinr.open(chunked) as m:
        expected = m.T.to_scipy()[:40].toarray()
        for read in (lambda: m.cells_block(0, 40, jobs=jobs), lambda: m.chunks_block([0, 1, 2], jobs=jobs)):
            with pytest.raises(sinr.SinrError, match="^jobs must be"):
                read()
        for good in (1, 3, None):
            assert np.array_equal(m.cells_block(0, 40, jobs=good).toarray(), expected)
            assert np.array_equal(m.chunks_block([0, 1, 2], jobs=good)[:40].toarray(), expected)


def test_a_read_on_more_threads_than_bands_works_out_each_chunks_parts_once(chunked, monkeypatch):
    """A gene-major read on many threads cuts each chunk into a part per thread and works out the
    chunk's runs of bands once, not at each of its parts in each pass: jobs=4096 (on 2 CPUs) had
    taken 167 s to read 2.9e6 nonzeros that 2 threads read in 0.13 s, its parts' runs worked out
    2 x 9 x 4,096 times at 4,096 cuts each."""
    real, worked = assemble._band_parts, []

    def counted(chunk, parts):
        worked.append(chunk.index)
        return real(chunk, parts)

    monkeypatch.setattr(assemble, "_band_parts", counted)
    monkeypatch.setattr(limits, "runnable_cpus", lambda: 4096)  # a machine of 4,096 CPUs: jobs=64 is honoured
    monkeypatch.setattr(assemble, "_POOL_FROM_NNZ", 0)  # threads for this small file's read too
    with sinr.open(chunked, jobs=1) as alone:
        expected = alone.to_scipy()
    assert sorted(worked) == list(range(alone.chunk_bounds().size - 1))
    worked.clear()
    with sinr.open(chunked, jobs=64) as m:
        assert assemble._parts(np.diff(m.index.nnz_starts), 64) == (64, 64)
        assert (m.to_scipy() != expected).nnz == 0
    assert sorted(worked) == list(range(m.chunk_bounds().size - 1))


def test_an_explicit_jobs_is_honoured_beyond_a_cpu_quota(chunked, monkeypatch):
    """The shared decode pool holds as many threads as the machine has CPUs, not the default's count:
    sized by usable_cpus, it had capped an explicit jobs= at a container's quota in Python's decodes
    (the core's honour it)."""
    from scinrcodec.reader import decode

    monkeypatch.setattr(limits, "_process_cpu_quota", lambda: 1)
    monkeypatch.setattr(decode, "_POOL", None)
    assert usable_cpus() == 1
    assert decode._pool()._max_workers == (os.cpu_count() or 1)
    decode._POOL.shutdown()


@pytest.mark.parametrize("machine", [3, 4096])
def test_an_explicit_jobs_beyond_the_cpus_it_runs_on_runs_one_thread_a_cpu(chunked, monkeypatch, machine):
    """jobs= above the CPUs this process can run on (3: a machine's, or its affinity among the 4,096
    of a machine, a batch scheduler's cpuset or taskset) starts no more threads than those, in the
    core reader and in every kernel a whole read shares a chunk among: each call had started a thread
    per job (jobs=256 on 2 cores: a cell read 8.6 ms instead of 1.4, a gene 3.2 ms instead of 0.4),
    and with an affinity, one per CPU of the machine (jobs=2 taskset to 1 of 2 CPUs: a cell read of
    the 6e6 pbmc4k file 0.55-0.62 ms instead of 0.53, a gene 0.49 ms instead of 0.43-0.45)."""
    asked = []

    monkeypatch.setattr(limits.os, "cpu_count", lambda: machine)
    monkeypatch.setattr(limits.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert limits.read_threads(None) == usable_cpus() and limits.read_threads(2) == 2
    assert limits.read_threads(4096) == 3
    assert assemble.chunk_threads(np.array([100, 100, 100]), 4096) == (3, 1)
    assert assemble.chunk_threads(np.array([10**6]), 4096) == (1, 3)
    with sinr.open(chunked, jobs=4096) as m:
        expected = m.to_scipy().getcol(3).toarray().ravel()
        m._core_reader = NotedCore(m._core(), asked)
        assert np.array_equal(m.cell(3), expected) and asked == [3]


def test_threads_reading_at_once_for_the_first_time_make_one_decode_pool(monkeypatch):
    """The shared decode pool is made once, however many threads ask for it first: two threads'
    first reads at once had each made one, the loser's threads left beside the pool later reads use."""
    import concurrent.futures
    import threading
    import time

    from scinrcodec.reader import decode

    made = []

    class Slow(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            made.append(self)
            time.sleep(0.2)  # the second thread asks while the first makes it
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", Slow)
    monkeypatch.setattr(decode, "_POOL", None)
    got = []
    threads = [threading.Thread(target=lambda: got.append(decode._pool())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for pool in made:
        pool.shutdown()
    assert len(made) == 1 and got[0] is got[1]


@pytest.mark.parametrize("build", ["table", "index"])
def test_threads_looking_up_names_at_once_build_one_table(chunked, monkeypatch, build):
    """The table of a matrix's cell names, and its obs_names Index, are built once however many
    threads ask at once (a Dask worker's, a DataLoader's): each thread had built its own, on a raw
    matrix's 737,280 barcodes 8 threads 1.9 s and 8 tables where one takes 0.18 s. The first build
    waits here until a second thread, started then, builds one too (or for 1 s, where it waits for the
    first)."""
    import threading

    import pandas as pd

    from scinrcodec.reader import matrix as reader

    m = sinr.open(chunked)
    name = m.cell_names[40]
    builds, inside, second = [], threading.Event(), threading.Event()
    built = reader._indices_by_name if build == "table" else pd.Index

    def spy(*args, **kwargs):
        builds.append(threading.current_thread().name)
        if len(builds) == 1:
            inside.set()
            second.wait(1)
        else:
            second.set()
        return built(*args, **kwargs)

    if build == "table":
        monkeypatch.setattr(reader, "_indices_by_name", spy)
    else:
        monkeypatch.setattr(pd, "Index", spy)
    look = (lambda: m.positions([name], "cell")[0]) if build == "table" else (lambda: m.obs_names.get_loc(name))
    found = []
    first = threading.Thread(target=lambda: found.append(look()), name="first")
    first.start()
    assert inside.wait(60)
    later = threading.Thread(target=lambda: found.append(look()), name="second")
    later.start()
    first.join()
    later.join()
    assert builds == ["first"] and found == [40, 40]
