"""scverse's ways: read_sinr / write_sinr as read_h5ad / write_h5ad, the dtype policy, a lazy
AnnData with every stored part, names on the matrix object."""
from __future__ import annotations

import re
import shutil
import warnings

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, FAST
from test_anndata import assert_same_anndata, rich_anndata, via_anndata

da = pytest.importorskip("dask.array")
sc = pytest.importorskip("scanpy")


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    a = rich_anndata()
    path = tmp_path_factory.mktemp("scverse") / "rich.sinr"
    sinr.write_sinr(a, path, chunk_cells=32, **FAST)
    return a, path


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "p500.sinr"
    sinr.encode(DATA / "pbmc500_cellranger.h5", path, chunk_cells=100, **FAST)
    return path


def test_write_sinr_then_read_sinr_gives_the_anndata_back(rich):
    a, path = rich
    back = sinr.read_sinr(path)
    assert_same_anndata(via_anndata(a), back)
    assert back.X.dtype == np.float32 and back.layers["counts"].dtype == np.int32
    assert sinr.read_sinr(path, dtype=np.float64).X.dtype == np.float64
    for backed in (False, True):  # X is log-normalised here: integers would truncate it
        with pytest.raises(sinr.InvalidInputError, match="int32 does not hold exactly .it is not a count matrix"):
            sinr.read_sinr(path, dtype=np.int32, backed=backed)


def test_plain_files_read_as_scanpy_reads_10x(plain):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = sc.read_10x_h5(DATA / "pbmc500_cellranger.h5")
    a = sinr.read_sinr(plain)
    assert a.X.dtype == reference.X.dtype == np.float32 and isinstance(a.X, sp.csr_matrix)
    assert list(a.obs_names) == list(reference.obs_names) and list(a.var_names) == list(reference.var_names)
    assert list(a.var["gene_ids"]) == list(reference.var["gene_ids"])
    assert (a.X != reference.X).nnz == 0
    counts = reference.X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x in (a, reference):  # scanpy's standard steps give the same numbers from either reader
            sc.pp.normalize_total(x, target_sum=1e4)
            sc.pp.log1p(x)
            sc.pp.highly_variable_genes(x, n_top_genes=20)
            sc.pp.pca(x, n_comps=5, random_state=0)
    assert list(a.var["highly_variable"]) == list(reference.var["highly_variable"])
    np.testing.assert_array_equal(a.obsm["X_pca"], reference.obsm["X_pca"])
    exact = sinr.read_sinr(plain, dtype=np.int32)
    assert exact.X.dtype == np.int32 and (exact.X != counts).nnz == 0
    assert sinr.read_sinr(plain.read_bytes(), backed=True).X.dtype == np.float32
    for bad in (np.int16, "U4"):
        with pytest.raises(sinr.InvalidInputError, match="cannot hold every count"):
            sinr.read_sinr(plain, dtype=bad)


def test_float32_is_refused_where_it_would_round_a_count(tmp_path):
    counts = sp.csc_matrix(np.array([[2**24 + 1, 0], [3, 1]]))
    sinr.encode(counts, tmp_path / "big.sinr", **FAST)
    with pytest.raises(sinr.InvalidInputError, match="does not hold exactly"):
        sinr.read_sinr(tmp_path / "big.sinr")
    with pytest.raises(sinr.InvalidInputError, match="does not hold exactly"):
        sinr.read_lazy(tmp_path / "big.sinr").X.compute()
    assert sinr.read_sinr(tmp_path / "big.sinr", dtype=np.int32).X[0, 0] == 2**24 + 1
    m = sinr.open(tmp_path / "big.sinr")  # every read that takes a dtype: refused in float32, never rounded
    for read in (lambda: m.to_scipy(dtype=np.float32), lambda: m.to_scipy("csc", dtype=np.float32),
                 lambda: m.cells_block(0, 2, np.float32), lambda: m.T.to_scipy(dtype=np.float32),
                 lambda: next(m.iter_cells())):
        with pytest.raises(sinr.InvalidInputError, match="does not hold exactly"):
            read()
    assert m.to_scipy(dtype=np.float64)[0, 0] == next(m.iter_cells(dtype=np.int32, shuffle=False)).X[0, 0] == 2**24 + 1
    for bad in (np.uint8, np.int8, np.int16, np.float16, object, "U4", "float17"):  # would wrap, or no sparse type
        for read in (lambda: m.to_scipy(dtype=bad), lambda: m.to_scipy("csc", dtype=bad),
                     lambda: m.cells_block(0, 0, bad), lambda: m.chunks_block([0], bad)):
            with pytest.raises(sinr.InvalidInputError, match="cannot hold every count|not a numpy type"):
                read()
    lazy = sinr.read_lazy(tmp_path / "big.sinr", dtype=np.int32)  # squares in float64, not int32
    np.testing.assert_allclose(sinr.reduce_cells(lazy.X, "var", 0).compute(), counts.T.toarray().var(axis=0))


def test_float32_counts_past_2_24_that_float32_holds_read_back_in_it(tmp_path):
    """2**24 and 3e7 are float32 numbers: an AnnData of float32 holding them writes and reads back
    in float32 (the check looks at the counts, not at a bound), as a matrix of them reads in float32."""
    x = sp.csr_matrix(np.array([[2**24, 0, 1], [0, 3e7, 2]], dtype=np.float32))
    sinr.write_sinr(anndata.AnnData(x), tmp_path / "f32.sinr", **FAST)
    back = sinr.read_sinr(tmp_path / "f32.sinr")
    assert back.X.dtype == np.float32 and (back.X != x).nnz == 0
    assert (sinr.read_lazy(tmp_path / "f32.sinr").X.compute() != x).nnz == 0
    assert (next(sinr.open(tmp_path / "f32.sinr").iter_cells(shuffle=False, batch_size=2)).X != x).nnz == 0
    sinr.encode(x.T.astype(np.int64), tmp_path / "m.sinr", **FAST)
    assert (sinr.open(tmp_path / "m.sinr").to_scipy(dtype=np.float32) != x.T).nnz == 0


def test_write_sinr_of_one_matrix_and_its_hint(rich, tmp_path):
    a, _ = rich
    sinr.write_sinr(a, tmp_path / "counts.sinr", layer="counts", matrix_only=True, **FAST)
    back = sinr.read_sinr(tmp_path / "counts.sinr", dtype=np.int32)
    assert (back.X != a.layers["counts"]).nnz == 0 and list(back.obs_names) == list(a.obs_names)
    with pytest.raises(sinr.InvalidInputError, match="--layer counts"):
        sinr.write_sinr(a, tmp_path / "x.sinr", matrix_only=True, **FAST)
    with pytest.raises(sinr.InvalidInputError, match="takes an AnnData"):
        sinr.write_sinr(a.X, tmp_path / "x.sinr")
    with pytest.raises(sinr.OutputExistsError):
        sinr.write_sinr(a, tmp_path / "counts.sinr", layer="counts", matrix_only=True, **FAST)


def test_lazy_anndata_holds_every_stored_part(rich):
    a, path = rich
    eager = sinr.read_sinr(path)
    lazy = sinr.read_lazy(path)
    assert set(lazy.obsp) == set(a.obsp) and set(lazy.varp) == set(a.varp) and set(lazy.obsm) == set(a.obsm)
    assert set(lazy.layers) == set(a.layers) and isinstance(lazy.layers["counts"], da.Array)
    assert not isinstance(lazy.layers["scaled"], da.Array)  # not counts: stored by anndata, loaded
    assert lazy.raw is not None and isinstance(lazy.raw.X, da.Array) and lazy.raw.X.dtype == a.raw.X.dtype
    assert (lazy.raw.X.compute() != eager.raw.X).nnz == 0
    pd.testing.assert_frame_equal(lazy.raw.var, eager.raw.var)
    assert (lazy.obsp["connectivities"] != eager.obsp["connectivities"]).nnz == 0
    assert (lazy.X != eager.X).nnz == 0  # the normalised X, stored as it was
    for key in ("counts", "spliced", "unspliced"):  # unspliced is uint16, decoded in int32 and cast
        block = lazy.layers[key].compute()
        assert (block != eager.layers[key]).nnz == 0 and block.dtype == eager.layers[key].dtype == a.layers[key].dtype


def test_a_lazy_anndata_and_a_subset_of_it_are_written_without_loading_it(rich, tmp_path):
    """write_sinr of a lazy AnnData (its count matrices dask arrays of sparse blocks), of a view of
    some of its cells, and of its X alone: each count matrix encoded a block of rows at a time, the
    same counts as the eager AnnData; a dask array that is not counts is stored as it is."""
    a, path = rich
    eager = sinr.read_sinr(path)
    lazy = sinr.read_lazy(path)
    sinr.write_sinr(lazy, tmp_path / "all.sinr", **FAST)
    back = sinr.read_sinr(tmp_path / "all.sinr")
    for key in ("counts", "spliced", "unspliced"):
        assert (back.layers[key] != eager.layers[key]).nnz == 0 and back.layers[key].dtype == eager.layers[key].dtype
    assert (back.raw.X != eager.raw.X).nnz == 0
    with sinr.open(tmp_path / "all.sinr") as m:
        assert m.name == "layers/counts"  # counts, not a copy of the normalised X
    for rows in (7, 50):  # the file's chunks are the encoder's, whatever the array's row blocks: the same bytes
        x = lazy.layers["counts"].rechunk((rows, -1))
        sinr.write_sinr(anndata.AnnData(X=x, obs=lazy.obs, var=lazy.var), tmp_path / f"r{rows}.sinr",
                        matrix_only=True, chunk_cells=32, **FAST)
    sinr.write_sinr(anndata.AnnData(X=eager.layers["counts"], obs=eager.obs, var=eager.var), tmp_path / "e.sinr",
                    matrix_only=True, chunk_cells=32, **FAST)
    assert (tmp_path / "r7.sinr").read_bytes() == (tmp_path / "r50.sinr").read_bytes() == (tmp_path / "e.sinr").read_bytes()
    cells = list(eager.obs_names[::3])
    sinr.write_sinr(lazy[cells, :], tmp_path / "some.sinr", layer="counts", matrix_only=True, **FAST)
    with sinr.open(tmp_path / "some.sinr") as m:
        assert m.cell_names == cells and (m.T.to_scipy() != eager[cells].layers["counts"]).nnz == 0
    dense = anndata.AnnData(X=da.from_array(eager.layers["counts"][:40].toarray(), chunks=(16, -1)),
                            layers={"log": da.from_array(np.log1p(eager.layers["counts"][:40].toarray()), chunks=(16, -1))})
    sinr.write_sinr(dense, tmp_path / "dense.sinr", **FAST)
    back = sinr.read_sinr(tmp_path / "dense.sinr")
    assert np.array_equal(back.X, dense.X.compute()) and np.array_equal(back.layers["log"], dense.layers["log"].compute())
    with sinr.open(tmp_path / "dense.sinr") as m:
        assert m.matrix_names == ["X"]  # the log layer is not counts: stored by anndata


def test_a_lazy_anndata_is_not_written_onto_the_file_it_reads(rich, tmp_path):
    """A lazy AnnData (or a view of one, or an AnnData made of its arrays) written onto its own
    .sinr file is refused, even with force, as `sinr encode x.sinr x.sinr` is: it had replaced the
    file it was still reading (80 cells became 10)."""
    _, path = rich
    own = tmp_path / "own.sinr"
    shutil.copyfile(path, own)
    before = own.read_bytes()
    lazy = sinr.read_lazy(own)
    for write in (lambda: sinr.write_sinr(lazy[:10], own, force=True, **FAST),
                  lambda: sinr.write_sinr(anndata.AnnData(X=lazy.layers["counts"][:5]), own, force=True,
                                          matrix_only=True, **FAST)):
        with pytest.raises(sinr.InvalidInputError, match="the output is the input"):
            write()
    assert own.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["own.sinr"]
    sinr.write_sinr(lazy[:10], tmp_path / "other.sinr", **FAST)  # elsewhere: written
    assert sinr.read_sinr(tmp_path / "other.sinr").n_obs == 10


def test_name_indexes_are_built_once(plain, monkeypatch):
    """m.obs_names and m.var_names made a new pandas Index at every call, and a lookup in it a new
    hash table: `m.obs_names.get_loc(name)` in a loop took 4.4 ms a call at 55,893 cells, m.var_names[i]
    0.65 ms (a list's lookup: 0.1 us). Each is now built once and each call gets a view of it (its
    hash table shared); a name set on one view is that view's alone."""
    built = []
    real = pd.Index

    def spy(*args, **kwargs):
        built.append(1)
        return real(*args, **kwargs)

    with sinr.open(plain) as m:
        cells, genes = m.cell_names, m.gene_names
        monkeypatch.setattr(pd, "Index", spy)
        assert [m.obs_names.get_loc(name) for name in cells[:5]] == [0, 1, 2, 3, 4]
        assert [m.T.var_names[i] for i in range(3)] == genes[:3] and genes[4] in m.var_names
        assert len(built) == 2
        named = m.obs_names
        named.name = "barcode"
        assert m.obs_names.name is None and list(m.obs_names) == cells
        with pytest.raises(ValueError, match="read-only"):  # an edit in place had renamed the cell in every view
            m.obs_names.to_numpy()[0] = "renamed"
        assert m.obs_names[0] == cells[0] and m.obs_names.get_loc(cells[0]) == 0


def test_names_and_orientation_of_the_matrix_object(plain):
    a = sinr.read_sinr(plain, dtype=np.int64)
    with sinr.open(plain) as m:
        assert (m.n_obs, m.n_vars) == a.shape and m.T.shape == a.shape
        assert m.obs_names.equals(a.obs_names) and m.var_names.equals(a.var_names)
        genes, cells = list(a.var_names[[3, 7, 3]]), list(a.obs_names[[0, 5, 9]])
        assert (m[genes, :] != a[:, genes].X.T).nnz == 0
        assert (m[pd.Index(genes), cells] != a[cells, genes].X.T).nnz == 0
        assert (m.T[cells, genes] != a[cells, genes].X).nnz == 0 and isinstance(m.T[cells, genes], sp.csr_matrix)
        assert m.T[cells[1], genes[0]] == m[genes[0], cells[1]] == a[cells[1], genes[0]].X[0, 0]
        ids = list(a.var["gene_ids"][[3, 7]])
        assert (m[ids, 2:9] != a[2:9, [3, 7]].X.T).nnz == 0  # gene ids work as names do
        with pytest.raises(sinr.SinrKeyError, match="no gene named 'NOPE', 'X2'"):
            m[["NOPE", genes[0], "X2"], :]
        with pytest.raises(KeyError, match="no cell named 'ZZZ'"):
            m.T[["ZZZ"], :]
        with pytest.raises(sinr.SinrIndexError, match="mixes names"):
            m[[genes[0], 3], :]
        assert (m.T.to_scipy() != a.X).nnz == 0 and m.T.T is m
        assert m.T.to_scipy().format == "csr" and (m.T.to_scipy("csc", np.float32) != a.X).nnz == 0
        assert m.T.to_scipy("csc").format == "csc"


def test_keys_read_as_numpy_reads_them(plain):
    """One key indexes the first axis, an Ellipsis stands for the axes left out (numpy, scipy and
    AnnData's X[..., genes]); a float or bool where an index belongs is numpy's IndexError."""
    a = sinr.read_sinr(plain, dtype=np.int64)
    x = a.X.T.tocsr()  # genes x cells, as the matrix
    with sinr.open(plain) as m:
        for key in ((), 3, (3,), (slice(2, 6),), ..., (...,), (..., 4), (4, ...), ([1, 5], ...), (2, ..., 4)):
            got, want = m[key], x[key]
            assert np.array_equal(np.asarray(got.toarray() if sp.issparse(got) else got),
                                  np.asarray(want.toarray() if sp.issparse(want) else want)), key
        assert (m.T[..., [3, 7]] != a[:, [3, 7]].X).nnz == 0 and (m.T[5] != a[5].X).nnz == 0
        for key, match in (((..., ...), "single ellipsis"), ((1, 2, 3), "too many indices")):
            with pytest.raises(sinr.SinrIndexError, match=match):
                m[key]
        with pytest.raises(sinr.SinrIndexError, match=f"gene index {m.shape[0] + 4} out of range"):
            m[[0, m.shape[0] + 4, 1], :]
        for read in (lambda: m.gene(1.0), lambda: m.cell(np.True_), lambda: m.get(0, 2.0)):
            with pytest.raises(IndexError, match="must be an integer index or a name"):
                read()


def test_a_name_several_genes_or_cells_share_is_refused_naming_them(tmp_path):
    """A symbol two genes have (visium's Nnt) or a repeated barcode picks neither silently: the
    error names the genes' ids (or the cells' indices); an id, or a name only one has, still works."""
    counts = sp.csc_matrix(np.array([[0, 1, 0], [2, 0, 3], [0, 4, 5]]))
    source = sinr.CountMatrix(counts, gene_ids=["G1", "G2", "G3"], gene_names=["Nnt", "Nnt", "Actb"],
                              cell_names=["a", "b", "a"])
    sinr.encode(source, tmp_path / "dup.sinr", **FAST)
    with sinr.open(tmp_path / "dup.sinr") as m:
        for read in (lambda: m.gene("Nnt"), lambda: m[["Actb", "Nnt"], :], lambda: m.get("Nnt", 0)):
            with pytest.raises(sinr.SinrKeyError, match="2 genes are named 'Nnt' \\(ids 'G1', 'G2'\\)"):
                read()
        with pytest.raises(sinr.SinrKeyError, match="2 cells are named 'a' \\(indices 0, 2\\)"):
            m.cell("a")
        assert list(m.gene("G2")) == [2, 0, 3] and list(m.gene("Actb")) == [0, 4, 5] and list(m.cell("b")) == [1, 0, 4]


def test_string_columns_are_stored_as_h5ad_stores_them(rich, tmp_path):
    """Columns of strings become categoricals where write_h5ad makes them so (anndata's rule: a
    repeated or a missing value; strings and None are what its element writer refuses as such),
    never in the caller's object, in a file of its own and where an outer concat leaves cells
    without one; a column of distinct strings stays strings."""
    a = rich[0][:, :20].copy()
    a.obs = pd.DataFrame({"label": ["T" if i % 3 else None for i in range(a.n_obs)],
                          "kind": ["B" if i % 2 else "T" for i in range(a.n_obs)],
                          "id": [f"cell{i}" for i in range(a.n_obs)]}, index=a.obs_names)
    a.var["symbol"] = ["MT" if i < 3 else f"g{i}" for i in range(a.n_vars)]
    before = (a.obs.copy(), a.var.copy())
    sinr.write_sinr(a, tmp_path / "s.sinr", **FAST)
    pd.testing.assert_frame_equal(a.obs, before[0])
    pd.testing.assert_frame_equal(a.var, before[1])
    a.copy().write_h5ad(tmp_path / "s.h5ad")  # a copy: write_h5ad makes the categoricals in place
    ours, theirs = sinr.read_sinr(tmp_path / "s.sinr"), anndata.read_h5ad(tmp_path / "s.h5ad")
    pd.testing.assert_frame_equal(theirs.obs, ours.obs)
    pd.testing.assert_frame_equal(theirs.var, ours.var)
    assert ours.obs["kind"].dtype == "category" and ours.obs["id"].dtype == object
    # an .h5ad that holds string columns (convert_strings_to_categoricals=False, or another tool) is
    # encoded as it is: decoded, every column is what the file held
    plain = a.copy()
    plain.obs = plain.obs.drop(columns="label")  # None in strings: what anndata's writer refuses as such
    plain.write_h5ad(tmp_path / "strings.h5ad", convert_strings_to_categoricals=False)
    sinr.encode_whole(tmp_path / "strings.h5ad", tmp_path / "strings.sinr", **FAST)
    sinr.decode(tmp_path / "strings.sinr", tmp_path / "back.h5ad")
    held, back = anndata.read_h5ad(tmp_path / "strings.h5ad"), anndata.read_h5ad(tmp_path / "back.h5ad")
    assert held.obs["kind"].dtype == object and held.var["symbol"].dtype == object
    pd.testing.assert_frame_equal(held.obs, back.obs)
    pd.testing.assert_frame_equal(held.var, back.var)
    b = a[:10].copy()
    b.obs = pd.DataFrame({"note": "x"}, index=[f"{n}-b" for n in b.obs_names])
    sinr.write_sinr(b, tmp_path / "b.sinr", **FAST)
    sinr.concat([tmp_path / "b.sinr", tmp_path / "s.sinr"], tmp_path / "bs.sinr", join="outer")
    notes = sinr.read_sinr(tmp_path / "bs.sinr").obs["note"]
    assert notes.dtype == "category" and notes.isna().sum() == a.n_obs and (notes[:10] == "x").all()
    for obs, name in ((pd.DataFrame({0: ["x", None] * (a.n_obs // 2)}), "obs/0"),  # what anndata refuses is
                      (pd.DataFrame(np.ones((a.n_obs, 2)), columns=["d", "d"]), "obs/d")):  # still named
        b = a.copy()
        b.obs = obs.set_axis(a.obs_names)
        with pytest.raises(sinr.InvalidInputError, match=f"{name}: anndata cannot store"):
            sinr.write_sinr(b, tmp_path / "no.sinr", **FAST)


def test_the_matrix_names_its_axes_as_to_anndata_does(rich, tmp_path):
    """obs_names and var_names of an open whole-AnnData file are to_anndata's, index names included
    (raw.X's genes are raw.var's, whose index here has no name: the stored var's does not name it)."""
    a = rich[0][:30, :20].copy()
    a.raw = anndata.AnnData(a.layers["counts"], obs=a.obs, var=pd.DataFrame(index=list(a.var_names)))
    a.obs.index.name, a.var.index.name = "barcode", "symbol"
    sinr.write_sinr(a, tmp_path / "x.sinr", **FAST)
    with sinr.open(tmp_path / "x.sinr") as m:
        back = m.to_anndata()
        assert m.obs_names.identical(back.obs_names) and m.var_names.identical(back.var_names)
        assert (m.obs_names.name, m.var_names.name) == ("barcode", "symbol")
        raw = m.matrix("raw/X")
        assert raw.obs_names.identical(back.obs_names) and raw.var_names.identical(back.raw.var_names)


def test_layers_come_back_in_the_order_read_h5ad_gives(rich, tmp_path):
    """Layers come back by key, as read_h5ad and read_zarr list them (and as this reader lists obsm
    and uns), whatever order the AnnData written had them in: count layers and others alike."""
    a = rich[0][:30, :20].copy()
    counts = a.layers["counts"]
    a.layers.clear()
    for key, value in (("z_norm", counts * 0.5), ("b_counts", counts), ("a_norm", counts * 0.25)):
        a.layers[key] = value
    sinr.write_sinr(a, tmp_path / "x.sinr", **FAST)
    a.write_h5ad(tmp_path / "x.h5ad")
    expected = list(anndata.read_h5ad(tmp_path / "x.h5ad").layers)
    assert expected == ["a_norm", "b_counts", "z_norm"]
    assert list(sinr.read_sinr(tmp_path / "x.sinr").layers) == expected
    assert list(sinr.read_lazy(tmp_path / "x.sinr").layers) == expected


def test_keys_hdf5_cannot_name_are_refused_and_files_holding_them_read_as_corrupt(rich, tmp_path, monkeypatch):
    """'' and '.' name the HDF5 group itself and a NUL ends a name: anndata's writer takes such keys
    and its reader then fails or gives another key, so write_sinr refuses them in one line (naming
    the --drop where one can leave the key out); a file that holds one all the same (written before
    this check) reads as corrupt in one line, not as a traceback."""
    from scinrcodec.wholefile import images, plan

    small = rich[0][:30, :20].copy()
    cases = {"obs ''": (lambda a: a.obs.__setitem__("", 1), "obs: column '' names its group"),
             "layers ''": (lambda a: a.layers.__setitem__("", a.X * 0.5), "layers: key '' names its group"),
             "uns '.'": (lambda a: a.uns.__setitem__(".", 1), "uns: key '.' names .* or pass --drop uns/[.]"),
             "nested uns NUL": (lambda a: a.uns.__setitem__("x", {"a\0b": 1}), "uns/x: key 'a.x00b' holds a NUL"),
             "obsm ''": (lambda a: a.obsm.__setitem__("", np.zeros((30, 2))), "obsm: key '' names its group"),
             "obsm frame '.'": (lambda a: a.obsm.__setitem__("f", pd.DataFrame({".": np.ones(30)}, index=a.obs_names)),
                                "obsm/f: column '.' names its group")}
    for name, (spoil, message) in cases.items():
        a = small.copy()
        spoil(a)
        with pytest.raises(sinr.InvalidInputError, match=message) as error:
            sinr.write_sinr(a, tmp_path / "bad.sinr", **FAST)
        assert "\n" not in str(error.value) and not (tmp_path / "bad.sinr").exists(), name
    a = small.copy()
    a.uns["."] = 1
    a.obsm["z"] = np.ones((30, 1))
    sinr.write_sinr(a, tmp_path / "dropped.sinr", drop="uns/.", **FAST)  # one path as a string, as --drop takes it
    back = sinr.read_sinr(tmp_path / "dropped.sinr")
    assert "." not in back.uns and list(back.obsm) == [*small.obsm, "z"]
    monkeypatch.setattr(images, "key_problem", lambda name, column=False: None)  # the writer before the check
    monkeypatch.setattr(plan, "key_problem", lambda name, column=False: None)
    for (name, (spoil, _)), part in zip(list(cases.items())[:3], ("obs", "layers", "uns")):
        a = small.copy()
        spoil(a)
        sinr.write_sinr(a, tmp_path / f"{part}.sinr", **FAST)
        with pytest.raises(sinr.CorruptFileError, match=f"section 'anndata.{part}' holds a .* as {part}, which must "
                                                        "be a (data frame|mapping)") as error:
            sinr.read_sinr(tmp_path / f"{part}.sinr")
        assert "\n" not in str(error.value), name


def test_what_would_not_read_back_or_combine_is_refused_in_one_line(rich, tmp_path):
    """A key with '/' (HDF5 makes nested groups of it, which read back as something else) is refused
    at write time; concat names a gene named twice, a misspelt merge rule, a count matrix one file
    lacks, and what anndata.concat itself refuses, each as a typed one-line error."""
    small = rich[0][:30, :20].copy()
    for part, bad in (("obsm", {"a/b": np.ones((30, 2))}), ("layers", {"c/d": small.layers["counts"]}),
                      ("uns", {"x": {"a/b": 1}})):
        a = small.copy()
        getattr(a, part).update(bad)
        with pytest.raises(sinr.InvalidInputError, match="'/'") as error:
            sinr.write_sinr(a, tmp_path / "slash.sinr", **FAST)
        assert "\n" not in str(error.value) and not (tmp_path / "slash.sinr").exists()
    a = small.copy()  # an index named as a column of other values: write_h5ad refuses it, so must we
    a.var["gene_ids"], a.var.index.name = [f"G{i}" for i in range(a.n_vars)], "gene_ids"
    with pytest.raises(sinr.InvalidInputError, match="var: its index is named 'gene_ids', as a column"):
        sinr.write_sinr(a, tmp_path / "clash.sinr", **FAST)
    a.var["gene_ids"] = pd.Categorical(a.var_names)  # the same values of another type: anndata refuses it too
    with pytest.raises(sinr.InvalidInputError, match="var: its index is named 'gene_ids', as a column"):
        sinr.write_sinr(a, tmp_path / "clash.sinr", **FAST)
    a.var["gene_ids"] = a.var_names  # the same values: anndata stores it
    sinr.write_sinr(a, tmp_path / "same.sinr", **FAST)
    sinr.decode(tmp_path / "same.sinr", tmp_path / "same.h5ad")
    assert sinr.read_sinr(tmp_path / "same.sinr").var.index.name == "gene_ids"
    a = small.copy()
    a.obsm["a/b"] = np.ones((30, 2))
    sinr.write_sinr(a, tmp_path / "dropped.sinr", drop=["obsm/a/b"], **FAST)
    assert list(sinr.read_sinr(tmp_path / "dropped.sinr").obsm) == list(small.obsm)
    twice = small.copy()
    twice.var_names = [small.var_names[0]] + list(small.var_names[:-1])
    other = small.copy()
    other.obs_names = [f"{n}-2" for n in small.obs_names]
    del other.layers["spliced"]
    for name, adata in (("twice", twice), ("a", small), ("b", other)):
        sinr.write_sinr(adata, tmp_path / f"{name}.sinr", **FAST)
    cases = [(["twice", "b"], {}, f"twice.sinr: gene {small.var_names[0]!r} is named twice in var"),
             (["a", "b"], {"merge": "firts"}, "merge must be one of same, unique, first, only or None, not 'firts'"),
             (["a", "b"], {"join": "outer"}, "layers/spliced: a count matrix of .*a.sinr that .*b.sinr lacks")]
    for names, options, message in cases:
        with pytest.raises(sinr.InvalidInputError, match=message):
            sinr.concat([tmp_path / f"{n}.sinr" for n in names], tmp_path / "out.sinr", **options)
    sinr.concat([tmp_path / "a.sinr", tmp_path / "b.sinr"], tmp_path / "out.sinr")  # inner: spliced left out
    assert "spliced" not in sinr.read_sinr(tmp_path / "out.sinr").layers


def concat_as_anndata_does(rich, b, tmp_path):
    """The rich file and `b` written beside it, combined by sinr.concat with a label, keys, unique
    names and uns merged; the output (checked equal to anndata.concat's) and what anndata made."""
    a, path = rich
    other = tmp_path / "b.sinr"
    sinr.write_sinr(b, other, chunk_cells=32, **FAST)
    out = tmp_path / "ab.sinr"
    sinr.concat([path, other], out, label="sample", keys=["A", "B"], index_unique="-", uns_merge="same")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = anndata.concat([via_anndata(a), via_anndata(b)], label="sample", keys=["A", "B"],
                                  index_unique="-", uns_merge="same")
    assert_same_anndata(expected, sinr.read_sinr(out))
    return out, expected


def test_whole_anndata_files_concat_and_subset_as_anndata_does(rich, tmp_path):
    a, path = rich
    out, _ = concat_as_anndata_does(rich, a[:, 10:].copy(), tmp_path)
    with sinr.open(out) as m:
        assert m.name == "layers/counts" and m.n_chunks == 6  # each file's cells in their own chunks
    b = a[:, 10:].copy()
    b.layers["counts"] = b.layers["counts"].tocsc()  # csc or dense first, csr after: compressed rows, as
    b.layers["spliced"] = b.layers["spliced"].toarray()  # anndata.concat gives them
    sinr.write_sinr(b, tmp_path / "mixed.sinr", **FAST)
    sinr.concat([tmp_path / "mixed.sinr", path], tmp_path / "mixed_a.sinr", index_unique="-")
    back = sinr.read_sinr(tmp_path / "mixed_a.sinr")
    assert type(back.layers["counts"]) is type(back.layers["spliced"]) is sp.csr_matrix
    cells, genes = list(a.obs_names[[40, 3, 17]]), list(a.var_names[5:25])
    sinr.subset(path, tmp_path / "cut.sinr", cells=cells, genes=genes)
    assert_same_anndata(via_anndata(a[cells, genes].copy()), sinr.read_sinr(tmp_path / "cut.sinr"))


def test_whole_anndata_files_that_keep_their_genes_concat_by_copying_every_count_matrix(rich, tmp_path):
    """Files whose genes all stay (here the same genes in another order): X's counts, the count
    layers and raw each become a matrix of two segments, their chunks copied, cells renamed."""
    out, expected = concat_as_anndata_does(rich, rich[0][:, ::-1].copy(), tmp_path)
    with sinr.open(out) as m:
        names = m.matrix_names
        assert len(names) >= 2 and all(m.matrix(n).n_segments == 2 for n in names)
        assert m.cell_names == list(expected.obs_names)
        m.verify()


def _compression(path, dataset: str):
    import h5py

    with h5py.File(path, "r") as f:
        return f[dataset].compression, f[dataset].compression_opts


def test_decode_writes_h5ad_compressed_as_its_input_was(rich, plain, tmp_path):
    from conftest import assert_one_error_line, sinr_cli

    a, _ = rich
    a.write_h5ad(tmp_path / "in.h5ad", compression="gzip", compression_opts=6)
    sinr.encode_whole(tmp_path / "in.h5ad", tmp_path / "in.sinr", **FAST)
    sinr.decode(tmp_path / "in.sinr", tmp_path / "auto.h5ad")
    assert _compression(tmp_path / "auto.h5ad", "layers/counts/data") == ("gzip", 6)
    assert_same_anndata(anndata.read_h5ad(tmp_path / "in.h5ad"), anndata.read_h5ad(tmp_path / "auto.h5ad"))
    sinr.decode(tmp_path / "in.sinr", tmp_path / "none.h5ad", compression="none", dtype=np.float64)
    assert _compression(tmp_path / "none.h5ad", "layers/counts/data") == (None, None)
    assert anndata.read_h5ad(tmp_path / "none.h5ad").X.dtype == np.float64
    sinr.decode(plain, tmp_path / "plain.h5ad")
    assert _compression(tmp_path / "plain.h5ad", "X/data")[0] == "gzip"
    import h5py

    with h5py.File(tmp_path / "plain.h5ad") as f, h5py.File(tmp_path / "auto.h5ad") as g:
        assert "raw" not in f and "raw" in g  # no raw: no 'null' element, which anndata 0.10 cannot read
    assert anndata.read_h5ad(tmp_path / "plain.h5ad").X.dtype == np.float32
    run = sinr_cli("decode", plain, tmp_path / "int.h5ad", "--dtype", "int32", "--compression", "lzf")
    assert run.returncode == 0, run.stderr
    assert _compression(tmp_path / "int.h5ad", "X/data")[0] == "lzf"
    assert anndata.read_h5ad(tmp_path / "int.h5ad").X.dtype == np.int32
    assert_one_error_line(sinr_cli("encode", tmp_path / "in.h5ad", tmp_path / "x.sinr", "--matrix-only"),
                          "--layer counts")


def test_decode_and_get_take_one_matrix_by_name(rich, tmp_path):
    """A file of several matrices: --matrix decodes one, alone with its names, to any output (an
    .h5ad of it too); without it a one-matrix output says which matrix it holds."""
    from conftest import assert_one_error_line, sinr_cli

    a, path = rich
    with sinr.open(path) as m:
        default, names = m.name, m.matrix_names
    assert len(names) > 1 and "raw/X" in names and "layers/counts" in names
    run = sinr_cli("decode", path, tmp_path / "d.npz")
    assert run.returncode == 0 and f"(npz, matrix {default})" in run.stdout, run.stderr
    run = sinr_cli("decode", path, tmp_path / "raw.npz", "--matrix", "raw/X")
    assert run.returncode == 0 and "(npz, matrix raw/X)" in run.stdout, run.stderr
    with sinr.open(path, matrix="raw/X") as raw:
        assert (sp.load_npz(tmp_path / "raw.npz") != raw.to_scipy()).nnz == 0
    run = sinr_cli("decode", path, tmp_path / "counts.h5ad", "--matrix", "layers/counts")
    assert run.returncode == 0 and "matrix layers/counts" in run.stdout, run.stderr
    counts = anndata.read_h5ad(tmp_path / "counts.h5ad")
    assert not counts.layers and counts.raw is None and list(counts.obs_names) == list(a.obs_names)
    assert (sp.csr_matrix(counts.X) != sp.csr_matrix(a.layers["counts"])).nnz == 0
    whole = sinr_cli("decode", path, tmp_path / "whole.h5ad")
    assert whole.returncode == 0 and "matrix" not in whole.stdout  # the whole AnnData: every matrix
    i, j = np.argwhere(a.layers["counts"].toarray())[0]
    run = sinr_cli("get", path, f"#{j}", f"#{i}", "--matrix", "layers/counts")
    assert run.returncode == 0 and int(run.stdout) == a.layers["counts"][i, j], run.stderr
    assert_one_error_line(sinr_cli("decode", path, tmp_path / "x.npz", "--matrix", "layers/none"), "no matrix named")


def test_info_tells_the_matrix_from_the_other_parts(rich, plain):
    from scinrcodec.wholefile.describe import describe_contents
    from scinrcodec.report import describe, size_by_part

    _, path = rich
    with sinr.open(path) as m:
        parts = size_by_part(m)
        assert sum(parts.values()) == m.file_size
        assert parts["AnnData parts"] > parts["other matrices"] > 0 and parts["headers"] < 0.02 * m.file_size
        text = describe(m) + describe_contents(m)
    for fragment in ("this matrix", "AnnData parts", "bits/nonzero covers matrix 'layers/counts' alone",
                     "layers/spliced", "bits/nonzero  from"):
        assert fragment in text
    with sinr.open(plain) as m:
        assert set(size_by_part(m)) == {"bitmap", "values", "names", "permutations", "scaling metadata",
                                        "chunk index", "headers"}


def test_names_are_stored_once(plain, tmp_path):
    a = sinr.read_sinr(plain, dtype=np.int32)
    a.var = a.var[["feature_types", "gene_ids"]]  # gene_ids not first: its place comes back
    a.var.index.name = "symbol"
    a.obs["n"] = np.arange(a.n_obs)
    sinr.write_sinr(a, tmp_path / "whole.sinr", **FAST)
    with sinr.open(tmp_path / "whole.sinr") as m:
        assert m.contents.raw["names_in"] == {"obs": {"matrix": "X", "index_name": None},
                                             "var": {"matrix": "X", "index_name": "symbol", "gene_ids_at": 1}}
        for part, name in (("var", a.var_names[3]), ("var", a.var["gene_ids"].iloc[3]), ("obs", a.obs_names[3])):
            assert name.encode() not in m.contents.image(part)
    assert_same_anndata(via_anndata(a), sinr.read_sinr(tmp_path / "whole.sinr"))
    assert (tmp_path / "whole.sinr").stat().st_size < plain.stat().st_size * 1.2
    b = a.copy()
    b.var_names = [f"g{i}" for i in range(b.n_vars)]
    b.var_names_make_unique()
    b.X = b.X.astype(np.float32) / 2  # not counts: no matrix holds the names, the image keeps them
    b.layers["counts"] = a.X
    sinr.write_sinr(b, tmp_path / "other.sinr", **FAST)
    with sinr.open(tmp_path / "other.sinr") as m:
        assert set(m.contents.raw["names_in"]) == {"obs", "var"}  # the counts layer holds both
    assert_same_anndata(via_anndata(b), sinr.read_sinr(tmp_path / "other.sinr"))
    for kind in ("category", "string"):  # a typed gene_ids column stays in var's image, so its type comes back
        c = a.copy()
        c.var["gene_ids"] = c.var["gene_ids"].astype(kind)
        sinr.write_sinr(c, tmp_path / f"{kind}.sinr", **FAST)
        back = sinr.read_sinr(tmp_path / f"{kind}.sinr")
        assert back.var["gene_ids"].dtype == c.var["gene_ids"].dtype and list(back.var["gene_ids"]) == list(c.var["gene_ids"])


def test_every_sinr_writer_refuses_another_formats_name_a_url_and_what_is_not_a_path(rich, tmp_path):
    """out.h5ad holding .sinr bytes would not read as an .h5ad: write_sinr, encode, concat and subset
    refuse such a name (and an output that is not a path, or a URL) before any work, as `sinr encode` does."""
    small = rich[0][:20, :10].copy()
    source = tmp_path / "a.sinr"
    sinr.write_sinr(small, source, **FAST)
    counts = sp.csr_matrix(np.arange(12, dtype=np.int32).reshape(3, 4))
    writers = {"write_sinr": lambda out: sinr.write_sinr(small, out, **FAST),
               "encode": lambda out: sinr.encode(counts, out, **FAST),
               "concat": lambda out: sinr.concat([source, source], out, index_unique="-"),
               "subset": lambda out: sinr.subset(source, out, genes=[0])}
    for name, write in writers.items():
        for output, label in (("x.h5ad", ".h5ad"), ("x.MTX.GZ", ".mtx(.gz)"), ("x.npz", ".npz"), ("x.h5", ".h5")):
            with pytest.raises(sinr.InvalidInputError, match=f"cannot be named as {re.escape(label)}; name it .sinr"):
                write(tmp_path / output)
            assert not (tmp_path / output).exists(), name
        for output in (123, None):
            with pytest.raises(sinr.InvalidInputError, match="the output must be a path"):
                write(output)
        for output in ("s3://bucket/x.sinr", "HTTP://host/x.sinr"):  # not a folder 's3:' of the working directory
            with pytest.raises(sinr.InvalidInputError, match="outputs are local files .URLs are read, not written."):
                write(output)
    with pytest.raises(sinr.InvalidInputError, match="outputs are local files"):
        sinr.decode(source, "s3://bucket/x.h5ad")
    with pytest.raises(sinr.InvalidInputError, match="append rewrites a local file"):
        sinr.append("https://host/x.sinr", counts)


def test_concat_drops_what_its_merge_makes_that_anndata_cannot_store(rich, tmp_path):
    """A var column that merge='first' over an outer join makes of bools and strings cannot be stored:
    the error names the drop that leaves it out, which concat now takes (it had named an option
    concat did not have); a drop is refused where the files hold one matrix each."""
    small = rich[0][:20, :30].copy()
    a, b = small[:10, :20].copy(), small[10:, 10:].copy()
    a.var["hv"], b.var["hv"] = np.ones(a.n_vars, bool), ["x"] * b.n_vars
    a.var, b.var = a.var[["hv"]], b.var[["hv"]]
    b.obs_names = [f"{n}-b" for n in b.obs_names]
    sinr.write_sinr(a, tmp_path / "a.sinr", **FAST)
    sinr.write_sinr(b, tmp_path / "b.sinr", **FAST)
    files = [tmp_path / "a.sinr", tmp_path / "b.sinr"]
    with pytest.raises(sinr.InvalidInputError, match=r"var/hv: anndata cannot store .*--drop var/hv"):
        sinr.concat(files, tmp_path / "ab.sinr", join="outer", merge="first")
    sinr.concat(files, tmp_path / "ab.sinr", join="outer", merge="first", drop=["var/hv"])
    assert "hv" not in sinr.read_sinr(tmp_path / "ab.sinr").var.columns
    from conftest import assert_one_error_line, sinr_cli

    result = sinr_cli("concat", *files, "-o", tmp_path / "cli.sinr", "--join", "outer", "--merge", "first",
                      "--drop", "var/hv")
    assert result.returncode == 0, result.stderr
    sinr.encode(DATA / "pbmc500_cellranger.h5", tmp_path / "p.sinr", **FAST)
    assert_one_error_line(sinr_cli("concat", tmp_path / "p.sinr", tmp_path / "p.sinr", "-o", tmp_path / "pp.sinr",
                                   "--index-unique", "-", "--drop", "obs/x"), "hold one count matrix each")


def test_a_backed_anndata_and_a_view_of_one_are_refused_saying_what_to_do(rich, tmp_path):
    """A view of a backed AnnData holds some of its file's cells: encoding the file (what the message
    had said) would store them all; it is told to load the view first."""
    rich[0].write_h5ad(tmp_path / "r.h5ad")
    backed = anndata.read_h5ad(tmp_path / "r.h5ad", backed="r")
    with pytest.raises(sinr.InvalidInputError, match=r"a backed AnnData; encode its file .*r\.h5ad"):
        sinr.write_sinr(backed, tmp_path / "b.sinr", **FAST)
    with pytest.raises(sinr.InvalidInputError, match=r"a view of a backed AnnData; load it first \(adata.to_memory"):
        sinr.write_sinr(backed[:5], tmp_path / "v.sinr", **FAST)
    sinr.write_sinr(backed[:5].to_memory(), tmp_path / "v.sinr", **FAST)
    assert sinr.read_sinr(tmp_path / "v.sinr").n_obs == 5


def test_the_matrix_says_its_dtype_and_ndim_as_generic_code_asks(plain):
    with sinr.open(plain) as m:
        assert (m.ndim, m.T.ndim) == (2, 2) and m.dtype == m.T.dtype == np.int64
        assert m[:3, :4].dtype == m.T[:4, :3].dtype == m.gene(0).dtype == m.T.to_scipy().dtype == m.dtype
