"""Cells per chunk by default: 2,048, or more where cells are small, or fewer where cells are deep,
recorded in the footer and followed by every chunk; an explicit chunk_cells is kept as given."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA
from scinrcodec.encoder.options import default_chunk_cells
from scinrcodec.limits import CHUNK_NNZ_AIM, DEEP_CHUNK_CELLS_STEP, DEFAULT_CHUNK_CELLS, MAX_DEFAULT_CHUNK_CELLS


def test_default_chunk_cells_follow_the_cells_depth():
    assert default_chunk_cells(1073 * 55_893, 55_893) == DEFAULT_CHUNK_CELLS  # pbmc4k-like cells
    assert default_chunk_cells(310 * 194_004, 194_004) == 3 * DEFAULT_CHUNK_CELLS  # visium-like cells
    assert default_chunk_cells(5 * 10**6, 10**6) == MAX_DEFAULT_CHUNK_CELLS  # very shallow cells: capped
    assert default_chunk_cells(3_634_344, 737_280) == 16 * DEFAULT_CHUNK_CELLS  # a raw matrix (benchmarks.raw)
    assert default_chunk_cells(4466 * 1344, 1344) == 448  # Smart-seq2-like cells: 3 chunks of the aim, not 1
    assert default_chunk_cells(2500 * 10_000, 10_000) == 896  # deep 10x v3 cells: 12 chunks, not 5
    assert default_chunk_cells(10**9, 10**5) == 4 * DEEP_CHUNK_CELLS_STEP  # 210 cells a chunk, rounded up
    assert default_chunk_cells(2048 * 5000, 5000) == DEFAULT_CHUNK_CELLS  # at most twice the aim: as before
    assert default_chunk_cells(4546 * 571, 571) == DEFAULT_CHUNK_CELLS  # one chunk either way: appends take 2,048
    assert default_chunk_cells(88_200 * 40, 40) == DEFAULT_CHUNK_CELLS  # 2 chunks' nonzeros in 40 cells: one chunk
    assert default_chunk_cells(5 * 2**20, 1000) == 512  # 2.5 chunks' nonzeros: 2 (to even, as spec §10 says)
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


def test_deep_cells_are_shared_among_chunks_of_the_aim(tmp_path, monkeypatch):
    """Deep cells (here the real Smart-seq2 cut, 83 nonzeros a cell, against an aim of 8,192 nonzeros a
    chunk) get chunks of about the aim, of equal cells, so that an encode has chunks to run in
    parallel: the bytes the same on one thread, on two and from a source that does not know its
    nonzeros, every value exact."""
    import io

    from scinrcodec.encoder import driver, options
    from scinrcodec.io.readers import read_matrix

    monkeypatch.setattr(options, "CHUNK_NNZ_AIM", 8192)
    m = sp.hstack([read_matrix(DATA / "mouse_gut_cimseq_smartseq2").matrix()] * 4, format="csc")  # 320 cells
    assert default_chunk_cells(m.nnz, m.shape[1]) == 2 * DEEP_CHUNK_CELLS_STEP  # 3 chunks of 107 cells, rounded up
    sp.save_npz(tmp_path / "m.npz", m)
    files = []
    for jobs, known in ((1, True), (2, True), (1, False)):
        source, out = read_matrix(tmp_path / "m.npz"), io.BytesIO()
        source.nnz = source.nnz if known else None
        driver.encode_stream(source, out, driver.checked_options(dict(siren="never", progress=False, jobs=jobs)))
        files.append(out.getvalue())
    assert files[0] == files[1] == files[2]
    (tmp_path / "m.sinr").write_bytes(files[0])
    f = sinr.open(tmp_path / "m.sinr")
    assert f.index.options["chunk_cells"] == 128 and np.diff(f.chunk_bounds()).tolist() == [128, 128, 64]
    assert (f.to_scipy() != m).nnz == 0


def test_chunks_without_nonzeros_or_names_are_encoded_once(tmp_path, monkeypatch):
    """A file declaring 2**20 cells and one entry: 256 chunks of 4,096 cells, 255 of them empty. An
    empty chunk of a size is the same bytes wherever it lies (checked here), so the encoder codes it
    once: each had cost 1.3 ms however few its cells (2**31 cells, 131,072 chunks: nearly 3 minutes)."""
    from scinrcodec.encoder import driver
    from scinrcodec.encoder.chunk import encode_chunk
    from scinrcodec.io.sources import CellBlock

    calls = []

    def counted(block, *rest):
        calls.append(block.start)
        return encode_chunk(block, *rest)
    monkeypatch.setattr(driver, "encode_chunk", counted)
    path = tmp_path / "wide.mtx"
    path.write_text("%%MatrixMarket matrix coordinate integer general\n3 1048576 1\n2 5000 7\n")
    sinr.encode(path, tmp_path / "wide.sinr", siren="never", progress=False, chunk_cells=4096, jobs=2)
    assert len(calls) <= 5, calls
    m = sinr.open(tmp_path / "wide.sinr")
    m.verify()
    assert m.shape == (3, 2**20) and m.to_scipy().nnz == 1 and m[1, 4999] == 7
    context = driver.file_context(driver.checked_options(dict(siren="never", progress=False)),
                                  np.array([0, 1, 0]), np.zeros(3))[0]

    def empty(start: int) -> list[bytes]:
        chunk = encode_chunk(CellBlock(start, np.zeros(4097, np.int64), np.zeros(0, np.int32),
                                       np.zeros(0, np.int32)), context, None)
        return [chunk.header, *chunk.body]
    assert empty(0) == empty(4096 * 200)


def test_pass_one_reads_blocks_of_the_chunks_cells(tmp_path, monkeypatch):
    """Pass 1 read blocks of 2,048 cells whatever the chunks, each handed over at about 40 us: 2**26
    cells of one entry spent 1.6 s there. It now reads the chunks' cells (2**20 shallow cells: 32
    blocks of 32,768, not 512), and its sums, made entry by entry, are the same in any blocks: a
    source that does not know its nonzeros (blocks of 2,048) gives the same bytes."""
    import io

    from scinrcodec.encoder import driver
    from scinrcodec.io.readers import read_matrix

    blocks, accumulate = [], driver.accumulate_gene_stats

    def counted(indptr, *rest):
        blocks.append(indptr.size - 1)
        return accumulate(indptr, *rest)
    monkeypatch.setattr(driver, "accumulate_gene_stats", counted)
    path = tmp_path / "wide.mtx"
    path.write_text("%%MatrixMarket matrix coordinate integer general\n3 1048576 1\n2 5000 7\n")
    sinr.encode(path, tmp_path / "wide.sinr", siren="never", progress=False)
    assert blocks == [MAX_DEFAULT_CHUNK_CELLS] * 32
    rng = np.random.default_rng(5)
    m = sp.random(300, 3 * DEFAULT_CHUNK_CELLS, density=0.02, random_state=rng, format="csc",
                  data_rvs=lambda k: rng.integers(1, 50, k))
    sp.save_npz(tmp_path / "m.npz", m)
    options = driver.checked_options(dict(siren="never", progress=False))
    files = []
    for known in (True, False):
        source, out = read_matrix(tmp_path / "m.npz"), io.BytesIO()
        source.nnz = source.nnz if known else None
        blocks.clear()
        driver.encode_stream(source, out, options)
        files.append(out.getvalue())
        assert max(blocks) == (default_chunk_cells(m.nnz, m.shape[1]) if known else DEFAULT_CHUNK_CELLS)
    assert files[0] == files[1] and default_chunk_cells(m.nnz, m.shape[1]) > DEFAULT_CHUNK_CELLS
