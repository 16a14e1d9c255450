"""Every input format is read exactly, block by block, with its names; every malformed input is one
clear InvalidInputError before anything is written (issue 11, input findings)."""
from __future__ import annotations

import gzip
import io
import pickle
import re
import shutil
import sys
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, DATASETS, FAST, assert_one_error_line, needs, sinr_cli
from scinrcodec.demo import demo_data
from scinrcodec.io import mtx
from scinrcodec.io.matrix import CountMatrix
from scinrcodec.io.readers import open_source_spec, read_matrix
from scinrcodec.io.sources import RandomAccessSource, ScipySource
from scinrcodec.io.h5ad import to_anndata
from scinrcodec.io.tenx_h5 import write_10x_h5
from scinrcodec.io.writers import write_matrix

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
CORPUS = Path(__file__).parent / "fuzz" / "inputs_corpus"


def same(a, b) -> bool:
    return a.shape == b.shape and (sp.csc_matrix(a) != sp.csc_matrix(b)).nnz == 0


def count_matrix(source) -> CountMatrix:
    return CountMatrix(source.matrix(), source.gene_ids, source.gene_names, source.cell_names(0, source.shape[1]),
                       source.feature_types)


def write_raw_10x(path: Path, data, indices, indptr, shape, *, barcodes=None, ids=None, names=None,
                  v2: bool = False) -> Path:
    """A 10x HDF5 file holding exactly the given arrays (Cell Ranger v3 layout, or v2's genome group)."""
    n_genes, n_cells = shape
    barcodes = [f"c{j}".encode() for j in range(n_cells)] if barcodes is None else barcodes
    ids = [f"g{i}".encode() for i in range(n_genes)] if ids is None else ids
    names = ids if names is None else names
    with h5py.File(path, "w") as f:
        g = f.create_group("GRCh38" if v2 else "matrix")
        g["data"], g["indices"], g["indptr"] = np.asarray(data), np.asarray(indices), np.asarray(indptr)
        g["shape"] = np.asarray(shape, dtype=np.int32)
        g["barcodes"] = np.array(barcodes, dtype=object if any(isinstance(b, str) for b in barcodes) else None)
        feats = g if v2 else g.create_group("features")
        feats["genes" if v2 else "id"] = np.array(ids)
        feats["gene_names" if v2 else "name"] = np.array(names)
        if not v2:
            feats["feature_type"] = np.array([b"Gene Expression"] * n_genes)
    return path


def write_mtx(folder: Path, body: str, *, header: str = "%%MatrixMarket matrix coordinate integer general",
              features: bytes | None = None, barcodes: bytes | None = None, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = f"{header}\n{body}".encode()
    (folder / ("matrix.mtx.gz" if gz else "matrix.mtx")).write_bytes(gzip.compress(text) if gz else text)
    if features is not None:
        (folder / "features.tsv").write_bytes(features)
    if barcodes is not None:
        (folder / "barcodes.tsv").write_bytes(barcodes)
    return folder


# ------------------------------------------------------------------------------ every format, exactly


@pytest.fixture(scope="module")
def every_format(tmp_path_factory, matrices):
    """Each fixture written in every input layout: {(dataset, layout): path}."""
    root = tmp_path_factory.mktemp("inputs")
    paths = {}
    for name in DATASETS:
        source = matrices[name]
        m = count_matrix(source)
        folder = root / name
        folder.mkdir()
        write_matrix(folder / "x.h5", m)
        write_matrix(folder / "x.h5ad", m)
        write_matrix(folder / "x.npz", m)
        adata = to_anndata(m)
        adata.X = adata.X.toarray().astype(np.float32)
        adata.write_h5ad(folder / "dense.h5ad")
        adata.X = sp.csc_matrix(adata.X)
        adata.write_h5ad(folder / "csc.h5ad")
        for fmt in ("csr", "coo"):
            sp.save_npz(folder / f"{fmt}.npz", m.counts.asformat(fmt))
        text = gzip.decompress((DATA / name / "matrix.mtx.gz").read_bytes())
        lines = text.decode().splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if not line.startswith("%")) + 1
        by_cell = sorted(lines[start:], key=lambda line: tuple(int(x) for x in line.split()[1::-1]))
        by_gene = sorted(lines[start:], key=lambda line: tuple(int(x) for x in line.split()[:2]))
        (folder / "plain.mtx").write_text("".join(lines[:start] + by_cell))
        (folder / "unsorted.mtx").write_text("".join(lines[:start] + by_gene))
        paths.update({(name, p.name): p for p in folder.iterdir()})
        paths[(name, "mtx folder")] = DATA / name
    return paths


@pytest.mark.parametrize("layout", ["mtx folder", "plain.mtx", "unsorted.mtx", "x.h5", "x.h5ad", "dense.h5ad",
                                    "csc.h5ad", "x.npz", "csr.npz", "coo.npz"])
def test_every_layout_reads_exactly(every_format, matrices, layout):
    for name in DATASETS:
        reference = matrices[name]
        source = read_matrix(every_format[(name, layout)])
        assert source.shape == reference.shape
        assert same(source.matrix(), reference.matrix()), (name, layout)
        n_cells = source.shape[1]
        for cells_per_block in (1, 7, 4096):  # block boundaries fall anywhere
            blocks = list(source.blocks(cells_per_block))
            assert [b.start for b in blocks] == list(range(0, n_cells, cells_per_block))
            assert sum(b.nnz for b in blocks) == reference.matrix().nnz
        if layout.endswith("npz") or layout.endswith(".mtx"):
            continue
        assert source.cell_names(0, n_cells) == reference.cell_names(0, n_cells)
        assert source.cell_names(3, 9) == reference.cell_names(3, 9) and source.has_cell_names
        assert source.gene_names == reference.gene_names
        assert source.gene_ids == reference.gene_ids


def test_real_cell_ranger_h5_matches_its_mtx():
    h5 = read_matrix(DATA / "pbmc500_cellranger.h5")
    mtx = read_matrix(demo_data())
    assert type(h5).__name__ == "CompressedH5Source" and h5.shape == (50, 587) and h5.nnz == 6280
    assert same(h5.matrix(), mtx.matrix())
    assert h5.gene_ids == mtx.gene_ids and h5.gene_names == mtx.gene_names
    assert h5.cell_names(0, 587) == mtx.cell_names(0, 587) and h5.feature_types[0] == "Gene Expression"


def test_cell_ranger_v2_layout(tmp_path, pbmc):
    m = pbmc.matrix()
    path = write_raw_10x(tmp_path / "v2.h5", m.data.astype(np.int32), m.indices, m.indptr, m.shape,
                         ids=[s.encode() for s in pbmc.gene_ids], names=[s.encode() for s in pbmc.gene_names],
                         barcodes=[s.encode() for s in pbmc.cell_names(0, m.shape[1])], v2=True)
    source = read_matrix(path)
    assert same(source.matrix(), m) and source.gene_names == pbmc.gene_names and source.feature_types is None
    assert source.cell_names(0, 5) == pbmc.cell_names(0, 5)
    with h5py.File(path, "a") as f:  # a mixed-species sample: one genome group each, as Cell Ranger 2 writes
        f.copy("GRCh38", "mm10")
    stacked = read_matrix(path)  # one matrix, the genomes' genes stacked (tests/test_tenx_genomes.py)
    assert same(stacked.matrix(), sp.vstack([m, m])) and stacked.gene_ids == pbmc.gene_ids * 2


def test_mtx_order_decides_streaming(every_format):
    name = "pbmc4k_v2_soupx_half"
    for layout, streamed in (("plain.mtx", True), ("unsorted.mtx", False)):
        source = read_matrix(every_format[(name, layout)])
        list(source.blocks(16))
        assert source.streams is streamed


def test_other_inputs_scipy_anndata_count_matrix(tmp_path, pbmc):
    m = pbmc.matrix()
    adata = to_anndata(count_matrix(pbmc))
    for obj in (m.astype(np.float32), m.toarray(), m.tocoo(), count_matrix(pbmc), adata):
        out = tmp_path / "x.sinr"
        sinr.encode(obj, out, force=True, **FAST)
        with sinr.open(out) as f:
            assert same(f.to_scipy(), m)
    with pytest.raises(sinr.InvalidInputError, match="cannot encode an object of type"):
        sinr.encode("not a path".encode(), tmp_path / "y.sinr", **FAST)


@pytest.mark.parametrize("damage, fragment", [
    ("index beyond the shape", "gene index lies outside 0..2"),
    ("negative index", "gene index lies outside 0..2"),
    ("decreasing indptr", "index pointers are not increasing"),
    ("repeated index", "coordinate twice"),
])
def test_scipy_objects_are_checked_like_files(tmp_path, damage, fragment):
    """scipy does not re-check a matrix whose arrays were edited: the encoder does, before use."""
    m = sp.csc_matrix(np.array([[1, 0], [0, 2], [3, 4]]))
    if damage == "index beyond the shape":
        m.indices[0] = 7
    elif damage == "negative index":
        m.indices[0] = -1
    elif damage == "decreasing indptr":
        m.indptr[1] = 5  # past the values, then back to their count
    else:
        m.indices[1] = 0
    with pytest.raises(sinr.InvalidInputError, match=fragment):
        sinr.encode(m, tmp_path / "x.sinr", **FAST)
    assert not any(tmp_path.iterdir())


def test_h5ad_layers_and_raw(tmp_path, pbmc):
    adata = to_anndata(count_matrix(pbmc))
    adata.layers["counts"] = adata.X.copy()
    adata.raw = adata.copy()
    adata.X = adata.X.astype(np.float32) / 2
    path = tmp_path / "layered.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(sinr.InvalidInputError, match="non-integer"):
        sinr.encode(path, tmp_path / "x.sinr", **FAST)
    assert not (tmp_path / "x.sinr").exists()
    for layer in ("counts", "raw"):
        source = read_matrix(path, layer)
        assert same(source.matrix(), pbmc.matrix()) and source.gene_names == pbmc.gene_names
        out = tmp_path / f"{layer}.sinr"
        sinr.encode(path, out, layer=layer, **FAST)
        assert same(sinr.decode(out), pbmc.matrix())
    with pytest.raises(sinr.InvalidInputError, match="no layer 'missing'"):
        read_matrix(path, "missing")
    with pytest.raises(sinr.InvalidInputError, match="--layer applies to .h5ad or AnnData .zarr input only"):
        read_matrix(DATA / "pbmc500_cellranger.h5", "counts")
    bare = anndata.AnnData(X=adata.layers["counts"], obs=adata.obs, var=adata.var)
    bare.write_h5ad(tmp_path / "bare.h5ad")
    with pytest.raises(sinr.InvalidInputError, match="has no raw matrix"):
        read_matrix(tmp_path / "bare.h5ad", "raw")


def test_h5ad_without_x_and_categorical_names(tmp_path, pbmc):
    adata = to_anndata(count_matrix(pbmc))
    adata.var["feature_types"] = adata.var["feature_types"].astype("category")
    adata.layers["counts"] = adata.X
    adata.X = None
    adata.write_h5ad(tmp_path / "nox.h5ad")
    with pytest.raises(sinr.InvalidInputError, match="has no X matrix"):
        read_matrix(tmp_path / "nox.h5ad")
    source = read_matrix(tmp_path / "nox.h5ad", "counts")
    assert source.feature_types == pbmc.feature_types and same(source.matrix(), pbmc.matrix())


@pytest.mark.parametrize("edit", [
    lambda a: a.var.__setitem__("gene_ids", np.arange(a.n_vars)),
    lambda a: a.var.__setitem__("gene_ids", pd.Categorical(np.arange(a.n_vars) % 7)),
    lambda a: a.var.__setitem__("feature_types", np.ones(a.n_vars, bool)),
    lambda a: setattr(a.obs, "index", pd.CategoricalIndex(a.obs_names)),
])
def test_h5ad_columns_anndata_reads_are_read_as_the_anndata_in_memory_is(tmp_path, pbmc, edit):
    """Gene ids of numbers, feature types of bools, a categorical of numbers, a categorical obs index:
    an .h5ad anndata reads is read (as text, as the same AnnData in memory gives), by the matrix
    reader and by a whole-file encode (both had refused such a column), and decodes to what it held."""
    adata = to_anndata(count_matrix(pbmc))
    edit(adata)
    adata.write_h5ad(tmp_path / "x.h5ad")
    from scinrcodec.io.h5ad import anndata_source

    source, expected = read_matrix(tmp_path / "x.h5ad"), anndata_source(anndata.read_h5ad(tmp_path / "x.h5ad"))
    assert type(source).__name__ == "CompressedH5Source"  # X streamed, never the whole file loaded
    assert (source.gene_ids, source.feature_types) == (expected.gene_ids, expected.feature_types)
    assert same(source.matrix(), pbmc.matrix()) and source.cell_names(0, 3) == expected.cell_names(0, 3)
    sinr.encode_whole(tmp_path / "x.h5ad", tmp_path / "x.sinr", **FAST)
    sinr.decode(tmp_path / "x.sinr", tmp_path / "back.h5ad")
    held, back = anndata.read_h5ad(tmp_path / "x.h5ad"), anndata.read_h5ad(tmp_path / "back.h5ad")
    pd.testing.assert_frame_equal(held.var, back.var)
    pd.testing.assert_frame_equal(held.obs, back.obs)
    assert (held.X != back.X).nnz == 0


def test_random_access_and_spec(every_format, pbmc):
    name = "pbmc4k_v2_soupx_half"
    m = pbmc.matrix()
    sources = [read_matrix(every_format[(name, layout)]) for layout in ("x.h5", "x.h5ad", "dense.h5ad", "csc.h5ad",
                                                                        "x.npz", "coo.npz")]
    sources.append(ScipySource(m, pbmc.gene_ids, pbmc.gene_names, pbmc.cell_names(0, m.shape[1])))
    for source in sources:
        assert isinstance(source, RandomAccessSource)
        for start, stop in ((0, 1), (5, 37), (79, 80), (12, 12)):
            block = source.block(start, stop)
            assert block.start == start and block.n_cells == stop - start
            assert same(sp.csc_matrix((block.values, block.genes, block.indptr), shape=(m.shape[0], stop - start)),
                        m[:, start:stop])
        with pytest.raises(sinr.InvalidInputError, match="outside"):
            source.block(70, 81)
        again = open_source_spec(pickle.loads(pickle.dumps(source.spec())))
        assert same(again.matrix(), m) and again.cell_names(2, 4) == source.cell_names(2, 4)
    assert not isinstance(read_matrix(DATA / name), RandomAccessSource)


def test_blocks_hold_int32_read_in_place_where_the_source_holds_int32(pbmc):
    """A block's genes and values are int32 whatever the source's types (every valid index and
    count fits); an int32 source's are views of its arrays, not copies."""
    m = sp.csc_matrix(pbmc.matrix())
    m.indices, m.data = m.indices.astype(np.int32), m.data.astype(np.int32)
    block = ScipySource(m).block(3, 40)
    assert block.genes.dtype == block.values.dtype == np.int32
    assert np.shares_memory(block.genes, m.indices) and np.shares_memory(block.values, m.data)
    wide = sp.csc_matrix((m.data.astype(np.float64), m.indices.astype(np.int64), m.indptr), shape=m.shape)
    again = ScipySource(wide).block(3, 40)
    assert again.genes.dtype == again.values.dtype == np.int32
    assert np.array_equal(again.genes, block.genes) and np.array_equal(again.values, block.values)
    for dtype in (np.float64, np.float32):  # float32 as numpy compares it: 2**31 - 1 rounds up to 2**31
        big = sp.csc_matrix(wide, dtype=dtype)
        big.data[big.indptr[5]] = 2.0**31  # above MAX_COUNT: refused, never wrapped into int32
        with pytest.raises(sinr.InvalidInputError, match="values above"):
            ScipySource(big).block(3, 40)


def _replicated_h5(path: Path, source, copies: int) -> int:
    m = source.matrix()
    big = sp.hstack([m] * copies, format="csc")
    names = [f"{b}-{k}" for k in range(copies) for b in source.cell_names(0, m.shape[1])]
    write_10x_h5(path, CountMatrix(big, source.gene_ids, source.gene_names, names, source.feature_types))
    return big.nnz * (4 + 8)  # the file's int32 data and int64 indices


def _peak_bytes(source, cells_per_block: int) -> int:
    tracemalloc.start()
    try:
        for block in source.blocks(cells_per_block):
            source.cell_names(block.start, block.start + block.n_cells)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_proportional_to_a_block(tmp_path, pbmc, monkeypatch):
    """A pass over a matrix ~250x the fixture holds one block: the peak is a small fraction of the
    matrix, and does not grow with the number of cells."""
    small, large = tmp_path / "small.h5", tmp_path / "large.h5"
    _replicated_h5(small, pbmc, 25)
    whole = _replicated_h5(large, pbmc, 250)
    peaks = [_peak_bytes(read_matrix(path), 256) for path in (small, large)]
    assert peaks[1] < whole / 10 and peaks[1] < 2 * peaks[0], (peaks, whole)
    adata = to_anndata(count_matrix(read_matrix(large)))
    adata.write_h5ad(tmp_path / "large.h5ad")
    assert _peak_bytes(read_matrix(tmp_path / "large.h5ad"), 256) < whole / 10
    monkeypatch.setattr(mtx, "MTX_CHUNK_BYTES", 1 << 16)  # to show the bound at this size
    mtx_peaks = []
    for path in (small, large):
        write_matrix(path.with_suffix(".mtx"), count_matrix(read_matrix(path)))
        source = read_matrix(path.with_suffix(".mtx"))
        list(source.blocks(256))  # the first pass, which checks the order, is not measured
        mtx_peaks.append(_peak_bytes(source, 256))
    assert mtx_peaks[1] < whole / 5 and mtx_peaks[1] < 2 * mtx_peaks[0], (mtx_peaks, whole)


# ------------------------------------------------------------------------------ issue 11: 10x HDF5


@pytest.mark.parametrize("case, fragment", [
    ("shape smaller than indices", "gene index lies outside 0..2"),
    ("index out of range", "gene index lies outside"),
    ("negative index", "gene index lies outside"),
    ("decreasing indptr", "index pointers decrease"),
    ("indptr not from 0", "index pointers run from 1"),
    ("indptr past the data", "not from 0 to the 4 stored values"),
    ("more entries than genes", "holds 4 entries for 3 genes"),
    ("duplicate coordinates", "same (gene, cell) coordinate twice"),
    ("value 2**63", "values above 2,147,483,647"),
    ("float values", "non-integer"),
    ("string values", "not what the format stores there"),
    ("indptr length", "3 index pointers for 3 cells"),
])
def test_malformed_10x_h5_is_one_clear_error(tmp_path, case, fragment):
    data, indices, indptr, shape = np.array([1, 2, 3, 4]), np.array([0, 2, 1, 2]), np.array([0, 2, 3, 4]), (5, 3)
    if case == "shape smaller than indices":
        shape = (3, 3)
        indices = np.array([0, 4, 1, 2])
    elif case == "index out of range":
        indices = np.array([0, 5, 1, 2])
    elif case == "negative index":
        indices = np.array([0, -1, 1, 2])
    elif case == "decreasing indptr":
        indptr = np.array([0, 3, 2, 4])
    elif case == "indptr not from 0":
        indptr = np.array([1, 2, 3, 4])
    elif case == "indptr past the data":
        indptr = np.array([0, 2, 3, 9])
    elif case == "more entries than genes":
        shape, indptr, indices = (3, 3), np.array([0, 4, 4, 4]), np.array([0, 1, 2, 0])
    elif case == "duplicate coordinates":
        indices = np.array([2, 2, 1, 2])
    elif case == "value 2**63":
        data = np.array([1, 2**63, 3, 4], dtype=np.uint64)
    elif case == "float values":
        data = np.array([1.0, 2.5, 3.0, 4.0])
    elif case == "string values":
        data = np.array([b"a", b"b", b"c", b"d"])
    elif case == "indptr length":
        indptr = np.array([0, 2, 4])
    path = write_raw_10x(tmp_path / "bad.h5", data, indices, indptr, shape)
    with pytest.raises(sinr.InvalidInputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        sinr.encode(path, tmp_path / "x.sinr", **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]


def test_10x_h5_names_are_checked(tmp_path):
    data, indices, indptr, shape = np.array([1]), np.array([0]), np.array([0, 1]), (1, 1)
    long = write_raw_10x(tmp_path / "long.h5", data, indices, indptr, shape, names=[b"G" * 100_000])
    with pytest.raises(sinr.InvalidInputError, match="100,000 bytes exceeds the limit of 4,096"):
        read_matrix(long)
    bad = write_raw_10x(tmp_path / "utf8.h5", data, indices, indptr, shape, barcodes=[b"\xff\xfe-1"])
    with pytest.raises(sinr.InvalidInputError, match="not valid UTF-8"):
        read_matrix(bad)
    newline = write_raw_10x(tmp_path / "newline.h5", data, indices, indptr, shape, ids=[b"a\nb"])
    with pytest.raises(sinr.InvalidInputError, match="line break"):
        read_matrix(newline)
    counted = write_raw_10x(tmp_path / "count.h5", data, indices, indptr, shape, barcodes=[b"a", b"b"])
    with pytest.raises(sinr.InvalidInputError, match="2 cell names for 1 cells"):
        read_matrix(counted)


@pytest.mark.parametrize("names, error", [
    (["a", "b\nc"], f"the name {'b' + chr(10) + 'c'!r} contains a line break"),
    (["a\rb", "c"], f"the name {'a' + chr(13) + 'b'!r} contains a line break"),
    (["a", "b\0c"], f"the name {'b' + chr(0) + 'c'!r} contains a NUL character"),  # HDF5 strings cannot hold it
    (["ok", "\ud800"], f"the name {chr(0xD800)!r} is not valid Unicode text"),
    (["x" * 4097], "a name of 4,097 bytes exceeds the limit of 4,096"),
    (["é" * 2049], "a name of 4,098 bytes exceeds the limit of 4,096"),  # 2,049 characters, 2 bytes each
    (["é" * 2048, "b"], None),  # long in characters, within the limit in bytes
    ([1, 2.5, "c"], None),  # not text: stored as str
])
def test_names_in_memory_are_checked_one_by_one_only_where_all_at_once_finds_a_fault(names, error):
    """check_names checks every name at once (joined, encoded once) and names the first name at fault."""
    counts = sp.csc_matrix(np.ones((1, len(names)), dtype=np.int64))
    if error is None:
        assert ScipySource(counts, cell_names=names).cell_names(0, len(names)) == [str(x) for x in names]
    else:
        with pytest.raises(sinr.InvalidInputError, match="^" + re.escape("input cell names: " + error)):
            ScipySource(counts, cell_names=names)


def test_damaged_hdf5_is_one_clear_error(tmp_path):
    blob = (DATA / "pbmc500_cellranger.h5").read_bytes()
    for name, damaged in (("truncated.h5", blob[: len(blob) // 2]), ("zeros.h5", blob[:8] + bytes(100))):
        (tmp_path / name).write_bytes(damaged)
        with pytest.raises(sinr.InvalidInputError, match="unreadable HDF5"):
            list(read_matrix(tmp_path / name).blocks(64))
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(sinr.InvalidInputError, match="not a 10x HDF5 file"):
        read_matrix(tmp_path / "empty.h5")


# ------------------------------------------------------------------------------ issue 11: Matrix Market


def test_mtx_header_sizes_are_checked_before_allocating(tmp_path):
    tracemalloc.start()
    try:
        cases = [
            ("10 10 1000000000000\n1 1 1\n", "declares 1,000,000,000,000 entries, more than its 10 x 10 positions"),
            ("1000000 1000000 1000000000000\n1 1 1\n", "ends after 1 of the 1,000,000,000,000 entries"),
            ("2147483648 10 1\n1 1 1\n", "2,147,483,648 genes is outside 0..2,147,483,647"),
            ("10 99999999999999999999 1\n1 1 1\n", "cells is outside"),
            ("10 10 123456789012345678901234567890\n", "is not three whole numbers"),
            ("10 10\n", "is not three whole numbers"),
            ("", "ends before its size line"),
        ]
        for k, (body, fragment) in enumerate(cases):
            path = write_mtx(tmp_path / f"m{k}", body)
            with pytest.raises(sinr.InvalidInputError, match=fragment):
                sinr.encode(path, tmp_path / "x.sinr", **FAST)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    assert not (tmp_path / "x.sinr").exists()


@pytest.mark.parametrize("header, body, fragment", [
    ("integer", "3 2 2\n1 1 2.5\n2 2 1\n", "line 3 ('1 1 2.5'): the value is not a whole number"),
    ("integer", "3 2 1\n1 1 9223372036854775808\n", "a value above 2,147,483,647"),
    ("integer", "3 2 1\n1 1 2147483648\n", "a value above 2,147,483,647"),
    ("integer", "3 2 1\n1 1 -3\n", "a negative value"),
    ("integer", "3 2 1\n4 1 3\n", "the row lies outside the 3 x 2 matrix"),
    ("integer", "3 2 1\n1 0 3\n", "the column lies outside"),
    ("integer", "3 2 1\n1 1\n", "an entry has 3 fields"),
    ("integer", "3 2 1\n1 1 1 1\n", "an entry has 3 fields"),
    ("integer", "3 2 2\n1 1 1\n1 1 2\n", "same (gene, cell) coordinate twice"),
    ("integer", "3 2 2\n1 2 1\n1 2 2\n", "same (gene, cell) coordinate twice"),
    ("integer", "3 2 3\n1 2 1\n2 1 1\n1 2 2\n", "same (gene, cell) coordinate twice"),  # unsorted: loaded whole
    ("integer", "3 2 1\n1 1 1\n2 1 1\n", "holds more entries than the 1"),
    ("integer", "3 2 1\nx 1 1\n", "the row is not a number"),
    ("real", "3 2 1\n1 1 0.5\n", "a non-integer value"),
    ("real", "3 2 1\n1 1 nan\n", "a NaN or infinite value"),
    ("real", "3 2 1\n1 1 -Infinity\n", "a NaN or infinite value"),
    ("real", "3 2 1\n1 1 9.3e18\n", "a value above 2,147,483,647"),
    ("real", "3 2 1\n1 1 1.0000000000000000000001\n", "a non-integer value"),
    ("real", "3 2 1\n1 1 1e\n", "the value is not a number"),
    ("pattern", "3 2 1\n1 1\n", "pass --pattern-as-ones"),
    ("complex", "3 2 1\n1 1 1 0\n", "field 'complex' cannot hold counts"),
    ("integer symmetric", "3 3 1\n1 1 1\n", "a 'symmetric' Matrix Market file"),
    ("array", "3 2\n1\n", "only sparse 'coordinate' files"),
])
def test_malformed_mtx_is_one_clear_error(tmp_path, header, body, fragment):
    kind, _, symmetry = header.partition(" ")
    banner = ("%%MatrixMarket matrix array integer general" if kind == "array" else
              f"%%MatrixMarket matrix coordinate {kind} {symmetry or 'general'}")
    path = write_mtx(tmp_path / "m", body, header=banner)
    with pytest.raises(sinr.InvalidInputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        sinr.encode(path, tmp_path / "x.sinr", **FAST)
    assert not (tmp_path / "x.sinr").exists()


def test_mtx_real_values_are_read_exactly(tmp_path):
    values = ["3", "3.0", "+3.000", "3e0", "0.3e1", "300e-2", "3.0E+00", "1e9", "2147483647", "2147483647.0", "0.0"]
    body = "".join(f"1 {j + 1} {v}\n" for j, v in enumerate(values))
    path = write_mtx(tmp_path / "m", f"% a comment\n\n1 {len(values)} {len(values)}\n{body}",
                     header="%%MatrixMarket matrix coordinate real general")
    dense = read_matrix(path).matrix().toarray().ravel()
    assert dense.tolist() == [3] * 7 + [10**9, 2**31 - 1, 2**31 - 1, 0]


def test_mtx_pattern_as_ones(tmp_path):
    path = write_mtx(tmp_path / "m", "3 2 2\n1 1\n3 2\n", header="%%MatrixMarket matrix coordinate pattern general")
    with pytest.raises(sinr.InvalidInputError, match="pattern_as_ones=True"):
        read_matrix(path)
    source = read_matrix(path, pattern_as_ones=True)
    assert source.matrix().toarray().tolist() == [[1, 0], [0, 0], [0, 1]]


def test_mtx_layouts_crlf_gzip_and_file_beside_names(tmp_path):
    body = "3 2 3\r\n1 1 4\r\n3 1 1\r\n2 2 7\r\n"
    for gz in (False, True):
        folder = write_mtx(tmp_path / f"m{gz}", body, features=b"\xef\xbb\xbfa\tA\tGene\r\nb\tB\tGene\nc\tC\tGene\n",
                           barcodes=b"\xef\xbb\xbfx-1\ny-1\n\n", gz=gz)  # byte order marks as an editor saves them
        for path in (folder, folder / ("matrix.mtx.gz" if gz else "matrix.mtx")):
            source = read_matrix(path)
            assert source.matrix().toarray().tolist() == [[4, 0], [0, 7], [1, 0]]
            assert source.gene_names == ["A", "B", "C"] and source.cell_names(0, 2) == ["x-1", "y-1"]
            assert source.gene_ids[0] == "a" and source.feature_types == ["Gene"] * 3 and len(source.paths) == 3


def test_a_folder_that_is_no_input_names_the_inputs_in_it_and_gzip_is_named(tmp_path):
    """`sinr encode outs/` (Cell Ranger's output folder) names the inputs inside it; a gzipped .h5ad is
    named as gzipped, not as an unknown format."""
    outs = tmp_path / "outs"
    shutil.copytree(DATA / "pbmc4k_v2_soupx_half", outs / "filtered_feature_bc_matrix")
    shutil.copy(DATA / "pbmc500_cellranger.h5", outs / "filtered_feature_bc_matrix.h5")
    (outs / "web_summary.html").write_text("<html></html>")
    assert_one_error_line(sinr_cli("encode", str(outs), str(tmp_path / "x.sinr")),
                          "no AnnData zarr store; inputs in it: filtered_feature_bc_matrix/, "
                          "filtered_feature_bc_matrix.h5 (name one)")
    (tmp_path / "empty").mkdir()
    assert read_matrix_error(tmp_path / "empty").endswith("folder holds no matrix.mtx(.gz) and is no AnnData zarr store")
    packed = tmp_path / "x.h5ad.gz"
    packed.write_bytes(gzip.compress((DATA / "pbmc500_cellranger.h5").read_bytes()))
    assert "a gzip-compressed file" in read_matrix_error(packed) and "gunzip -k" in read_matrix_error(packed)


def read_matrix_error(path: Path) -> str:
    with pytest.raises(sinr.InvalidInputError) as caught:
        read_matrix(path)
    return str(caught.value)


def test_geo_prefixed_triples_read_their_own_names(tmp_path):
    """GEO serves a sample's 10x triple as GSM..._matrix.mtx.gz beside GSM..._features.tsv.gz and
    GSM..._barcodes.tsv.gz: the file, or a folder of one such sample, reads its own names (scanpy's
    read_10x_mtx(prefix=)), never another sample's unprefixed ones; a folder of several samples is one
    clear error naming them."""
    real = DATA / "pbmc4k_v2_soupx_half"
    plain = read_matrix(real)
    folder = tmp_path / "geo"
    folder.mkdir()
    for name in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"):
        shutil.copy(real / name, folder / f"GSM1_{name}")
    for path in (folder / "GSM1_matrix.mtx.gz", folder):
        source = read_matrix(path)
        assert source.gene_ids == plain.gene_ids and source.gene_names == plain.gene_names
        assert source.cell_names(0, plain.shape[1]) == plain.cell_names(0, plain.shape[1])
        assert same(source.matrix(), plain.matrix()) and len(source.paths) == 3
    (folder / "barcodes.tsv").write_text("another sample's\n")  # unprefixed names beside: not this sample's
    assert read_matrix(folder / "GSM1_matrix.mtx.gz").cell_names(0, 2) == plain.cell_names(0, 2)
    shutil.copy(real / "matrix.mtx.gz", folder / "GSM2_matrix.mtx.gz")
    with pytest.raises(sinr.InvalidInputError, match=r"holds the matrices of 2 samples \(GSM1_matrix.mtx.gz, "
                                                     r"GSM2_matrix.mtx.gz\); encode one file at a time"):
        read_matrix(folder)
    assert_one_error_line(sinr_cli("encode", str(folder), str(tmp_path / "x.sinr")), "holds the matrices of 2 samples")


@pytest.mark.parametrize("features, barcodes, fragment", [
    (b"a\t" + b"G" * 100_000 + b"\nb\tB\nc\tC\n", None, "100,000 bytes exceeds the limit of 4,096"),
    (b"a\tA\n\xff\tB\nc\tC\n", None, "not valid UTF-8"),
    (b"a\nb\n", None, "2 lines for the 3 genes"),
    (None, b"x\n\xc3\x28\n", "line 2 is not valid UTF-8"),
    (None, b"x\ny\rz\n", "line break"),
    (None, b"x\n" + b"y" * 5000 + b"\n", "5,000 bytes exceeds"),
    (None, b"x\n", "1 lines for the 2 cells"),
])
def test_mtx_names_are_checked(tmp_path, features, barcodes, fragment):
    path = write_mtx(tmp_path / "m", "3 2 1\n1 1 1\n", features=features, barcodes=barcodes)
    with pytest.raises(sinr.InvalidInputError, match=fragment):
        sinr.encode(path, tmp_path / "x.sinr", **FAST)


def test_mtx_line_too_long_and_damaged_gzip(tmp_path, monkeypatch):
    monkeypatch.setattr(mtx, "MTX_CHUNK_BYTES", 1 << 16)
    path = write_mtx(tmp_path / "long", "1 1 1\n1 1 " + " " * 200_000 + "1\n")
    with pytest.raises(sinr.InvalidInputError, match="longer than 65,536 bytes"):
        list(read_matrix(path).blocks(8))
    folder = write_mtx(tmp_path / "gz", "3 2 1\n" + "1 1 1\n" * 1, gz=True)
    blob = (folder / "matrix.mtx.gz").read_bytes()
    (folder / "matrix.mtx.gz").write_bytes(blob[:-12] + bytes(12))
    with pytest.raises(sinr.InvalidInputError, match="unreadable Matrix Market file"):
        list(read_matrix(folder).blocks(8))


# ------------------------------------------------------------------------------ Matrix Market: the native parser
# The numba parser that the native one (native/core/src/matrix_market.cpp) replaced, transcribed to
# plain Python over bytes: the reference every accepted and refused line must agree with, code,
# failing line and field included (so the error messages stay the same).

_OK, _SYNTAX, _FIELDS, _INDEX, _FRACTION, _NAN, _LARGE, _NEGATIVE = range(8)
_MAX_COUNT = 2**31 - 1


def _ref_token_end(buf: bytes, i: int) -> int:
    while i < len(buf) and buf[i] not in b" \t\r\n":
        i += 1
    return i


def _ref_integer(buf: bytes, i: int):
    negative = False
    if i < len(buf) and buf[i] in b"+-":
        negative, i = buf[i] == 45, i + 1
    first, value, large = i, 0, False
    while i < len(buf) and 48 <= buf[i] <= 57:
        if value >= 10**16:
            large = True
        else:
            value = value * 10 + buf[i] - 48
        i += 1
    if i == first or _ref_token_end(buf, i) != i:
        return _ref_token_end(buf, i), 0, _SYNTAX
    return (i, 0, _LARGE) if large else (i, -value if negative else value, _OK)


def _ref_count(buf: bytes, i: int):
    end = _ref_token_end(buf, i)
    negative = False
    if i < end and buf[i] in b"+-":
        negative, i = buf[i] == 45, i + 1
    if bytes(c | 32 for c in buf[i:end]) in (b"nan", b"inf", b"infinity"):
        return end, 0, _NAN
    mantissa, digits, scale, seen, dropped = 0, 0, 0, False, False
    while i < end and 48 <= buf[i] <= 57:
        d, seen = buf[i] - 48, True
        if mantissa == 0:
            mantissa, digits = d, 1 if d else 0
        elif digits < 18:
            mantissa, digits = mantissa * 10 + d, digits + 1
        else:
            scale, dropped = scale + 1, dropped or d != 0
        i += 1
    if i < end and buf[i] == 46:
        i, zeros = i + 1, 0
        while i < end and 48 <= buf[i] <= 57:
            d, seen = buf[i] - 48, True
            if d == 0:
                zeros += 1
            elif mantissa == 0:
                mantissa, digits, scale, zeros = d, 1, scale - zeros - 1, 0
            elif digits + zeros < 18:
                mantissa = mantissa * 10 ** (zeros + 1) + d
                digits, scale, zeros = digits + zeros + 1, scale - zeros - 1, 0
            else:
                dropped = True
            i += 1
    if not seen:
        return end, 0, _SYNTAX
    exponent = 0
    if i < end and buf[i] | 32 == 101:
        i += 1
        exponent_negative = i < end and buf[i] == 45
        i, exponent, code = _ref_integer(buf, i)
        if code == _LARGE:
            exponent = -(10**6) if exponent_negative else 10**6
        elif code != _OK:
            return end, 0, _SYNTAX
    if i != end:
        return end, 0, _SYNTAX
    if mantissa == 0:
        return end, 0, _OK
    total = scale + exponent
    if digits + total > 10:
        return end, 0, _LARGE
    if dropped:
        return end, 0, _FRACTION
    if total >= 0:
        value = mantissa * 10**total
    elif -total > 18 or mantissa % 10**-total:
        return end, 0, _FRACTION
    else:
        value = mantissa // 10**-total
    if value > _MAX_COUNT:
        return end, 0, _LARGE
    return (end, 0, _NEGATIVE) if negative else (end, value, _OK)


def _ref_entries(buf: bytes, n_fields: int, integer: bool, n_rows: int, n_cols: int, last_col: int):
    """(entries, code, line, field, last column, first unsorted line or -1) and the entries."""
    out, i, size, unsorted_at = [], 0, len(buf), -1
    while i < size:
        line = i
        while i < size and buf[i] in b" \t\r":
            i += 1
        if i == size:
            break
        if buf[i] in b"\n%":
            while i < size and buf[i] != 10:
                i += 1
            i += 1
            continue
        entry = [0, 0, 1]
        for field in range(n_fields):
            while i < size and buf[i] in b" \t\r":
                i += 1
            if i == size or buf[i] == 10:
                return (len(out), _FIELDS, line, field, last_col, unsorted_at), out
            if field < 2:
                i, number, code = _ref_integer(buf, i)
                if code == _LARGE or code == _OK and not 1 <= number <= (n_rows, n_cols)[field]:
                    code = _INDEX
            elif integer:
                i, number, code = _ref_integer(buf, i)
                code = code if code != _OK else _LARGE if number > _MAX_COUNT else _NEGATIVE if number < 0 else _OK
            else:
                i, number, code = _ref_count(buf, i)
            if code != _OK:
                return (len(out), code, line, field, last_col, unsorted_at), out
            entry[field] = number - (field < 2)
        while i < size and buf[i] in b" \t\r":
            i += 1
        if i < size and buf[i] != 10:
            return (len(out), _FIELDS, line, n_fields, last_col, unsorted_at), out
        i += 1
        if entry[1] < last_col and unsorted_at < 0:
            unsorted_at = line
        last_col = entry[1]
        out.append(entry)
    return (len(out), _OK, 0, 0, last_col, unsorted_at), out


def _native_entries(buf: bytes, n_fields: int, integer: bool, n_rows: int, n_cols: int, last_col: int):
    capacity = buf.count(b"\n") + 1  # as MtxSource sizes them
    rows, cols, vals = (np.full(capacity, -7, np.int32) for _ in range(3))
    result = mtx.mtx_parse_entries(np.frombuffer(buf, np.uint8), n_fields, integer, n_rows, n_cols, last_col,
                                       rows, cols, vals)
    return result, np.stack([rows, cols, vals], axis=1)[: result[0]].tolist()


def _random_token(rng) -> str:
    """A number as hostile text may hold one: signs, leading zeros, long digit runs, fractions,
    exponents of any length, nan/inf words in any case, stray bytes."""
    digits = lambda k: "".join(rng.choice(list("0123456789"), size=k))  # noqa: E731
    body = "0" * int(rng.choice([0, 0, 0, 1, 20])) + digits(int(rng.choice([0, 1, 2, 3, 9, 10, 11, 17, 18, 19, 30])))
    if rng.random() < 0.4:
        body += "." + "0" * int(rng.choice([0, 1, 9, 18, 30])) + digits(int(rng.choice([0, 0, 1, 2, 10, 19])))
    if rng.random() < 0.35:
        body += (rng.choice(["e", "E"]) + rng.choice(["", "+", "-", "--"]) +
                 digits(int(rng.choice([0, 1, 2, 16, 17, 18, 25]))))
    if rng.random() < 0.08:
        body = str(rng.choice(["nan", "NaN", "inf", "-INF", "Infinity", "infinit", "nana", "iNfInItY", "n\x0en"]))
    if rng.random() < 0.05:
        at = int(rng.integers(len(body) + 1))
        body = body[:at] + str(rng.choice(["x", ".", "e", "\x00", "\xff", "%", ":", "/"])) + body[at:]
    return str(rng.choice(["", "", "", "+", "-", "+-"])) + body


def _random_lines(rng, n_fields: int) -> bytes:
    lines = []
    for _ in range(int(rng.choice([1, 1, 2, 3, 6]))):
        kind = rng.random()
        if kind < 0.05:
            lines.append(str(rng.choice(["", "%" + _random_token(rng), " \t\r"])))
            continue
        n = n_fields + int(rng.choice([0] * 12 + [-1, 1]))
        fields = [(str(rng.integers(1, 10 ** int(rng.integers(1, 10)))) if rng.random() < 0.95 else _random_token(rng))
                  if f < 2 else _random_token(rng) if rng.random() < 0.7 else str(rng.integers(0, 10**8))
                  for f in range(max(n, 0))]
        lines.append(str(rng.choice(["", " ", "\t"])) + str(rng.choice([" ", "\t", " \r ", "  "])).join(fields) +
                     str(rng.choice(["", "", " ", "\r"])))
    return ("\n".join(lines) + ("\n" if rng.random() < 0.7 else "")).encode("latin-1")


def _plausible_lines(rng, n_fields: int, n_rows: int, n_cols: int) -> bytes:
    """Lines as files hold them, now and then one number or blank off: numbers at the edges of the
    matrix, of 7 and 8 digits, with leading zeros."""
    def number(limit: int) -> str:
        edges = [0, 1, limit, limit + 1, 9999999, 10**7, 99999999, 2**31 - 1, 2**31]
        pick = rng.random()
        return (str(rng.integers(1, min(limit, 10**8) + 1)) if pick < 0.8 else str(rng.choice(edges)) if pick < 0.95
                else "0" * int(rng.integers(1, 4)) + str(rng.integers(0, 1000)))
    lines = []
    for _ in range(int(rng.integers(1, 12))):
        fields = [number(n_rows), number(n_cols)] + [number(2**31 - 1)] * (n_fields == 3)
        seps = [" " if rng.random() < 0.95 else str(rng.choice(["\t", "  ", " \r", "\r"])) for _ in fields]
        lines.append("".join(f + sep for f, sep in zip(fields, seps))[:-1] + ("" if rng.random() < 0.95 else "\r"))
    return ("\n".join(lines) + ("\n" if rng.random() < 0.8 else "")).encode()


def test_mtx_native_parser_matches_the_reference():
    assert mtx.mtx_parse_entries.__module__.startswith("scinrcodec")
    from scinrcodec import _native

    assert _native.MTX_CODES[:8] == ("ok", "syntax", "fields", "index", "fraction", "nan", "large", "negative")
    assert (mtx.PARSE_OK, mtx.PARSE_SYNTAX, mtx.PARSE_FIELDS, mtx.PARSE_INDEX, mtx.PARSE_FRACTION, mtx.PARSE_NAN,
            mtx.PARSE_LARGE, mtx.PARSE_NEGATIVE) == tuple(range(8))
    rng = np.random.default_rng(11)
    seen = set()
    for _ in range(4000):
        kind = rng.random()
        if kind < 0.35:
            args = (f"1 1 {_random_token(rng)}\n".encode("latin-1"), 3, bool(rng.random() < 0.3), 9, 9, -1)
        elif kind < 0.6:
            n_fields, n_rows, n_cols = int(rng.choice([2, 3])), int(rng.choice([9, 10**7, 2**31 - 1])), 99
            args = (_plausible_lines(rng, n_fields, n_rows, n_cols), n_fields, bool(rng.random() < 0.5), n_rows,
                    n_cols, int(rng.choice([-1, 50])))
        else:
            n_fields = int(rng.choice([2, 3]))
            args = (_random_lines(rng, n_fields), n_fields, bool(rng.random() < 0.5),
                    int(rng.choice([5, 9, 9999999, 10**7, 2**31 - 1])), int(rng.choice([5, 9, 10**7, 2**31 - 1])),
                    int(rng.choice([-1, 0, 4])))
        if rng.random() < 0.5:  # room for the parser's eight-byte reads at every position of the text
            args = (args[0] + (b"\n%" + b"x" * 16, b"%" * 9, b"\n1 1 1\n" * 3)[int(rng.integers(3))], *args[1:])
        expected = _ref_entries(*args)
        assert _native_entries(*args) == expected, args
        seen.add(expected[0][1])
    assert seen == set(range(8))  # every code was reached


def test_mtx_native_every_byte_beside_digits():
    """Each of the 256 byte values within, after and between numbers, with room for eight-byte reads
    and without: the native parser reads digits and separators as the reference does."""
    for b in range(256):
        c = bytes([b])
        for text in (b"12" + c + b"3 4 5\n", b"1 1 4" + c + b"\n", b"1 1 4" + c + b"x\n", b"1" + c + b"2 3\n",
                     c + b"1 2 3\n", b"9999999" + c + b" 1 1\n", b"1 1 1234567" + c):
            for pad in (b"", b"\n%" + b"x" * 16):
                for n_fields, integer in ((2, True), (3, True), (3, False)):
                    args = (text + pad, n_fields, integer, 10**7, 9, -1)
                    assert _native_entries(*args) == _ref_entries(*args), args


@pytest.mark.parametrize("token, code, value", [
    ("3", _OK, 3), ("+3.000", _OK, 3), ("-0", _OK, 0), ("-0.0e-3", _OK, 0), ("0e99999999999999999999", _OK, 0),
    ("1.e2", _OK, 100), (".5e1", _OK, 5), ("1.5E+1", _OK, 15), ("0000000000001", _OK, 1),
    ("1" + "0" * 30 + "e-30", _OK, 1), ("2147483647000000000000e-12", _OK, 2**31 - 1),
    ("214748364.7e1", _OK, 2**31 - 1), ("1.05e1", _FRACTION, 0), ("-0.5", _FRACTION, 0),
    ("1e-99999999999999999999", _FRACTION, 0), ("123456789012345678901234567890e-20", _FRACTION, 0),
    ("1" + "0" * 40 + "1e-41", _FRACTION, 0), ("1e99999999999999999999", _LARGE, 0), ("2147483648e0", _LARGE, 0),
    ("10000000000", _LARGE, 0), ("-3e10", _LARGE, 0), ("-1", _NEGATIVE, 0), ("-1e0", _NEGATIVE, 0),
    ("+inf", _NAN, 0), ("-NaN", _NAN, 0), ("INFINITY", _NAN, 0), ("infinit", _SYNTAX, 0), (".", _SYNTAX, 0),
    ("e5", _SYNTAX, 0), ("1e+", _SYNTAX, 0), ("1e5.0", _SYNTAX, 0), ("0x10", _SYNTAX, 0), ("--1", _SYNTAX, 0),
    ("1e--1", _SYNTAX, 0), ("\x00", _SYNTAX, 0),
])
def test_mtx_native_count_rules(token, code, value):
    """Real values: decided on their decimal digits, whatever their length or exponent."""
    buf = f"2 1 {token}\n".encode("latin-1")
    result, entries = _native_entries(buf, 3, False, 2, 1, -1)
    assert result[1] == code and (entries == [[1, 0, value]] if code == _OK else result[3] == 2)
    assert (result, entries) == _ref_entries(buf, 3, False, 2, 1, -1)


@pytest.mark.parametrize("token, code", [("+5", _OK), ("-0", _OK), ("2147483647", _OK), ("2147483648", _LARGE),
                                         ("-5", _NEGATIVE), ("-99999999999999999999", _LARGE), ("1e3", _SYNTAX),
                                         ("5.", _SYNTAX)])
def test_mtx_native_integer_rules(token, code):
    buf = f"1 1 {token}".encode()
    assert _native_entries(buf, 3, True, 1, 1, -1) == _ref_entries(buf, 3, True, 1, 1, -1)
    assert _native_entries(buf, 3, True, 1, 1, -1)[0][1] == code


def test_mtx_native_parser_guards_its_arguments():
    """Outputs too short, wrong dtypes or sizes out of range: an error, nothing written out of bounds;
    read-only text (a bytes object's view) is accepted."""
    text = np.frombuffer(b"1 1 1\n2 2 2\n3 3 3\n", np.uint8)
    assert not text.flags.writeable
    ok = [np.zeros(3, np.int32) for _ in range(3)]
    assert mtx.mtx_parse_entries(text, 3, True, 3, 3, -1, *ok) == (3, _OK, 0, 0, 2, -1)
    assert [a.tolist() for a in ok] == [[0, 1, 2], [0, 1, 2], [1, 2, 3]]
    for short in range(3):
        guarded = [np.full(4, -7, np.int32) for _ in range(3)]
        outputs = [a[:3] for a in guarded]
        outputs[short] = guarded[short][:2]
        with pytest.raises(ValueError, match="more entries than"):
            mtx.mtx_parse_entries(text, 3, True, 3, 3, -1, *outputs)
        assert all(a[3] == -7 for a in guarded) and guarded[short][2] == -7
    with pytest.raises(ValueError, match="more entries than"):
        mtx.mtx_parse_entries(text, 3, True, 3, 3, -1, *(np.zeros(0, np.int32) for _ in range(3)))
    assert mtx.mtx_parse_entries(np.zeros(0, np.uint8), 2, True, 3, 3, 5, *(np.zeros(0, np.int32),) * 3) == \
        (0, _OK, 0, 0, 5, -1)
    for n_fields, n_rows, n_cols in ((1, 3, 3), (4, 3, 3), (3, -1, 3), (3, 3, 2**31)):
        with pytest.raises(ValueError, match="n_fields must be 2 or 3"):
            mtx.mtx_parse_entries(text, n_fields, True, n_rows, n_cols, -1, *ok)
    with pytest.raises(TypeError):  # no silent conversion into a temporary copy
        mtx.mtx_parse_entries(text, 3, True, 3, 3, -1, np.zeros(3, np.int64), ok[1], ok[2])
    with pytest.raises(TypeError):
        mtx.mtx_parse_entries(text.astype(np.int8), 3, True, 3, 3, -1, *ok)
    with pytest.raises(TypeError):
        mtx.mtx_parse_entries(text, 3, True, 3, 3, -1, ok[0][::2], ok[1], ok[2])


# ------------------------------------------------------------------------------ issue 11: .h5ad, .npz


def _write_float16_h5ad(path: Path, source, dense: bool, first=None) -> Path:
    """X as float16 (h5py stores it sparse too, though scipy cannot hold it), its first value replaced."""
    adata = to_anndata(count_matrix(source))
    if dense:
        x = adata.X.toarray().astype(np.float16)
        if first is not None:
            x[tuple(np.argwhere(x)[0])] = first
        adata.X = x
        adata.write_h5ad(path)
        return path
    adata.write_h5ad(path)
    with h5py.File(path, "r+") as f:
        data = f["X/data"][:].astype(np.float16)
        if first is not None:
            data[0] = first
        del f["X/data"]
        f["X/data"] = data
    return path


@pytest.mark.parametrize("dense", [False, True])
def test_float16_h5ad(tmp_path, pbmc, dense):
    path = _write_float16_h5ad(tmp_path / "f16.h5ad", pbmc, dense)
    assert same(read_matrix(path).matrix(), pbmc.matrix())
    for first, fragment in ((0.5, "non-integer"), (np.inf, "NaN or infinite"), (-2.0, "negative")):
        path = _write_float16_h5ad(tmp_path / "bad.h5ad", pbmc, dense, first)
        with pytest.raises(sinr.InvalidInputError, match=fragment):
            sinr.encode(path, tmp_path / "x.sinr", **FAST)
        assert not (tmp_path / "x.sinr").exists()


def test_h5ad_dense_rows_too_long_to_read(tmp_path):
    """A dense X declaring 5 million genes (no data stored: the file is small) is refused, not read."""
    with h5py.File(tmp_path / "wide.h5ad", "w") as f:
        f.create_dataset("X", shape=(2, 5_000_000), dtype="f8", chunks=(1, 1 << 16))
        f["X"].attrs["encoding-type"] = "array"
        for frame in ("obs", "var"):
            f.create_group(frame).attrs["_index"] = "_index"
            f[frame]["_index"] = np.array([b"a", b"b"])
    with pytest.raises(sinr.InvalidInputError, match="a dense row of 5,000,000 genes is too large"):
        read_matrix(tmp_path / "wide.h5ad")


def test_h5ad_names_are_checked(tmp_path, pbmc):
    adata = to_anndata(count_matrix(pbmc))
    adata.var_names = ["G" * 100_000] + list(adata.var_names[1:])
    adata.write_h5ad(tmp_path / "long.h5ad")
    with pytest.raises(sinr.InvalidInputError, match="100,000 bytes exceeds the limit of 4,096"):
        read_matrix(tmp_path / "long.h5ad")
    write_matrix(tmp_path / "ok.h5ad", count_matrix(pbmc))
    with h5py.File(tmp_path / "ok.h5ad", "r+") as f:
        names = f["obs/_index"][:]
        del f["obs/_index"]
        f["obs/_index"] = np.array([b"\xff\xfe"] + list(names[1:]), dtype="S")
    with pytest.raises(sinr.InvalidInputError, match="not valid UTF-8"):
        read_matrix(tmp_path / "ok.h5ad")


def _save_npz(path: Path, **arrays) -> Path:
    """An .npz holding exactly these arrays (bytes values: a member's raw content)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            if isinstance(array, bytes) and name == "data":
                buffer.write(array)
            else:
                np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=True)
            archive.writestr(f"{name}.npy", buffer.getvalue())
    return path


@pytest.mark.parametrize("arrays, fragment", [
    (dict(format=b"coo", shape=[3, 2], data=[1, 2], row=[0, 0], col=[1, 1]), "same (gene, cell) coordinate twice"),
    (dict(format=b"coo", shape=[3, 2], data=[1, 2], row=[0, 3], col=[1, 1]), "a coordinate lies outside"),
    (dict(format=b"csc", shape=[3, 2], data=[1, 2], indices=[0, 7], indptr=[0, 1, 2]), "gene index lies outside 0..2"),
    (dict(format=b"csc", shape=[3, 2], data=[1, 2], indices=[0, -1], indptr=[0, 1, 2]), "gene index lies outside"),
    (dict(format=b"csr", shape=[3, 2], data=[1, 2], indices=[0, 5], indptr=[0, 2, 2, 2]), "cell index lies outside"),
    (dict(format=b"csc", shape=[3, 2], data=[1, 2], indices=[1, 1], indptr=[0, 2, 2]), "coordinate twice"),
    (dict(format=b"csc", shape=[3, 2], data=[1, 2], indices=[0, 1], indptr=[0, 2, 1]), "not increasing from 0"),
    (dict(format=b"csc", shape=[3, 2], data=np.array([1, 2**63], np.uint64), indices=[0, 1], indptr=[0, 1, 2]),
     "values above 2,147,483,647"),
    (dict(format=b"csc", shape=[3, 2], data=np.array(["a", "b"]), indices=[0, 1], indptr=[0, 1, 2]),
     "values of type <U1 are not counts"),
    (dict(format=b"csc", shape=[3, 2], data=np.array([1, None]), indices=[0, 1], indptr=[0, 1, 2]),
     "holds object items"),
    (dict(format=b"dia", shape=[3, 2], data=[[1, 2]], offsets=[0]), "scipy 'dia' matrix"),
    (dict(format=b"csc", shape=[3, 2, 1], data=[1], indices=[0], indptr=[0, 1, 1]), "shape is not two"),
    (dict(format=b"csc", shape=[2**40, 2], data=[1], indices=[0], indptr=[0, 1, 1]), "genes is outside"),
    (dict(shape=[3, 2], data=[1], indices=[0], indptr=[0, 1, 1]), "holds no 'format' array"),
])
def test_malformed_npz_is_one_clear_error(tmp_path, arrays, fragment):
    path = _save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(sinr.InvalidInputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        sinr.encode(path, tmp_path / "x.sinr", **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_npz_declared_sizes_are_checked_before_allocating(tmp_path):
    """An array header claiming 10**12 items in a few bytes is refused without allocating them."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, dict(descr="<i8", fortran_order=False, shape=(10**12,)))
    path = _save_npz(tmp_path / "huge.npz", format=b"csc", shape=[3, 2], data=header.getvalue() + bytes(64),
                     indices=[0], indptr=[0, 1, 1])
    with pytest.raises(sinr.InvalidInputError, match="declares 1,000,000,000,000 items"):
        read_matrix(path)
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(sinr.InvalidInputError, match="unreadable scipy .npz file"):
        read_matrix(tmp_path / "cut.npz")


def _npz_with_zeros(path: Path, zeros: dict[str, int], **arrays) -> Path:
    """An .npz of these arrays and, for each of `zeros`, a member of that many int64 zeros, deflated
    (1,000 times smaller: what a hostile file declares in a few kB)."""
    _save_npz(path, **arrays)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        for name, count in zeros.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, dict(descr="<i8", fortran_order=False, shape=(count,)))
                for done in range(0, count, 1 << 20):
                    member.write(bytes(8 * min(1 << 20, count - done)))
    return path


@pytest.mark.parametrize("arrays, zeros, fragment", [
    (dict(format=b"csc", shape=[3, 2], indices=[0], indptr=[0, 1, 1]), dict(data=2**24),
     "array 'data' declares 16,777,216 items (134,217,728 bytes) where a 3 x 2 matrix holds at most 6"),
    (dict(format=b"csc", shape=[3000, 20000], data=[1], indptr=[0, 1] + [1] * 19999), dict(indices=2**24),
     "array 'indices' declares 16,777,216 items (134,217,728 bytes) where array 'data' declares 1 items (8 bytes)"),
    (dict(format=b"csr", shape=[3000, 20000], data=[1], indices=[0]), dict(indptr=2**24),
     "array 'indptr' declares 16,777,216 items (134,217,728 bytes) where a 3,000 x 20,000 CSR matrix has 3,001"),
    (dict(format=b"csc", shape=[3000, 20000], indptr=[0, 1] + [1] * 19999), dict(data=2**24, indices=2**24),
     "array 'data' declares 16,777,216 items (134,217,728 bytes) where its index pointers reach at most 1"),
    (dict(format=b"coo", shape=[3000, 20000], data=[1], row=[0]), dict(col=2**24),
     "array 'col' declares 16,777,216 items (134,217,728 bytes) where array 'data' declares 1 items (8 bytes)"),
    (dict(shape=[3, 2], data=[1], indices=[0], indptr=[0, 1, 1]), dict(format=2**24),
     "array 'format' declares 16,777,216 items (134,217,728 bytes) where a format name is one item of at most"),
    (dict(format=b"csc", data=[1], indices=[0], indptr=[0, 1, 1]), dict(shape=2**24), "its shape is not two"),
])
def test_npz_members_larger_than_the_matrix_are_refused_before_inflating(tmp_path, arrays, zeros, fragment):
    """A member of 128 MiB of zeros deflated to 130 kB, more than the other members let the matrix
    hold, is refused by its header: nothing near its size is allocated (it was inflated whole, and a
    2 GiB one took 12 s and 4.2 GB of memory to fail as mismatched arrays)."""
    path = _npz_with_zeros(tmp_path / "bomb.npz", zeros, **arrays)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(sinr.InvalidInputError, match=re.escape(f"{path}: {fragment}")):
            read_matrix(path)
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()


def test_npz_bomb_is_one_error_line_from_the_cli(tmp_path):
    path = _npz_with_zeros(tmp_path / "bomb.npz", dict(data=2**24), format=b"csc", shape=[3, 2], indices=[0],
                           indptr=[0, 1, 1])
    assert_one_error_line(sinr_cli("encode", path, tmp_path / "x.sinr"),
                          f"{path}: array 'data' declares 16,777,216 items (134,217,728 bytes) where a 3 x 2 matrix "
                          "holds at most 6")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.npz"]


def test_npz_arrays_are_checked_against_the_memory_free_before_reading(tmp_path, monkeypatch):
    """Arrays a huge matrix may hold, together more than the memory free: refused before any is read."""
    from scinrcodec import limits
    path = _npz_with_zeros(tmp_path / "big.npz", dict(data=2**20, row=2**20, col=2**20), format=b"coo",
                           shape=[2**31 - 1, 2**31 - 1])
    monkeypatch.setattr(limits, "available_memory", lambda: 20 << 20)
    monkeypatch.setattr(limits, "LARGE_ALLOCATION", 1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(sinr.ResultTooLargeError, match=re.escape(f"{path}: its COO matrix needs 0.0 GiB")):
            read_matrix(path)
        assert tracemalloc.get_traced_memory()[1] < 4 << 20
    finally:
        tracemalloc.stop()


def test_unknown_and_missing_inputs(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(sinr.InvalidInputError, match="unknown input format"):
        read_matrix(tmp_path / "notes.txt")
    with pytest.raises(sinr.InvalidInputError, match="no such file"):
        read_matrix(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(sinr.InvalidInputError, match="holds no matrix.mtx"):
        read_matrix(tmp_path / "empty")
    with pytest.raises(sinr.InvalidInputError, match="already a .sinr file"):
        read_matrix(DATA / "spec_example.sinr")


# ------------------------------------------------------------------------------ fuzz regressions


@needs("atheris")
def test_fuzz_corpus_and_crashers_replay():
    """Every seed and every input the fuzzer once found (tests/fuzz/inputs_corpus) ends in SinrError or
    reads cleanly."""
    from fuzz_inputs import exercise

    files = sorted(CORPUS.iterdir())
    assert len(files) >= 6
    for path in files:
        exercise(path.read_bytes())


@pytest.mark.parametrize("kind", ["external link", "virtual dataset of its own file", "virtual dataset, source gone"])
def test_hdf5_that_reaches_outside_itself_is_refused(tmp_path, kind):
    """An external link or a virtual dataset in an HDF5 input: h5py follows them silently, so a hostile
    file could pull another HDF5 file into the .sinr, a virtual dataset whose source is gone read as
    its fill value (counts in no file), and one mapping its own file crashed the process in HDF5."""
    import shutil

    path = tmp_path / "x.h5"
    shutil.copy(DATA / "pbmc500_cellranger.h5", path)
    with h5py.File(path, "r+") as f:
        data = f["matrix/data"]
        n, dtype = data.shape[0], data.dtype
        if kind == "external link":
            shutil.copy(DATA / "pbmc500_cellranger.h5", tmp_path / "other.h5")
            del f["matrix/data"]
            f["matrix/data"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/matrix/data")
        else:
            source = str(path) if kind.endswith("own file") else str(tmp_path / "gone.h5")
            if kind.endswith("own file"):
                f["matrix/data_copy"] = data[:]
            layout = h5py.VirtualLayout(shape=(n,), dtype=dtype)
            layout[:] = h5py.VirtualSource(source, "matrix/data_copy" if kind.endswith("own file") else "data",
                                           shape=(n,))
            del f["matrix/data"]
            f["matrix"].create_virtual_dataset("data", layout, fillvalue=7)
    for whole in (True, False):
        write = (lambda: sinr.encode_whole(path, tmp_path / "out.sinr", **FAST)) if whole else \
            (lambda: sinr.encode(path, tmp_path / "out.sinr", **FAST))
        with pytest.raises(sinr.InvalidInputError, match="matrix/data is an? (external link|virtual dataset).*reads only "
                                                         "data the file holds itself"):
            write()
    assert not (tmp_path / "out.sinr").exists()


def _zeros_deflated(n_bytes: int) -> bytes:
    """A zlib stream of n_bytes zeros (whole MiB) in about n_bytes / 1,000, made in milliseconds: one
    fully flushed MiB repeated, since each such block starts afresh."""
    compressor, piece = zlib.compressobj(9), bytes(1 << 20)
    first = compressor.compress(piece) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(piece) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()[:-4]  # the last block; the Adler-32 of n zeros is n mod 65521 above 1
    return first + again * ((n_bytes >> 20) - 1) + end + (((n_bytes % 65521) << 16) | 1).to_bytes(4, "big")


# The CLI's exit status and its process's peak memory: VmHWM, the high-water mark of this process's own memory
# map; getrusage's ru_maxrss carries the forking process's peak across exec (a pytest worker's 755 MB).
PEAK_OF_CLI = "import sys\nfrom scinrcodec.cli import main\ncode = main(sys.argv[1:])\n" \
              "print(code, next(int(l.split()[1]) << 10 for l in open('/proc/self/status') if l.startswith('VmHWM:')))"


@pytest.mark.parametrize("name, dataset", [("x.h5", "matrix/data"), ("x.h5ad", "X/indices")])
def test_a_chunk_far_larger_than_its_dataset_is_refused_before_inflating(tmp_path, name, dataset):
    """3 items stored gzip'd in one chunk of 2**28 (h5py's chunks=(2**28,), maxshape=None; a 2 MB
    file): HDF5 inflates a chunk whole to read any item, so encoding the .h5 took 2.1 GB and 2 s and
    succeeded. Refused from the chunk's shape, in the CLI (whole file) and the matrix-only encode."""
    import subprocess

    path = tmp_path / name
    write_matrix(path, CountMatrix(sp.csc_matrix(np.array([[1, 0], [2, 0], [0, 3]]))))
    with h5py.File(path, "r+") as f:
        old = f[dataset]
        values, attrs = old[:], dict(old.attrs)
        del f[dataset]
        ds = f.create_dataset(dataset, shape=values.shape, dtype=values.dtype, chunks=(2**28,), maxshape=(None,),
                              compression="gzip")
        ds.attrs.update(attrs)
        ds.id.write_direct_chunk((0,), _zeros_deflated(2**28 * values.dtype.itemsize))
    assert path.stat().st_size < 3 << 20
    fragment = (f"{path}: /{dataset} stores 3 items ({3 * values.dtype.itemsize} bytes) in a chunk of 268,435,456 "
                f"({2**28 * values.dtype.itemsize:,} bytes), which HDF5 inflates whole to read any of them")
    run = subprocess.run([sys.executable, "-c", PEAK_OF_CLI, "encode", str(path), str(tmp_path / "x.sinr")],
                         capture_output=True, text=True, timeout=300)
    code, peak = map(int, run.stdout.split())
    assert code == 1 and run.stderr.strip() == f"sinr: error: {fragment}", run.stderr
    assert peak < 512 << 20
    with pytest.raises(sinr.InvalidInputError, match=re.escape(fragment)):
        sinr.encode(path, tmp_path / "x.sinr", **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_chunk_larger_than_the_memory_free_is_refused(tmp_path, monkeypatch):
    """A dataset whose every chunk of 2 GiB holds its items, where less is free: HDF5 would allocate a
    chunk to read any item of it."""
    from scinrcodec import limits

    path = tmp_path / "x.h5"
    write_matrix(path, CountMatrix(sp.csc_matrix(np.array([[1, 0], [2, 0], [0, 3]]))))
    with h5py.File(path, "r+") as f:
        f.create_dataset("extra", shape=(2**28,), dtype=np.int64, chunks=(2**28,), compression="gzip")
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 30)
    with pytest.raises(sinr.ResultTooLargeError, match=re.escape(f"{path}: a chunk of /extra needs 2.0 GiB of memory, "
                                                                 "more than the 1.0 GiB free")):
        read_matrix(path)


def test_a_chunk_inflating_past_its_size_is_refused_before_anndata_reads_it(tmp_path):
    """HDF5's deflate filter grows its buffer to whatever a chunk's stream holds before it keeps the
    chunk's part: an .h5ad whose uns array of 3 int64 (one chunk of 24 bytes) stores a stream of
    them and 64 MiB of zeros was read (2 GiB of zeros, a 9 MB file: 2.2 GB and 2.7 s) and encoded;
    it is refused, and an .h5ad written gzip'd by anndata still encodes."""
    path = tmp_path / "x.h5ad"
    adata = anndata.AnnData(sp.csr_matrix(np.array([[1, 0], [2, 0], [0, 3]], dtype=np.float32)),
                            obs=pd.DataFrame({"score": [1.5, 2, 3]}, index=["c0", "c1", "c2"]), uns={"v": np.arange(3)})
    adata.write_h5ad(path, compression="gzip")
    result = sinr_cli("encode", path, tmp_path / "ok.sinr", "--siren", "never", "--quiet")
    assert result.returncode == 0, result.stderr
    stream = zlib.compressobj(1)
    with h5py.File(path, "r+") as f:
        f["uns/v"].id.write_direct_chunk((0,), stream.compress(np.arange(3, dtype=np.int64).tobytes())
                                         + stream.compress(bytes(64 << 20)) + stream.flush())
    assert_one_error_line(sinr_cli("encode", path, tmp_path / "x.sinr"),
                          f"{path}: uns: the chunk at (0,) of /uns/v does not inflate into its 24 bytes")
    assert not (tmp_path / "x.sinr").exists()


def _h5ad_declaring(path: Path, dataset: str, legacy: bool = False) -> Path:
    """An .h5ad of 3 cells x 2 genes (an obs column 'score', var's 'gene_ids', uns['big']) whose
    `dataset` declares 2**28 int64 (2 GiB) stored as nothing: a 26 kB file; `legacy` drops the root's
    encoding, which sends the file to anndata.read_h5ad whole (the way of files anndata < 0.8 wrote)."""
    adata = anndata.AnnData(sp.csr_matrix(np.array([[1, 0], [2, 0], [0, 3]], dtype=np.float32)),
                            obs=pd.DataFrame({"score": [1, 2, 3]}, index=["c0", "c1", "c2"]),
                            var=pd.DataFrame({"gene_ids": [7, 8]}, index=["g0", "g1"]), uns={"big": np.arange(3)})
    adata.write_h5ad(path)
    with h5py.File(path, "r+") as f:
        attrs = dict(f[dataset].attrs)
        del f[dataset]
        f.create_dataset(dataset, shape=(2**28,), dtype=np.int64, chunks=(2**20,), compression="gzip").attrs.update(attrs)
        if legacy:
            del f.attrs["encoding-type"]
    return path


FREE_1_GIB = "from scinrcodec import limits\nlimits.available_memory = lambda: 1 << 30\n"


@pytest.mark.parametrize("dataset, part, legacy", [("obs/score", "obs", False), ("uns/big", "uns", False),
                                                   ("uns/big", "its contents", True)])
def test_whole_h5ad_parts_declaring_more_than_the_memory_free_are_refused_before_reading(tmp_path, dataset, part,
                                                                                         legacy):
    """obs, var and uns of an .h5ad encoded whole are read by anndata, whole: a 26 kB file whose obs
    column declared 2**28 items took 5.6 s and 2.2 GB to fail, one whose uns array did took 4.3 GB and
    was stored. Their datasets' declared sizes are checked against the memory free first."""
    import subprocess

    path = _h5ad_declaring(tmp_path / "x.h5ad", dataset, legacy)
    run = subprocess.run([sys.executable, "-c", FREE_1_GIB + PEAK_OF_CLI, "encode", str(path), str(tmp_path / "x.sinr")],
                         capture_output=True, text=True, timeout=300)
    code, peak = map(int, run.stdout.split())
    assert code == 1 and run.stderr.strip() == (f"sinr: error: {path}: {part} needs 2.0 GiB of memory, more than the "
                                                "1.0 GiB free to this process"), run.stderr
    assert peak < 512 << 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5ad"]


def test_a_var_column_anndata_reads_is_checked_before_reading(tmp_path, monkeypatch):
    """A var column that is not text (read by anndata in the matrix-only encode) declaring 2 GiB."""
    from scinrcodec import limits

    path = _h5ad_declaring(tmp_path / "x.h5ad", "var/gene_ids")
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 30)
    with pytest.raises(sinr.ResultTooLargeError, match=re.escape(f"{path} /var/gene_ids needs 2.0 GiB of memory")):
        read_matrix(path)


def test_an_input_that_is_not_a_regular_file_is_refused_without_waiting(tmp_path):
    """A FIFO no one writes to had blocked the read forever; a pipe (<(cmd)) had been consumed by the
    format check and then called an unknown format."""
    import os

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(sinr.InvalidInputError, match="not a regular file"):
        read_matrix(tmp_path / "fifo")


def test_names_that_cannot_be_names_are_refused_before_they_are_read(tmp_path, monkeypatch):
    """Names whose fixed-length type would take more memory than is free are refused from the type
    (30 names of a 100 MB type had been read whole first); a NUL in a barcodes file is refused as in
    every other input."""
    import shutil

    from scinrcodec import limits

    path = tmp_path / "wide.h5"
    shutil.copy(DATA / "pbmc500_cellranger.h5", path)
    with h5py.File(path, "r+") as f:
        n = f["matrix/barcodes"].shape[0]
        del f["matrix/barcodes"]
        f.create_dataset("matrix/barcodes", shape=(n,), dtype="S100000")
    monkeypatch.setattr(limits, "available_memory", lambda: 50 << 20)  # 587 names of 100 kB: 59 MB
    monkeypatch.setattr(limits, "LARGE_ALLOCATION", 1 << 20)
    with pytest.raises(sinr.ResultTooLargeError, match="names of /matrix/barcodes \\(100,000 bytes each\\)"):
        read_matrix(path)
    monkeypatch.undo()
    folder = tmp_path / "mtx"
    shutil.copytree(DATA / "pbmc4k_v2_soupx_half", folder)
    barcodes = sorted(folder.glob("barcodes.tsv*"))[0]
    lines = (gzip.decompress(barcodes.read_bytes()) if barcodes.suffix == ".gz" else barcodes.read_bytes()).split(b"\n")
    lines[2] = b"AAAC\x00-1"
    content = b"\n".join(lines)
    barcodes.write_bytes(gzip.compress(content) if barcodes.suffix == ".gz" else content)
    with pytest.raises(sinr.InvalidInputError, match="line 3 contains a NUL character"):
        read_matrix(folder)


def test_a_whole_h5ad_whose_x_declares_more_values_than_entries_is_refused_before_reading_them(tmp_path, pbmc):
    """A tiny .h5ad declaring 2**36 values (a chunked dataset never written) had been scanned to the end
    (48 s) to tell whether X holds counts, before its structure was checked."""
    to_anndata(count_matrix(pbmc)).write_h5ad(tmp_path / "x.h5ad")
    with h5py.File(tmp_path / "x.h5ad", "r+") as f:
        del f["X/data"]
        f["X"].create_dataset("data", shape=(2**36,), dtype="f4", chunks=(1 << 20,))
    with pytest.raises(sinr.InvalidInputError, match="/X holds 68,719,476,736 values for"):
        sinr.encode_whole(tmp_path / "x.h5ad", tmp_path / "x.sinr", **FAST)


def test_a_folders_barcodes_are_read_only_as_far_as_its_cells_reach(tmp_path):
    """A gzip bomb for barcodes (a few MB inflating to GBs) beside a matrix of 2 cells had been
    inflated whole (2.9 GB, then 'out of memory'): reading stops past what 2 lines of names can hold."""
    folder = tmp_path / "bomb"
    folder.mkdir()
    (folder / "matrix.mtx").write_text("%%MatrixMarket matrix coordinate integer general\n3 2 1\n1 1 5\n")
    (folder / "features.tsv").write_text("g1\tA\tGene Expression\ng2\tB\tGene Expression\ng3\tC\tGene Expression\n")
    with gzip.open(folder / "barcodes.tsv.gz", "wb", compresslevel=1) as fh:
        fh.write(b"AAAC-1\nAAAG-1\n" + b"\n" * (64 << 20))
    with pytest.raises(sinr.InvalidInputError, match="barcodes.tsv.gz: more than [0-9,]+ bytes, more than its lines"):
        read_matrix(folder)


def test_an_hdf5_input_another_process_writes_is_said_so(tmp_path):
    """An .h5 or .h5ad open for writing by another process (a notebook's backed AnnData, a writer
    still running) holds HDF5's lock on it: that is said, where 'unreadable HDF5 content (... unable
    to lock file, errno = 11 ...)' had read as a damaged file."""
    path = tmp_path / "busy.h5"
    shutil.copy(DATA / "pbmc500_cellranger.h5", path)
    with h5py.File(path, "r+"):
        result = sinr_cli("encode", path, tmp_path / "x.sinr", "--quiet")
    assert_one_error_line(result, f"{path}: another process has it open for writing (it holds HDF5's lock")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy.h5"]


def _failing_flock(tmp_path, code: str) -> Path:
    """A library whose flock() fails with errno `code`, for LD_PRELOAD: a file system's locks played."""
    import errno
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or sys.platform != "linux":
        pytest.skip("needs a C compiler and Linux to make flock() fail")
    (tmp_path / "noflock.c").write_text(
        f"#include <errno.h>\nint flock(int fd, int op) {{ errno = {getattr(errno, code)}; return -1; }}\n")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", tmp_path / "noflock.so", tmp_path / "noflock.c"], check=True)
    return tmp_path / "noflock.so"


def test_an_hdf5_lock_failing_otherwise_is_not_blamed_on_another_process(tmp_path):
    """Only EAGAIN means that another process holds HDF5's lock; a lock failing otherwise (EINVAL, EIO
    from an odd file system) had been said so too, sending the user after a process there is not."""
    library = _failing_flock(tmp_path, "EINVAL")
    result = sinr_cli("encode", DATA / "pbmc500_cellranger.h5", tmp_path / "x.sinr", "--quiet",
                      shell_prefix=f"LD_PRELOAD={library}")
    assert_one_error_line(result, f"{DATA / 'pbmc500_cellranger.h5'}: HDF5 could not lock it to read it (")
    assert "another process" not in result.stderr


@pytest.mark.parametrize("code", ["ENOLCK", "EOPNOTSUPP"])
def test_hdf5_inputs_are_read_where_the_file_system_has_no_locks(tmp_path, code):
    """On a file system without locks (NFS without a lock daemon, some parallel file systems) HDF5's
    lock fails, and every .h5 and .h5ad input had been 'unreadable HDF5 content (... No locks
    available)' unless HDF5_USE_FILE_LOCKING=FALSE was set: they are read without a lock, to the
    same bytes. The file system is played by a flock() that fails so (LD_PRELOAD)."""
    library = _failing_flock(tmp_path, code)
    counts = sp.random(30, 20, density=0.3, format="csr", random_state=0, dtype=np.float32)
    counts.data = np.ceil(counts.data * 9)
    adata = anndata.AnnData(counts)
    adata.layers["counts"] = adata.X.copy()
    adata.write_h5ad(tmp_path / "in.h5ad")
    for source, extra in ((DATA / "pbmc500_cellranger.h5", ()), (tmp_path / "in.h5ad", ()),
                          (tmp_path / "in.h5ad", ("--matrix-only",))):
        locked, unlocked = tmp_path / "locked.sinr", tmp_path / "unlocked.sinr"
        assert sinr_cli("encode", source, unlocked, "--quiet", *extra).returncode == 0
        run = sinr_cli("encode", source, locked, "--quiet", *extra,
                       shell_prefix=f"LD_PRELOAD={library}")
        assert run.returncode == 0, run.stderr
        assert locked.read_bytes() == unlocked.read_bytes()
        locked.unlink()
        unlocked.unlink()
