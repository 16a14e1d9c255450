"""Exact round trips and random access on real fixtures cut from every dataset."""
from __future__ import annotations

import numpy as np
import pytest

import scinrcodec as sinr
from conftest import DATASETS, FAST, SMALL_SIREN


def _dense(m):
    return m.counts.toarray()


@pytest.mark.parametrize("name", DATASETS)
def test_lossless_round_trip_and_random_access(tmp_path, matrices, name):
    m = matrices[name]
    out = tmp_path / "x.sinr"
    sinr.encode(m, out, tile_nnz=64, patch_nnz=512, **FAST)
    dense = _dense(m)
    with sinr.open(out) as f:
        assert f.shape == m.shape and f.nnz == m.counts.nnz
        assert (f.to_scipy() != m.counts).nnz == 0
        assert f.gene_ids == m.gene_ids and f.gene_names == m.gene_names and f.cell_names == m.cell_names
        rng = np.random.default_rng(1)
        for i, j in zip(rng.integers(0, m.shape[0], 300), rng.integers(0, m.shape[1], 300)):
            assert f[int(i), int(j)] == dense[i, j]
        rows, cols = m.counts.nonzero()
        for k in rng.integers(0, rows.size, 100):
            assert f[int(rows[k]), int(cols[k])] == dense[rows[k], cols[k]]
        for i in rng.integers(0, m.shape[0], 20):
            assert np.array_equal(f.gene(int(i)), dense[i])
        for j in rng.integers(0, m.shape[1], 20):
            assert np.array_equal(f.cell(int(j)), dense[:, j])


def test_with_siren_is_exact_and_records_choice(tmp_path, pbmc):
    out = tmp_path / "s.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, patch_nnz=400, **SMALL_SIREN)
    with sinr.open(out) as f:
        assert (f.to_scipy() != pbmc.counts).nnz == 0
        assert f.stats["patches"] == f.geometry.n_bands
        assert 0 <= f.stats["patches_with_siren"] <= f.geometry.n_bands


def test_forced_siren_patches_decode_exactly(tmp_path, pbmc, monkeypatch):
    """Force every patch to keep its SIREN so the integer network sits on the decode path."""
    import scinrcodec.encoder as enc

    monkeypatch.setattr(enc, "SIREN_META_BITS", -10**9)
    out = tmp_path / "forced.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, patch_nnz=400, **SMALL_SIREN)
    with sinr.open(out) as f:
        assert all(s is not None for s in f._sirens)
        assert (f.to_scipy() != pbmc.counts).nnz == 0
        dense = _dense(pbmc)
        for j in range(0, pbmc.shape[1], 9):
            assert np.array_equal(f.cell(j), dense[:, j])


@pytest.mark.parametrize("normalisation", ["none", "minmax"])
def test_other_normalisations_decode_exactly(tmp_path, pbmc, monkeypatch, normalisation):
    import scinrcodec.encoder as enc

    monkeypatch.setattr(enc, "SIREN_META_BITS", -10**9)
    out = tmp_path / "n.sinr"
    sinr.encode(pbmc, out, normalisation=normalisation, coordinates="per-axis", **SMALL_SIREN)
    with sinr.open(out) as f:
        assert (f.to_scipy() != pbmc.counts).nnz == 0


def test_gene_names_equal_to_ids_are_stored_once(tmp_path, pbmc):
    from scinrcodec.formats import CountMatrix

    same = CountMatrix(pbmc.counts, pbmc.gene_names, list(pbmc.gene_names), pbmc.cell_names)
    out = tmp_path / "same.sinr"
    sinr.encode(same, out, **FAST)
    with sinr.open(out) as f:
        assert "names.gene_names" not in f.section_sizes()
        assert f.gene_names == pbmc.gene_names == f.gene_ids


def test_submatrix_indexing(tmp_path, pbmc):
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, patch_nnz=512, **FAST)
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
        with pytest.raises(sinr.SinrIndexError):
            f[n_genes, 0]
        with pytest.raises(IndexError):
            f[0, [n_cells + 5]]


def test_names_lookup_and_anndata(tmp_path, pbmc):
    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, **FAST)
    dense = _dense(pbmc)
    with sinr.open(out) as f:
        gene = int(np.argmax(np.diff(pbmc.counts.indptr)))
        assert np.array_equal(f.gene(pbmc.gene_names[gene]), dense[gene])
        assert np.array_equal(f.gene(pbmc.gene_ids[gene]), dense[gene])
        assert np.array_equal(f.cell(pbmc.cell_names[5]), dense[:, 5])
        assert f.get(pbmc.gene_names[gene], pbmc.cell_names[5]) == dense[gene, 5]
        with pytest.raises(sinr.SinrKeyError):
            f.gene("NOT_A_GENE")
        adata = f.to_anndata()
        assert adata.shape == (pbmc.shape[1], pbmc.shape[0])
        assert list(adata.obs_names) == pbmc.cell_names
        assert list(adata.var["gene_ids"]) == pbmc.gene_ids
        assert np.array_equal(adata.X.toarray(), dense.T)


@pytest.mark.parametrize("name", ["pbmc4k_v2_soupx_half", "mouse_gut_cimseq_smartseq2"])
@pytest.mark.parametrize("bound", [1, 3, 50])
def test_max_error_bound_and_zeros_exact(tmp_path, matrices, name, bound):
    m = matrices[name]
    out = tmp_path / "lossy.sinr"
    sinr.encode(m, out, mode="max-error", max_error=bound, **FAST)
    dense = _dense(m)
    with sinr.open(out) as f:
        got = f.to_scipy().toarray()
        assert np.all(np.abs(got - dense) <= bound)
        assert np.array_equal(got == 0, dense == 0)
        assert f.mode == "max-error"
        rng = np.random.default_rng(0)
        for i, j in zip(rng.integers(0, m.shape[0], 100), rng.integers(0, m.shape[1], 100)):
            assert f[int(i), int(j)] == got[i, j]


def test_max_error_shrinks_file(tmp_path, matrices):
    m = matrices["mouse_gut_cimseq_smartseq2"]
    sizes = []
    for options in ({}, dict(mode="max-error", max_error=5)):
        out = tmp_path / f"{len(sizes)}.sinr"
        sizes.append(sinr.encode(m, out, **FAST, **options)["bytes"])
    assert sizes[1] < sizes[0]


def test_inr_only_reports_exact_match_rate(tmp_path, pbmc):
    out = tmp_path / "inr.sinr"
    sinr.encode(pbmc, out, mode="inr-only", **SMALL_SIREN)
    dense = _dense(pbmc)
    with sinr.open(out) as f:
        got = f.to_scipy().toarray()
        assert np.array_equal(got == 0, dense == 0)
        rate = f.stats["exact_match_rate"]
        nz = dense > 0
        assert rate == pytest.approx(np.mean(got[nz] == dense[nz]))
        assert 0 < rate < 1
        assert f[int(np.argmax(dense.sum(1))), 0] == got[np.argmax(dense.sum(1)), 0]


def test_empty_and_tiny_matrices(tmp_path):
    import scipy.sparse as sp

    for matrix in (sp.csr_matrix((0, 0), dtype=np.int64), sp.csr_matrix((3, 4), dtype=np.int64),
                   sp.csr_matrix(np.array([[7]])), sp.csr_matrix(np.full((4, 3), 2**31 - 1)),
                   sp.csr_matrix(np.arange(12).reshape(3, 4))):
        out = tmp_path / "t.sinr"
        sinr.encode(matrix, out, force=True, **FAST)
        with sinr.open(out) as f:
            assert f.shape == matrix.shape
            assert (f.to_scipy() != matrix).nnz == 0
            if matrix.shape[0] and matrix.shape[1]:
                assert f[0, 0] == matrix[0, 0]
                assert np.array_equal(f.gene(0), matrix[0].toarray().ravel())


def test_reading_never_imports_torch(tmp_path, pbmc):
    import subprocess
    import sys

    out = tmp_path / "x.sinr"
    sinr.encode(pbmc, out, **FAST)
    script = ("import sys, scinrcodec as s\n"
              f"m = s.open({str(out)!r}); m.to_scipy(); m.gene(0); m.cell(0); m[0, 0]; m.to_anndata()\n"
              "s.decode(m.source, sys.argv[1])\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o.h5ad")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
