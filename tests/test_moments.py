"""Summaries along both axes from one pass (SinrMatrix.count_nonzero, sum, mean, var): exact against
the dense matrix on real fixtures of every dataset, in both format versions, on one and several
threads and chunks; the cells x genes view's axes; the native kernels' checks and exactness at
the largest counts; a file whose content contradicts its checksum refused; and a file that declares
2**31 - 1 genes summarised without an item per declared gene."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import scinrcodec as sinr
from scinrcodec import _native, errors
from conftest import DATA, DATASETS

FAST = dict(siren="never", progress=False)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """Each dataset's fixture encoded in format 3 (chunks of 97 cells: several per file) and
    format 2, with its dense matrix."""
    folder = tmp_path_factory.mktemp("moments")
    out = {}
    for name in DATASETS:
        m = sinr.read_matrix(DATA / name)
        dense = m.matrix().toarray().astype(np.int64)
        for version in (3, 2):
            path = folder / f"{name}.v{version}.sinr"
            sinr.encode(m, path, tile_nnz=64, chunk_cells=97, format_version=version, **FAST)
            out[name, version] = path, dense
    return out


def _exact_variance(column: np.ndarray, ddof: int) -> float:
    """numpy's var of integers, computed exactly (Python integers) and rounded once."""
    n = column.size
    values = [int(v) for v in column.tolist()]
    s1, s2 = sum(values), sum(v * v for v in values)
    return float(Fraction(n * s2 - s1 * s1, n * (n - ddof)))


@pytest.mark.parametrize("version", [3, 2])
@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("jobs", [1, 2])
def test_summaries_match_the_dense_matrix(encoded, name, version, jobs):
    path, dense = encoded[name, version]
    with sinr.open(path, jobs=jobs) as m:
        for axis in (0, 1):
            assert np.array_equal(m.count_nonzero(axis), np.count_nonzero(dense, axis=axis))
            sums = m.sum(axis)
            assert sums.dtype == np.int64 and np.array_equal(sums, dense.sum(axis=axis))
            assert np.array_equal(m.mean(axis), dense.sum(axis=axis) / dense.shape[axis])  # sums below 2**53
            for ddof in (0, 1):
                np.testing.assert_allclose(m.var(axis, ddof=ddof), dense.astype(np.float64).var(axis=axis, ddof=ddof),
                                           rtol=1e-9, atol=1e-12)
        assert m.count_nonzero() == np.count_nonzero(dense) and m.sum() == int(dense.sum())
        assert m.mean() == pytest.approx(dense.mean(), rel=1e-14)
        assert m.var() == _exact_variance(dense.ravel(), 0)
        # each variance the exact one rounded once: the busiest genes and cells against fractions
        for gene in np.argsort(dense.sum(axis=1))[-5:]:
            assert m.var(1, ddof=1)[gene] == _exact_variance(dense[gene], 1)
        for cell in np.argsort(dense.sum(axis=0))[-5:]:
            assert m.var(0)[cell] == _exact_variance(dense[:, cell], 0)


def test_the_cells_by_genes_view_swaps_the_axes(encoded):
    path, dense = encoded["pbmc4k_v2_soupx_half", 3]
    with sinr.open(path) as m:
        view = m.T
        assert np.array_equal(view.sum(axis=0), dense.sum(axis=1))  # AnnData's X.sum(axis=0): each gene
        assert np.array_equal(view.count_nonzero(axis=1), np.count_nonzero(dense, axis=0))
        np.testing.assert_allclose(view.mean(axis=0), dense.mean(axis=1), rtol=1e-14)
        np.testing.assert_allclose(view.var(axis=1, ddof=1), dense.astype(float).var(axis=0, ddof=1), rtol=1e-9)
        assert view.sum() == m.sum() and view.var(ddof=1) == m.var(ddof=1)
        assert np.array_equal(m.sum(axis=-1), m.sum(axis=1)) and np.array_equal(m.sum(axis=-2), m.sum(axis=0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32, np.int8, np.uint8])
def test_dtype_is_numpys(encoded, dtype):
    """sum, mean and var take dtype= as numpy's reductions do (x.sum(axis=0, dtype=np.float64) had been a
    TypeError): the result in that type, an integer type's sums wrapped and its means and variances
    truncated as numpy's integer arithmetic gives them (equal to numpy's on the dense matrix, wraps of
    int8 included), a float type's values the exact ones rounded once (numpy's own where it rounds
    nothing: float64 sums, float32 sums below 2**24); numpy's scalar types over the whole matrix, and
    the cells x genes view alike."""
    path, dense = encoded["pbmc4k_v2_soupx_half", 3]
    assert (dense.sum(axis=1) > 127).any()  # int8 sums wrap here
    with sinr.open(path) as m:
        for view, x in ((m, dense), (m.T, dense.T)):
            for axis in (0, 1, None):
                got = {"sum": view.sum(axis, dtype=dtype), "mean": view.mean(axis, dtype=dtype),
                       "var": view.var(axis, ddof=1, dtype=dtype)}
                with np.errstate(over="ignore"):
                    want = {"sum": x.sum(axis, dtype=dtype), "mean": x.mean(axis, dtype=dtype),
                            "var": x.var(axis, ddof=1, dtype=dtype)}
                for name in got:
                    assert type(got[name]) is type(want[name]) and np.asarray(got[name]).dtype == dtype, (name, axis)
                    if np.dtype(dtype).kind in "iu" or name == "sum":
                        assert np.array_equal(got[name], want[name]), (name, axis)
                    else:  # numpy's float arithmetic rounds along the way; these are rounded once
                        exactly = {"mean": view.mean(axis), "var": view.var(axis, ddof=1)}[name]
                        assert np.array_equal(got[name], np.asarray(exactly).astype(dtype)), (name, axis)
                        np.testing.assert_allclose(got[name], want[name], rtol=1e-4 if dtype == np.float32 else 1e-12)
        for bad in (bool, np.complex64, "text"):
            with pytest.raises(errors.InvalidInputError, match="dtype"):
                m.sum(axis=0, dtype=bad)


def test_bad_axis_and_ddof_are_refused(encoded):
    path, dense = encoded["visium_spaceranger3", 3]
    with sinr.open(path) as m:
        for axis in (2, -3, 1.0, True, "genes"):
            with pytest.raises(errors.SinrIndexError, match="axis must be"):
                m.sum(axis=axis)
            with pytest.raises(errors.SinrIndexError, match="axis must be"):
                m.T.mean(axis=axis)
        for ddof in (-1, 0.5, True):
            with pytest.raises(errors.InvalidInputError, match="ddof"):
                m.var(axis=0, ddof=ddof)
        with pytest.raises(errors.InvalidInputError, match="degrees of freedom"):
            m.var(axis=0, ddof=dense.shape[0])
        with pytest.raises(errors.InvalidInputError, match="degrees of freedom"):
            m.var(ddof=dense.size)


def test_large_counts_give_each_variance_and_mean_rounded_once(tmp_path):
    """Counts up to 2**31 - 1, where sums of squares pass 2**64 and quotients need more than a
    double's bits: every gene's and cell's variance and mean equal the exact ones rounded once
    (dividing doubles would round the numerator, the denominator and the quotient)."""
    import scipy.sparse as sp

    one = tmp_path / "one.sinr"  # a gene whose variance a division of doubles gets one ulp wrong
    sinr.encode(sp.csr_matrix(np.array([[54_822_861, 0, 0, 0]])), one, **FAST)
    with sinr.open(one) as m:
        assert m.var(axis=1, ddof=1)[0] == 751386522056330.2 == m.var(ddof=1)
    rng = np.random.default_rng(5)
    dense = np.zeros((40, 30), np.int64)
    mask = rng.random(dense.shape) < 0.4
    dense[mask] = rng.integers(1, 2**31, mask.sum())
    path = tmp_path / "large.sinr"
    sinr.encode(sp.csr_matrix(dense), path, **FAST)
    with sinr.open(path) as m:
        for axis in (0, 1):
            n = dense.shape[axis]
            lines = dense.T if axis == 0 else dense
            for ddof in (0, 1):
                assert m.var(axis, ddof=ddof).tolist() == [_exact_variance(v, ddof) for v in lines]
            assert m.mean(axis).tolist() == [float(Fraction(int(v.sum()), n)) for v in lines]
            assert m.sum(axis).tolist() == [int(v.sum()) for v in lines]
        assert m.var(ddof=1) == _exact_variance(dense.ravel(), 1)


def test_an_empty_matrix_gives_nan_over_no_entries(tmp_path):
    import scipy.sparse as sp

    path = tmp_path / "empty.sinr"
    sinr.encode(sp.csr_matrix((3, 0), dtype=np.int64), path, **FAST)
    with sinr.open(path) as m:
        assert m.sum() == 0 and np.isnan(m.mean()) and np.isnan(m.var())
        assert m.sum(axis=1).tolist() == [0, 0, 0] and np.isnan(m.mean(axis=1)).all()
        assert np.isnan(m.var(axis=1, ddof=3)).all()
        assert m.sum(axis=0).size == 0 and m.var(axis=0).size == 0


def test_a_chunk_that_contradicts_its_checksum_is_refused():
    from conftest import CONFORMANCE

    with sinr.open(CONFORMANCE / "chunk_checksum" / "matrix.sinr") as m:
        with pytest.raises(errors.CorruptFileError, match="fails its checksum"):
            m.sum(axis=0)


def _moments(n: int):
    return [np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.uint64), np.zeros(n, np.uint64)]


def test_kernel_refuses_what_no_decoder_gives():
    rows, cols, values = (np.array(v, np.int32) for v in ([0, 1], [5, 6], [3, 4]))
    gene_of_row, cell_of_col = np.array([0, 2], np.int64), np.array([1, 0], np.int64)

    def run(rows=rows, cols=cols, values=values, gene_of_row=gene_of_row, cell_of_col=cell_of_col, first_col=5):
        return _native.accumulate_moments(rows, cols, values, gene_of_row, gene_of_row, cell_of_col, first_col,
                                          *_moments(3), *_moments(2))[0]

    assert run() == 0
    assert run(rows=np.array([0, 2], np.int32)) == -1  # a row beyond its table
    assert run(cols=np.array([4, 6], np.int32)) == -1  # a column before the window
    assert run(values=np.array([3, -1], np.int32)) == -1  # a negative value
    assert run(gene_of_row=np.array([0, 3], np.int64)) == -1  # a gene beyond the genes
    assert _native.accumulate_moments(rows, cols, values, gene_of_row, np.array([0], np.int64), cell_of_col, 5,
                                      *_moments(3), *_moments(2))[0] == -1  # tables of different rows
    assert run(cell_of_col=np.array([1, -1], np.int64)) == -1  # a cell beyond the cells


def test_kernel_is_exact_at_the_largest_counts():
    """2**31 - 1 in every entry of a gene: sums of squares beyond 64 bits, variances of them exact to
    one rounding; and sums that no such entries can have are refused."""
    n, largest = 3000, 2**31 - 1
    values = np.full(n, largest, np.int32)
    values[::7] = 1
    rows, cols = np.zeros(n, np.int32), np.arange(n, dtype=np.int32)
    genes, cells = _moments(1), _moments(n)
    status, checksum = _native.accumulate_moments(rows, cols, values, np.zeros(1, np.int64), np.zeros(1, np.int64),
                                                  np.arange(n, dtype=np.int64), 0, *genes, *cells)
    assert status == 0
    exact_squares = sum(int(v) ** 2 for v in values.tolist())
    assert (int(genes[3][0]) << 64) + int(genes[2][0]) == exact_squares and int(genes[1][0]) == int(values.sum())
    entries = n + 5  # five zeros besides
    out = np.empty(1)
    assert _native.moments_variance(genes[1], genes[2], genes[3], entries, 1, out) == 0
    s1 = int(values.sum())
    assert out[0] == float(Fraction(entries * exact_squares - s1 * s1, entries * (entries - 1)))
    assert _native.moments_variance(genes[1], genes[2], genes[3], n // 2, 0, out) == -1  # too few entries
    assert _native.moments_variance(genes[1], genes[2], genes[3], entries, entries, out) == -1  # ddof


def test_summaries_are_kept_after_the_first_pass(encoded, monkeypatch):
    from scinrcodec.reader import matrix as reader_matrix

    path, dense = encoded["frozen_pbmc_donor_a_v1", 3]
    with sinr.open(path) as m:
        m.sum(axis=0)
        monkeypatch.setattr(reader_matrix, "matrix_moments", lambda *a: pytest.fail("a second pass"))
        np.testing.assert_allclose(m.var(axis=1), dense.astype(float).var(axis=1), rtol=1e-9)
        assert np.array_equal(m.count_nonzero(axis=1), np.count_nonzero(dense, axis=1))


@pytest.mark.parametrize("version", [3, 2])
@pytest.mark.parametrize("threads", [1, 3])
def test_the_container_reader_gives_the_same_summaries(encoded, version, threads):
    """The C++ reader's pass (what the R package's rowSums, rowVars... come from) against the Python
    reader's, word for word."""
    path, _ = encoded["mouse_gut_cimseq_smartseq2", version]
    stored, genes, cells = _native.ContainerReader(str(path)).moments(threads)
    with sinr.open(path) as m:
        kept = m._summaries()
        assert np.array_equal(stored, kept.genes.items)
        for got, want in ((genes, kept.genes), (cells, kept.cells)):
            assert all(np.array_equal(a, b) for a, b in zip(got, want.moments))
    from conftest import CONFORMANCE

    with pytest.raises(errors.CorruptFileError, match="fails its checksum"):
        _native.ContainerReader(str(CONFORMANCE / "chunk_checksum" / "matrix.sinr")).moments(threads)


def test_a_file_of_two_billion_declared_genes_is_summarised_by_its_stored_ones():
    """The conformance vector of 2**31 - 1 declared genes: the pass holds the stored genes only (the
    C++ reader's too), and the cells' results need nothing per gene."""
    from conftest import CONFORMANCE

    path = CONFORMANCE / "huge_gene_count" / "matrix.sinr"
    with sinr.open(path) as m:
        assert m.shape[0] == 2**31 - 1
        kept = m._summaries()
        assert kept.genes.items.size < 1000
        per_cell = m.sum(axis=0)
        whole = m.to_scipy(layout="csc")
        assert np.array_equal(per_cell, np.asarray(whole.sum(axis=0)).ravel())
        assert m.sum() == int(whole.sum()) and m.count_nonzero() == whole.nnz
    stored, genes, _ = _native.ContainerReader(str(path)).moments(2)
    assert np.array_equal(stored, kept.genes.items) and np.array_equal(genes[1], kept.genes.sums)


def test_quotients_are_rounded_once_across_their_range():
    """moments_mean and moments_variance against exact fractions on random sums of every size a file
    can give (sums to 2**62, sums of squares to 2**93, quotients far above and below 1)."""
    rng = np.random.default_rng(9)
    n = 4000
    entries = rng.integers(1, 2**31, n)
    sums, squares = [], []
    for e in entries.tolist():  # sums that `e` values below 2**31 can have: S1**2 <= e * S2
        s1 = int(rng.integers(0, e)) * int(rng.integers(0, 2**31))
        s2 = s1 * s1 // e + int(rng.integers(0, 2**62)) * int(rng.integers(0, 2**29))
        s2 = min(s2, e * (2**31 - 1) ** 2)
        if s1 * s1 > e * s2:
            s2 = -(-s1 * s1 // e)
        sums.append(s1)
        squares.append(s2)
    for e, s1, s2 in zip(entries.tolist(), sums, squares):
        out = np.empty(1)
        low, high = np.array([s2 & (2**64 - 1)], np.uint64), np.array([s2 >> 64], np.uint64)
        assert _native.moments_variance(np.array([s1], np.int64), low, high, e, 1 if e > 1 else 0, out) == 0
        ddof = 1 if e > 1 else 0
        assert out[0] == float(Fraction(e * s2 - s1 * s1, e * (e - ddof)))
        assert _native.moments_mean(np.array([s1], np.int64), e, out) == 0
        assert out[0] == float(Fraction(s1, e))
