"""Every input format users have is read with its names; every output format round-trips."""
from __future__ import annotations

import gzip
import shutil

import anndata
import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, FAST
from scinrcodec.demo import demo_data
from scinrcodec.formats import read_matrix, write_matrix


def test_real_cell_ranger_h5_matches_its_mtx():
    h5 = read_matrix(DATA / "pbmc500_cellranger.h5")
    mtx = read_matrix(demo_data())
    assert h5.shape == (50, 587) and (h5.counts != mtx.counts).nnz == 0
    assert h5.gene_ids[:3] == mtx.gene_ids[:3] and h5.gene_names == mtx.gene_names
    assert h5.cell_names == mtx.cell_names and h5.feature_types[0] == "Gene Expression"


@pytest.mark.parametrize("suffix", ["out.h5ad", "out.h5", "out.mtx.gz", "out.mtx", "outdir", "out.npz"])
def test_decode_to_every_format(tmp_path, pbmc, suffix):
    encoded = tmp_path / "x.sinr"
    sinr.encode(pbmc, encoded, **FAST)
    target = tmp_path / suffix
    sinr.decode(encoded, target)
    back = read_matrix(target)
    assert (back.counts != pbmc.counts).nnz == 0
    if suffix not in ("out.npz", "out.mtx.gz", "out.mtx"):
        assert back.cell_names == pbmc.cell_names
        assert back.gene_names == pbmc.gene_names


def test_encode_from_every_input(tmp_path, pbmc):
    inputs = {}
    inputs["mtx_dir"] = DATA / "pbmc4k_v2_soupx_half"
    mtx_file = tmp_path / "matrix.mtx.gz"
    shutil.copy(DATA / "pbmc4k_v2_soupx_half" / "matrix.mtx.gz", mtx_file)
    inputs["mtx_file"] = mtx_file
    plain = tmp_path / "plain" / "matrix.mtx"
    plain.parent.mkdir()
    plain.write_bytes(gzip.decompress(mtx_file.read_bytes()))
    inputs["mtx_plain"] = plain
    for suffix in ("h5ad", "h5", "npz"):
        path = tmp_path / f"in.{suffix}"
        write_matrix(path, pbmc)
        inputs[suffix] = path
    inputs["scipy"] = pbmc.counts.astype(np.float32)
    inputs["anndata"] = anndata.read_h5ad(inputs["h5ad"])
    for name, source in inputs.items():
        out = tmp_path / f"{name}.sinr"
        sinr.encode(source, out, **FAST)
        with sinr.open(out) as f:
            assert (f.to_scipy() != pbmc.counts).nnz == 0, name
            if name in ("mtx_dir", "h5ad", "h5", "anndata"):
                assert f.cell_names == pbmc.cell_names, name


def test_h5ad_layers_and_raw(tmp_path, pbmc):
    adata = sinr.formats.to_anndata(pbmc)
    adata.layers["counts"] = adata.X.copy()
    adata.raw = adata.copy()
    adata.X = adata.X.astype(np.float32) / 2
    path = tmp_path / "layered.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(sinr.InvalidInputError, match="non-integer"):
        sinr.encode(path, tmp_path / "x.sinr", **FAST)
    for layer in ("counts", "raw"):
        out = tmp_path / f"{layer}.sinr"
        sinr.encode(path, out, layer=layer, **FAST)
        assert (sinr.decode(out) != pbmc.counts).nnz == 0
    with pytest.raises(sinr.InvalidInputError, match="no layer"):
        sinr.encode(path, tmp_path / "y.sinr", layer="missing", **FAST)


@pytest.mark.parametrize("bad, message", [
    (sp.csr_matrix(np.array([[1.0, -2.0]])), "negative"),
    (sp.csr_matrix(np.array([[1.5, 2.0]])), "non-integer"),
    (sp.csr_matrix(np.array([[np.nan, 2.0]])), "NaN"),
    (sp.csr_matrix(np.array([[2.0**40]])), "above"),
])
def test_bad_values_are_rejected(tmp_path, bad, message):
    with pytest.raises(sinr.InvalidInputError, match=message):
        sinr.encode(bad, tmp_path / "x.sinr", **FAST)
    assert not (tmp_path / "x.sinr").exists()


def test_unknown_input_format(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(sinr.InvalidInputError, match="unknown input format"):
        sinr.encode(junk, tmp_path / "x.sinr", **FAST)
    with pytest.raises(sinr.InvalidInputError, match="no such file"):
        sinr.encode(tmp_path / "missing", tmp_path / "x.sinr", **FAST)


def test_existing_output_needs_force(tmp_path, pbmc):
    out = tmp_path / "x.sinr"
    out.write_bytes(b"keep me")
    with pytest.raises(sinr.OutputExistsError):
        sinr.encode(pbmc, out, **FAST)
    assert out.read_bytes() == b"keep me"
    sinr.encode(pbmc, out, force=True, **FAST)
    assert (sinr.decode(out) != pbmc.counts).nnz == 0
    assert [p.name for p in tmp_path.iterdir()] == ["x.sinr"]
