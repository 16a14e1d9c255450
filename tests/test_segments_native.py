"""The C++ container reader (the R package's reader, and Python's entry reads) on segmented matrices
(format 3.1, spec §5.5): files that scinrcodec.concat combines from cuts of real matrices, whose
segments store different genes in different rows (a gene in one segment only, a gene in several
at different rows, a segment storing no gene), read back exactly through every read; files that
break rules SG1-SG4 are refused with the error of their rule."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import zstandard

import scinrcodec
from conftest import DATA, require
from fuzz.reseal import build, parse
from scinrcodec import _native, errors
from scinrcodec.storage.container import pack_array

FAST3 = dict(siren="never", progress=False, format_version=3)
SMALL_SIREN = dict(steps=40, batch=512, width=16, progress=False, format_version=3)
CASES = {  # name: (fixture, encoding options)
    "umi": ("pbmc4k_v2_soupx_half", dict(chunk_cells=6, tile_nnz=16, **FAST3)),
    "read_counts": ("mouse_gut_cimseq_smartseq2", dict(chunk_cells=5, tile_nnz=24, **FAST3)),
    "max_error": ("pbmc4k_v2_soupx_half", dict(mode="max-error", max_error=2, chunk_cells=7, **FAST3)),
    "siren": ("frozen_pbmc_donor_a_v1", dict(siren="force", chunk_cells=9, **SMALL_SIREN)),
    "inr_only": ("pbmc4k_v2_soupx_half", dict(mode="inr-only", chunk_cells=9, **SMALL_SIREN)),
}


def _csc(parts) -> sp.csc_matrix:
    shape, indptr, indices, values = parts
    return sp.csc_matrix((values, indices, indptr), shape=shape)


def _cuts(n_genes: int, n_cells: int) -> list[tuple[np.ndarray, slice, bool]]:
    """(genes in the cut's order, cells, all zero) of four cuts: every gene; two thirds of them
    shuffled; another part of them reversed, with genes of neither; a few genes and cells without a
    nonzero (a segment that stores no gene)."""
    rng = np.random.default_rng(11)
    shuffled = rng.permutation(n_genes)
    return [(np.arange(n_genes), slice(0, n_cells * 3 // 8), False),
            (shuffled[: n_genes * 2 // 3], slice(n_cells * 3 // 8, n_cells * 5 // 8), False),
            (np.sort(shuffled[n_genes // 2:])[::-1], slice(n_cells * 5 // 8, n_cells - 5), False),
            (np.arange(0, n_genes, 7), slice(n_cells - 5, n_cells), True)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> (path, expected matrix, the input matrices cut, as scipy). The expected matrix is what
    each input file decodes to on its own (one segment), its genes placed by id: exact for lossless
    files, the input's own stored values for lossy ones. 'nested' combines a combined file again."""
    require("torch")  # some hold SIREN bands
    folder = tmp_path_factory.mktemp("segments")
    out = {}
    for name, (fixture, options) in CASES.items():
        src = scinrcodec.read_matrix(DATA / fixture)
        m = sp.csc_matrix(src.matrix(), dtype=np.int64)
        ids, names, cells = src.gene_ids, src.gene_names, src.cell_names(0, m.shape[1])
        inputs = []
        for k, (genes, columns, zero) in enumerate(_cuts(*m.shape)):
            if zero and options.get("mode") == "inr-only":  # the encoder fails on such a chunk (TypeError)
                continue
            counts = m[genes][:, columns] * (0 if zero else 1)
            path = folder / f"{name}_{k}.sinr"
            scinrcodec.encode(scinrcodec.CountMatrix(sp.csc_matrix(counts), [ids[g] for g in genes],
                                                     [names[g] for g in genes], cells[columns]), path, **options)
            inputs.append(path)
        combined = folder / f"{name}.sinr"
        result = scinrcodec.concat(inputs, combined, join="outer")
        assert result["segments"] == len(inputs)
        out[name] = (combined, _expected(combined, inputs), m)
        if name == "umi":
            first = folder / "umi_01.sinr"
            scinrcodec.concat(inputs[:2], first, join="outer")
            nested = folder / "nested.sinr"
            assert scinrcodec.concat([inputs[2], first, inputs[3]], nested, join="outer")["segments"] == 4
            out["nested"] = (nested, _expected(nested, [inputs[2], inputs[0], inputs[1], inputs[3]]), m)
    return out


def _expected(combined: Path, inputs: list[Path]) -> sp.csc_matrix:
    """The inputs' own decodes side by side, their genes placed at the combined file's rows by id."""
    row_of = {g: i for i, g in enumerate(_native.ContainerReader(str(combined)).gene_ids())}
    parts = []
    for path in inputs:
        r = _native.ContainerReader(str(path))
        part = _csc(r.whole(1))
        rows = np.array([row_of[g] for g in r.gene_ids()], dtype=np.int64)
        parts.append(sp.csc_matrix((part.data, rows[part.indices], part.indptr), shape=(len(row_of), part.shape[1])))
    return sp.hstack(parts).tocsc().astype(np.int64)


def _segment_rows(path: Path) -> list[np.ndarray]:
    """The genes of each segment's rows, from the file's own sections (spec §5.5)."""
    matrix = parse(path.read_bytes()).matrices[0]
    unz = zstandard.ZstdDecompressor().decompressobj
    order = np.frombuffer(unz().decompress(matrix.sections["genes.order"]), "<u4").astype(np.int64)
    table = np.frombuffer(unz().decompress(matrix.sections["segments.index"]), "<u8").astype(np.int64).reshape(-1, 2)
    return np.split(order, np.cumsum(table[:, 1])[:-1])


def test_the_files_have_segments_that_differ(files):
    """What the reads below rely on: a gene stored in one segment only, one stored in several at
    different rows, a segment that stores no gene, and more stored rows than genes."""
    path, expected, _ = files["umi"]
    segments = _segment_rows(path)
    r = _native.ContainerReader(str(path))
    assert r.version == (3, 1) and r.n_segments == len(segments) == 4
    counts = np.bincount(np.concatenate(segments), minlength=r.shape[0])
    assert (counts == 1).any() and (counts >= 2).any() and min(s.size for s in segments) == 0
    assert sum(s.size for s in segments) > r.shape[0]
    moved = [g for g in range(r.shape[0]) if len({int(np.flatnonzero(s == g)[0]) for s in segments if g in s}) > 1]
    assert moved
    assert _native.ContainerReader(str(files["nested"][0])).n_segments == 4


@pytest.mark.parametrize("name", [*CASES, "nested"])
def test_every_read_of_a_segmented_file_is_exact(files, name):
    path, expected, source = files[name]
    r = _native.ContainerReader(str(path))
    assert (r.shape, r.nnz) == (expected.shape, expected.nnz)
    if name in ("umi", "read_counts", "siren", "nested"):  # lossless: the cuts' own counts
        assert expected.sum() == sum(source[g][:, c].sum() for g, c, zero in _cuts(*source.shape) if not zero)
    for threads in (1, 3):
        whole = _csc(r.whole(threads))
        whole.check_format(full_check=True)
        assert (whole != expected).nnz == 0
    n_genes, n_cells = expected.shape
    dense = expected.toarray()
    rng = np.random.default_rng(2)
    genes = [*rng.integers(0, n_genes, 12).tolist(), 0, n_genes - 1, 3, 3]
    cells = [*rng.integers(0, n_cells, 12).tolist(), 0, n_cells - 1, 5, 5]
    for threads in (1, 3):  # genes read a chunk per thread
        r.set_threads(threads)
        assert np.array_equal(_csc(r.genes(list(range(n_genes)))).toarray(), dense)
        assert np.array_equal(_csc(r.genes(genes)).toarray(), dense[genes])
        assert _csc(r.genes([])).shape == (0, n_cells)
        for g in range(n_genes):  # each gene alone: one row, the decoder's single-row filter
            assert np.array_equal(_csc(r.genes([g])).toarray()[0], dense[g]), g
    r.set_threads(1)
    assert np.array_equal(_csc(r.cells(list(range(n_cells)))).toarray(), dense)
    assert np.array_equal(_csc(r.cells(cells)).toarray(), dense[:, cells])
    for j in range(n_cells):  # each cell alone: a few tiles of its chunk
        assert np.array_equal(_csc(r.cells([j])).toarray()[:, 0], dense[:, j]), j
    for g_pick, c_pick in ((genes, cells), (genes[:2], list(range(n_cells))), (list(range(n_genes)), cells[:2])):
        assert np.array_equal(_csc(r.block(g_pick, c_pick)).toarray(), dense[g_pick][:, c_pick])
    assert np.array_equal(_csc(r.block(None, cells)).toarray(), dense[:, cells])
    assert np.array_equal(_csc(r.block(genes, None)).toarray(), dense[genes])
    assert all(r.entry(i, j) == dense[i, j] for i in range(n_genes) for j in range(n_cells))


@pytest.mark.parametrize("run_entries, keep_bytes", [(1, 0), (40, 300), (1 << 16, 1 << 40)])
@pytest.mark.parametrize("name", ["umi", "read_counts", "nested"])
def test_cell_ranges_of_a_segmented_file(files, name, run_entries, keep_bytes):
    """Consecutive ranges of cells (block processing: chunks decoded whole in runs of tiles, the cells
    after the wanted ones kept or not), forwards, backwards and across segments."""
    path, expected, _ = files[name]
    r = _native.ContainerReader(str(path))
    r._set_run_entries(run_entries)
    r.set_keep_bytes(keep_bytes)
    n_cells = expected.shape[1]
    chunk = int(np.diff(r.chunk_starts).max())
    for size in (1, 3, chunk - 1, chunk + 2, 2 * chunk + 1):
        ranges = [list(range(a, min(a + size, n_cells))) for a in range(0, n_cells, size)]
        for cells in ranges + ranges[::-1]:
            assert (_csc(r.cells(cells)) != expected[:, cells]).nnz == 0, (size, cells[0])


def test_names_of_a_segmented_file(files):
    """Genes by id over every input (an outer join), cells in the inputs' order."""
    path, _, _ = files["umi"]
    r = _native.ContainerReader(str(path))
    with scinrcodec.open(path) as m:
        assert r.gene_ids() == m.gene_ids and r.gene_names() == m.gene_names and r.cell_names() == m.cell_names
    ids = r.gene_ids()
    assert len(set(ids)) == len(ids) == r.shape[0]


def test_python_entries_read_segmented_files_through_the_core(files):
    """scinrcodec.open's m.get uses the core's reader (not its own path) once the core opens the file."""
    path, expected, _ = files["umi"]
    dense = expected.toarray()
    with scinrcodec.open(path) as m:
        for i, j in [(0, 0), *zip(*expected.nonzero())][:200]:
            assert m.get(int(i), int(j)) == dense[i, j]
        assert isinstance(m._entry_of.__self__, _native.ContainerReader)


# ------------------------------------------------------------------------------- hostile files

def _read_all(path: Path) -> None:
    r = _native.ContainerReader(str(path))
    r.whole(2)
    n_genes, n_cells = r.shape
    r.genes(list(range(n_genes)))
    r.cells(list(range(n_cells)))
    r.gene_ids(), r.gene_names(), r.feature_types(), r.cell_names()


def _edit(path: Path, tmp_path: Path, edit) -> Path:
    parts = parse(path.read_bytes())
    edit(parts)
    out = tmp_path / "edited.sinr"
    out.write_bytes(build(parts))
    return out


def _unz(payload: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(zstandard.ZstdDecompressor().decompressobj().decompress(payload), dtype).astype(np.int64)


def _key(key, value):
    def edit(parts) -> None:
        header = parts.matrices[0].header
        if value is None:
            header.pop(key)
        else:
            header[key] = value(header) if callable(value) else value
    return edit


def _segment_index(change):
    """segments.index rewritten: change(table) edits the (n_segments, 2) table or returns a new one."""
    def edit(parts) -> None:
        matrix = parts.matrices[0]
        table = _unz(matrix.sections["segments.index"], "<u8").reshape(-1, 2).copy()
        table = change(table) if change(table) is not None else table
        matrix.sections["segments.index"] = pack_array(np.asarray(table, dtype=np.uint64).ravel(), "u8")
    return edit


def _shift_rows(table):
    table[0, 1] -= 1
    table[1, 1] += 1


def _shift_chunk(table):
    table[0, 0] -= 1
    table[1, 0] += 1


def _gene_order(change):
    def edit(parts) -> None:
        matrix = parts.matrices[0]
        order = _unz(matrix.sections["genes.order"], "<u4").copy()
        table = _unz(matrix.sections["segments.index"], "<u8").reshape(-1, 2)
        change(order, np.concatenate([[0], np.cumsum(table[:, 1])]))
        matrix.sections["genes.order"] = pack_array(order.astype(np.uint32), "u4")
    return edit


def _repeat_in_segment(order, starts):
    order[starts[1] + 1] = order[starts[1]]


def _gene_out_of_range(order, starts):
    order[starts[1]] = 10 ** 6


def _segment_rows_of_chunk(parts, chunk: int) -> int:
    table = _unz(parts.matrices[0].sections["segments.index"], "<u8").reshape(-1, 2)
    return int(table[np.searchsorted(np.cumsum(table[:, 0]), chunk, side="right"), 1])


def _rows_past_segment(parts) -> None:
    """A chunk of the segment with the fewest rows claims one row more than its segment stores."""
    chunks = parts.matrices[0].chunks
    i = min((i for i, c in enumerate(chunks) if c.header["n_rows"]), key=lambda i: _segment_rows_of_chunk(parts, i))
    chunks[i].header["n_rows"] = _segment_rows_of_chunk(parts, i) + 1


def _drop_feature(parts) -> None:
    parts.matrices[0].header["required_features"] = []


def _drop_index(parts) -> None:
    parts.matrices[0].sections.pop("segments.index")


HOSTILE = {  # name: (edit, error, message fragment)
    "n_segments_missing": (_key("n_segments", None), errors.CorruptFileError, "'n_segments'"),
    "n_segments_zero": (_key("n_segments", 0), errors.CorruptFileError, "'n_segments'"),
    "n_segments_past_chunks": (_key("n_segments", lambda h: h["n_chunks"] + 1), errors.CorruptFileError,
                               "'n_segments'"),
    "n_segments_not_int": (_key("n_segments", "4"), errors.CorruptFileError, "'n_segments'"),
    "stored_past_segments": (_key("n_stored_genes", lambda h: h["n_segments"] * h["shape"][0] + 1),
                             errors.CorruptFileError, "'n_stored_genes'"),
    "n_segments_without_feature": (_drop_feature, errors.CorruptFileError, "'n_segments' without the feature"),
    "index_missing": (_drop_index, errors.CorruptFileError, "'segments.index' must be present"),
    "unknown_feature_too": (_key("required_features", ["segments", "latent-predictor"]),
                            errors.UnsupportedVersionError, "'latent-predictor' of .sinr format 3.1"),
    "index_short": (_segment_index(lambda t: t.ravel()[:-1]), errors.CorruptFileError, "'segments.index'"),
    "index_long": (_segment_index(lambda t: np.append(t.ravel(), 0)), errors.CorruptFileError, "'segments.index'"),
    "segment_without_chunks": (_segment_index(lambda t: [[0, t[0, 1]], [t[0, 0] + t[1, 0], t[1, 1]], *t[2:]]),
                               errors.CorruptFileError, "every segment needs at least one chunk"),
    "chunks_do_not_add_up": (_segment_index(lambda t: [[t[0, 0] + 1, t[0, 1]], *t[1:]]), errors.CorruptFileError,
                             "must add up to the matrix's"),
    "chunk_count_huge": (_segment_index(lambda t: [[2 ** 63 + 1, t[0, 1]], *t[1:]]), errors.CorruptFileError,
                         "every segment needs at least one chunk"),
    "rows_past_genes": (_segment_index(lambda t: [[t[0, 0], 10 ** 6], *t[1:]]), errors.CorruptFileError,
                        "a segment's rows exceed"),
    "rows_do_not_add_up": (_segment_index(lambda t: [[t[0, 0], t[0, 1] - 1], *t[1:]]), errors.CorruptFileError,
                           "do not add up to its"),
    "gene_twice_in_a_segment": (_gene_order(_repeat_in_segment), errors.CorruptFileError,
                                "not part of a permutation within a segment"),
    "gene_out_of_range": (_gene_order(_gene_out_of_range), errors.CorruptFileError, "not part of a permutation"),
    "rows_past_segment": (_rows_past_segment, errors.CorruptFileError, "more than its segment"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_segmented_file_is_refused_by_its_rule(files, tmp_path, case):
    edit, error, message = HOSTILE[case]
    path = _edit(files["umi"][0], tmp_path, edit)
    with pytest.raises(error) as caught:
        _read_all(path)
    assert type(caught.value) is error and message in str(caught.value), str(caught.value)


@pytest.mark.parametrize("name", ["umi", "max_error", "inr_only", "nested"])
@pytest.mark.parametrize("change", [_shift_rows, _shift_chunk])
def test_segments_moved_by_one_are_corrupt(files, tmp_path, name, change):
    """A row or a chunk moved from one segment to the next (the sums still right): every chunk then
    reads the wrong gene tables, which the rules or the content checksums find; never a crash or
    wrong numbers."""
    with pytest.raises(errors.CorruptFileError):
        _read_all(_edit(files[name][0], tmp_path, _segment_index(change)))


def test_unsegmented_file_with_segment_fields_is_corrupt(tmp_path):
    """n_segments or segments.index in a matrix that does not list the feature (SG1)."""
    path = tmp_path / "plain.sinr"
    src = scinrcodec.read_matrix(DATA / "pbmc500_3p_lt_x_50genes")
    scinrcodec.encode(src.matrix(), path, chunk_cells=20, **FAST3)
    with pytest.raises(errors.CorruptFileError, match="'n_segments' without the feature"):
        _read_all(_edit(path, tmp_path, _key("n_segments", 1)))

    def with_index(parts) -> None:
        parts.matrices[0].sections["segments.index"] = pack_array(np.array([4, 50], dtype=np.uint64), "u8")
    with pytest.raises(errors.CorruptFileError, match="'segments.index' must be present"):
        _read_all(_edit(path, tmp_path, with_index))
