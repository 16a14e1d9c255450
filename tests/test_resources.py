"""What commands cost: memory bounded by a chunk where the work goes chunk by chunk, only the parts
of a file that are needed read, nothing left behind."""
from __future__ import annotations

import numpy as np
import pytest

import scinrcodec as sinr
import scinrcodec.reader.matrix as reader_matrix
from conftest import DATA

FAST = dict(siren="never", progress=False)


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """pbmc4k's test cut (80 cells) in chunks of 16 cells (5 chunks)."""
    path = tmp_path_factory.mktemp("resources") / "pbmc.sinr"
    sinr.encode(sinr.read_matrix(DATA / "pbmc4k_v2_soupx_half"), path, chunk_cells=16, **FAST)
    return path


def test_verify_decodes_one_chunk_at_a_time(chunked, monkeypatch):
    """verify checks every chunk's decoded content without holding the whole matrix: at 6e7
    nonzeros it had decoded it whole (823 MB peak for a 38 MB file; O(nnz) at any size)."""
    asked = []
    real = reader_matrix.cell_major

    def spy(index, dtype, jobs, chunks=None, *args, **kwargs):
        asked.append(None if chunks is None else list(chunks))
        return real(index, dtype, jobs, chunks, *args, **kwargs)

    monkeypatch.setattr(reader_matrix, "cell_major", spy)
    with sinr.open(chunked) as m:
        n_chunks = m.chunk_bounds().size - 1
        assert n_chunks > 2
        report = m.verify()
        assert report["chunks"] == n_chunks and report["nnz"] == m.nnz
    assert None not in asked and all(len(chunks) == 1 for chunks in asked)
    assert sorted(c for chunks in asked for c in chunks) == list(range(n_chunks))
