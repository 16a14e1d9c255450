"""Format 3's lockstep tile decoder (native/core/src/lanes3.cpp, eight tiles in AVX2 lanes) against
the scalar decoder: what decode_tiles writes (every triple, count and status, with the output's
untouched entries left as they were) is identical on every path, for every tile of real format-3
files and for damaged streams and hostile directories; so is what count_rows writes (each row's
nonzeros and each tile's status: the lanes' count mode, which decodes positions only).

The path is a process-wide setting of the extension: _native.set_tile_lanes('scalar') forces the
scalar decoder, 'portable' runs the lane logic on plain arrays (so these tests hold it to the scalar
decoder on every machine), 'auto' (the default) runs the AVX2 lanes where the CPU has AVX2 and the
scalar decoder elsewhere; _native.tile_lanes() says which runs now."""
from __future__ import annotations

import ctypes
import mmap
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec
from conftest import DATA, native_setting
from scinrcodec import _native
from scinrcodec.codec.stages import MODE_CODES
from scinrcodec.codec.tile import BEYOND_TILE, OK, count_rows, decode_tiles
from scinrcodec.io.sources import ScipySource
from scinrcodec.reader.decode import gather, tile_bytes

SHARED = DATA.parents[2] / "shared" / "data"
FAST = dict(siren="never", progress=False, format_version=3, jobs=1)
PATHS = ("scalar", "portable", "auto")
SENTINEL = -7  # what the output holds where nothing is written
FILES = {  # name: (fixture, options): small tiles and chunks, max-error, one chunk, big tiles
    "pbmc500": ("pbmc500_3p_lt_x_50genes", {}),
    "pbmc4k_small": ("pbmc4k_v2_soupx_half", dict(tile_nnz=32, chunk_cells=40)),
    "mouse_gut_max_error": ("mouse_gut_cimseq_smartseq2", dict(tile_nnz=32, mode="max-error", max_error=3)),
    "frozen_tiny_tiles": ("frozen_pbmc_donor_a_v1", dict(chunk_cells=50, tile_nnz=16)),
    "visium": ("visium_spaceranger3", dict(tile_nnz=2048)),
}


def lanes(path: str):
    return native_setting(_native.set_tile_lanes, path)


@dataclass
class Batch:
    """A batch of format-3 tiles as decode_batch hands it to the kernel (every array its own copy)."""
    buf: np.ndarray
    tiles: dict[str, np.ndarray]  # offset, length, k, h, w, row, col, first, cells, model, siren
    gene_terms: np.ndarray
    cell_terms: np.ndarray
    tables3: list
    mode: int
    max_error: int
    sirens: tuple
    models2: tuple
    out_start: np.ndarray = field(default=None)
    col_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # empty: every column
    want_col: int = -1  # >= 0: that column only (a cell read)
    want_row: int = -1  # >= 0: that row only (a gene read)

    def __post_init__(self):
        if self.out_start is None:
            self.out_start = np.concatenate([[0], np.cumsum(np.maximum(self.tiles["k"], 0))[:-1]]).astype(np.int64)

    def masked(self, mask: np.ndarray) -> "Batch":
        """A block read: the columns mask marks, each tile's room as decode_batch gives it."""
        t = self.tiles
        marked = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
        room = np.minimum(t["k"], t["h"] * (marked[t["col"] + t["w"]] - marked[t["col"]]))
        return self.copy(col_mask=mask, out_start=np.concatenate([[0], np.cumsum(room)[:-1]]).astype(np.int64))

    def cell(self, column: int) -> "Batch":
        """A cell read: the tiles holding `column` (one per band of its chunk), each with room for
        one triple per row, as MatrixReader.cell gives them."""
        return self._one_line("col", "w", "h", column, want_col=column)

    def gene(self, row: int) -> "Batch":
        """A gene read: the tiles holding `row` (those of its band), each with room for one triple
        per column, as MatrixReader.gene gives them."""
        return self._one_line("row", "h", "w", row, want_row=row)

    def _one_line(self, first: str, extent: str, across: str, line: int, **want) -> "Batch":
        """The tiles whose `first`..`first` + `extent` - 1 holds `line`, each with room for one
        triple per entry of `across`."""
        t = self.tiles
        holding = np.flatnonzero((t[first] <= line) & (line < t[first] + t[extent]))
        batch = self.copy(**want)
        batch.tiles = {name: a[holding].copy() for name, a in t.items()}
        room = np.minimum(batch.tiles["k"], batch.tiles[across])
        batch.out_start = np.concatenate([[0], np.cumsum(room)[:-1]]).astype(np.int64)
        return batch

    def copy(self, **changes) -> "Batch":
        tiles = {name: a.copy() for name, a in self.tiles.items()}
        changes.setdefault("out_start", self.out_start.copy())
        return replace(self, tiles=tiles, buf=self.buf.copy(), **changes)

    def decode(self, path: str, index_dtype=np.int32, value_dtype=np.int32, out_size: int | None = None,
               threads: int = 1):
        """(rows, cols, values, counts, statuses) on a path, on `threads` of the core's threads;
        unwritten entries hold SENTINEL."""
        t = self.tiles
        size = int(np.maximum(t["k"], 0).sum()) if out_size is None else out_size
        rows, cols = np.full(size, SENTINEL, index_dtype), np.full(size, SENTINEL, index_dtype)
        values = np.full(size, SENTINEL, value_dtype)
        counts, status = np.full(t["k"].size, SENTINEL, np.int64), np.full(t["k"].size, SENTINEL, np.int64)
        with lanes(path):
            decode_tiles(self.buf, t["offset"], t["length"], t["k"], t["h"], t["w"], t["row"], t["col"], t["first"],
                         t["cells"], t["model"], t["siren"], self.gene_terms, self.cell_terms, *self.models2,
                         *self.sirens, self.mode, self.max_error, self.want_row, self.want_col, self.col_mask, self.out_start, rows,
                         cols, values, counts, status, self.tables3, threads)
        return rows, cols, values, counts, status

    def count(self, path: str, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(nonzeros per row, statuses) of count_rows on a path (the first pass of a gene-major read),
        on `threads` of the core's threads: rows as the tiles number them, one per gene term;
        unwritten statuses hold SENTINEL."""
        t = self.tiles
        counts = np.zeros(self.gene_terms.size, np.int64)
        status = np.full(t["k"].size, SENTINEL, np.int64)
        with lanes(path):
            count_rows(self.buf, t["offset"], t["length"], t["k"], t["h"], t["w"], t["row"], counts, status, t["model"],
                       self.tables3, threads)
        return counts, status


def file_batch(path: Path) -> Batch:
    """Every tile of a file, in one batch (the file's bytes as the buffer, as a whole decode has it)."""
    index = scinrcodec.open(path).index
    chunks = index.load_chunks(range(index.n_chunks))
    batch = gather(index, [(c, slice(0, c.geometry.n_tiles)) for c in chunks])
    buffer, offsets = tile_bytes(index, batch)
    models2, model, tables3 = index.models(batch.model)
    assert tables3 is not None  # format 3
    tiles = {name: np.array(getattr(batch, name), np.int64) for name in batch._fields if name != "data"}
    tiles["offset"], tiles["model"] = np.array(offsets, np.int64), np.array(model, np.int64)
    return Batch(np.array(buffer, np.uint8), tiles, np.array(index.genes()[3], np.int64),
                 np.array(index.cell_terms, np.int32), tables3, MODE_CODES[index.mode], index.max_error,
                 index.sirens.arrays(), models2)


def _equal(path: str, names: tuple[str, ...], expected, got) -> None:
    for name, a, b in zip(names, expected, got):
        if not np.array_equal(a, b):
            bad = np.flatnonzero(a != b)
            raise AssertionError(f"{path}: {name} differ at {bad[:10].tolist()} ({bad.size} entries): "
                                 f"{a[bad[:5]].tolist()} != {b[bad[:5]].tolist()}")


def assert_same(batch: Batch, **kwargs) -> np.ndarray:
    """Every path, on one thread or on three that each take a run of the tiles, writes what the
    scalar decoder writes on one, and, for a batch of every column in the default output, counts
    what the scalar count writes; returns the decode's statuses."""
    expected = batch.decode("scalar", **kwargs)
    for path in PATHS:
        for threads in (1, 3) if path != "scalar" else (3,):
            _equal(f"{path} on {threads} threads", ("rows", "cols", "values", "counts", "status"), expected,
                   batch.decode(path, threads=threads, **kwargs))
    if batch.col_mask.size == 0 and batch.want_col < 0 and batch.want_row < 0 and not kwargs:
        assert_same_counts(batch)
    return expected[4]


def assert_same_counts(batch: Batch) -> np.ndarray:
    """Every path's count_rows, on one thread or on three that each take a run of the tiles, writes
    what the scalar count writes on one; returns its statuses."""
    expected = batch.count("scalar")
    for path in PATHS:
        for threads in (1, 3) if path != "scalar" else (3,):
            _equal(f"{path} on {threads} threads", ("row counts", "count status"), expected,
                   batch.count(path, threads))
    return expected[1]


def _synthetic() -> sp.csc_matrix:
    """A full block (tiles coding no positions), values up to 2**31 - 1 (raw fields wider than 25
    bits: the scalar decoder's), and sparse cells around them."""
    rng = np.random.default_rng(3)
    m = sp.random(300, 400, density=0.04, random_state=rng, format="lil",
                  data_rvs=lambda n: rng.integers(1, 30, size=n)).astype(np.int64)
    m[:40, :60] = rng.integers(1, 4, size=(40, 60))
    m[100:104, :] = rng.integers(1, 2**31 - 1, size=(4, 400), dtype=np.int64)
    m[200, 5] = 2**31 - 1
    return sp.csc_matrix(m)


@pytest.fixture(scope="module", autouse=True)
def packed_tables_for_small_files():
    """Packed tables (what the lanes read) for every batch of these small files, whose chunks hold
    too few nonzeros for the decoder to build them on its own."""
    before = _native.set_packed_nnz_per_row(0)
    yield
    _native.set_packed_nnz_per_row(before)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("simd3")
    out = {}
    for name, (fixture, options) in FILES.items():
        out[name] = folder / f"{name}.sinr"
        scinrcodec.encode(DATA / fixture, out[name], **FAST, **options)
    counts = _synthetic()
    source = ScipySource(counts, [f"g{i}" for i in range(counts.shape[0])], None,
                         [f"c{j}" for j in range(counts.shape[1])])
    out["synthetic"] = folder / "synthetic.sinr"
    scinrcodec.encode(source, out["synthetic"], **FAST, tile_nnz=64, chunk_cells=150)
    return out


@pytest.fixture(scope="module")
def batches(files) -> dict[str, Batch]:
    return {name: file_batch(path) for name, path in files.items()}


def test_the_paths_are_what_they_say():
    with lanes("scalar"):
        assert _native.tile_lanes() == "scalar"
    with lanes("portable"):
        assert _native.tile_lanes() == "portable"
    with lanes("auto"):
        assert _native.tile_lanes() in ("avx2", "scalar")
    with pytest.raises(ValueError):
        _native.set_tile_lanes("sse")


def lane_counts(batch: Batch, path: str, count: bool = False, **kwargs) -> tuple[int, int]:
    """(tiles the lanes decoded, tiles they took and handed back to the scalar decoder) in one decode
    (count: in one count_rows)."""
    before = _native.tile_lane_counts()
    batch.count(path) if count else batch.decode(path, **kwargs)
    after = _native.tile_lane_counts()
    return after[0] - before[0], after[1] - before[1]


@pytest.mark.parametrize("name", [*FILES, "synthetic"])
def test_every_tile_of_real_files(batches, name):
    """Identical output, and the lanes decode every tile with nonzeros themselves (none fails their
    checks) but those with raw fields over 25 bits (values from 2**29), which they hand back."""
    batch = batches[name]
    assert (assert_same(batch) == OK).all()
    rows, cols, values, counts, _ = batch.decode("auto")
    assert (counts == batch.tiles["k"]).all() and (values > 0).all()
    start = batch.out_start
    wide = sum(bool((values[s:s + k] >= 2**29).any()) for s, k in zip(start.tolist(), counts.tolist()))
    for path in ("portable", "auto"):
        finished, handed_back = lane_counts(batch, path)
        if path == "portable" or _native.tile_lanes() == "avx2":
            assert (finished, handed_back) == (int((batch.tiles["k"] > 0).sum()) - wide, wide)


@pytest.mark.parametrize("name", [*FILES, "synthetic"])
def test_row_counts_of_real_files(batches, name):
    """count_rows gives each row's nonzeros (those the decode places in it) on every path, and the
    lanes count every tile that codes positions themselves (a gap's raw field never exceeds 25 bits);
    empty and full tiles are the scalar count's."""
    batch = batches[name]
    assert (assert_same_counts(batch) == OK).all()
    rows, _, _, _, _ = batch.decode("scalar")
    counts, _ = batch.count("auto")
    assert np.array_equal(counts, np.bincount(rows, minlength=counts.size))
    k, n = batch.tiles["k"], batch.tiles["h"] * batch.tiles["w"]
    assert ((k > 0) & (k < n)).any() and (name != "synthetic" or (k == n).any())
    for path in ("portable", "auto"):
        if path == "portable" or _native.tile_lanes() == "avx2":
            assert lane_counts(batch, path, count=True) == (int(((k > 0) & (k < n)).sum()), 0)


def test_row_counts_on_threads(batches):
    """A batch large enough for three counting threads (each counts its run of tiles into rows of
    its own, added up after) counts what the scalar count does on one thread, on every path."""
    base = batches["pbmc4k_small"]
    repeats = 3 * 2**16 // int(base.tiles["k"].sum()) + 2
    big = base.copy()
    big.tiles = {name: np.tile(a, repeats) for name, a in base.tiles.items()}
    assert int(big.tiles["k"].sum()) > 3 * 2**16
    assert (assert_same_counts(big) == OK).all()


def test_row_counts_refuse_a_model_array_of_another_length(batches):
    b = batches["pbmc4k_small"]
    t = b.tiles
    counts, status = np.zeros(b.gene_terms.size, np.int64), np.zeros(t["k"].size, np.int64)
    with pytest.raises(ValueError, match="differ in length"):
        count_rows(b.buf, t["offset"], t["length"], t["k"], t["h"], t["w"], t["row"], counts, status, t["model"][:1])


def test_row_counts_without_lanes_or_packed_tables(batches):
    """A batch of full tiles only (nothing for the lanes) and batches too small for packed tables
    count on the scalar path, with the same result."""
    batch = batches["synthetic"]
    full = np.flatnonzero(batch.tiles["k"] == batch.tiles["h"] * batch.tiles["w"])
    only_full = batch.copy()
    only_full.tiles = {key: a[full].copy() for key, a in batch.tiles.items()}
    assert (assert_same_counts(only_full) == OK).all()
    assert lane_counts(only_full, "portable", count=True) == (0, 0)
    before = _native.set_packed_nnz_per_row(10**9)
    try:
        assert (assert_same_counts(batches["pbmc4k_small"]) == OK).all()
        assert lane_counts(batches["pbmc4k_small"], "portable", count=True) == (0, 0)
    finally:
        _native.set_packed_nnz_per_row(before)


def test_output_dtypes(batches):
    for index_dtype in (np.int32, np.int64):
        for value_dtype in (np.int32, np.int64):
            assert (assert_same(batches["synthetic"], index_dtype=index_dtype, value_dtype=value_dtype) == OK).all()
            assert (assert_same(batches["mouse_gut_max_error"], index_dtype=index_dtype,
                                value_dtype=value_dtype) == OK).all()


def test_tiles_in_any_order_and_interleaved_chunks(batches):
    """Tiles out of stream order and chunks interleaved: a run of lanes ends at each change."""
    rng = np.random.default_rng(1)
    for name in ("pbmc4k_small", "frozen_tiny_tiles"):
        base = batches[name]
        order = rng.permutation(base.tiles["k"].size)
        batch = base.copy()
        batch.tiles = {key: a[order] for key, a in base.tiles.items()}
        batch.out_start = np.concatenate([[0], np.cumsum(batch.tiles["k"])[:-1]]).astype(np.int64)
        assert (assert_same(batch) == OK).all()


@pytest.mark.parametrize("name", ["pbmc4k_small", "mouse_gut_max_error", "synthetic"])
def test_block_reads_of_some_columns(batches, name):
    """A column mask (block reads): each tile's triples of the columns it marks, every tile decoded
    by the lanes, which decode tiles whole where the scalar decoder stops at the last column kept."""
    rng = np.random.default_rng(2)
    base = batches[name]
    n_columns = int((base.tiles["col"] + base.tiles["w"]).max())
    for density in (0.02, 0.3, 0.95):
        batch = base.masked(rng.random(n_columns) < density)
        assert (assert_same(batch) == OK).all()
        short = int(batch.out_start[-1]) - 2  # the last tiles' triples have no room
        assert density < 0.5 or set(assert_same(batch, out_size=short).tolist()) - {OK}
        if _native.tile_lanes() == "avx2" and name != "synthetic":
            assert lane_counts(batch, "auto") == (int((batch.tiles["k"] > 0).sum()), 0)


def assert_kept_only(batch: Batch, axis: int, line: int) -> None:
    """Every path decodes what the scalar decoder does, and that is some triples, each of row
    (axis 0) or column (axis 1) `line`."""
    assert (assert_same(batch) == OK).all()
    decoded = batch.decode("auto")
    kept = np.concatenate([decoded[axis][s: s + c] for s, c in zip(batch.out_start.tolist(), decoded[3].tolist())])
    assert kept.size and (kept == line).all()


@pytest.mark.parametrize("name", ["pbmc4k_small", "mouse_gut_max_error", "frozen_tiny_tiles", "synthetic"])
def test_cell_reads(batches, name):
    """One column (a cell read): each tile's triples of that column, every tile decoded by the lanes
    (whole, where the scalar decoder stops at the column's last nonzero), on one thread or three."""
    rng = np.random.default_rng(3)
    base = batches[name]
    n_columns = int((base.tiles["col"] + base.tiles["w"]).max())
    for column in rng.choice(n_columns, size=6, replace=False).tolist():
        batch = base.cell(column)
        assert_kept_only(batch, 1, column)
        if _native.tile_lanes() == "avx2" and name != "synthetic":
            assert lane_counts(batch, "auto") == (int((batch.tiles["k"] > 0).sum()), 0)


@pytest.mark.parametrize("name", ["pbmc4k_small", "mouse_gut_max_error", "frozen_tiny_tiles", "synthetic"])
def test_gene_reads(batches, name):
    """One row (a gene read): each tile's triples of that row on every path and thread count, by
    the scalar decoder (which decodes values to the row's end only, on compact tables)."""
    rng = np.random.default_rng(4)
    base = batches[name]
    t = base.tiles
    rows = np.unique(np.concatenate([np.arange(r, r + h) for r, h, k in zip(t["row"], t["h"], t["k"]) if k > 0]))
    for row in rng.choice(rows, size=6, replace=False).tolist():
        batch = base.gene(row)
        assert_kept_only(batch, 0, row)
        assert lane_counts(batch, "auto") == (0, 0)


def test_a_cut_of_the_shared_datasets(tmp_path):
    """The first 200 cells of each shared dataset, default geometry."""
    if not SHARED.exists():
        pytest.skip("the shared datasets are not here")
    for name in ("mouse_gut_cimseq_smartseq2", "visium_spaceranger3"):
        m = scinrcodec.read_matrix(SHARED / name)
        block = next(m.blocks(200))
        counts = sp.csc_matrix((block.values, block.genes, block.indptr), shape=(m.shape[0], block.n_cells))
        source = ScipySource(counts, m.gene_ids, m.gene_names, m.cell_names(0, block.n_cells))
        path = tmp_path / f"{name}.sinr"
        scinrcodec.encode(source, path, **FAST)
        assert (assert_same(file_batch(path)) == OK).all()


# ------------------------------------------------------------------------------------- damage

def _tile_bytes(batch: Batch, t: int) -> tuple[int, int]:
    return int(batch.tiles["offset"][t]), int(batch.tiles["length"][t])


def _damaged(base: Batch, rng, rounds: int, damage, counted: set[int] | None = None) -> set[int]:
    """Decode `rounds` copies of a batch, each damaged by damage(batch, rng, tiles), on every path
    (and count them, when the batch reads every column); returns the decode's statuses seen, and
    adds the count's to `counted`."""
    seen = set()
    nonempty = np.flatnonzero(base.tiles["length"] > 0)
    for _ in range(rounds):
        batch = base.copy()
        chosen = rng.choice(nonempty, size=max(1, nonempty.size // 20), replace=False)
        damage(batch, rng, chosen)
        seen |= set(assert_same(batch).tolist())
        if counted is not None:
            counted |= set(assert_same_counts(batch).tolist())
    return seen


def _flip_bits(batch: Batch, rng, chosen) -> None:
    for t in chosen.tolist():
        offset, length = _tile_bytes(batch, t)
        batch.buf[offset + int(rng.integers(length))] ^= np.uint8(1 << int(rng.integers(8)))


def _cut(batch: Batch, rng, chosen) -> None:
    batch.tiles["length"][chosen] = rng.integers(0, batch.tiles["length"][chosen])


def _lengthen(batch: Batch, rng, chosen) -> None:
    batch.tiles["length"][chosen] += rng.integers(1, 4, size=chosen.size)


def _swap_lengths(batch: Batch, rng, chosen) -> None:
    other = np.minimum(chosen + 1, batch.tiles["k"].size - 1)
    length = batch.tiles["length"]
    length[chosen], length[other] = length[other].copy(), length[chosen].copy()


def _shift_offsets(batch: Batch, rng, chosen) -> None:
    batch.tiles["offset"][chosen] += rng.choice([-2, -1, 1, 2], size=chosen.size)


def _end_bytes(batch: Batch, rng, chosen) -> None:
    """The last bytes (raw bits, padding) and the first (the state) of tiles changed."""
    for t in chosen.tolist():
        offset, length = _tile_bytes(batch, t)
        at = offset + (length - 1 - int(rng.integers(min(length, 3))) if rng.random() < 0.7
                       else int(rng.integers(min(length, 4))))
        batch.buf[at] = np.uint8(rng.integers(256))


def _some_columns(batch: Batch, rng) -> Batch:
    return batch.masked(rng.random(int((batch.tiles["col"] + batch.tiles["w"]).max())) < 0.4)


def _one_column(batch: Batch, rng) -> Batch:
    return batch.cell(int(rng.integers(int((batch.tiles["col"] + batch.tiles["w"]).max()))))


def _one_row(batch: Batch, rng) -> Batch:
    t = batch.tiles
    band = int(rng.integers(t["row"].size))
    return batch.gene(int(t["row"][band] + rng.integers(max(int(t["h"][band]), 1))))


DAMAGE = {"flip_bits": _flip_bits, "cut": _cut, "lengthen": _lengthen, "swap_lengths": _swap_lengths,
          "shift_offsets": _shift_offsets, "end_bytes": _end_bytes}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_streams(batches, damage):
    rng = np.random.default_rng(sorted(DAMAGE).index(damage))
    seen, counted = set(), set()
    for name in ("pbmc4k_small", "mouse_gut_max_error", "synthetic", "visium"):
        seen |= _damaged(batches[name], rng, 6, DAMAGE[damage], counted)
        seen |= _damaged(_some_columns(batches[name], rng), rng, 2, DAMAGE[damage])
        seen |= _damaged(_one_column(batches[name], rng), rng, 2, DAMAGE[damage])
        seen |= _damaged(_one_row(batches[name], rng), rng, 2, DAMAGE[damage])
    assert seen - {OK}, "the damage broke no tile"
    assert counted - {OK}, "the damage broke no tile's positions"


def _directory(batch: Batch, rng, chosen) -> None:
    """Every field of some tiles' directory entries set to something a hostile file may hold."""
    t = batch.tiles
    n_models = len(batch.tables3)
    changes = {
        "k": lambda v: np.where(rng.random(v.size) < 0.3, 0, v + rng.choice([-1, 1, 10**6, -5], size=v.size)),
        "h": lambda v: rng.choice([0, 1, 2**24, -1], size=v.size) * (rng.random(v.size) < 0.5) + v // 2,
        "w": lambda v: np.where(rng.random(v.size) < 0.5, v + 1, rng.choice([0, -3, 2**40], size=v.size)),
        "row": lambda v: rng.choice([-1, batch.gene_terms.size, 2**31 - 2, -(2**40)], size=v.size),
        "col": lambda v: rng.choice([-1, batch.cell_terms.size, 2**31 - 2], size=v.size),
        "model": lambda v: rng.choice([-1, n_models, 2**40], size=v.size),
        "siren": lambda v: rng.choice([0, 5], size=v.size),
        "offset": lambda v: rng.choice([-1, batch.buf.size, batch.buf.size - 2, 2**62], size=v.size),
        "length": lambda v: rng.choice([-1, 2**62, 3, 0], size=v.size),
    }
    for key, change in changes.items():
        some = chosen[rng.random(chosen.size) < 0.15]
        t[key][some] = change(t[key][some])


def test_hostile_directories(batches):
    rng = np.random.default_rng(11)
    seen, counted = set(), set()
    for name in ("pbmc4k_small", "mouse_gut_max_error", "synthetic", "frozen_tiny_tiles"):
        seen |= _damaged(batches[name], rng, 8, _directory, counted)
        seen |= _damaged(_some_columns(batches[name], rng), rng, 4, _directory)
    assert len(seen - {OK}) >= 3 and len(counted - {OK}) >= 3


def test_hostile_terms_outputs_and_tables(batches):
    """Contexts without tables (T6), terms shorter than the tiles, output ranges that overlap or
    leave the output (the batch then runs on the scalar decoder), no room for some tiles."""
    rng = np.random.default_rng(12)
    base = batches["pbmc4k_small"]
    batch = base.copy()
    batch.gene_terms = base.gene_terms.copy()
    batch.gene_terms[rng.choice(batch.gene_terms.size, size=batch.gene_terms.size // 10)] = 10**6
    assert set(assert_same(batch).tolist()) - {OK}
    batch = base.copy(gene_terms=base.gene_terms[:base.gene_terms.size // 2],
                      cell_terms=base.cell_terms[:base.cell_terms.size // 2])
    assert set(assert_same(batch).tolist()) - {OK}
    for out_start_change in ("swap", "beyond", "negative"):
        batch = base.copy()
        picks = rng.choice(batch.out_start.size, size=10, replace=False)
        if out_start_change == "swap":
            batch.out_start[picks[:5]], batch.out_start[picks[5:]] = batch.out_start[picks[5:]], batch.out_start[picks[:5]]
        elif out_start_change == "beyond":
            batch.out_start[picks] = int(np.maximum(batch.tiles["k"], 0).sum()) + 1
        else:
            batch.out_start[picks] = -1
        assert_same(batch)
    total = int(base.tiles["k"].sum())
    assert set(assert_same(base, out_size=total - 100).tolist()) - {OK}  # the last tiles have no room


def _guarded(data: bytes, at_end: bool) -> tuple[np.ndarray, mmap.mmap]:
    """data in memory with an unreadable page right after it (at_end) or right before it."""
    page = mmap.PAGESIZE
    pages = -(-max(len(data), 1) // page)
    region = mmap.mmap(-1, (pages + 2) * page)
    address = ctypes.addressof(ctypes.c_char.from_buffer(region))
    libc = ctypes.CDLL(None, use_errno=True)
    for guard in (address, address + (pages + 1) * page):
        assert libc.mprotect(ctypes.c_void_p(guard), ctypes.c_size_t(page), 0) == 0  # PROT_NONE
    start = page + (pages * page - len(data) if at_end else 0)
    region[start:start + len(data)] = data
    return np.frombuffer(region, np.uint8, len(data), start), region


def test_streams_against_unreadable_pages(batches):
    """A buffer of only the tiles' streams, the first at its start and the last at its end, an
    unreadable page on either side: any read outside the buffer ends the process."""
    rng = np.random.default_rng(13)
    for name in ("pbmc4k_small", "synthetic"):
        base = batches[name]
        t = base.tiles
        streams = [bytes(base.buf[o:o + n]) for o, n in zip(t["offset"].tolist(), t["length"].tolist())]
        for damage in (None, _cut, _flip_bits, _end_bytes):
            batch = base.copy()
            batch.tiles["length"] = np.array([len(s) for s in streams], np.int64)
            batch.tiles["offset"] = np.concatenate([[0], np.cumsum(batch.tiles["length"])[:-1]]).astype(np.int64)
            batch.buf = np.frombuffer(b"".join(streams), np.uint8).copy()
            if damage is not None:
                damage(batch, rng, rng.choice(np.flatnonzero(batch.tiles["length"] > 0), size=40))
            for at_end in (True, False):
                batch.buf, region = _guarded(batch.buf.tobytes(), at_end)
                statuses = assert_same(batch)
                assert damage is not None or (statuses == OK).all()


def _alone(base: Batch, t: int, stream: bytes, at_end: bool) -> tuple[Batch, mmap.mmap]:
    """Tile t of a batch as a batch of its own, its stream the whole buffer, between unreadable pages."""
    batch = base.copy()
    batch.tiles = {key: a[t:t + 1].copy() for key, a in base.tiles.items()}
    batch.tiles["offset"][0], batch.tiles["length"][0] = 0, len(stream)
    batch.out_start = np.zeros(1, np.int64)
    batch.buf, region = _guarded(stream, at_end)
    return batch, region


def test_each_damaged_tile_alone_between_unreadable_pages(batches):
    """A lane reads only inside its tile's stream, whatever the stream holds: each damaged stream is
    the whole buffer, so a read before its first byte or after its last ends the process."""
    rng = np.random.default_rng(14)
    seen = set()
    for name in ("pbmc4k_small", "synthetic", "mouse_gut_max_error"):
        base = batches[name]
        tiles = rng.choice(np.flatnonzero(base.tiles["length"] > 0), size=40, replace=False).tolist()
        for t in tiles:
            offset, length = _tile_bytes(base, t)
            stream = bytes(base.buf[offset:offset + length])
            for damaged in (stream, stream[:int(rng.integers(length))], stream[:4] + stream[5:],
                            stream[:-1] + bytes([stream[-1] ^ (1 << int(rng.integers(8)))]),
                            stream[:4] + bytes([stream[4] ^ 0x80]) + stream[5:], stream + b"\0"):
                for at_end in (True, False):
                    batch, region = _alone(base, t, damaged, at_end)
                    seen |= set(assert_same(batch).tolist())
    assert len(seen) >= 3


def test_positions_past_a_shrunk_tile(batches):
    """T5: tiles one row shorter than their streams code (same density class, the last row holding a
    nonzero): the last positions lie past the tile, and the stream still ends as its coder ended."""
    shrunk_any = False
    for name in ("pbmc4k_small", "frozen_tiny_tiles", "visium"):
        batch = batches[name].copy()
        t = batch.tiles
        rows, _, _, counts, _ = batch.decode("scalar")
        shrink = []
        for i in range(t["k"].size):
            k, h, w = int(t["k"][i]), int(t["h"][i]), int(t["w"][i])
            n, m = h * w, min(k, h * w - k)
            if k == 0 or h < 2 or 2 * k > n - w or m != k:
                continue
            if _native.tile3_density_class(n, k) != _native.tile3_density_class(n - w, k):
                continue
            start = int(batch.out_start[i])
            if rows[start:start + k].max() == t["row"][i] + h - 1:
                shrink.append(i)
        t["h"][shrink] -= 1
        statuses = assert_same(batch)
        assert (statuses[shrink] == BEYOND_TILE).all()
        assert (assert_same_counts(batch)[shrink] == BEYOND_TILE).all()
        shrunk_any |= bool(shrink)
    assert shrunk_any
