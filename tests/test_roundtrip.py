"""Exact round trips and random access on real fixtures cut from every dataset, in every mode."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, DATASETS, needs
from scinrcodec.io.sources import ScipySource

FAST = dict(siren="never", progress=False)
SMALL_SIREN = dict(steps=40, batch=512, width=16, progress=False)


@pytest.fixture(scope="module")
def sources():
    return {name: sinr.read_matrix(DATA / name) for name in DATASETS}


@pytest.fixture(scope="module")
def pbmc(sources):
    return sources["pbmc4k_v2_soupx_half"]


def _dense(source) -> np.ndarray:
    return source.matrix().toarray()


def _check_reads(f, dense: np.ndarray, seed: int = 1, n: int = 200) -> None:
    rng = np.random.default_rng(seed)
    n_genes, n_cells = dense.shape
    for i, j in zip(rng.integers(0, n_genes, n), rng.integers(0, n_cells, n)):
        assert f[int(i), int(j)] == dense[i, j]
    rows, cols = np.nonzero(dense)
    for k in rng.integers(0, max(rows.size, 1), n if rows.size else 0):
        assert f[int(rows[k]), int(cols[k])] == dense[rows[k], cols[k]]
    for i in rng.integers(0, n_genes, 15):
        assert np.array_equal(f.gene(int(i)), dense[i])
    for j in rng.integers(0, n_cells, 15):
        assert np.array_equal(f.cell(int(j)), dense[:, j])


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("chunk_cells", [4096, 97])
def test_lossless_round_trip_and_random_access(tmp_path, sources, name, chunk_cells):
    m = sources[name]
    out = tmp_path / "x.sinr"
    result = sinr.encode(m, out, tile_nnz=64, chunk_cells=chunk_cells, **FAST)
    dense = _dense(m)
    with sinr.open(out) as f:
        assert f.shape == m.shape and f.nnz == np.count_nonzero(dense)
        assert f.n_chunks == result["chunks"] == -(-m.shape[1] // chunk_cells)
        assert np.array_equal(f.to_scipy().toarray(), dense)
        assert np.array_equal(f.to_scipy(layout="csc").toarray(), dense)
        assert f.gene_ids == m.gene_ids and f.gene_names == m.gene_names
        assert f.cell_names == m.cell_names(0, m.shape[1])
        _check_reads(f, dense)
        f.verify()


@pytest.mark.parametrize("normalisation", ["log", "none", "minmax"])
@needs("torch")
def test_kept_sirens_decode_exactly(tmp_path, pbmc, normalisation):
    out = tmp_path / "s.sinr"
    sinr.encode(pbmc, out, siren="force", normalisation=normalisation, chunk_cells=800,
                coordinates="per-axis" if normalisation == "none" else "isotropic", **SMALL_SIREN)
    dense = _dense(pbmc)
    with sinr.open(out) as f:
        assert f.stats["siren_kept"] == f.stats["siren_tried"] > 0
        assert np.array_equal(f.to_scipy().toarray(), dense)
        _check_reads(f, dense, n=50)


def test_auto_siren_skips_bands_too_small_to_pay(tmp_path, pbmc):
    out = tmp_path / "a.sinr"
    stats = sinr.encode(pbmc, out, siren="auto", **SMALL_SIREN)
    assert stats["siren_tried"] == 0 and stats["siren_kept"] == 0


@pytest.mark.parametrize("name", ["pbmc4k_v2_soupx_half", "mouse_gut_cimseq_smartseq2"])
@pytest.mark.parametrize("bound", [1, 3, 50])
def test_max_error_bound_and_zeros_exact(tmp_path, sources, name, bound):
    m = sources[name]
    out = tmp_path / "lossy.sinr"
    sinr.encode(m, out, mode="max-error", max_error=bound, chunk_cells=300, **FAST)
    dense = _dense(m)
    with sinr.open(out) as f:
        got = f.to_scipy().toarray()
        assert np.all(np.abs(got - dense) <= bound)
        assert np.array_equal(got == 0, dense == 0)
        assert f.mode == "max-error" and f.max_error == bound
        _check_reads(f, got, n=60)


def test_max_error_mode_needs_a_bound_named_as_the_api_names_it(tmp_path, pbmc):
    """sinr.encode(mode='max-error', max_error=0) had said '--max-error must be a positive integer',
    a flag the caller never gave; 0 is what mode 'lossless' means."""
    for options in (dict(mode="max-error", max_error=0), dict(mode="max-error")):
        with pytest.raises(sinr.InvalidInputError) as err:
            sinr.encode(pbmc, tmp_path / "x.sinr", **options, **FAST)
        assert str(err.value) == "mode 'max-error' needs max_error of at least 1 (max_error 0 is mode 'lossless')"
    assert not (tmp_path / "x.sinr").exists()


def test_max_error_shrinks_file(tmp_path, sources):
    m = sources["mouse_gut_cimseq_smartseq2"]
    sizes = [sinr.encode(m, tmp_path / f"{i}.sinr", **FAST, **options)["bytes"]
             for i, options in enumerate(({}, dict(mode="max-error", max_error=5)))]
    assert sizes[1] < sizes[0]


@needs("torch")
def test_inr_only_keeps_zeros_and_reports_nothing_false(tmp_path, pbmc):
    out = tmp_path / "inr.sinr"
    sinr.encode(pbmc, out, mode="inr-only", **SMALL_SIREN)
    dense = _dense(pbmc)
    with sinr.open(out) as f:
        got = f.to_scipy().toarray()
        assert np.array_equal(got == 0, dense == 0) and got[dense > 0].min() >= 1
        assert 0 < np.mean(got[dense > 0] == dense[dense > 0]) < 1
        _check_reads(f, got, n=60)


@needs("torch")
def test_inr_only_with_a_chunk_of_cells_without_nonzeros(tmp_path, pbmc):
    """A chunk whose cells hold no nonzero has no SIREN to predict anything: it encodes empty."""
    x = sp.csc_matrix(pbmc.matrix()[:, :90]).tolil()
    x[:, 30:60] = 0
    x = sp.csc_matrix(x)
    sinr.encode(x, tmp_path / "gap.sinr", mode="inr-only", chunk_cells=30, **SMALL_SIREN)
    with sinr.open(tmp_path / "gap.sinr") as f:
        got = f.to_scipy()
        assert f.n_chunks == 3 and np.array_equal(got.toarray() == 0, x.toarray() == 0)


def test_submatrix_indexing(tmp_path, pbmc):
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, chunk_cells=70, **FAST)
    dense = _dense(pbmc)
    n_genes, n_cells = pbmc.shape
    mask = np.zeros(n_cells, dtype=bool)
    mask[::3] = True
    with sinr.open(out) as f:
        cases = [(slice(0, 40), slice(None)), ([5, 5, 0, 149], slice(10, 30)), (slice(None, None, -7), mask),
                 (np.arange(n_genes) % 2 == 0, [0, 79, 79, 3]), (-1, slice(None)), ([], [1, 2])]
        for rows, cols in cases:
            expected = dense[np.arange(n_genes)[rows] if not isinstance(rows, int) else [rows]][
                :, np.arange(n_cells)[cols]]
            got = f[rows, cols]
            assert got.shape == expected.shape
            assert np.array_equal(got.toarray(), expected)
        for bad in ((n_genes, 0), (0, [n_cells + 5]), (slice(None, None, 0), 0), (np.zeros((2, 2), int), 0),
                    (np.True_, 2), (np.float64(2), 0), (1.0, 2), (None, 0), (..., ..., 3), (b"x", 0), (slice(1.5, 3), 0)):
            with pytest.raises(sinr.SinrIndexError):  # each a typed error, never numpy's or Python's own
                f[bad]
        with pytest.raises(sinr.SinrIndexError, match="integer start and stop"):
            f.cells_block(1.5, 3)
        assert f[np.int64(3), np.int32(7)] == dense[3, 7] and f[np.array([3]), [7]].toarray()[0, 0] == dense[3, 7]
    with pytest.raises(sinr.InvalidInputError, match="jobs must be an integer"):
        sinr.open(out, jobs=1.5)


def test_an_unsigned_index_beyond_int64_is_out_of_range(tmp_path, pbmc):
    """A uint64 index of 2**64 - 1 is out of range, as numpy has it: cast to int64 first, it had
    wrapped to -1 and read the last gene (or cell) without a word."""
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, chunk_cells=70, **FAST)
    huge = np.array([2**64 - 1], np.uint64)
    with sinr.open(out) as f:
        for key in ((huge, slice(None)), (slice(None), huge)):
            with pytest.raises(sinr.SinrIndexError, match="index 18446744073709551615 out of range"):
                f[key]
            with pytest.raises(sinr.SinrIndexError, match="out of range"):
                f.T[key[::-1]]


def test_random_distinct_selections(tmp_path, pbmc):
    """Distinct genes and cells in any order, from one gene (whose place is searched) to all of
    them (looked up in a table by row): every selection equals the dense matrix's."""
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, chunk_cells=30, **FAST)
    dense = _dense(pbmc)
    n_genes, n_cells = pbmc.shape
    rng = np.random.default_rng(8)
    with sinr.open(out) as f:
        for n_pick in (1, 2, 5, n_genes // 2, n_genes):
            for _ in range(6):
                genes = rng.permutation(n_genes)[:n_pick]
                cells = rng.permutation(n_cells)[: int(rng.integers(1, n_cells + 1))]
                assert np.array_equal(f[genes, cells].toarray(), dense[genes][:, cells])


def test_a_few_genes_over_every_cell_are_gene_reads(tmp_path, pbmc, monkeypatch):
    """m[genes, :] and m.T[:, genes] with every cell (in order, reversed, permuted, or with repeats)
    read each gene as m.gene does, up to a gene per four bands (or 8); more genes decode the bands
    holding them. Each result equals the dense matrix's as sorted int64 CSR, from a file and from
    bytes."""
    import scinrcodec.reader.matrix as matrix_module
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, chunk_cells=70, **FAST)
    dense = _dense(pbmc)
    n_genes, n_cells = pbmc.shape
    rng = np.random.default_rng(3)
    every = [slice(None), np.arange(n_cells)[::-1], rng.permutation(n_cells), rng.integers(0, n_cells, n_cells)]

    def failing(*args, **kwargs):
        raise AssertionError("took the other path")

    for f in (sinr.open(out), sinr.open(out.read_bytes())):
        with f:
            n_bands = f._index.tile_table().band_rows.shape[1] - 1
            by_gene = max(8, n_bands // 4)
            few, many = rng.permutation(n_genes)[:by_gene], rng.permutation(n_genes)[: by_gene + 3]
            for genes, path_not_taken in ((few[:1], "gather"), (few[:3], "gather"), (few, "gather"),
                                         (many, "_genes_by_rows")):
                for cells in every:
                    expected = dense[genes][:, np.arange(n_cells)[cells]]
                    with monkeypatch.context() as patched:
                        owner = matrix_module if path_not_taken == "gather" else matrix_module.MatrixReader
                        patched.setattr(owner, path_not_taken, failing)
                        got, view = f[genes, cells], f.T[cells, genes]
                    for result in (got, view.T.tocsr()):
                        assert result.format == "csr" and result.dtype == np.int64 and result.has_sorted_indices
                        assert np.array_equal(result.toarray(), expected)


def test_genes_over_every_cell_cost_what_they_hold(tmp_path):
    """m[genes, :] over a matrix of many cells (a raw matrix's barcodes, an atlas) holds no array
    over every cell: on 400,000 cells a gene had allocated 10 MB (a dense row and two index arrays
    over every cell) and taken 6.5 ms, where its nonzeros take 0.3 ms; and 20 genes go a gene at a
    time there, where the one pass's arrays over every cell had cost more than the genes."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n_cells = 400_000
    x = sp.random(60, n_cells, density=2e-4, format="csr", random_state=1,
                  data_rvs=lambda n: rng.integers(1, 9, n)).astype(np.int32)
    out = tmp_path / "wide.sinr"
    sinr.encode(x, out, **FAST)
    with sinr.open(out) as m:
        m[3, :]  # the index and the gene tables load
        for genes in (3, [7, 3], [5, 5], list(range(40, 60))):
            tracemalloc.start()
            try:
                got = m[genes, :]
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 4 * n_cells, f"{peak:,} bytes"  # an int64 array over every cell is twice that
            assert got.has_sorted_indices and np.array_equal(got.toarray(), x[genes].toarray())


@pytest.mark.parametrize("piece", [1, 40, 1 << 18])
def test_filtered_reads_decoded_in_pieces_are_exact(tmp_path, pbmc, monkeypatch, piece):
    """Genes, cells and selections decode their tiles in runs that fit a reused scratch
    (reader.decode.PIECE_ENTRIES): at one triple a piece (a piece per tile), a few tiles, or all of
    them, on 1 and 2 threads, every read equals the dense matrix's."""
    import scinrcodec.reader.decode as decode

    monkeypatch.setattr(decode, "PIECE_ENTRIES", piece)
    pieces = []
    in_pieces = decode._decode_in_pieces
    monkeypatch.setattr(decode, "_decode_in_pieces", lambda *a: pieces.append(1) or in_pieces(*a))
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, chunk_cells=30, **FAST)
    dense = _dense(pbmc)
    n_genes, n_cells = pbmc.shape
    rng = np.random.default_rng(3)
    for jobs in (1, 2):
        with sinr.open(out, jobs=jobs) as f:
            for _ in range(4):
                genes = rng.permutation(n_genes)[: int(rng.integers(1, n_genes + 1))]
                cells = rng.permutation(n_cells)[: int(rng.integers(1, n_cells + 1))]
                assert np.array_equal(f[genes, cells].toarray(), dense[genes][:, cells])
                assert np.array_equal(f[:, cells].toarray(), dense[:, cells])  # every gene: no search for rows
            for i in rng.integers(0, n_genes, 5).tolist():
                assert np.array_equal(f.gene(i), dense[i])
            for j in rng.integers(0, n_cells, 5).tolist():
                assert np.array_equal(f.cell(j), dense[:, j])
    assert bool(pieces) == (piece < 1 << 18)


@pytest.mark.parametrize("huge_free", [0, 1 << 50])
def test_results_in_mapped_pages_are_exact_and_ordinary(tmp_path, pbmc, monkeypatch, huge_free):
    """Large results live in plain anonymous mappings (reader.pages), advised for huge pages where
    the kernel has them free: with every array mapped, whole reads in both layouts, filtered reads
    and chunk blocks equal the dense matrix, and the arrays behave as numpy's own (writable,
    picklable, alive after the file is closed)."""
    import mmap
    import pickle

    import scinrcodec.reader.pages as pages

    if getattr(mmap, "MADV_HUGEPAGE", None) is None:
        pytest.skip("no transparent huge pages to ask for here")
    advised = []

    class Spied(mmap.mmap):
        def madvise(self, *args):
            advised.append(len(self))
            return super().madvise(*args)

    monkeypatch.setattr(pages, "_MAPPED_FROM_BYTES", 0)
    monkeypatch.setattr(pages, "_HUGE_PAGE", 4096)  # every mapping of a page or more may be advised
    monkeypatch.setattr(pages, "_HUGE_ADVICE", mmap.MADV_HUGEPAGE)
    monkeypatch.setattr(pages, "huge_pages_free", lambda: huge_free)
    monkeypatch.setattr(pages.mmap, "mmap", Spied)
    assert pages.fresh_array(4096, np.int8).size == 4096 and pages.fresh_array(100, np.int8).size == 100
    assert advised == ([4096] if huge_free else [])  # advised where free blocks cover it, never below a page
    assert isinstance(pages.fresh_array(3, np.int64).base.obj, mmap.mmap) and pages.fresh_array(0, np.int8).size == 0
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, chunk_cells=20, **FAST)
    dense = _dense(pbmc)
    with sinr.open(out, jobs=2) as f:
        csr, csc = f.to_scipy(), f.to_scipy(layout="csc", dtype=np.float32)
        block = f.chunks_block([1, 0])
        assert np.array_equal(f[:, 5:30].toarray(), dense[:, 5:30])
    assert np.array_equal(csr.toarray(), dense) and np.array_equal(csc.toarray(), dense)
    assert np.array_equal(block.toarray(), np.concatenate([dense[:, 20:40], dense[:, :20]], axis=1).T)
    csr.data[:] += 1
    again = pickle.loads(pickle.dumps(csr))
    assert np.array_equal(again.toarray(), csr.toarray()) and again.data.min() >= 2


def test_names_lookup_and_anndata(tmp_path, pbmc):
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, **FAST)
    dense = _dense(pbmc)
    cells = pbmc.cell_names(0, pbmc.shape[1])
    with sinr.open(out) as f:
        gene = int(np.argmax((dense > 0).sum(1)))
        assert np.array_equal(f.gene(pbmc.gene_names[gene]), dense[gene])
        assert np.array_equal(f.gene(pbmc.gene_ids[gene]), dense[gene])
        assert np.array_equal(f.cell(cells[5]), dense[:, 5])
        assert f.get(pbmc.gene_names[gene], cells[5]) == dense[gene, 5]
        with pytest.raises(sinr.SinrKeyError):
            f.gene("NOT_A_GENE")
        adata = f.to_anndata()
        assert adata.shape == (pbmc.shape[1], pbmc.shape[0])
        assert list(adata.obs_names) == cells and list(adata.var["gene_ids"]) == pbmc.gene_ids
        assert np.array_equal(adata.X.toarray(), dense.T)


def test_a_file_without_names_takes_the_names_it_reports_as_keys(tmp_path, pbmc):
    """A file that stores no names (from a bare scipy matrix, an .npz) reports obs_names cell_0, ...
    and var_names gene_0, ... as read_sinr does; those are its names for every lookup: one, a list,
    the cells x genes view, `sinr get` and `sinr subset`; another name is refused as unknown."""
    out = tmp_path / "nameless.sinr"
    sinr.encode(pbmc.matrix(), out, **FAST)
    dense = _dense(pbmc)
    with sinr.open(out) as f:
        assert f.gene_names is None and f.cell_names is None and f.var_names[3] == "gene_3"
        assert np.array_equal(f.gene(f.var_names[3]), dense[3]) and np.array_equal(f.cell("cell_7"), dense[:, 7])
        assert f.get("gene_2", f.obs_names[5]) == dense[2, 5]
        assert np.array_equal(f[["gene_4", "gene_1"], ["cell_9", "cell_0"]].toarray(), dense[np.ix_([4, 1], [9, 0])])
        assert np.array_equal(f.T[list(f.obs_names[:3]), "gene_6"].toarray().ravel(), dense[6, :3])
        for missing in ("gene_x", f"gene_{pbmc.shape[0]}", "cell"):
            with pytest.raises(sinr.SinrKeyError, match="no (gene|cell) named"):
                f.get(missing, 0) if missing.startswith("gene") else f.cell(missing)
    got = subprocess.run([sys.executable, "-m", "scinrcodec", "get", str(out), "gene_2", "cell_5"], capture_output=True,
                         text=True)
    assert got.returncode == 0 and got.stdout.strip() == str(dense[2, 5]), got.stderr
    subprocess.run([sys.executable, "-m", "scinrcodec", "subset", str(out), "-o", str(tmp_path / "s.sinr"), "--genes",
                    "gene_2,gene_0", "--cells", "cell_5"], check=True, capture_output=True)
    with sinr.open(tmp_path / "s.sinr") as s:
        assert np.array_equal(s.to_scipy().toarray(), dense[np.ix_([2, 0], [5])])


def test_a_few_cells_by_name_are_found_by_a_scan(tmp_path, pbmc, monkeypatch):
    """The first few cells looked up by name are found by a scan of the names, not the table of every
    name (`sinr get f '#0' BARCODE` of a raw matrix's 737,280 barcodes had built it: 0.56 s of 1.1 s,
    where a scan takes 5 ms); a name held twice or by none is refused as the table refuses it, and
    later lookups build the table once."""
    import scinrcodec.reader.matrix as matrix_module

    cells = pbmc.cell_names(0, pbmc.shape[1])
    cells[9] = cells[4]  # a barcode listed twice
    out = tmp_path / "x.sinr"
    sinr.encode(ScipySource(pbmc.matrix(), pbmc.gene_ids, pbmc.gene_names, cells), out, **FAST)
    dense = _dense(pbmc)
    built = []
    real = matrix_module._indices_by_name
    monkeypatch.setattr(matrix_module, "_indices_by_name", lambda names: built.append(len(names)) or real(names))
    with sinr.open(out) as f:
        assert np.array_equal(f.cell(cells[5]), dense[:, 5]) and f[0, cells[7]] == dense[0, 7]
        with pytest.raises(sinr.SinrKeyError, match="2 cells are named"):
            f.cell(cells[4])
        with pytest.raises(sinr.SinrKeyError, match="no cell named"):
            f.cell("NOT-A-BARCODE")
        assert built == []
        for j in list(range(10, 10 + matrix_module.CELL_SCANS)):
            assert np.array_equal(f.cell(cells[j]), dense[:, j])
        assert built == [len(cells)]
        with pytest.raises(sinr.SinrKeyError, match="2 cells are named"):
            f.cell(cells[9])


def test_gene_names_equal_to_ids_are_stored_once(tmp_path, pbmc):
    same = ScipySource(pbmc.matrix(), pbmc.gene_names, list(pbmc.gene_names), pbmc.cell_names(0, pbmc.shape[1]))
    out = tmp_path / "same.sinr"
    sinr.encode(same, out, **FAST)
    with sinr.open(out) as f:
        assert "names.gene_names" not in f.section_sizes()
        assert f.gene_names == pbmc.gene_names == f.gene_ids


@pytest.mark.parametrize("matrix", [sp.csr_matrix((0, 0), dtype=np.int64), sp.csr_matrix((3, 4), dtype=np.int64),
                                    sp.csr_matrix(np.array([[7]])), sp.csr_matrix(np.full((4, 3), 2**31 - 1)),
                                    sp.csr_matrix(np.arange(12).reshape(3, 4)), np.eye(5, dtype=np.int32)],
                         ids=["0x0", "zeros", "1x1", "max", "arange", "dense-eye"])
def test_edge_shapes(tmp_path, matrix):
    out = tmp_path / "t.sinr"
    sinr.encode(matrix, out, chunk_cells=2, **FAST)
    expected = np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix)
    with sinr.open(out) as f:
        assert f.shape == expected.shape
        assert np.array_equal(f.to_scipy().toarray(), expected)
        assert np.array_equal(f.to_scipy(layout="csc").toarray(), expected)
        if expected.size:
            assert f[0, 0] == expected[0, 0]
            assert np.array_equal(f.gene(0), expected[0]) and np.array_equal(f.cell(0), expected[:, 0])
        f.verify()


@needs("torch")
def test_output_does_not_depend_on_jobs(tmp_path, pbmc):
    blobs = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}.sinr"
        sinr.encode(pbmc, out, jobs=jobs, chunk_cells=60, siren="force", **{**SMALL_SIREN, "steps": 5})
        blobs.append(out.read_bytes())
    assert blobs[0] == blobs[1]


@needs("fsspec")
def test_reads_from_bytes_and_file_objects(tmp_path, pbmc):
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, chunk_cells=20, **FAST)
    dense = _dense(pbmc)
    blob = out.read_bytes()

    class CountingFile(io.BytesIO):
        bytes_read = 0

        def read(self, n=-1):
            data = super().read(n)
            CountingFile.bytes_read += len(data)
            return data

    import fsspec

    remote = fsspec.filesystem("memory")
    remote.pipe("/x.sinr", blob)
    for source in (blob, memoryview(blob), CountingFile(blob), remote.open("/x.sinr", "rb")):
        with sinr.open(source) as f:
            if isinstance(source, CountingFile):
                assert CountingFile.bytes_read < len(blob) / 10  # open reads the footer only
            _check_reads(f, dense, n=30)
            assert np.array_equal(f.to_scipy().toarray(), dense)
    with open(out) as text, pytest.raises(sinr.InvalidInputError, match="text mode"):
        sinr.open(text)
    handle = io.BytesIO(blob)
    closed = sinr.open(handle)
    handle.close()
    with pytest.raises(sinr.InvalidInputError, match="keep the file object open"):
        closed.to_scipy()


def test_reading_never_imports_torch(tmp_path, pbmc):
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, **FAST)
    script = ("import sys, scinrcodec as s\n"
              f"m = s.open({str(out)!r}); m.to_scipy(); m.gene(0); m.cell(0); m[0, 0]; m.to_anndata(); m.verify()\n"
              "s.decode(m.source, sys.argv[1])\n"
              "assert sys.modules.get('torch') is None, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o.h5ad")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_huge_pages_free_reads_the_kernels_free_blocks(tmp_path, monkeypatch):
    """Free blocks of a huge page (2 MiB: order 9 of 4 KiB pages) or more, summed over zones."""
    import scinrcodec.reader.pages as pages

    monkeypatch.setattr(pages, "_HUGE_PAGE", 2 << 20)
    monkeypatch.setattr(pages.mmap, "PAGESIZE", 4096)
    info = tmp_path / "buddyinfo"
    info.write_text("Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3\n"
                    "Node 0, zone   Normal  32197  24479  13133  10045   5737   3270    848    981    615    617   3889\n")
    assert pages.huge_pages_free(str(info)) == (1 + 617) * (2 << 20) + (3 + 3889) * (4 << 20)
    assert pages.huge_pages_free(str(tmp_path / "missing")) == 0
