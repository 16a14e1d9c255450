"""The native reader and encoder kernels against plain numpy references, and their refusal of
hostile input (out-of-range rows, columns, cells, outputs) with an error status instead of a crash."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from scinrcodec import _native, limits
from scinrcodec.codec.geometry import ChunkGeometry
from scinrcodec.codec.models import N_BINS, N_CONTEXTS, bin_tables, histograms
from scinrcodec.storage.layout import CONTEXTS_BY_MAJOR
from scinrcodec.encoder import chunk as chunk_module
from scinrcodec.errors import CorruptFileError
from scinrcodec.model.baseline import accumulate_gene_stats, fit_cell_terms
from scinrcodec.model.quantise import dequantise_values, quantise_values
from scinrcodec.reader import assemble
from scinrcodec.reader.decode import compact_tiles
from scinrcodec.reader.index import band_tile_ranges

BAD_ROW, BAD_COLUMN, BAD_CELL, BAD_OUTPUT, ROW_OVERFLOW, BAD_TABLE, BAD_COUNTS = range(1, 8)


# ------------------------------------------------------------------------------------ placing

def _chunk(seed: int, n_rows: int = 300, n_cells: int = 97, first_cell: int = 40, n_bands: int = 5,
           density: float = 0.1, shuffle: bool = False):
    """A decoded chunk as the decoder emits it: band after band, tiles of columns, rows ascending
    in each tile; reordered columns map to original cells through a permutation."""
    rng = np.random.default_rng(seed)
    total_cells = first_cell + n_cells + 13
    cell_original = np.arange(total_cells, dtype=np.int64)
    cell_original[first_cell: first_cell + n_cells] = first_cell + rng.permutation(n_cells)
    band_rows = np.unique(np.concatenate([[0, n_rows], rng.integers(1, n_rows, n_bands - 1)])).astype(np.int64)
    mask = rng.random((n_rows, n_cells)) < density
    rows, cols = [], []
    for b in range(band_rows.size - 1):
        width = int(rng.integers(1, n_cells + 1))
        for first in range(0, n_cells, width):
            r, c = np.nonzero(mask[band_rows[b]: band_rows[b + 1], first: first + width])
            rows.append(r + band_rows[b])
            cols.append(c + first + first_cell)
    rows = np.concatenate(rows).astype(np.int32)
    cols = np.concatenate(cols).astype(np.int32)
    values = rng.integers(1, 2**31 - 1, rows.size).astype(np.int32)
    if shuffle:
        order = rng.permutation(rows.size)
        rows, cols, values = rows[order], cols[order], values[order]
    return dict(rows=rows, cols=cols, values=values, cell_original=cell_original, first_cell=first_cell,
                n_cells=n_cells, band_rows=band_rows, **_gene_tables(rng, n_rows))


def _gene_tables(rng, n_rows: int) -> dict:
    """Each row's gene (distinct, unordered) and its rank among them, as a chunk's segment gives them."""
    genes_of_row = rng.permutation(n_rows + 50)[:n_rows].astype(np.int64)
    rank = np.empty(n_rows, np.int64)
    rank[np.argsort(genes_of_row, kind="stable")] = np.arange(n_rows)
    return dict(genes_of_row=genes_of_row, rank=rank)


def _checksum(ch) -> int:
    return int(_native.content_checksum(ch["genes_of_row"][ch["rows"]], ch["cell_original"][ch["cols"]],
                                        ch["values"].astype(np.int64)))


def _by_cell_reference(ch, base: int, size: int, dtype):
    local = ch["cell_original"][ch["cols"]] - ch["first_cell"]
    order = np.lexsort((np.arange(local.size), ch["rank"][ch["rows"]], local))
    indices = np.zeros(size, np.int64)
    data = np.zeros(size, dtype)
    indices[base: base + local.size] = ch["genes_of_row"][ch["rows"]][order]
    data[base: base + local.size] = ch["values"][order].astype(dtype)
    indptr = base + np.cumsum(np.bincount(local, minlength=ch["n_cells"]))
    return indptr, indices, data


def _by_row_layout(ch, offset: int = 3):
    n_rows = ch["genes_of_row"].size
    counts = np.bincount(ch["rows"], minlength=n_rows)
    cursor = offset + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return cursor, cursor + counts, offset + int(counts.sum()) + 5


def _by_row_reference(ch, cursor, size: int, dtype):
    cells = ch["cell_original"][ch["cols"]]
    order = np.lexsort((np.arange(cells.size), cells, ch["rows"]))
    indices = np.zeros(size, np.int64)
    data = np.zeros(size, dtype)
    rows = ch["rows"][order]
    within = np.arange(rows.size) - np.searchsorted(rows, rows)
    indices[cursor[rows] + within] = cells[order]
    data[cursor[rows] + within] = ch["values"][order].astype(dtype)
    return indices, data


def _place_by_cell(ch, base, indptr, indices, data, threads=1):
    return _native.place_by_cell(ch["rows"], ch["cols"], ch["values"], ch["cell_original"], ch["first_cell"],
                                 ch["n_cells"], ch["rank"], ch["genes_of_row"], base, indptr, indices, data,
                                 threads=threads)


def _by_gene_layout(ch, offset: int = 3):
    """Each row's range as a whole read gives it: rows in the order of their genes."""
    counts = np.bincount(ch["rows"], minlength=ch["genes_of_row"].size)
    order = np.argsort(ch["genes_of_row"], kind="stable")
    cursor = np.empty(counts.size, np.int64)
    cursor[order] = offset + np.concatenate([[0], np.cumsum(counts[order])[:-1]])
    return cursor, cursor + counts, offset + int(counts.sum()) + 5


def _place_by_row(ch, cursor, limit, indices, data, band_rows=None, threads=1):
    band_rows = ch["band_rows"] if band_rows is None else band_rows
    return _native.place_by_row(ch["rows"], ch["cols"], ch["values"], ch["cell_original"], ch["first_cell"],
                                ch["n_cells"], ch["genes_of_row"], cursor, limit, band_rows, indices, data,
                                threads=threads)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("index_type, value_type", [(np.int32, np.int64), (np.int64, np.int32),
                                                    (np.int32, np.float32), (np.int64, np.uint8)])
def test_place_by_cell_matches_reference(seed, index_type, value_type):
    ch = _chunk(seed)
    base, size = 7, 7 + ch["values"].size + 4
    indptr = np.full(ch["n_cells"] + 1, -1, np.int64)
    indices, data = np.zeros(size, index_type), np.zeros(size, value_type)
    for name in ("rows", "cols", "values", "cell_original", "rank", "genes_of_row"):
        ch[name].setflags(write=False)  # read-only inputs (a mapped file) are accepted
    status, checksum = _place_by_cell(ch, base, indptr, indices, data)
    assert status == 0 and checksum == _checksum(ch)
    ref_indptr, ref_indices, ref_data = _by_cell_reference(ch, base, size, value_type)
    assert indptr[0] == -1 and np.array_equal(indptr[1:], ref_indptr)
    assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("index_type, value_type", [(np.int32, np.int64), (np.int64, np.float64)])
def test_place_by_row_matches_reference(seed, shuffle, index_type, value_type):
    ch = _chunk(seed, shuffle=shuffle)  # shuffled: bands out of order, one sort of the whole chunk
    cursor, limit, size = _by_row_layout(ch)
    ref_indices, ref_data = _by_row_reference(ch, cursor, size, value_type)
    for band_rows in (ch["band_rows"], np.zeros(0, np.int64)):
        indices, data = np.zeros(size, index_type), np.zeros(size, value_type)
        c = cursor.copy()
        status, checksum = _place_by_row(ch, c, limit, indices, data, band_rows)
        assert status == 0 and checksum == _checksum(ch)
        assert np.array_equal(c, limit)
        assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)


@pytest.mark.parametrize("seed", range(3))
def test_place_by_row_in_band_parts(seed):
    """A chunk placed as two runs of its bands by two calls (a gene-major read's band parts): together
    what one call gives, checksums adding up; each call reads and moves only its own rows' cursors
    (the others poisoned here), and refuses a nonzero of a band it was not given."""
    ch = _chunk(seed, n_bands=6)
    cursor, limit, size = _by_row_layout(ch)
    ref_indices, ref_data = _by_row_reference(ch, cursor, size, np.int64)
    band_rows, rows = ch["band_rows"], ch["rows"]
    mid = band_rows.size // 2
    split = int(np.argmax(rows >= band_rows[mid]))  # the nonzeros come band after band
    indices, data = np.zeros(size, np.int64), np.zeros(size, np.int64)
    placed, total = cursor.copy(), 0
    for lo, hi, bands in ((0, split, band_rows[:mid + 1]), (split, rows.size, band_rows[mid:])):
        part = dict(ch, rows=rows[lo:hi], cols=ch["cols"][lo:hi], values=ch["values"][lo:hi])
        mine = np.zeros(cursor.size, bool)
        mine[bands[0]:bands[-1]] = True
        poisoned = np.where(mine, placed, -7)
        status, checksum = _place_by_row(part, poisoned, limit, indices, data, bands)
        assert status == 0 and np.all(poisoned[~mine] == -7)
        placed[mine] = poisoned[mine]
        total += checksum
    assert np.array_equal(placed, limit) and total % 2**64 == _checksum(ch)
    assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)
    foreign = dict(ch, rows=np.append(rows[:split], rows[-1]), cols=ch["cols"][:split + 1],
                   values=ch["values"][:split + 1])
    status, _ = _place_by_row(foreign, cursor.copy(), limit, np.zeros(size, np.int64), np.zeros(size, np.int64),
                              band_rows[:mid + 1])
    assert status == BAD_ROW


@pytest.mark.parametrize("n_rows, n_cells, density", [(300, 97, 0.5), (70_000, 40, 0.003)])
def test_place_by_cell_dense_cells_and_many_rows(n_rows, n_cells, density):
    """Cells of many nonzeros: ranks read back from a bitmap (up to 2**16 rows), else sorted; and
    rows of bands too tall for a bitmap."""
    ch = _chunk(9, n_rows=n_rows, n_cells=n_cells, density=density)
    assert np.bincount(ch["cell_original"][ch["cols"]] - ch["first_cell"]).min() > 64
    size = ch["values"].size
    indptr, indices, data = np.zeros(n_cells + 1, np.int64), np.zeros(size, np.int64), np.zeros(size, np.int64)
    status, checksum = _place_by_cell(ch, 0, indptr, indices, data)
    assert status == 0 and checksum == _checksum(ch)
    ref_indptr, ref_indices, ref_data = _by_cell_reference(ch, 0, size, np.int64)
    assert np.array_equal(indptr[1:], ref_indptr)
    assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)
    cursor, limit, size = _by_row_layout(ch)  # bands of many rows: sorted rather than by bitmap
    indices, data = np.zeros(size, np.int64), np.zeros(size, np.int64)
    assert _place_by_row(ch, cursor.copy(), limit, indices, data) == (0, _checksum(ch))
    ref_indices, ref_data = _by_row_reference(ch, cursor, size, np.int64)
    assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)


@pytest.mark.parametrize("index_type, value_type", [(np.int32, np.float32), (np.int64, np.uint8)])
def test_place_by_cell_on_threads(index_type, value_type):
    """A chunk shared by threads (each counting and scattering a range of the nonzeros, then
    ordering a range of the cells) is placed exactly as on one: output staged in place, and in the
    scratch for narrow types."""
    ch = _chunk(11, n_rows=900, n_cells=700, density=0.4, n_bands=9)
    assert ch["values"].size > 3 * 2**16  # room for three threads
    base, size = 3, 3 + ch["values"].size
    ref_indptr, ref_indices, ref_data = _by_cell_reference(ch, base, size, value_type)
    scratch = _native.PlaceScratch()
    for threads in (1, 2, 3, 8):
        indptr = np.zeros(ch["n_cells"] + 1, np.int64)
        indices, data = np.zeros(size, index_type), np.zeros(size, value_type)
        status, checksum = _native.place_by_cell(ch["rows"], ch["cols"], ch["values"], ch["cell_original"],
                                                 ch["first_cell"], ch["n_cells"], ch["rank"], ch["genes_of_row"],
                                                 base, indptr, indices, data, scratch, threads)
        assert status == 0 and checksum == _checksum(ch), threads
        assert np.array_equal(indptr[1:], ref_indptr)
        assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)


def _chunk_of_counts(seed: int, n_rows: int, counts: list[int], first_cell: int = 5):
    """A decoded chunk whose cell j holds counts[j] nonzeros at distinct random rows, in a shuffled
    order (the placing takes any), for shapes _chunk's dense draw would make too large."""
    rng = np.random.default_rng(seed)
    n_cells = len(counts)
    cell_original = np.arange(first_cell + n_cells + 3, dtype=np.int64)
    cell_original[first_cell: first_cell + n_cells] = first_cell + rng.permutation(n_cells)
    rows = np.concatenate([rng.choice(n_rows, m, replace=False) for m in counts]).astype(np.int32)
    cols = np.repeat(np.arange(n_cells) + first_cell, counts).astype(np.int32)
    order = rng.permutation(rows.size)
    values = rng.integers(1, 2**31 - 1, rows.size).astype(np.int32)
    return dict(rows=rows[order], cols=cols[order], values=values[order], cell_original=cell_original,
                first_cell=first_cell, n_cells=n_cells, **_gene_tables(rng, n_rows))


@pytest.mark.parametrize("n_rows, counts", [
    (70_000, [300] * 700),  # more rows than the bitmap takes: every cell sorted
    (60_000, [20] * 2000 + [40_000] * 3),  # few rows a cell against many rows: sorted; full cells: bitmap
    (120_000, [0] * 40 + [90_000, 0, 110_000] + [0] * 40),  # more threads than cells with nonzeros
])
def test_place_by_cell_on_threads_sorts_and_skips_empty_cells(n_rows, counts):
    """Threads share chunks whose cells are put in order by sorting, and chunks of a few full cells
    among empty ones (threads ordering no cell), exactly as one thread places them."""
    ch = _chunk_of_counts(13, n_rows, counts)
    base, size = 2, 2 + ch["values"].size
    ref_indptr, ref_indices, ref_data = _by_cell_reference(ch, base, size, np.int64)
    for threads in (1, 2, 3, 8):
        indptr, indices, data = np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(size, np.int32), np.zeros(size)
        status, checksum = _place_by_cell(ch, base, indptr, indices, data, threads)
        assert status == 0 and checksum == _checksum(ch), threads
        assert np.array_equal(indptr[1:], ref_indptr) and np.array_equal(indices, ref_indices)
        assert np.array_equal(data, ref_data)


_NO_THREADS = """
import resource, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from tests.test_kernels import _by_cell_reference, _checksum, _chunk_of_counts, _place_by_cell
ch = _chunk_of_counts(14, 2000, [150] * 1400)
size = ch["values"].size
ref = _by_cell_reference(ch, 0, size, np.int64)
indptr, indices, data = np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(size, np.int32), np.zeros(size)
assert _place_by_cell(ch, 0, indptr, indices, data, threads=1)[0] == 0  # what a first call loads, loaded
used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + (4 << 20), resource.RLIM_INFINITY))  # no room for a thread's stack
indptr[:], indices[:], data[:] = 0, 0, 0
status, checksum = _place_by_cell(ch, 0, indptr, indices, data, threads=3)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
assert status == 0 and checksum == _checksum(ch)
assert np.array_equal(indptr[1:], ref[0]) and np.array_equal(indices, ref[1]) and np.array_equal(data, ref[2])
print("placed")
"""


def test_threads_that_cannot_start_leave_their_work_to_the_calling_thread():
    """Where the process may start no thread (its address space full), a read asking for three
    places the chunk on the calling thread: the same result, no abort."""
    done = subprocess.run([sys.executable, "-c", _NO_THREADS, str(Path(__file__).parents[1])], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "placed", done.stderr[-2000:]


@pytest.mark.parametrize("field, bad, status", [("rows", -1, BAD_ROW), ("cols", 10**6, BAD_COLUMN),
                                                ("cols", 0, BAD_CELL)])
@pytest.mark.parametrize("at", [0.1, 0.9])
def test_placing_on_threads_reports_hostile_indices(field, bad, status, at):
    """A bad index in any thread's range gives the status one thread gives, by cell and by row."""
    ch = _chunk(12, n_rows=900, n_cells=700, density=0.3, n_bands=9)
    cursor, limit, row_size = _by_gene_layout(ch)
    ch[field] = ch[field].copy()
    ch[field][int(len(ch[field]) * at)] = bad
    size = ch["values"].size
    for threads in (1, 3):
        indptr, indices, data = np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(size, np.int32), np.zeros(size)
        assert _place_by_cell(ch, 0, indptr, indices, data, threads)[0] == status
        got = _place_by_row(ch, cursor.copy(), limit, np.zeros(row_size, np.int32), np.zeros(row_size),
                            threads=threads)
        assert got[0] == status, threads


@pytest.mark.parametrize("index_type, value_type", [(np.int32, np.int64), (np.int64, np.float32)])
def test_place_by_row_on_threads(index_type, value_type):
    """A chunk shared by threads, each placing the bands that begin in its share of the nonzeros
    (whole bands: a band's rows are its own), writes what one thread writes."""
    ch = _chunk(13, n_rows=900, n_cells=700, density=0.4, n_bands=12)
    assert ch["values"].size > 3 * 2**16  # room for three threads
    cursor, limit, size = _by_gene_layout(ch)
    ref_indices, ref_data = _by_row_reference(ch, cursor, size, value_type)
    for threads in (1, 2, 3, 8):
        indices, data = np.zeros(size, index_type), np.zeros(size, value_type)
        c = cursor.copy()
        status, checksum = _place_by_row(ch, c, limit, indices, data, threads=threads)
        assert status == 0 and checksum == _checksum(ch), threads
        assert np.array_equal(c, limit)
        assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data), threads


def test_place_by_row_on_threads_only_where_rows_write_apart():
    """Rows whose ranges overlap (never a reader's) are placed on one thread, so threads never
    race: the same arrays as one thread writes, whatever the thread count."""
    ch = _chunk(14, n_rows=900, n_cells=700, density=0.4, n_bands=12)
    cursor, limit, size = _by_gene_layout(ch)
    order = np.argsort(ch["genes_of_row"], kind="stable")
    overlapping = cursor.copy()
    overlapping[order[len(order) // 2:]] -= 40  # the later genes' ranges reach back into earlier ones
    runs = []
    for threads in (1, 3):
        indices, data = np.full(size, -1, np.int32), np.full(size, -1, np.int64)
        c = overlapping.copy()
        runs.append((_place_by_row(ch, c, limit - 40 * (overlapping < cursor), indices, data, threads=threads),
                     c, indices, data))
    (one, c1, i1, d1), (three, c3, i3, d3) = runs
    assert one == three and np.array_equal(c1, c3) and np.array_equal(i1, i3) and np.array_equal(d1, d3)


def test_reads_share_chunks_only_when_whole_chunks_leave_threads_idle(monkeypatch):
    monkeypatch.setattr(limits, "runnable_cpus", lambda: 8)  # jobs= up to 8 honoured (limits.read_threads)

    def share(nnz, workers=2, cost=_native.SHARED_CHUNK_COST):
        return _native.share_chunks(np.array(nnz, dtype=np.int64), workers, cost)

    assert share([100]) and share([100, 100, 100])
    assert share([100], workers=2**31 - 1) and not share([], workers=8)  # a table of the chunks' threads only
    assert share([100, 100, 100, 20])  # 200 against 120 for the other thread
    assert not share([100, 100]) and not share([100] * 9)
    assert not share([100, 90, 90, 100])
    assert assemble.chunk_threads(np.array([100]), 3) == (1, 3)
    assert assemble.chunk_threads(np.array([100, 100]), 2) == (2, 1)
    assert assemble.chunk_threads(np.array([100]), 1) == (1, 1)
    big = assemble._POOL_FROM_NNZ  # a gene-major read's pool threads start from this many nonzeros
    assert assemble._parts(np.array([big, big, big]), 2) == (2, 2)
    assert assemble._parts(np.array([big, big]), 2) == (2, 1) and assemble._parts(np.array([big]), 1) == (1, 1)
    assert assemble._parts(np.array([big // 3] * 3), 2) == (1, 1) and assemble._parts(np.array([big]), 2) == (2, 2)
    split = assemble._SPLIT_ABOVE  # gene-major band parts cost nearly nothing: taken at less imbalance
    assert share([100, 100, 100], cost=split) and share([100, 100, 70], cost=split)
    assert not share([100, 100], cost=split) and not share([100] * 20, cost=split)


def test_band_parts_cover_every_band_once_with_about_equal_nonzeros(tmp_path):
    rng = np.random.default_rng(5)
    x = sp.random(900, 400, density=0.2, format="csc", random_state=rng, dtype=np.float64)
    x.data = rng.geometric(0.3, x.nnz).astype(np.float64)
    sinr.encode(x.astype(np.int64), tmp_path / "a.sinr", siren="never", chunk_cells=400)
    chunk = sinr.open(tmp_path / "a.sinr").index.chunk(0)
    n_bands = chunk.geometry.n_bands
    band_nnz = np.add.reduceat(chunk.tile_k, chunk.geometry.tile_starts[:-1])
    assert assemble._band_parts(chunk, 1) == [(0, n_bands)]
    for parts in (2, 3, 4, n_bands, n_bands + 5):
        runs = assemble._band_parts(chunk, parts)
        assert runs[0][0] == 0 and runs[-1][1] == n_bands and len(runs) == min(parts, n_bands)
        assert all(a < b for a, b in runs) and all(runs[i][1] == runs[i + 1][0] for i in range(len(runs) - 1))
        if parts <= 3:
            share = np.array([band_nnz[a:b].sum() for a, b in runs]) / band_nnz.sum()
            assert np.all(np.abs(share - 1 / parts) <= band_nnz.max() / band_nnz.sum())


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_whole_reads_of_a_chunk_shared_by_threads_are_exact(tmp_path, monkeypatch, jobs):
    """One chunk of 360k nonzeros: cell-major, decoded and placed by every thread at once when jobs > 1
    (the Python reader's and the core's whole reads); gene-major, counted and placed in band parts,
    one per thread."""
    rng = np.random.default_rng(4)
    x = sp.random(1200, 1500, density=0.2, format="csc", random_state=rng, dtype=np.float64)
    x.data = rng.geometric(0.3, x.nnz).astype(np.float64)
    path = tmp_path / "one_chunk.sinr"
    sinr.encode(x.astype(np.int64), path, siren="never")
    threads = {"place_by_cell": [], "place_by_row": []}
    monkeypatch.setattr(limits, "runnable_cpus", lambda: 8)  # jobs= up to 8 honoured (limits.read_threads)
    for name, calls in threads.items():
        monkeypatch.setattr(_native, name, lambda *args, place=getattr(_native, name), calls=calls:
                            calls.append(args[-1]) or place(*args))
    m = sinr.open(path, jobs=jobs)
    assert m.chunk_bounds().size == 2
    got = m.to_scipy("csc", dtype=np.float32)
    assert (got != x).nnz == 0 and got.dtype == np.float32
    assert (m.cells_block(0, 1500, np.int32) != x.T).nnz == 0
    by_row = m.to_scipy("csr", dtype=np.int32)
    assert (by_row != x).nnz == 0 and by_row.has_sorted_indices
    for asked in (jobs, 2**31 - 1):  # R's whole read, shared too; threads beyond the data's are not started
        shape, indptr, genes, values = _native.ContainerReader(str(path)).whole(asked)
        core = sp.csc_matrix((values, genes, indptr), shape=shape)
        assert (core != x).nnz == 0 and core.has_sorted_indices
    parts = len(assemble._band_parts(m.index.chunk(0), jobs))
    assert parts == min(jobs, m.index.chunk(0).geometry.n_bands) and (jobs == 1 or parts > 1)
    assert threads == {"place_by_cell": [jobs, jobs], "place_by_row": [1] * parts}


def test_a_read_in_band_parts_checks_each_chunks_whole_checksum(monkeypatch):
    """The conformance vector whose first chunk's checksum is one off, read gene-major in band parts
    on two threads: each part's checksum is a partial sum, and the chunk's, once both its parts are
    placed, is refused. Its two chunks (469 and 409 nonzeros) would be read on one thread, or go
    whole to two, so the pool's and the split's thresholds are lowered to make them parts on two
    threads; the other chunk's parts may or may not have been placed when the error ends the read."""
    path = Path(__file__).parent / "conformance" / "chunk_checksum" / "matrix.sinr"
    monkeypatch.setattr(assemble, "_SPLIT_ABOVE", 1.0)
    monkeypatch.setattr(assemble, "_POOL_FROM_NNZ", 0)
    placed = []
    monkeypatch.setattr(_native, "place_by_row", lambda *args, place=_native.place_by_row:
                        placed.append((args[4], tuple(args[9].tolist()))) or place(*args))
    with sinr.open(path, jobs=2) as m:
        chunk = m.index.chunk(0)
        assert assemble._parts(np.diff(m.index.nnz_starts), 2) == (2, 2)
        parts = assemble._band_parts(chunk, 2)
        assert len(parts) == 2
        with pytest.raises(CorruptFileError, match="chunk 0 decodes to content that fails its checksum"):
            m.to_scipy("csr")
        rows = chunk.geometry.row_starts - chunk.row_base
        assert sorted(bands for first_cell, bands in placed if first_cell == chunk.first_cell) == \
            [tuple(rows[first:end + 1].tolist()) for first, end in parts]


def test_placing_takes_any_column_map_and_reuses_its_scratch():
    """One PlaceScratch carried across chunks of other sizes and shapes (as a read's thread does)
    gives what a fresh call gives; chunks whose columns are not a permutation of their cells or lie
    outside the chunk's window (place_by_cell's general path) are placed by cell and by row as any other."""
    scratch = _native.PlaceScratch()
    for seed, shape in enumerate([dict(n_cells=97), dict(n_cells=300, density=0.4), dict(n_cells=5),
                                  dict(n_rows=70_000, n_cells=40, density=0.003), dict(n_cells=150)]):
        ch = _chunk(20 + seed, **shape)
        if seed == 2:  # two columns of one cell: not a permutation
            ch["cell_original"][ch["first_cell"] + 1] = ch["cell_original"][ch["first_cell"]]
        if seed == 4:  # a column before the window holding one of the chunk's cells
            outside = ch["first_cell"] - 1
            ch["cell_original"][outside] = ch["first_cell"] + 3
            ch["cols"][ch["cols"] == np.flatnonzero(ch["cell_original"] == ch["first_cell"] + 2)[0]] = outside
        size = ch["values"].size + 9
        ref_indptr, ref_indices, ref_data = _by_cell_reference(ch, 4, size, np.int64)
        for keep in (scratch, None):
            indptr, indices, data = np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(size, np.int64), np.zeros(size)
            status, checksum = _native.place_by_cell(ch["rows"], ch["cols"], ch["values"], ch["cell_original"],
                                                     ch["first_cell"], ch["n_cells"], ch["rank"], ch["genes_of_row"],
                                                     4, indptr, indices, data, keep)
            assert status == 0 and checksum == _checksum(ch)
            assert np.array_equal(indptr[1:], ref_indptr)
            assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)
        cursor, limit, size = _by_row_layout(ch)  # and by row, from the same chunks
        ref_indices, ref_data = _by_row_reference(ch, cursor, size, np.int64)
        indices, data = np.zeros(size, np.int64), np.zeros(size, np.int64)
        assert _place_by_row(ch, cursor.copy(), limit, indices, data) == (0, _checksum(ch))
        assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)


def test_placing_keeps_repeated_coordinates_in_input_order():
    """A (row, column) decoded twice cannot come from a valid file; it is placed stably all the same."""
    ch = _chunk(10, density=0.6)
    twice = np.flatnonzero(ch["cell_original"][ch["cols"]] == ch["cell_original"][ch["cols"][0]])[:50]
    for name in ("rows", "cols", "values"):
        ch[name] = np.concatenate([ch[name], ch[name][twice]])
    ch["values"][-50:] += 1
    size = ch["values"].size
    indptr, indices, data = np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(size, np.int64), np.zeros(size, np.int64)
    assert _place_by_cell(ch, 0, indptr, indices, data) == (0, _checksum(ch))
    ref_indptr, ref_indices, ref_data = _by_cell_reference(ch, 0, size, np.int64)
    assert np.array_equal(indptr[1:], ref_indptr)
    assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)
    cursor, limit, size = _by_row_layout(ch)
    indices, data = np.zeros(size, np.int64), np.zeros(size, np.int64)
    assert _place_by_row(ch, cursor.copy(), limit, indices, data, np.zeros(0, np.int64)) == (0, _checksum(ch))
    ref_indices, ref_data = _by_row_reference(ch, cursor, size, np.int64)
    assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)


def test_place_by_row_keys_wider_than_32_bits():
    ch = _chunk(5, n_rows=50, n_cells=60, n_bands=1)
    n_rows, n_cells = 2**21 + 3, 2**11 + 1  # 22 + 12 key bits
    rng = np.random.default_rng(5)
    flat = np.unique(rng.integers(0, n_rows * n_cells, 5000))  # one band, one tile: (row, column) order
    rows, local = flat // n_cells, flat % n_cells
    ch.update(rows=rows.astype(np.int32), cols=(ch["first_cell"] + local).astype(np.int32),
              values=rng.integers(1, 2**31 - 1, flat.size).astype(np.int32), n_cells=n_cells,
              cell_original=np.concatenate([np.arange(ch["first_cell"]), ch["first_cell"] + rng.permutation(n_cells)]),
              genes_of_row=rng.permutation(n_rows).astype(np.int64), band_rows=np.array([0, n_rows], np.int64))
    cursor, limit, size = _by_row_layout(ch)
    indices, data = np.zeros(size, np.int64), np.zeros(size, np.int64)
    status, checksum = _place_by_row(ch, cursor.copy(), limit, indices, data)
    assert status == 0 and checksum == _checksum(ch)
    ref_indices, ref_data = _by_row_reference(ch, cursor, size, np.int64)
    assert np.array_equal(indices, ref_indices) and np.array_equal(data, ref_data)


@pytest.mark.parametrize("field, bad, status", [("rows", -1, BAD_ROW), ("rows", 300, BAD_ROW),
                                                ("rows", 2**31 - 1, BAD_ROW), ("cols", -5, BAD_COLUMN),
                                                ("cols", 10**6, BAD_COLUMN), ("cols", 0, BAD_CELL),
                                                ("cols", 40 + 97, BAD_CELL)])
def test_placing_reports_hostile_indices(field, bad, status):
    ch = _chunk(1)
    cursor, limit, size = _by_row_layout(ch, 0)
    ch[field] = ch[field].copy()
    ch[field][len(ch[field]) // 2] = bad
    size = ch["values"].size
    indptr, indices, data = np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(size, np.int32), np.zeros(size)
    assert _place_by_cell(ch, 0, indptr, indices, data)[0] == status
    for band_rows in (ch["band_rows"], np.zeros(0, np.int64)):
        assert _place_by_row(ch, cursor.copy(), limit, np.zeros(size, np.int32), np.zeros(size), band_rows)[0] == status


def test_placing_never_writes_beyond_its_outputs():
    ch = _chunk(2)
    n = ch["values"].size
    small = np.zeros(n - 1, np.int32)
    assert _place_by_cell(ch, 0, np.zeros(ch["n_cells"] + 1, np.int64), small, np.zeros(n))[0] == BAD_OUTPUT
    assert _place_by_cell(ch, 2, np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(n + 1, np.int32),
                          np.zeros(n + 1))[0] == BAD_OUTPUT
    assert _place_by_cell(ch, 0, np.zeros(ch["n_cells"], np.int64), np.zeros(n, np.int32), np.zeros(n))[0] == BAD_OUTPUT
    cursor, limit, size = _by_row_layout(ch, 0)
    short = limit.copy()
    short[ch["rows"][0]] -= 1  # a row receives more than was counted for it
    assert _place_by_row(ch, cursor.copy(), short, np.zeros(size, np.int32), np.zeros(size))[0] == ROW_OVERFLOW
    long = limit.copy()
    long[ch["rows"][0]] += 1  # ... or fewer
    long[ch["rows"][0] + 1:] += 1
    assert _place_by_row(ch, cursor.copy(), long, np.zeros(size + 1, np.int32), np.zeros(size + 1))[0] == ROW_OVERFLOW
    assert _place_by_row(ch, cursor.copy(), limit, np.zeros(limit.max() - 1, np.int32),
                         np.zeros(size))[0] == BAD_OUTPUT
    bad_rank = ch["rank"].copy()
    bad_rank[0] = bad_rank[1]  # not a permutation
    ch["rank"] = bad_rank
    assert _place_by_cell(ch, 0, np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(n, np.int32),
                          np.zeros(n))[0] == BAD_TABLE


def test_placing_refuses_to_convert_outputs():
    ch = _chunk(3)
    n = ch["values"].size
    with pytest.raises(TypeError):  # a copy would silently lose the output
        _place_by_cell(ch, 0, np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(n, np.int16), np.zeros(n))
    with pytest.raises(TypeError):
        _place_by_cell(ch, 0, np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(n, np.int32), np.zeros(2 * n)[::2])
    with pytest.raises(TypeError):
        _place_by_cell(ch, 0, np.zeros(ch["n_cells"] + 1, np.int64), np.zeros(n, np.int32), np.zeros(n, np.float16))


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("kernels") / "small.sinr"
    rng = np.random.default_rng(0)
    import scipy.sparse as sp
    x = sp.random(400, 300, density=0.05, format="csc", random_state=rng, dtype=np.float64)
    x.data = np.ceil(x.data * 50)
    sinr.encode(x, path, siren="never", chunk_cells=64, tile_nnz=200, progress=False)
    return path, x


@pytest.mark.parametrize("layout", ["csr", "csc"])
def test_hostile_decoded_rows_raise_corrupt_file_error(small_file, monkeypatch, layout):
    path, _ = small_file
    decode_chunk = assemble.decode_chunk

    def lying(index, chunk, buffers=None, jobs=1, **options):
        rows, cols, values = decode_chunk(index, chunk, buffers, jobs, **options)
        rows = rows.copy()
        rows[rows.size // 2] = 10**6  # beyond every array
        return rows, cols, values

    monkeypatch.setattr(assemble, "decode_chunk", lying)
    with sinr.open(path, jobs=1) as m, pytest.raises(CorruptFileError, match="outside the file's rows"):
        m.to_scipy(layout=layout)


@pytest.mark.parametrize("dtype", [np.uint32, np.float32, np.float64, np.int32, np.longdouble])
def test_whole_decode_in_any_value_type_that_holds_the_counts(small_file, dtype):
    path, x = small_file
    with sinr.open(path) as m:
        for layout in ("csr", "csc"):
            exact = m.to_scipy(layout=layout)
            got = m.to_scipy(layout=layout, dtype=dtype)
            assert got.dtype == np.dtype(dtype)
            assert np.array_equal(got.indptr, exact.indptr) and np.array_equal(got.indices, exact.indices)
            assert np.array_equal(got.data, exact.data.astype(dtype))
        assert (m.to_scipy() != sp_csr(x)).nnz == 0


@pytest.mark.parametrize("dtype", [np.float16, bool, np.int16, np.uint8])
def test_whole_decode_refuses_a_value_type_that_would_change_counts(small_file, dtype):
    """A count wraps in a narrow integer and becomes True in bool: refused, never changed silently."""
    path, _ = small_file
    with sinr.open(path) as m:
        for layout in ("csr", "csc"):
            with pytest.raises(sinr.InvalidInputError, match="cannot hold every count"):
                m.to_scipy(layout=layout, dtype=dtype)
        with pytest.raises(sinr.InvalidInputError, match="layout must be 'csr' or 'csc', not 'coo'"):
            m.to_scipy("coo")


def test_cell_major_reads_decode_tiles_by_first_column(tmp_path, pbmc):
    """decode_chunk(by_cell=True) gives a chunk's nonzeros tile after tile by the tile's first column
    (a cell-major placing then writes to a few tiles' width of cells at a time), band order without
    it; the same nonzeros either way, and whole reads of both layouts stay exact."""
    path = tmp_path / "pbmc.sinr"
    sinr.encode(pbmc, path, siren="never", patch_nnz=500, tile_nnz=16, progress=False)  # many bands and tiles
    with sinr.open(path, jobs=1) as m:
        index = m.index
        chunk = index.load_chunks([0])[0]
        geometry = chunk.geometry
        assert geometry.n_bands >= 5 and geometry.n_tiles > 4 * geometry.n_bands
        triples = {}
        for by_cell in (False, True):
            rows, cols, values = (a.copy() for a in assemble.decode_chunk(index, chunk, by_cell=by_cell))
            band = np.searchsorted(geometry.row_starts, rows, side="right") - 1
            width = geometry.widths[band]
            first = (cols - chunk.first_cell) // width * width  # each nonzero's tile's first column
            assert bool(np.all(np.diff(first) >= 0)) == by_cell
            assert bool(np.all(np.diff(band) >= 0)) != by_cell
            order = np.lexsort((rows, cols))
            triples[by_cell] = rows[order], cols[order], values[order]
        assert all(np.array_equal(a, b) for a, b in zip(triples[False], triples[True]))
        exact = sp_csr(pbmc.matrix())
        for layout in ("csr", "csc"):
            assert (m.to_scipy(layout=layout).tocsr() != exact).nnz == 0


def sp_csr(x):
    return x.tocsr().astype(np.int64)


# ------------------------------------------------------------------------ compact, tile ranges

@pytest.mark.parametrize("value_type", [np.int32, np.int64])
def test_compact_matches_reference(value_type):
    rng = np.random.default_rng(4)
    capacity = rng.integers(0, 20, 50)
    counts = rng.integers(0, capacity + 1)
    out_start = np.concatenate([[0], np.cumsum(capacity)[:-1]]).astype(np.int64)
    total = int(capacity.sum())
    rows, cols = rng.integers(0, 99, total).astype(np.int32), rng.integers(0, 99, total).astype(np.int32)
    values = rng.integers(0, 99, total).astype(value_type)
    keep = np.concatenate([np.arange(s, s + c) for s, c in zip(out_start, counts)]).astype(np.int64)
    expected = rows[keep], cols[keep], values[keep]
    kept = compact_tiles(out_start, counts, rows, cols, values)
    assert kept == counts.sum()
    for got, want in zip((rows, cols, values), expected):
        assert np.array_equal(got[:kept], want)


def test_compact_refuses_counts_outside_the_arrays():
    out_start = np.array([0, 5], np.int64)
    arrays = np.zeros(8, np.int32), np.zeros(8, np.int32), np.zeros(8, np.int64)
    for counts, starts in (([3, 4], out_start), ([6, 1], out_start), ([-1, 1], out_start), ([1, 1], [5, 0])):
        with pytest.raises(CorruptFileError):
            compact_tiles(np.asarray(starts, np.int64), np.asarray(counts, np.int64), *arrays)


def _band_tile_ranges_reference(table_rows, table_tiles, chunk_base, n_rows, row):
    chunks, bands, tiles, pair = [], [], [], []
    for c in range(n_rows.size):
        if row < n_rows[c]:
            b = int(np.searchsorted(table_rows[c], row, side="right") - 1)
            for t in range(table_tiles[c, b], table_tiles[c, b + 1]):
                tiles.append(chunk_base[c] + t)
                pair.append(len(chunks))
            chunks.append(c)
            bands.append(b)
    return [np.asarray(v, np.int64) for v in (chunks, bands, tiles, pair)]


def test_band_tile_ranges_match_reference():
    rng = np.random.default_rng(5)
    n_chunks, n_genes = 7, 60
    widest = 6
    table_rows = np.full((n_chunks, widest + 1), n_genes, np.int64)
    table_tiles = np.zeros((n_chunks, widest + 1), np.int64)
    n_rows = np.zeros(n_chunks, np.int64)
    for c in range(n_chunks):
        n_bands = int(rng.integers(1, widest + 1))
        starts = np.unique(np.concatenate([[0], rng.integers(1, 50, n_bands - 1)]))
        n_rows[c] = int(rng.integers(starts[-1] + 1, n_genes + 1))
        table_rows[c, : starts.size + 1] = np.concatenate([starts, [n_rows[c]]])
        tiles = np.concatenate([[0], np.cumsum(rng.integers(1, 5, starts.size))])
        table_tiles[c, : tiles.size] = tiles
        table_tiles[c, tiles.size:] = tiles[-1]
    chunk_base = np.concatenate([[0], np.cumsum(table_tiles[:, -1])]).astype(np.int64)
    for row in range(n_genes):
        got = band_tile_ranges(table_rows, table_tiles, chunk_base, n_rows, row)
        for g, w in zip(got, _band_tile_ranges_reference(table_rows, table_tiles, chunk_base, n_rows, row)):
            assert g.dtype == np.int64 and np.array_equal(g, w)
    bad = table_tiles.copy()
    bad[0, 1] = -3
    with pytest.raises(CorruptFileError):
        band_tile_ranges(table_rows, bad, chunk_base, n_rows, 0)
    with pytest.raises(CorruptFileError):
        band_tile_ranges(table_rows, table_tiles, chunk_base, n_rows, -1)


# ----------------------------------------------------------------------------------- encoder

def _block(seed: int, n_genes: int = 500, n_cells: int = 120):
    rng = np.random.default_rng(seed)
    expressed = rng.random((n_genes, n_cells)) < rng.random(n_genes)[:, None] * 0.3
    dense = expressed * rng.integers(1, 40, (n_genes, n_cells))
    indptr = np.concatenate([[0], np.cumsum((dense != 0).sum(axis=0))]).astype(np.int64)
    genes = np.concatenate([np.flatnonzero(dense[:, c]) for c in range(n_cells)]).astype(np.int32)
    values = np.concatenate([dense[dense[:, c] != 0, c] for c in range(n_cells)]).astype(np.int32)
    return indptr, genes, values  # a validated block's dtypes (io.sources.CellBlock)


@pytest.mark.parametrize("seed", range(3))
def test_arrange_matches_reference(seed):
    indptr, genes, values = _block(seed)
    n_genes, n_cells = 500, indptr.size - 1
    totals = chunk_module.cell_totals(indptr, values)
    cell_of = np.repeat(np.arange(n_cells), np.diff(indptr))
    assert np.array_equal(totals, np.bincount(cell_of, weights=values, minlength=n_cells).astype(np.int64))
    cell_order = np.argsort(-totals, kind="stable")
    nnz_of_gene = np.bincount(genes, minlength=n_genes)
    gene_rank = np.empty(n_genes, np.int64)
    gene_rank[np.argsort(-nnz_of_gene, kind="stable")] = np.arange(n_genes)
    row_nnz = np.bincount(gene_rank[genes])
    band_rows = np.array([0, 3, 20, 90], np.int64)
    geometry = ChunkGeometry.plan(band_rows, row_nnz, n_cells, 150)
    assert np.array_equal(chunk_module.row_counts(genes, gene_rank), row_nnz)
    rows, cols, vals, positions, tile_k = chunk_module.arrange(indptr, genes, values, cell_order, gene_rank, row_nnz,
                                                                geometry.row_starts, geometry.widths,
                                                                geometry.tile_starts, n_cells)
    # reference: walk the cells in their new order; sort by (tile, row), stably
    walk_c = np.repeat(np.arange(n_cells), np.diff(indptr)[cell_order])
    walk_e = np.concatenate([np.arange(indptr[c], indptr[c + 1]) for c in cell_order]).astype(np.int64)
    r = gene_rank[genes[walk_e]]
    band = np.searchsorted(geometry.row_starts, r, side="right") - 1
    w = geometry.widths[band]
    tile = geometry.tile_starts[band] + walk_c // w
    first = walk_c - walk_c % w
    pos = (r - geometry.row_starts[band]) * np.minimum(w, n_cells - first) + walk_c - first
    order = np.lexsort((np.arange(r.size), r, tile))
    assert rows.dtype == np.int32 and cols.dtype == np.int32
    assert np.array_equal(rows, r[order]) and np.array_equal(cols, walk_c[order])
    assert np.array_equal(vals, values[walk_e][order]) and np.array_equal(positions, pos[order])
    assert np.array_equal(tile_k, np.bincount(tile, minlength=geometry.n_tiles))
    with pytest.raises(ValueError):  # a gene outside the rank table
        chunk_module.arrange(indptr, np.where(genes == genes[0], 10**6, genes), values, cell_order, gene_rank,
                              row_nnz, geometry.row_starts, geometry.widths, geometry.tile_starts, n_cells)
    with pytest.raises(ValueError):  # a cell order that is not a permutation
        chunk_module.arrange(indptr, genes, values, np.zeros(n_cells, np.int64), gene_rank, row_nnz,
                              geometry.row_starts, geometry.widths, geometry.tile_starts, n_cells)
    for wrong in (row_nnz + 1, row_nnz[::-1].copy(), np.where(np.arange(row_nnz.size) == 0, -1, row_nnz)):
        with pytest.raises(ValueError, match="row counts"):  # counts that do not add up, or not by row
            chunk_module.arrange(indptr, genes, values, cell_order, gene_rank, wrong, geometry.row_starts,
                                 geometry.widths, geometry.tile_starts, n_cells)
    with pytest.raises(ValueError, match="a value is negative"):  # which no block holds
        chunk_module.arrange(indptr, genes, np.where(values == values[0], -1, values), cell_order, gene_rank,
                             row_nnz, geometry.row_starts, geometry.widths, geometry.tile_starts, n_cells)
    with pytest.raises(TypeError):  # 64-bit genes or values: refused, never narrowed (a block's are int32)
        chunk_module.arrange(indptr, genes.astype(np.int64), values, cell_order, gene_rank, row_nnz,
                             geometry.row_starts, geometry.widths, geometry.tile_starts, n_cells)
    with pytest.raises(TypeError):
        chunk_module.cell_totals(indptr, values.astype(np.int64))


def test_arrange_into_reused_buffers():
    """The local encoder's per-thread arrays: the same arrangement as fresh arrays, the same memory
    from one chunk to the next while it fits, larger arrays when a chunk needs them."""
    rng = np.random.default_rng(12)
    buffers = chunk_module.ChunkBuffers()
    seen = []
    for n_cells in (30, 20, 60):
        dense = rng.poisson(0.4, size=(50, n_cells)) * (rng.random((50, n_cells)) < 0.3)
        csc = sp.csc_matrix(dense)
        indptr, genes, values = csc.indptr.astype(np.int64), csc.indices.astype(np.int32), csc.data.astype(np.int32)
        gene_rank = np.arange(50, dtype=np.int64)
        geometry = ChunkGeometry.plan(np.array([0, 10, 50], np.int64), np.bincount(genes, minlength=50), n_cells, 40)
        args = (indptr, genes, values, np.arange(n_cells, dtype=np.int64), gene_rank,
                chunk_module.row_counts(genes, gene_rank), geometry.row_starts, geometry.widths, geometry.tile_starts,
                n_cells)
        fresh = chunk_module.arrange(*args)
        reused = chunk_module.arrange(*args, buffers.take(values.size))
        assert all(np.array_equal(a, b) for a, b in zip(fresh, reused))
        seen.append(reused[0].__array_interface__["data"][0])
    assert seen[0] == seen[1] != seen[2]  # the second chunk fits in the first's arrays; the third grows them
    store, room = buffers.store, buffers.room
    assert room > values.size  # grown with room to spare: a slightly larger chunk does not grow them again
    assert buffers.take(room).rows.size == room and buffers.store is store
    buffers.take(room + 1)
    assert buffers.store is not store and buffers.room > room + 1


@pytest.mark.parametrize("max_error", [0, 1, 2, 1000, 2**30, 2**31 - 2])
def test_quantise_int32_values_without_overflow(max_error):
    """A chunk's values and u are int32: (v - 1 + E) // (2E + 1) and its inverse are exact up to
    MAX_COUNT and MAX_ERROR_LIMIT, never wrapped, into the encoder's int32 buffer or a fresh array."""
    values = np.array([1, 2, 3, 7, 1000, 2**24 + 1, 2**31 - 2, 2**31 - 1], np.int32)
    want = [(v - 1 + max_error) // (2 * max_error + 1) for v in values.tolist()]
    out = np.full(values.size, -1, np.int32)
    assert quantise_values(values, max_error, out=out) is out and out.tolist() == want
    fresh = quantise_values(values, max_error)
    assert fresh.dtype == np.int32 and fresh.tolist() == want
    if max_error:
        with pytest.raises(ValueError, match="int32"):  # 64-bit room is not the chunk's buffer
            quantise_values(values, max_error, out=np.empty(values.size, np.int64))
    if max_error:
        back = dequantise_values(out, max_error)
        assert back.tolist() == [min(1 + u * (2 * max_error + 1), 2**31 - 1) for u in want]
        assert np.all(np.abs(back.astype(np.int64) - values) <= max_error)


def test_bins_and_contexts_match_reference():
    rng = np.random.default_rng(6)
    u = np.concatenate([np.arange(3000), rng.integers(0, 2**31 - 1, 3000)]).astype(np.int64)
    expected_bins = np.searchsorted(bin_tables()[0], u, side="right") - 1
    assert np.array_equal(chunk_module.value_bins_of(u), expected_bins)
    out = np.full(u.size, -7, np.int32)  # the encoder's bins are int32
    assert chunk_module.value_bins_of(u, out=out) is out and np.array_equal(out, expected_bins)
    rows, cols = rng.integers(0, 40, 5000).astype(np.int32), rng.integers(0, 30, 5000).astype(np.int32)
    gene_terms, cell_terms = rng.integers(-300, 900, 40), rng.integers(-300, 300, 30)
    expected = np.clip((gene_terms[rows] + cell_terms[cols]) >> 2, 0, N_CONTEXTS - 1)
    assert np.array_equal(chunk_module.baseline_contexts(rows, cols, gene_terms, cell_terms), expected)
    out = np.full(rows.size, -7, np.int32)
    assert chunk_module.baseline_contexts(rows, cols, gene_terms, cell_terms, out=out) is out
    assert np.array_equal(out, expected)
    with pytest.raises(ValueError):
        chunk_module.baseline_contexts(rows, np.full(5000, 30, np.int32), gene_terms, cell_terms)
    with pytest.raises(ValueError, match="mismatched lengths"):  # never a write past the caller's array
        chunk_module.baseline_contexts(rows, cols, gene_terms, cell_terms, out=out[:-1])
    with pytest.raises(ValueError, match="mismatched lengths"):
        chunk_module.value_bins_of(u, out=np.empty(u.size - 1, np.int32))
    for wide in (np.array([5, 2**32 + 5]), np.array([2**64 - 5], np.uint64)):  # never wrapped into another bin
        with pytest.raises(ValueError, match="outside 32-bit"):
            chunk_module.value_bins_of(wide)


@pytest.mark.parametrize("major", [2, 3])
def test_value_counts_are_numpys_bincount(major):
    """The chunk's values.counts from the native kernel: numpy's count of context * N_BINS + bin, and
    a context or bin outside the tables refused, not counted elsewhere."""
    n_contexts = CONTEXTS_BY_MAJOR[major]
    rng = np.random.default_rng(16)
    contexts = rng.integers(0, n_contexts, 20000)
    bins = np.minimum(rng.geometric(0.2, 20000) - 1, N_BINS - 1)
    expected = np.bincount(contexts * N_BINS + bins, minlength=n_contexts * N_BINS).reshape(n_contexts, N_BINS)
    assert np.array_equal(histograms(contexts, bins, major=major), expected)
    assert not histograms(contexts[:0], bins[:0], major=major).any()
    for bad_context, bad_bin in ((n_contexts, 0), (-1, 0), (0, N_BINS), (0, -1)):
        with pytest.raises(ValueError):
            histograms(np.append(contexts, bad_context), np.append(bins, bad_bin), major=major)
    with pytest.raises(TypeError):  # not truncated to whole contexts
        histograms(contexts + 0.5, bins, major=major)
    with pytest.raises(ValueError):  # tables no format has: refused before any allocation
        _native.value_counts(contexts[:1].astype(np.int32), bins[:1].astype(np.int32), 1263665316, 1824726041)


@pytest.mark.parametrize("value_type", [np.int64, np.int32, np.float64, np.float32, np.uint16])
def test_baseline_fits_are_bit_exact(value_type):
    """The same float operations in the same order as the Python formulae (libm's log1p)."""
    indptr, genes, values = _block(7, n_genes=80, n_cells=40)
    values[::7] = np.random.default_rng(7).integers(4000, 60000, values[::7].size)  # beyond the log1p table
    gene_nnz, deviation = np.zeros(80, np.int64), np.zeros(80)
    accumulate_gene_stats(indptr, genes, values.astype(value_type), gene_nnz, deviation)
    want_nnz, want_dev = [0] * 80, [0.0] * 80
    for c in range(indptr.size - 1):
        lo, hi = indptr[c], indptr[c + 1]
        if hi == lo:
            continue
        mean = 0.0
        for i in range(lo, hi):
            mean += math.log1p(float(values[i]))
        mean /= hi - lo
        for i in range(lo, hi):
            want_nnz[genes[i]] += 1
            want_dev[genes[i]] += math.log1p(float(values[i])) - mean
    assert gene_nnz.tolist() == want_nnz and deviation.tolist() == want_dev
    rng = np.random.default_rng(8)
    n_cells = 25
    cols = rng.integers(0, n_cells - 3, values.size).astype(np.int32)  # the last cells have no nonzeros
    rows = rng.integers(0, 80, values.size).astype(np.int32)
    gene_terms = rng.integers(-32768, 32767, 80)
    total, count = [0.0] * n_cells, [0] * n_cells
    for i in range(values.size):
        total[cols[i]] += math.log1p(float(values[i])) - gene_terms[rows[i]] / 16
        count[cols[i]] += 1
    want = [min(max(float(np.rint(t / k * 16)), -32768), 32767) if k else 0 for t, k in zip(total, count)]
    assert fit_cell_terms(cols, rows, values, gene_terms, n_cells).tolist() == want
    with pytest.raises(ValueError):
        fit_cell_terms(cols, np.full(values.size, 80, np.int32), values, gene_terms, n_cells)
    with pytest.raises(ValueError):
        accumulate_gene_stats(indptr, genes, values, np.zeros(10, np.int64), np.zeros(10))


@pytest.mark.parametrize("opened", ["path", "file object"])
def test_whole_reads_load_a_local_files_chunks_as_they_decode(small_file, opened, monkeypatch):
    """A local file's chunks load one at a time as the decoders take them (the first decode does not
    wait for every header); a file object's all at once, in order (its read-ahead)."""
    path, truth = small_file
    with open(path, "rb") as f:
        m = sinr.open(path if opened == "path" else f, jobs=2)
        index = m.index
        loads = []
        load = index.load_chunks
        monkeypatch.setattr(index, "load_chunks", lambda ids: loads.append(list(ids)) or load(ids))
        assert (m.to_scipy("csc") != truth).nnz == 0
    assert index.n_chunks > 2
    expected = [[i] for i in range(index.n_chunks)] if opened == "path" else [list(range(index.n_chunks))]
    assert loads == expected
