"""Cells per chunk by default: 2,048, or more where cells are small, recorded in the footer and
followed by every chunk; an explicit chunk_cells is kept as given."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

import scinrcodec as sinr
from scinrcodec.encoder.options import default_chunk_cells
from scinrcodec.limits import CHUNK_NNZ_AIM, DEFAULT_CHUNK_CELLS, MAX_DEFAULT_CHUNK_CELLS


def test_default_chunk_cells_follow_the_cells_depth():
    assert default_chunk_cells(1073 * 55_893, 55_893) == DEFAULT_CHUNK_CELLS  # pbmc4k-like cells
    assert default_chunk_cells(310 * 194_004, 194_004) == 3 * DEFAULT_CHUNK_CELLS  # visium-like cells
    assert default_chunk_cells(5 * 10**6, 10**6) == MAX_DEFAULT_CHUNK_CELLS  # very shallow cells: capped
    assert default_chunk_cells(10**9, 10**5) == DEFAULT_CHUNK_CELLS  # deep cells: never fewer
    assert default_chunk_cells(10 * 3000, 3000) == 2 * DEFAULT_CHUNK_CELLS  # no more than the cells fill
    assert default_chunk_cells(0, 0) == DEFAULT_CHUNK_CELLS


def test_shallow_cells_get_larger_chunks(tmp_path):
    rng = np.random.default_rng(3)
    n_cells, per_cell = 3 * DEFAULT_CHUNK_CELLS, 40
    m = sp.random(2000, n_cells, density=per_cell / 2000, random_state=rng, format="csc",
                  data_rvs=lambda k: rng.integers(1, 9, k))
    expected = default_chunk_cells(m.nnz, n_cells)
    assert expected > DEFAULT_CHUNK_CELLS and CHUNK_NNZ_AIM > m.nnz
    sinr.encode(m, tmp_path / "auto.sinr", siren="never")
    sinr.encode(m, tmp_path / "given.sinr", siren="never", chunk_cells=1000)
    auto, given = sinr.open(tmp_path / "auto.sinr"), sinr.open(tmp_path / "given.sinr")
    assert auto.index.options["chunk_cells"] == expected and given.index.options["chunk_cells"] == 1000
    assert np.diff(auto.chunk_bounds()).max() == min(expected, n_cells)
    assert np.diff(given.chunk_bounds()).max() == 1000
    for f in (auto, given):
        assert (f.to_scipy() != m).nnz == 0
