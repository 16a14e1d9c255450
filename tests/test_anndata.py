"""Nothing is lost: a whole AnnData (.h5ad or in memory) and a whole 10x .h5 go through one .sinr
file and come back with every element equal, types included; what cannot be stored stops the
encoding by name unless dropped; a normalised X gets an error that names the counts layer."""
from __future__ import annotations

import io
import warnings
import zlib

import anndata
import h5py
import msgpack
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata.tests.helpers import assert_equal

import scinrcodec as sinr
from conftest import DATA, FAST, assert_one_error_line, sinr_cli
from scinrcodec.storage.container import END_MAGIC, MAGIC, PREAMBLE, READ_MINORS, TRAILER, pack_header, read_footer
from scinrcodec.storage.opening import open_source
from scinrcodec.report import size_by_part
from scinrcodec.wholefile.describe import describe_contents, verify_file
from scinrcodec.wholefile.hints import counts_hint
from scinrcodec.wholefile.output import write_decoded

sc = pytest.importorskip("scanpy")

COUNT_LAYERS = ("counts", "spliced", "unspliced")


# ------------------------------------------------------------------------------------ fixtures

def rich_anndata() -> anndata.AnnData:
    """A real fixture (10x PBMC, 150 genes x 80 cells) through a usual scanpy workflow, with
    velocity-style layers, nullable and categorical columns, graphs and nested uns."""
    source = sinr.read_matrix(DATA / "pbmc4k_v2_soupx_half")
    counts = source.matrix().T.tocsr()
    rng = np.random.default_rng(0)
    a = anndata.AnnData(X=counts.astype(np.float32), obs=pd.DataFrame(index=source.cell_names(0, counts.shape[0])),
                        var=pd.DataFrame({"gene_ids": source.gene_ids, "feature_types": source.feature_types},
                                         index=source.gene_names))
    a.layers["counts"] = counts.astype(np.int32)
    spliced = counts.copy()
    spliced.data = rng.binomial(spliced.data, 0.7)
    spliced.eliminate_zeros()
    a.layers["spliced"] = spliced.astype(np.int64)
    a.layers["unspliced"] = (counts - spliced).astype(np.uint16).tocsr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.calculate_qc_metrics(a, inplace=True, percent_top=None)
        a.raw = a.copy()  # a copy: Raw would share the X that normalize_total changes in place
        sc.pp.normalize_total(a)
        sc.pp.log1p(a)
        sc.pp.highly_variable_genes(a, n_top_genes=60)
        sc.pp.pca(a, n_comps=10)
        sc.pp.neighbors(a, n_neighbors=10)
        sc.tl.umap(a)
    a.layers["scaled"] = np.asarray(a.X.todense()) - 1.0  # negative and fractional: not counts
    a.obs["batch"] = pd.Categorical(rng.choice(["b1", "b2", "b3"], a.n_obs))
    a.obs["doublet"] = pd.array(rng.choice([True, False, None], a.n_obs), dtype="boolean")
    a.obs["cluster_size"] = pd.array(rng.choice([3, 7, None], a.n_obs), dtype="Int64")
    a.obs["note"] = pd.array(rng.choice(["a", "bb", None], a.n_obs), dtype="string")
    a.varp["coexpression"] = sp.random(a.n_vars, a.n_vars, density=0.05, format="csr", random_state=1)
    a.uns["study"] = {"name": "pbmc", "donors": np.array(["d1", "d2"]), "params": {"k": 10, "seeds": np.arange(4)},
                      "empty": {}, "scale": 1.5}
    return a


@pytest.fixture(scope="module")
def rich_h5ad(tmp_path_factory):
    path = tmp_path_factory.mktemp("rich") / "rich.h5ad"
    rich_anndata().write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def rich_sinr(rich_h5ad, tmp_path_factory):
    out = tmp_path_factory.mktemp("rich_sinr") / "rich.sinr"
    sinr.encode_whole(rich_h5ad, out, chunk_cells=32, **FAST)
    return out


# ------------------------------------------------------------------------------- strict equality

def assert_same_value(a, b, name: str) -> None:
    """Equal values and the same type: class, dtype, shape (anndata's assert_equal allows a
    float32 to come back as float64). Scalars keep their kind: anndata's I/O reads a Python float
    in uns back as numpy.float64, as it does through .h5ad."""
    if np.isscalar(a):
        assert np.isscalar(b) and a == b and np.asarray(a).dtype.kind == np.asarray(b).dtype.kind, (name, a, b)
        return
    assert type(a) is type(b), (name, type(a), type(b))
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    elif isinstance(a, dict):
        assert list(a) == list(b) or set(a) == set(b), name
        for key in a:
            assert_same_value(a[key], b[key], f"{name}/{key}")
    elif sp.issparse(a) or isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, b.dtype)
        assert_equal(a, b, elem_name=name)
        if sp.issparse(a):
            assert (a != b).nnz == 0, name
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    else:
        assert a == b, name


def via_anndata(a: anndata.AnnData) -> anndata.AnnData:
    """An in-memory AnnData as write_h5ad and read_h5ad give it back (string columns of obs, var and
    raw.var with a repeated or missing value as categoricals, string arrays as objects, Python
    scalars as numpy ones), on a copy: what 'as it was' means for parts stored by anndata."""
    from anndata.io import read_elem, write_elem

    a = a.copy()
    a.strings_to_categoricals()
    if a.raw is not None:
        a.strings_to_categoricals(a.raw.var)
    with anndata.settings.override(allow_write_nullable_strings=True), h5py.File(io.BytesIO(), "w") as f:
        write_elem(f, "/", a)
        return read_elem(f)


def assert_same_anndata(a: anndata.AnnData, b: anndata.AnnData) -> None:
    """Every element equal, anndata's way and strictly."""
    assert_equal(a, b)
    assert (a.X is None) == (b.X is None)
    if a.X is not None:
        assert_same_value(a.X, b.X, "X")
    for part in ("obs", "var"):
        assert_same_value(getattr(a, part), getattr(b, part), part)
    for part in ("layers", "obsm", "varm", "obsp", "varp"):
        assert_same_value(dict(getattr(a, part)), dict(getattr(b, part)), part)
    assert_same_value(dict(a.uns), dict(b.uns), "uns")
    assert (a.raw is None) == (b.raw is None)
    if a.raw is not None:
        assert_same_value(a.raw.X, b.raw.X, "raw/X")
        assert_same_value(a.raw.var, b.raw.var, "raw/var")
        assert_same_value(dict(a.raw.varm), dict(b.raw.varm), "raw/varm")


# ----------------------------------------------------------------------------------- AnnData

def test_rich_h5ad_round_trips_every_element(rich_h5ad, rich_sinr, tmp_path):
    original = anndata.read_h5ad(rich_h5ad)
    with sinr.open(rich_sinr) as m:
        assert m.version == (3, 0)  # file-level sections are part of 3.0 (a format-2 file is 2.1)
        back = m.to_anndata()
        assert_same_anndata(original, back)
        assert back.X.dtype == np.float32
        out = tmp_path / "back.h5ad"
        assert write_decoded(m, out) == "h5ad"
    assert_same_anndata(original, anndata.read_h5ad(out))


def test_count_matrices_are_sinr_matrices_and_the_rest_elements(rich_sinr):
    with sinr.open(rich_sinr) as m:
        assert m.name == "layers/counts"  # X is normalised: the counts layer is the default matrix
        assert sorted(m.matrix_names) == sorted([f"layers/{k}" for k in COUNT_LAYERS] + ["raw/X"])
        contents = m.contents
        assert contents.object == "anndata"
        assert set(contents.elements) == {"X", "layers", "obs", "var", "obsm", "varm", "obsp", "varp", "uns", "raw"}
        types = {e["element"]: (np.dtype(e["dtype"]).name, e["format"]) for e in contents.matrices}
        assert types == {"layers/counts": ("int32", "csr_matrix"), "layers/spliced": ("int64", "csr_matrix"),
                         "layers/unspliced": ("uint16", "csr_matrix"), "raw/X": ("float32", "csr_matrix")}
        counts = m.to_scipy()
        assert counts.dtype == np.int64 and counts.shape == (150, 80)
        text = describe_contents(m)
        stored = size_by_part(m)["AnnData parts"]
    for fragment in ("a whole AnnData", "layers/spliced", "raw/X", "anndata.obsp", "int32 csr_matrix"):
        assert fragment in text
    # the part table lists every file-level section, the contents map too: its rows add up to what
    # sinr info counts as the AnnData parts (review: the map's bytes had been counted and not listed)
    rows = text.split("\npart ")[1].split("\n\n")[0].splitlines()[1:]
    assert sum(int(row.split()[-2].replace(",", "")) for row in rows) == stored


def test_counts_are_whole_numbers_up_to_the_largest_count_in_every_type():
    """What a .sinr matrix holds exactly, float32 included (where numpy compares 2**31 - 1 as 2**31)."""
    from scinrcodec.limits import MAX_COUNT
    from scinrcodec.wholefile.parts import whole_counts

    for dtype in (np.int64, np.uint32, np.float64, np.float32):
        assert whole_counts(np.array([0, 3, 2**24], dtype))
        assert not whole_counts(np.array([0, 2**31], dtype))
    assert whole_counts(np.array([0, MAX_COUNT], np.int64)) and not whole_counts(np.array([-1, 2], np.int32))
    assert not whole_counts(np.array([0.5, 2], np.float32)) and not whole_counts(np.array([np.nan], np.float64))


def test_in_memory_anndata_round_trips_and_count_x_keeps_its_dtype(tmp_path):
    a = rich_anndata()
    for dtype in (np.float32, np.int16):
        a.X = a.layers["counts"].astype(dtype)
        path = tmp_path / f"{np.dtype(dtype).name}.sinr"
        result = sinr.encode_whole(a, path, **FAST)
        assert result["matrices"][0] == "X" and "X" not in result["parts"]
        with sinr.open(path) as m:
            assert m.name == "X"
            back = m.to_anndata()
        assert_same_anndata(via_anndata(a), back)
        assert back.X.dtype == dtype


def test_views_and_other_matrices_of_the_file(rich_sinr, tmp_path):
    a = rich_anndata()
    view = a[10:50, 20:120]
    sinr.encode_whole(view, tmp_path / "view.sinr", **FAST)
    with sinr.open(tmp_path / "view.sinr") as m:
        assert_same_anndata(via_anndata(view.copy()), m.to_anndata())
    with sinr.open(rich_sinr, matrix="raw/X") as m:
        assert m.name == "raw/X" and m.matrix("layers/spliced").name == "layers/spliced"
        assert m.to_anndata().n_vars == 150  # the whole AnnData, whichever matrix is open


@pytest.mark.parametrize("kind", ["csc_matrix", "csr_array", "ndarray"])
def test_matrix_formats_come_back_as_read_h5ad_gives_them(tmp_path, kind):
    counts = sinr.read_matrix(DATA / "frozen_pbmc_donor_a_v1").matrix().T.tocsr().astype(np.float64)
    x = counts.toarray() if kind == "ndarray" else getattr(sp, kind)(counts)
    a = anndata.AnnData(X=x, obs=pd.DataFrame(index=[f"c{i}" for i in range(x.shape[0])]),
                        var=pd.DataFrame(index=[f"g{i}" for i in range(x.shape[1])]))
    a.layers["half"] = x * 0.5  # not counts: stored and read by anndata's own I/O
    sinr.encode_whole(a, tmp_path / "x.sinr", **FAST)
    a.write_h5ad(tmp_path / "x.h5ad")
    for arrays in (False, True):  # every sparse element of one class, as read_h5ad gives it by this setting
        with anndata.settings.override(use_sparse_array_on_read=arrays):
            back, h5ad = sinr.open(tmp_path / "x.sinr").to_anndata(), anndata.read_h5ad(tmp_path / "x.h5ad")
            lazy = sinr.read_lazy(tmp_path / "x.sinr").X.compute()
        assert type(back.X) is type(h5ad.X) is type(lazy) and type(back.layers["half"]) is type(h5ad.layers["half"])
        assert kind == "ndarray" or back.X.format == x.format
        assert_same_anndata(h5ad, back)


def test_in_memory_and_file_inputs_store_the_same(rich_h5ad, rich_sinr, tmp_path):
    sinr.encode_whole(anndata.read_h5ad(rich_h5ad), tmp_path / "memory.sinr", chunk_cells=32, **FAST)
    a, b = sinr.open(rich_sinr), sinr.open(tmp_path / "memory.sinr")
    assert a.matrix_names == b.matrix_names
    assert_same_anndata(a.to_anndata(), b.to_anndata())


def test_an_h5ad_storing_an_absent_raw_as_null_encodes_without_one(tmp_path):
    """anndata's write_elem of an AnnData without raw (as `sinr decode` writes one) stores raw as a
    dataset of encoding 'null': no raw, not a raw whose X cannot be opened."""
    from anndata.io import write_elem

    counts = sp.csr_matrix(np.array([[0, 1, 0], [2, 0, 3]], dtype=np.float32))
    a = anndata.AnnData(counts, obs=pd.DataFrame(index=["c1", "c2"]), var=pd.DataFrame(index=["g1", "g2", "g3"]))
    with h5py.File(tmp_path / "null_raw.h5ad", "w") as f:
        write_elem(f, "/", a)
        assert f["raw"].attrs["encoding-type"] == "null"
    sinr.encode_whole(tmp_path / "null_raw.h5ad", tmp_path / "null_raw.sinr", **FAST)
    back = sinr.read_sinr(tmp_path / "null_raw.sinr")
    assert back.raw is None and (back.X != counts).nnz == 0 and list(back.var_names) == ["g1", "g2", "g3"]


def test_narrow_value_types_come_back_as_they_were(tmp_path):
    """Counts stored as float16 (dense), int16 or uint8 (sparse) decode in a type that holds every
    count and come back in their own type, exactly."""
    counts = sp.random(30, 20, density=0.3, format="csr", random_state=1,
                       data_rvs=lambda n: np.random.default_rng(0).integers(1, 250, n))
    a = anndata.AnnData(counts.toarray().astype(np.float16), obs=pd.DataFrame(index=[f"c{i}" for i in range(30)]),
                        var=pd.DataFrame(index=[f"g{i}" for i in range(20)]))
    a.layers["int16"], a.layers["uint8"] = counts.astype(np.int16), counts.astype(np.uint8)
    a.layers["csc"] = sp.csc_matrix(counts, dtype=np.int32)
    sinr.encode_whole(a, tmp_path / "narrow.sinr", **FAST)
    back = sinr.read_sinr(tmp_path / "narrow.sinr")
    assert isinstance(back.X, np.ndarray) and back.X.dtype == np.float16 and np.array_equal(back.X, a.X)
    for key, dtype in (("int16", np.int16), ("uint8", np.uint8)):
        assert back.layers[key].dtype == dtype and (back.layers[key] != a.layers[key]).nnz == 0
    lazy = sinr.read_lazy(tmp_path / "narrow.sinr")  # blocks decoded in int32 and cast; dense float16 as it was
    for key, dtype in (("int16", np.int16), ("uint8", np.uint8)):
        block = lazy.layers[key].compute()
        assert lazy.layers[key].dtype == block.dtype == dtype and (block != a.layers[key]).nnz == 0
    dense = lazy.X.compute()  # dense and float16, as it was stored and as the eager read gives it
    assert lazy.X.dtype == dense.dtype == np.float16 and isinstance(dense, np.ndarray) and np.array_equal(dense, a.X)
    assert type(lazy.layers["csc"].compute()) is sp.csc_matrix and (lazy.layers["csc"].compute() != a.layers["csc"]).nnz == 0
    a.layers["uint8"][0, 0] = 255  # within --max-error 1, 255 decodes as 256: kept wide, never wrapped to 0
    sinr.encode_whole(a, tmp_path / "lossy.sinr", mode="max-error", max_error=1, **FAST)
    eager, lazy = sinr.read_sinr(tmp_path / "lossy.sinr"), sinr.read_lazy(tmp_path / "lossy.sinr")
    lossy = eager.layers["uint8"]
    assert lossy[0, 0] == 256 and abs(lossy.astype(np.int64) - a.layers["uint8"].astype(np.int64)).max() <= 1
    # a lossy matrix comes back widened whatever its values, eager as lazy (a lazy read names its type
    # before decoding): uint8 past its range had been int32 eagerly, int16 within it int16, float16 float16
    for key, dtype in (("uint8", np.int64), ("int16", np.int64), ("csc", np.int32)):
        block = lazy.layers[key].compute()
        assert eager.layers[key].dtype == lazy.layers[key].dtype == block.dtype == dtype, key
        assert (block != eager.layers[key]).nnz == 0
    assert eager.X.dtype == lazy.X.dtype == np.float64 and np.array_equal(lazy.X.compute(), eager.X)


def test_lossy_float32_counts_past_its_exact_range_read_in_float64(tmp_path):
    # float32 holds 2**25 exactly, but --max-error 1 decodes it as 2**25 - 1, which it does not: every read
    # of the whole AnnData (eager, lazy, dtype=, decode to .h5ad) had refused the file it had just written
    x = sp.csr_matrix(np.array([[2**25, 0, 3], [7, 1, 0], [0, 2**26, 5]], dtype=np.float32))
    a = anndata.AnnData(x, obs=pd.DataFrame(index=["c0", "c1", "c2"]), var=pd.DataFrame(index=["g0", "g1", "g2"]))
    a.layers["dense"] = x.toarray()
    sinr.encode_whole(a, tmp_path / "lossy.sinr", mode="max-error", max_error=1, **FAST)
    with sinr.open(tmp_path / "lossy.sinr") as m:
        want = m.to_scipy().T.toarray()
    assert want[0, 0] == 2**25 - 1 and np.abs(want - x.toarray().astype(np.int64)).max() <= 1
    back = sinr.read_sinr(tmp_path / "lossy.sinr")
    assert back.X.dtype == back.layers["dense"].dtype == np.float64
    assert np.array_equal(back.X.toarray(), want) and np.array_equal(back.layers["dense"], want)
    assert np.array_equal(sinr.read_sinr(tmp_path / "lossy.sinr", dtype=np.int32).X.toarray(), want)
    with pytest.raises(sinr.InvalidInputError, match="float32 does not hold exactly"):
        sinr.read_sinr(tmp_path / "lossy.sinr", dtype=np.float32)
    lazy = sinr.read_lazy(tmp_path / "lossy.sinr")
    assert lazy.X.dtype == np.float64 and np.array_equal(lazy.X.compute().toarray(), want)
    write_decoded(sinr.open(tmp_path / "lossy.sinr"), tmp_path / "back.h5ad", whole=True)
    assert np.array_equal(anndata.read_h5ad(tmp_path / "back.h5ad").X.toarray(), want)
    sinr.encode_whole(a[:, [1]].copy(), tmp_path / "fits.sinr", mode="max-error", max_error=1, **FAST)
    # values float32 holds: float64 too, eager as lazy (which names its type before decoding; eager had given float32)
    fits = sinr.read_sinr(tmp_path / "fits.sinr").X, sinr.read_lazy(tmp_path / "fits.sinr").X
    assert fits[0].dtype == fits[1].dtype == np.float64


def test_primary_matrix_is_chosen_with_layer(rich_h5ad, tmp_path):
    sinr.encode_whole(rich_h5ad, tmp_path / "raw.sinr", layer="raw", **FAST)
    with sinr.open(tmp_path / "raw.sinr") as m:
        assert m.matrix_names[0] == "raw/X"
    with pytest.raises(sinr.InvalidInputError, match="layers/scaled is not a count matrix"):
        sinr.encode_whole(rich_h5ad, tmp_path / "no.sinr", layer="scaled", **FAST)


def test_an_element_anndata_would_refuse_on_reading_stops_encoding(tmp_path):
    """An .h5ad holding an element of the wrong shape for its AnnData (an obsm of 29 rows for 30
    cells, a 1-D or a scalar layer: read_h5ad refuses each) encoded into a file that verify passed
    and no reader could read back; it is refused in one line, naming the element and the --drop that
    leaves it out, which then encodes a file that decodes."""
    x = sp.random(30, 20, density=0.3, format="csr", random_state=1, data_rvs=lambda k: np.arange(1, k + 1))
    anndata.AnnData(X=x.astype(np.int32)).write_h5ad(tmp_path / "base.h5ad")
    for path, value in (("obsm/bad", np.ones((29, 2))), ("layers/bad", np.ones(30, np.float32)),
                        ("layers/bad", np.float32(5)), ("obsp/bad", np.ones((30, 29)))):
        with h5py.File(tmp_path / "base.h5ad") as f, h5py.File(tmp_path / "bad.h5ad", "w") as g:
            for key in f:
                f.copy(f[key], g, key)
            for key, attr in f.attrs.items():
                g.attrs[key] = attr
            g.create_dataset(path, data=value).attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
        with pytest.raises(ValueError if value.ndim else IndexError):
            anndata.read_h5ad(tmp_path / "bad.h5ad")
        line = assert_one_error_line(sinr_cli("encode", tmp_path / "bad.h5ad", tmp_path / "bad.sinr"),
                                     f"{path} does not fit the AnnData, which anndata would refuse")
        assert f"--drop {path} to encode without it" in line
        assert not (tmp_path / "bad.sinr").exists()
        sinr.encode_whole(tmp_path / "bad.h5ad", tmp_path / "dropped.sinr", drop=[path], force=True, **FAST)
        assert (sinr.read_sinr(tmp_path / "dropped.sinr").X != x).nnz == 0


def test_unstorable_object_stops_encoding_by_name_unless_dropped(tmp_path):
    a = rich_anndata()
    a.uns["study"]["params"]["callback"] = print
    out = tmp_path / "x.sinr"
    with pytest.raises(sinr.InvalidInputError, match=r"uns/study/params/callback: .*--drop uns/study/params/callback"):
        sinr.encode_whole(a, out, **FAST)
    assert not out.exists()
    sinr.encode_whole(a, out, drop=["uns/study/params/callback", "obsm/X_umap", "obs/batch"], **FAST)
    with sinr.open(out) as m:
        back = m.to_anndata()
        assert sorted(m.contents.dropped) == ["obs/batch", "obsm/X_umap", "uns/study/params/callback"]
        assert "dropped:   obs/batch, obsm/X_umap, uns/study/params/callback" in describe_contents(m)
    del a.uns["study"]["params"]["callback"], a.obsm["X_umap"], a.obs["batch"]
    assert_same_anndata(via_anndata(a), back)
    with pytest.raises(sinr.InvalidInputError, match="nothing named 'uns/nope'"):
        sinr.encode_whole(a, tmp_path / "y.sinr", drop=["uns/nope"], **FAST)


def test_a_dropped_frame_stores_its_names_once(tmp_path):
    """--drop obs (or var) leaves the frame's index, the cells' (or genes') names, which the matrix
    holds already: stored once, as for a frame kept, so that dropping never makes a file larger."""
    a = rich_anndata()
    for part in ("obs", "var"):
        sinr.encode_whole(a, tmp_path / f"{part}.sinr", drop=[part], **FAST)
        with sinr.open(tmp_path / f"{part}.sinr") as m:
            back = m.to_anndata()
        assert list(back.obs_names) == list(a.obs_names) and list(back.var_names) == list(a.var_names)
        assert getattr(back, part).shape[1] == 0
    emptied = a.copy()
    emptied.obs = a.obs.iloc[:, :0]  # the same frame, kept: its names were stored once (811 bytes more dropped)
    sinr.encode_whole(emptied, tmp_path / "emptied.sinr", **FAST)
    assert abs((tmp_path / "obs.sinr").stat().st_size - (tmp_path / "emptied.sinr").stat().st_size) < 100


def test_unstorable_obs_column_is_named(tmp_path):
    a = rich_anndata()
    a.obs["objects"] = [object()] * a.n_obs
    with pytest.raises(sinr.InvalidInputError, match="obs/objects: anndata cannot store"):
        sinr.encode_whole(a, tmp_path / "x.sinr", **FAST)


def test_no_count_matrix_at_all_is_refused(tmp_path):
    a = anndata.AnnData(X=np.full((3, 2), 0.5), obs=pd.DataFrame(index=list("abc")), var=pd.DataFrame(index=list("xy")))
    with pytest.raises(sinr.InvalidInputError, match="holds no count matrix"):
        sinr.encode_whole(a, tmp_path / "x.sinr", **FAST)


def test_non_anndata_inputs_are_refused_by_encode_whole(tmp_path):
    with pytest.raises(sinr.InvalidInputError, match="encode it with scinrcodec.encode"):
        sinr.encode_whole(DATA / "frozen_pbmc_donor_a_v1", tmp_path / "x.sinr", **FAST)


def test_normalised_x_error_names_the_counts_layer(rich_h5ad, tmp_path):
    """The single-matrix path (X as the count matrix) explains where the counts are: scinrcodec.encode
    raises counts_hint's error itself (it gave the bare 'contains non-integer values'), as `sinr encode
    --matrix-only` does; applied twice the hint changes nothing."""
    a = anndata.read_h5ad(rich_h5ad)
    for source in (a, rich_h5ad):
        with pytest.raises(sinr.InvalidInputError) as info:
            sinr.encode(source, tmp_path / "x.sinr", **FAST)
        hinted = info.value
        assert "X is not counts" in str(hinted) and "--layer counts" in str(hinted) and "layer='counts'" in str(hinted)
        assert counts_hint(source, None, hinted) is hinted
    del a.layers["counts"], a.layers["spliced"], a.layers["unspliced"]
    with pytest.raises(sinr.InvalidInputError, match="--layer raw"):
        sinr.encode(a, tmp_path / "x.sinr", **FAST)
    a.X = None
    with pytest.raises(sinr.InvalidInputError, match="has no X matrix.*--layer raw"):
        sinr.encode(a, tmp_path / "x.sinr", **FAST)
    other = sinr.InvalidInputError("something else")
    assert counts_hint(a, None, other) is other
    assert not (tmp_path / "x.sinr").exists()


def test_the_hinted_encode_and_append_go_to_a_process_pool(rich_h5ad, tmp_path):
    """scinrcodec.encode and append (the encoder's wrapped in the counts hint) pickle by reference,
    as a process pool sends its tasks: they had said 'Can't pickle <function encode>: it's not the
    same object as scinrcodec.encoder.driver.encode'."""
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    assert pickle.loads(pickle.dumps(sinr.encode)) is sinr.encode
    assert pickle.loads(pickle.dumps(sinr.append)) is sinr.append
    with ProcessPoolExecutor(1) as pool:
        done = pool.submit(sinr.encode, rich_h5ad, tmp_path / "x.sinr", layer="counts", **FAST).result()
    with sinr.open(tmp_path / "x.sinr") as m:
        assert done["nnz"] == m.nnz > 0


def test_plain_files_have_no_file_sections(tmp_path):
    sinr.encode(DATA / "frozen_pbmc_donor_a_v1", tmp_path / "x.sinr", **FAST)
    with sinr.open(tmp_path / "x.sinr") as m:
        assert m.version == (3, 0) and m.contents is None and describe_contents(m) == ""
        assert m.matrix_names == ["X"]


def resealed(path, *, contents=None, extra=(), drop=(), newer_minor=False) -> bytes:
    """The file with its `contents` map replaced (appended to the body), sections added or left
    out of the file-level table, and optionally a minor version newer than this reader implements:
    footer and CRCs made valid again."""
    data = path.read_bytes()
    footer = read_footer(open_source(data))
    body, table = data[:footer.offset], [e for e in footer.content["sections"] if e[0] not in drop]
    for name, payload in ([("contents", msgpack.packb(contents))] if contents is not None else []) + list(extra):
        table = [e for e in table if e[0] != name] + [[name, len(body), len(payload), zlib.crc32(payload)]]
        body += payload
    major, minor = footer.version
    preamble = PREAMBLE.pack(MAGIC, major, READ_MINORS[major] + 1 if newer_minor else minor, 0)
    packed = pack_header({**footer.content, "sections": table})
    return preamble + body[PREAMBLE.size:] + packed + TRAILER.pack(len(packed), zlib.crc32(preamble + packed), 0,
                                                                    END_MAGIC)


def test_file_level_sections_are_checked(rich_sinr):
    with sinr.open(rich_sinr) as m:
        contents = m.contents.raw
    assert sinr.open(resealed(rich_sinr, contents=contents)).to_anndata().n_obs == 80
    # `writer` is informative: read whatever its type (spec §3.5)
    assert sinr.open(resealed(rich_sinr, contents={**contents, "writer": 5})).to_anndata().n_obs == 80

    def corrupt(data, match):
        with pytest.raises(sinr.CorruptFileError, match=match):
            matrix = sinr.open(data)
            matrix.contents.read("obs") if matrix.contents is not None else None

    corrupt(resealed(rich_sinr, contents={**contents, "object": "pickle"}), "unknown object")
    corrupt(resealed(rich_sinr, contents={**contents, "matrices": [{**contents["matrices"][0], "matrix": "Y"}]}),
            "names matrix 'Y'")
    corrupt(resealed(rich_sinr, contents={**contents, "matrices": [{**contents["matrices"][0], "dtype": "|O"}]}),
            "impossible type or place")
    elements = [dict(e, section="anndata.var") if e["element"] == "obs" else e for e in contents["elements"]]
    corrupt(resealed(rich_sinr, contents={**contents, "elements": elements}), "missing or wrong section")
    elements = [dict(e, bytes=e["bytes"] + 1) if e["element"] == "obs" else e for e in contents["elements"]]
    corrupt(resealed(rich_sinr, contents={**contents, "elements": elements}), "holds .* bytes, expected")
    corrupt(resealed(rich_sinr, drop=["contents"]), "without a 'contents' section")
    corrupt(resealed(rich_sinr, extra=[("x.future", b"")]), "unknown section")
    assert sinr.open(resealed(rich_sinr, extra=[("x.future", b"")], newer_minor=True)).contents.object == "anndata"
    data = bytearray(rich_sinr.read_bytes())
    footer = read_footer(open_source(bytes(data)))
    _, offset, length, _ = next(e for e in footer.content["sections"] if e[0] == "anndata.obs")
    data[offset + length // 2] ^= 0x40
    corrupt(bytes(data), "checksum mismatch in section 'anndata.obs'")
    report = verify_file(sinr.open(rich_sinr))
    assert report["matrices"] == 4 and report["sections"] == 10 and report["nnz"] == 4990 * 2 + 4945 + 4761
    with pytest.raises(sinr.CorruptFileError, match="anndata.obs"):
        verify_file(sinr.open(bytes(data)))


def _matrices_swapped(c: dict) -> dict:
    """The contents with the first two matrix entries' matrices swapped: each at the other's place."""
    first, second, *rest = c["matrices"]
    return {**c, "matrices": [dict(first, matrix=second["matrix"]), dict(second, matrix=first["matrix"]), *rest]}


@pytest.mark.parametrize("edit, match", [
    (lambda c: {**c, "layers": [*c["layers"], "ghost"]}, r"contents name layers the file does not hold \('ghost'\)"),
    (lambda c: {**c, "shape": [81, c["shape"][1]]}, r"matrix '[^']+' has 80 cells, the AnnData 81"),
    (lambda c: {**c, "layers": [k for k in c["layers"] if k != "counts"]}, r"holds layers its contents do not list"),
    (_matrices_swapped, "which is not its name"),
    (lambda c: {**c, "elements": [e for e in c["elements"] if e["element"] != "var"]}, "obs and var"),
    (lambda c: {**c, "names_in": {**c["names_in"], "var": {**c["names_in"]["var"], "matrix": "raw/X"}}},
     "'names_in' is malformed"),
    (lambda c: {**c, "names_in": {**c["names_in"], "obs": {"matrix": c["names_in"]["obs"]["matrix"]}}},
     "'names_in' is malformed"),
    (lambda c: {**c, "names_in": {**c["names_in"], "obs": {**c["names_in"]["obs"], "gene_ids_at": 0}}},
     "'names_in' is malformed"),
    (lambda c: {**c, "h5ad_compression": 5}, "'h5ad_compression'"),
    (lambda c: {**c, "names_in": {**c["names_in"], "obs": {**c["names_in"]["obs"],
                                                           "matrix": [c["matrices"][0]["matrix"]]}}},
     "'names_in' is malformed"),
], ids=["a layer the file lacks", "a shape its matrices contradict", "a layer it holds unlisted",
        "matrices at each other's places", "var absent", "var's names from raw", "obs's names without index_name",
        "gene ids placed in obs", "a compression of the wrong type", "obs's names from a list"])
def test_contents_the_file_contradicts_are_refused_by_every_reader(rich_sinr, tmp_path, edit, match):
    """A contents map listing a layer the file holds neither as a matrix nor in its layers image, or a
    shape whose n_obs is not its count matrices' cells (spec §14.4, S5), is a corrupt file to each
    reader and to sinr verify: to_anndata alone had refused them, while verify said ok, the lazy
    AnnData left the layer out or read the file, and subset and concat failed with a KeyError (the
    CLI's 'internal error') or read it. So are the contradictions a review found read as data (spec
    §14.2-§14.4): a layer held but not listed (dropped), two matrices each at the other's place (X and
    a layer swapped), var absent (var names '0', '1', ...), var's names from raw.X's genes, names_in
    entries without index_name or with gene ids in obs (a KeyError or ValueError), and an
    h5ad_compression of the wrong type (§3.5: a defined key of the wrong type is refused)."""
    with sinr.open(rich_sinr) as m:
        contents = m.contents.raw
    wrong = tmp_path / "wrong.sinr"
    wrong.write_bytes(resealed(rich_sinr, contents=edit(contents)))
    with sinr.open(wrong) as m:
        for read in (m.to_anndata, lambda: m.to_anndata(lazy=True), lambda: verify_file(m)):
            with pytest.raises(sinr.CorruptFileError, match=match):
                read()
    with pytest.raises(sinr.CorruptFileError, match=match):
        sinr.subset(wrong, tmp_path / "subset.sinr", cells=[0, 1])
    with pytest.raises(sinr.CorruptFileError, match=match):
        sinr.concat([wrong, rich_sinr], tmp_path / "concat.sinr")


def test_keys_a_names_in_entry_does_not_define_are_ignored(rich_sinr, tmp_path):
    """Spec §3.5 and §11.2: a reader ignores map keys the spec does not define (review: the names_in
    check had refused them)."""
    with sinr.open(rich_sinr) as m:
        contents = m.contents.raw
        expected = m.to_anndata()
    later = tmp_path / "later.sinr"
    later.write_bytes(resealed(rich_sinr, contents={**contents, "names_in": {
        **contents["names_in"], "var": {**contents["names_in"]["var"], "future": 1}}}))
    assert list(sinr.read_sinr(later).var_names) == list(expected.var_names)


def image_resealed(path, part: str, change) -> bytes:
    """The file with the HDF5 image of element `part` changed in place by change(h5py.File), its section,
    size and every CRC made valid again, so that the change is the only thing wrong with the file."""
    import zstandard

    with sinr.open(path) as m:
        contents = m.contents
        section, image, raw = contents.elements[part][0], contents.image(part), contents.raw
    buffer = io.BytesIO(image)
    with h5py.File(buffer, "r+") as f:
        change(f)
    image = buffer.getvalue()
    elements = [dict(e, bytes=len(image)) if e["element"] == part else e for e in raw["elements"]]
    return resealed(path, contents={**raw, "elements": elements},
                    extra=[(section, zstandard.ZstdCompressor().compress(image))])


def _replaced(f, path: str, data) -> None:
    """Dataset `path` of an AnnData image replaced by an array of `data` (as anndata writes one)."""
    del f[path]
    f.create_dataset(path, data=data).attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})


@pytest.mark.parametrize("part, change, match", [
    ("raw", lambda f: f["raw"].pop("var"), "raw without its var"),
    ("layers", lambda f: _replaced(f, "layers/scaled", np.zeros((80, 149))), "do not make an AnnData"),
    ("obsm", lambda f: _replaced(f, "obsm/X_pca", np.zeros((79, 10), np.float32)), "do not make an AnnData"),
], ids=["raw without var", "a layer of another shape", "an obsm of other cells"])
def test_images_that_contradict_the_anndata_are_refused_by_every_reader(rich_sinr, tmp_path, part, change, match):
    """An image whose part cannot be the AnnData's (spec §14.3, S5): raw without its var had come back
    with var names '0', '1', ...; a layer or an obsm of another shape had been refused by read_sinr
    while sinr verify said ok (it now builds the AnnData, its matrices empty of their shapes)."""
    wrong = tmp_path / "wrong.sinr"
    wrong.write_bytes(image_resealed(rich_sinr, part, change))
    with sinr.open(wrong) as m:
        for read in (m.to_anndata, lambda: verify_file(m)):
            with pytest.raises(sinr.CorruptFileError, match=match):
                read()


def test_float16_and_big_endian_counts_subset_concat_and_read_lazily(tmp_path):
    """An AnnData whose X is dense float16 or big-endian int64 ('>i8', as an .h5ad may store it):
    scipy.sparse holds neither, whose ValueError (the CLI's 'internal error') had ended an encode of
    the big-endian one held in memory, a subset or concat of either file (its skeleton held an empty
    sparse matrix of the recorded type), a lazy read of the big-endian one (its blocks' type) and a
    read in a type asked for in that byte order. Sparse values are now of the machine's byte order,
    float32 for float16, and the files written keep the recorded type."""
    counts = np.random.default_rng(5).poisson(1.0, size=(30, 20))
    for name, dtype in (("float16", np.float16), ("big_endian", ">i8")):
        a = anndata.AnnData(X=counts.astype(dtype), obs=pd.DataFrame(index=[f"c{i}" for i in range(30)]),
                            var=pd.DataFrame(index=[f"g{i}" for i in range(20)]))
        path = tmp_path / f"{name}.sinr"
        sinr.encode_whole(a, path, **FAST)
        sinr.subset(path, tmp_path / f"{name}_subset.sinr", cells=[3, 1])
        subset = sinr.read_sinr(tmp_path / f"{name}_subset.sinr").X
        assert subset.dtype == np.dtype(dtype) and np.array_equal(subset, counts[[3, 1]]), name
        sinr.concat([path, path], tmp_path / f"{name}_concat.sinr", index_unique="-")
        assert np.array_equal(sinr.read_sinr(tmp_path / f"{name}_concat.sinr").X, np.vstack([counts, counts])), name
        assert np.array_equal(np.asarray(sinr.read_lazy(path).X.compute()), counts), name
    with sinr.open(tmp_path / "big_endian.sinr") as m:  # a type asked for in another byte order: the machine's
        assert m.cells_block(0, 2, dtype=">i8").dtype == np.int64 and m.to_scipy(dtype=">f8").dtype == np.float64


# ------------------------------------------------------------------------------------------- 10x

ADT = ["CD3_TotalSeqB", "CD4_TotalSeqB", "CD8a_TotalSeqB", "CD14_TotalSeqB", "CD19_TotalSeqB"]
ROOT_ATTRS = {"chemistry_description": "Single Cell 3' v3", "filetype": "matrix",
              "library_ids": np.array([b"PBMC_GEX", b"PBMC_ADT"]), "original_gem_groups": np.array([1, 1]),
              "software_version": "cellranger-7.1.0", "version": np.int64(2)}


def _strings(values: list[str]) -> np.ndarray:
    encoded = [v.encode() for v in values]
    return np.array(encoded, dtype=f"S{max(1, max(map(len, encoded)))}")


@pytest.fixture(scope="module")
def multimodal_h5(tmp_path_factory):
    """pbmc500_cellranger.h5 plus an Antibody Capture modality with Cell Ranger's feature fields
    (pattern, read, sequence) and root attributes, written as Cell Ranger writes them."""
    rng = np.random.default_rng(3)
    with h5py.File(DATA / "pbmc500_cellranger.h5", "r") as f:
        g = f["matrix"]
        n_genes, n_cells = g["shape"][:]
        gex = sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=(n_genes, n_cells))
        features = {k: [v.decode() for v in g["features"][k][:]] for k in ("id", "name", "feature_type", "genome")}
        barcodes = g["barcodes"][:]
    adt = sp.csc_matrix(rng.poisson(20, size=(len(ADT), n_cells)) * (rng.random((len(ADT), n_cells)) < 0.8))
    matrix = sp.vstack([gex, adt], format="csc")
    matrix.sort_indices()
    features["id"] += ADT
    features["name"] += [a.split("_")[0] for a in ADT]
    features["feature_type"] += ["Antibody Capture"] * len(ADT)
    features["genome"] += [""] * len(ADT)
    features["pattern"] = [""] * n_genes + ["5PNNNNNNNNNN(BC)"] * len(ADT)
    features["read"] = [""] * n_genes + ["R2"] * len(ADT)
    features["sequence"] = [""] * n_genes + ["ACGTTGCAACGTTGC", "TTGCAACGTTGCAAC", "GCAACGTTGCAACGT",
                                            "CAACGTTGCAACGTT", "AACGTTGCAACGTTG"]
    path = tmp_path_factory.mktemp("tenx") / "multimodal.h5"
    opts = dict(compression="gzip", compression_opts=4, shuffle=True)
    with h5py.File(path, "w") as f:
        for key, value in ROOT_ATTRS.items():
            f.attrs[key] = value
        g = f.create_group("matrix")
        for name, array, dtype in (("data", matrix.data, np.int32), ("indices", matrix.indices, np.int64),
                                   ("indptr", matrix.indptr, np.int64)):
            g.create_dataset(name, data=array.astype(dtype), chunks=(80000,), maxshape=(None,), **opts)
        g.create_dataset("shape", data=np.array(matrix.shape, dtype=np.int32))
        g.create_dataset("barcodes", data=barcodes, **opts)
        fg = g.create_group("features")
        for key, values in features.items():
            fg.create_dataset(key, data=_strings(values), **opts)
        fg.create_dataset("_all_tag_keys", data=np.array([b"genome", b"pattern", b"read", b"sequence"]))
    return path


def _h5_tree(path) -> dict:
    """Every object of an HDF5 file: attributes with their types, datasets with type, storage and values."""
    out = {}
    with h5py.File(path, "r") as f:
        def attrs(obj) -> dict:
            return {k: (obj.attrs.get_id(k).dtype, np.asarray(obj.attrs[k]).tolist()) for k in obj.attrs}

        out["/"] = attrs(f)

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj.dtype, obj.shape, obj.chunks, obj.compression, obj.compression_opts, obj.shuffle,
                             obj.maxshape, attrs(obj), obj[()].tolist())
            else:
                out[name] = attrs(obj)
        f.visititems(visit)
    return out


def test_multimodal_10x_h5_comes_back_whole(multimodal_h5, tmp_path):
    encoded = tmp_path / "tenx.sinr"
    result = sinr.encode_whole(multimodal_h5, encoded, **FAST)
    assert result["matrices"] == ["X"] and result["parts"] == ["h5"]
    out = tmp_path / "back.h5"
    with sinr.open(encoded) as m:
        assert m.contents.object == "10x-h5"
        assert {fill for _, fill, _ in m.contents.raw["filled"]} == {
            "data", "indices", "indptr", "cell_names", "gene_ids", "gene_names", "feature_types"}
        assert write_decoded(m, out) == "10x-h5"
        assert "a whole 10x HDF5 file" in describe_contents(m)
    assert _h5_tree(out) == _h5_tree(multimodal_h5)
    sinr.decode(encoded, tmp_path / "alone.h5", matrix="X")  # the matrix alone keeps each feature's genome
    with h5py.File(tmp_path / "alone.h5") as alone, h5py.File(multimodal_h5) as f:
        assert list(alone["matrix/features/genome"][:]) == list(f["matrix/features/genome"][:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for gex_only in (False, True):
            assert_equal(sc.read_10x_h5(multimodal_h5, gex_only=gex_only), sc.read_10x_h5(out, gex_only=gex_only))


def test_a_subset_of_a_10x_file_is_a_10x_file(multimodal_h5, tmp_path):
    """Some cells and features of a 10x file: the .h5 decoded from the subset is the original's cut,
    every feature field (genome, pattern, read, sequence) and root attribute kept, its shape anew
    (it had become an AnnData, losing pattern, read and the root attributes that Cell Ranger's loader
    needs); subsets of 10x files then concat keeping ids, types and genomes, as the files do."""
    sinr.encode_whole(multimodal_h5, tmp_path / "tenx.sinr", **FAST)
    with h5py.File(multimodal_h5) as f:
        n_genes, n_cells = (int(v) for v in f["matrix/shape"][:])
    genes, cells = np.array([n_genes - 1, 0, 3, n_genes - 3]), np.array([5, 0, 2])
    sinr.subset(tmp_path / "tenx.sinr", tmp_path / "cut.sinr", cells=cells, genes=genes)
    with sinr.open(tmp_path / "cut.sinr") as m:
        assert m.contents.object == "10x-h5"
        write_decoded(m, tmp_path / "cut.h5")
    original, cut = _h5_tree(multimodal_h5), _h5_tree(tmp_path / "cut.h5")
    assert cut["/"] == original["/"] and cut["matrix/features/_all_tag_keys"] == original["matrix/features/_all_tag_keys"]
    for key in ("id", "name", "feature_type", "genome", "pattern", "read", "sequence"):
        dtype, _, _, compression, level, shuffle, _, attrs, values = original[f"matrix/features/{key}"]
        assert cut[f"matrix/features/{key}"][:1] == (dtype,) and cut[f"matrix/features/{key}"][3:6] == (
            compression, level, shuffle)
        assert cut[f"matrix/features/{key}"][-1] == [values[g] for g in genes], key
    assert cut["matrix/barcodes"][-1] == [original["matrix/barcodes"][-1][c] for c in cells]
    assert cut["matrix/shape"][-1] == [genes.size, cells.size]
    with h5py.File(multimodal_h5) as f, h5py.File(tmp_path / "cut.h5") as g:
        whole = sp.csc_matrix((f["matrix/data"][:], f["matrix/indices"][:], f["matrix/indptr"][:]), (n_genes, n_cells))
        part = sp.csc_matrix((g["matrix/data"][:], g["matrix/indices"][:], g["matrix/indptr"][:]), tuple(g["matrix/shape"]))
        assert (part != whole[genes][:, cells]).nnz == 0
    sinr.subset(tmp_path / "tenx.sinr", tmp_path / "rest.sinr", cells=np.arange(6, n_cells))
    sinr.concat([tmp_path / "cut.sinr", tmp_path / "rest.sinr"], tmp_path / "both.sinr", join="outer")
    both = sinr.read_sinr(tmp_path / "both.sinr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = sc.read_10x_h5(multimodal_h5, gex_only=False)
    # a dataset of a value per cell outside the layout, or indices of features (Cell Ranger's target
    # panels): their cut is not known, so the subset is an AnnData, as before
    for key, values in (("droplet_latents/size", np.arange(n_cells, dtype=np.float32)),
                        ("matrix/features/target_sets/panel", np.array([0, 2], dtype=np.uint32))):
        other = tmp_path / "other.h5"
        other.write_bytes(multimodal_h5.read_bytes())
        with h5py.File(other, "a") as f:
            f.create_dataset(key, data=values)
        sinr.encode_whole(other, tmp_path / "other.sinr", force=True, **FAST)
        sinr.subset(tmp_path / "other.sinr", tmp_path / "other_cut.sinr", cells=cells, genes=genes, force=True)
        with sinr.open(tmp_path / "other_cut.sinr") as m:
            assert m.contents.object == "anndata" and (m.to_scipy() != whole[genes][:, cells]).nnz == 0, key
    assert sorted(both.var["gene_ids"]) == sorted(reference.var["gene_ids"])  # outer: the cut's genes first
    expected = reference.var.set_index("gene_ids").loc[list(both.var["gene_ids"])]
    for column in ("feature_types", "genome", "pattern", "read", "sequence"):
        assert list(both.var[column]) == list(expected[column]), column


def test_one_modality_by_name(multimodal_h5, tmp_path):
    sinr.encode_whole(multimodal_h5, tmp_path / "tenx.sinr", **FAST)
    with sinr.open(tmp_path / "tenx.sinr") as m:
        whole = m.to_anndata()
        adt = m.to_anndata(feature_type="Antibody Capture")
        with pytest.raises(sinr.SinrKeyError, match="no features of type 'Peaks'"):
            m.to_anndata(feature_type="Peaks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = sc.read_10x_h5(multimodal_h5, gex_only=False)
    assert list(adt.var["gene_ids"]) == ADT and adt.n_obs == reference.n_obs
    assert list(adt.var["sequence"])[0] == "ACGTTGCAACGTTGC" and set(adt.var["read"]) == {"R2"}
    for column in ("gene_ids", "feature_types", "genome", "pattern", "read", "sequence"):
        assert list(whole.var[column]) == list(reference.var[column]), column
    assert (whole.X != reference.X.astype(np.int32)).nnz == 0


def test_a_10x_file_whose_fills_contradict_its_image_is_refused(tmp_path):
    """What a 10x file's contents fill (spec §14.5): data, indices and indptr once each, each at its
    own dataset, each an empty 1-D dataset of the image. A file listing no fills had decoded to a 10x
    .h5 without its matrix (empty data, indices and indptr), one filling the barcodes with the values
    as well to barcodes of counts, and sinr verify had said ok of those and of a fill the image lacks."""
    good = tmp_path / "x.sinr"
    sinr.encode_whole(DATA / "pbmc500_cellranger.h5", good, **FAST)
    with sinr.open(good) as m:
        contents = m.contents.raw
    filled = contents["filled"]
    arrays = [[p.replace("matrix/", "GRCh38/"), fill, r] for p, fill, r in filled[:3]]  # where the image has none
    cases = [({"filled": []}, "does not fill data, indices and indptr once each"),
             ({"filled": [[p, "data" if p.endswith("barcodes") else fill, r] for p, fill, r in filled]}, "once each"),
             ({"filled": [["matrix/nope", *filled[0][1:]], *filled[1:]]}, "fills 'matrix/nope' with 'data'"),
             ({"group": "GRCh38", "filled": arrays}, "no empty dataset 'GRCh38/data' to fill")]
    for i, (changes, match) in enumerate(cases):
        bad = tmp_path / f"bad{i}.sinr"
        bad.write_bytes(resealed(good, contents={**contents, **changes}))
        with sinr.open(bad) as m, pytest.raises(sinr.CorruptFileError, match=match):
            verify_file(m)
        with pytest.raises(sinr.CorruptFileError, match=match):
            sinr.decode(bad, tmp_path / f"bad{i}.h5")


def _skeleton(f, path: str, dtype, chunked: bool = True) -> None:
    """10x image dataset `path` replaced by an empty skeleton of another type (or layout)."""
    del f[path]
    f.create_dataset(path, shape=(0,), dtype=dtype, **({"maxshape": (None,), "chunks": (1024,)} if chunked else {}))


@pytest.mark.parametrize("change, match", [
    (lambda f: _skeleton(f, "matrix/indptr", np.int8), r"'matrix/indptr' \(int8\) cannot hold the matrix's indptr"),
    (lambda f: _skeleton(f, "matrix/data", np.uint8), r"'matrix/data' \(uint8\) cannot hold the matrix's data"),
    (lambda f: _skeleton(f, "matrix/barcodes", "S4"), r"'matrix/barcodes' \(\|S4\) cannot hold the matrix's cell names"),
    (lambda f: _skeleton(f, "matrix/indices", np.int64, chunked=False), "contiguous 'matrix/indices' resizable"),
], ids=["indptr of int8", "data of uint8", "barcodes of 4 bytes", "a contiguous dataset resizable"])
def test_a_10x_image_whose_skeletons_cannot_hold_the_matrix_is_refused(tmp_path, change, match):
    """A skeleton keeps the original's type (spec §14.5), which held its values: an image whose type
    cannot is a self-contradictory file. Decoding had written an indptr of int8, data clamped to 255
    and barcodes cut to 4 bytes, and sinr verify had said ok."""
    good = tmp_path / "x.sinr"
    sinr.encode_whole(DATA / "pbmc500_cellranger.h5", good, **FAST)
    bad = tmp_path / "bad.sinr"
    bad.write_bytes(image_resealed(good, "h5", change))
    with sinr.open(bad) as m, pytest.raises(sinr.CorruptFileError, match=match):
        verify_file(m)
    with pytest.raises(sinr.CorruptFileError, match=match):
        sinr.decode(bad, tmp_path / "bad.h5")


def _data_as(path, values) -> None:
    """pbmc500_cellranger.h5 copied to `path` with matrix/data replaced by `values` (another type)."""
    import shutil

    shutil.copy(DATA / "pbmc500_cellranger.h5", path)
    with h5py.File(path, "r+") as f:
        _replaced(f, "matrix/data", values(f["matrix/data"][:]))


def test_10x_files_whose_data_type_is_narrow_come_back(tmp_path):
    """The skeleton type check (spec §14.5) against the files this library writes (review): a lossless
    file of bool data comes back exactly; one of uint8 data coded within --max-error 1, which decodes up
    to one past 255, comes back with its data in the wide type (io.dtypes.widened), as its AnnData's
    would; sinr verify passes both (it had called them corrupt)."""
    from scinrcodec.io.dtypes import widened

    def saturated(d: np.ndarray) -> np.ndarray:  # every other value 255: decoded within 1, up to 256
        return np.where(np.arange(d.size) % 2 == 0, 255, np.minimum(d, 254)).astype(np.uint8)

    for name, values, options in (("bool", lambda d: np.ones(d.size, bool), {}),
                                  ("uint8", saturated, {"mode": "max-error", "max_error": 1})):
        path, encoded, back = tmp_path / f"{name}.h5", tmp_path / f"{name}.sinr", tmp_path / f"{name}_back.h5"
        _data_as(path, values)
        sinr.encode_whole(path, encoded, **{**FAST, **options})
        with sinr.open(encoded) as m:
            verify_file(m)
            decoded = m.to_scipy("csc")
        sinr.decode(encoded, back)
        with h5py.File(path) as f, h5py.File(back) as g:
            if not options:
                assert _h5_tree(back) == _h5_tree(path)
            else:
                assert g["matrix/data"].dtype == widened(f["matrix/data"].dtype)
                assert np.array_equal(g["matrix/data"][:], decoded.data) and decoded.data.max() == 256


def test_verify_checks_a_10x_image_without_decoding_the_matrix_whole(tmp_path, monkeypatch):
    """sinr verify checks the skeletons' types against the largest value and gene index that
    MatrixReader.verify found chunk by chunk: in memory for a chunk, as it verifies any file (review:
    it had decoded the whole matrix again, and refused a file larger than the memory free)."""
    import scinrcodec.limits as limits

    path = tmp_path / "x.sinr"
    sinr.encode_whole(DATA / "pbmc500_cellranger.h5", path, chunk_cells=64, **FAST)
    monkeypatch.setattr(limits, "LARGE_ALLOCATION", 1)
    monkeypatch.setattr(limits, "available_memory", lambda: 20_000)  # a chunk fits, the matrix does not
    with sinr.open(path) as m:
        with pytest.raises(sinr.ResultTooLargeError):
            m.to_scipy()
        assert verify_file(m)["nnz"] == m.nnz


def test_read_sinr_checks_a_10x_image_as_decoding_does(tmp_path):
    """read_sinr and read_lazy of a whole 10x file read var's fields from its image: an image whose
    fills contradict it (spec §14.5, S5: a names skeleton that is not empty) had given an AnnData
    where decode and verify refused the file."""
    good = tmp_path / "x.sinr"
    sinr.encode_whole(DATA / "pbmc500_cellranger.h5", good, **FAST)
    bad = tmp_path / "bad.sinr"
    bad.write_bytes(image_resealed(good, "h5", lambda f: _replaced(f, "matrix/features/name", np.array([b"x"]))))
    for read in (sinr.read_sinr, sinr.read_lazy):
        with pytest.raises(sinr.CorruptFileError, match="no empty dataset 'matrix/features/name'"):
            read(bad)


def _not_canonical(path, how: str) -> None:
    """pbmc500_cellranger.h5 copied to `path` with its first cell's first value a stored zero, or its
    first two genes' entries in that cell swapped (indices out of order): what Cell Ranger never writes."""
    import shutil

    shutil.copy(DATA / "pbmc500_cellranger.h5", path)
    with h5py.File(path, "r+") as f:
        data, indices = f["matrix/data"], f["matrix/indices"]
        if how == "stored zeros":
            data[0] = 0
        else:
            indices[0:2], data[0:2] = indices[0:2][::-1], data[0:2][::-1]


@pytest.mark.parametrize("how", ["stored zeros", "genes out of order"])
def test_a_10x_file_that_is_not_canonical_is_not_stored_whole(tmp_path, how):
    """A whole 10x file fills its data, indices and indptr from the matrix (spec §14.5), which gives
    canonical CSC: a file holding a stored zero or a cell's genes out of order had been encoded and
    come back with other arrays (6,279 values for 6,280, or reordered). It is refused, in every
    process an encode opens the file in again, and its matrix alone encodes, exactly."""
    from scinrcodec.io.readers import open_source_spec
    from scinrcodec.io.tenx_h5 import read_10x_h5

    path = tmp_path / "x.h5"
    _not_canonical(path, how)
    with pytest.raises(sinr.InvalidInputError, match=how):
        sinr.encode_whole(path, tmp_path / "x.sinr", **FAST)
    assert_one_error_line(sinr_cli("encode", path, tmp_path / "x.sinr"), how)
    source = read_10x_h5(path)
    source.require_canonical()
    again = open_source_spec(source.spec())  # as a Dask worker opens it
    with pytest.raises(sinr.InvalidInputError, match=how):
        again.block(0, again.shape[1])
    assert sinr_cli("encode", path, tmp_path / "m.sinr", "--matrix-only", "--no-siren").returncode == 0
    with h5py.File(path) as f, sinr.open(tmp_path / "m.sinr") as m:
        expected = sp.csc_matrix((f["matrix/data"][:], f["matrix/indices"][:], f["matrix/indptr"][:]),
                                 shape=tuple(f["matrix/shape"][:]))
        assert (m.to_scipy() != expected).nnz == 0


def _v2_10x_h5(path) -> sinr.MatrixSource:
    """pbmc500_cellranger.h5 written as Cell Ranger 2 writes a file: one genome group with genes and
    gene_names. Returns the source matrix."""
    source = sinr.read_matrix(DATA / "pbmc500_cellranger.h5")
    counts = source.matrix()
    with h5py.File(path, "w") as f:
        g = f.create_group("GRCh38")
        g.attrs["note"] = "v2"
        g.create_dataset("data", data=counts.data.astype(np.int32))
        g.create_dataset("indices", data=counts.indices.astype(np.int64))
        g.create_dataset("indptr", data=counts.indptr.astype(np.int64))
        g.create_dataset("shape", data=np.array(counts.shape, dtype=np.int32))
        g.create_dataset("barcodes", data=_strings(source.cell_names(0, counts.shape[1])))
        g.create_dataset("genes", data=_strings(source.gene_ids))
        g.create_dataset("gene_names", data=_strings(source.gene_names))
    return source


def test_single_genome_v2_10x_file_round_trips(tmp_path):
    """Cell Ranger 2: one genome group with genes and gene_names."""
    path = tmp_path / "v2.h5"
    source = _v2_10x_h5(path)
    sinr.encode_whole(path, tmp_path / "v2.sinr", **FAST)
    with sinr.open(tmp_path / "v2.sinr") as m:
        write_decoded(m, tmp_path / "back.h5")
    assert _h5_tree(tmp_path / "back.h5") == _h5_tree(path)
    sinr.subset(tmp_path / "v2.sinr", tmp_path / "cut.sinr", cells=[1, 0], genes=[3, 2])  # still Cell Ranger 2's
    with sinr.open(tmp_path / "cut.sinr") as m:
        write_decoded(m, tmp_path / "cut.h5")
    with h5py.File(tmp_path / "cut.h5") as f:
        assert list(f) == ["GRCh38"] and dict(f["GRCh38"].attrs) == {"note": "v2"}
        assert list(f["GRCh38/genes"][:]) == list(_strings(source.gene_ids)[[3, 2]])
        assert list(f["GRCh38/shape"][:]) == [2, 2]


def _assert_refused(bad, out, match: str) -> None:
    """sinr verify, the API's decode and `sinr decode` each refuse the file `bad` as corrupt, saying
    `match`, and write nothing at `out`."""
    with sinr.open(bad) as m, pytest.raises(sinr.CorruptFileError, match=match):
        verify_file(m)
    with pytest.raises(sinr.CorruptFileError, match=match):
        sinr.decode(bad, out)
    assert_one_error_line(sinr_cli("decode", bad, out), match)
    assert not out.exists()


def _refilled(filled: list, moves: dict[str, str]) -> list:
    """A 10x file's `filled` with each fill of `moves` replaced by its value, on the same dataset."""
    return [[p, moves.get(fill, fill), r] for p, fill, r in filled]


def test_a_10x_file_filling_a_dataset_with_another_fill_is_refused(tmp_path):
    """Each fill of a 10x file has one dataset (spec §14.5, S6): a file whose `filled` put the fills on
    each other's datasets, every one still an empty 1-D dataset of the image, had decoded to a 10x .h5
    with data and indices exchanged, the matrix's indptr written into its data, or gene ids as names
    (and names cut to the ids' width), and sinr verify had said ok."""
    _v2_10x_h5(tmp_path / "v2.h5")
    contents = {}
    for name, source in (("v3", DATA / "pbmc500_cellranger.h5"), ("v2", tmp_path / "v2.h5")):
        sinr.encode_whole(source, tmp_path / f"{name}.sinr", **FAST)
        with sinr.open(tmp_path / f"{name}.sinr") as m:
            contents[name] = m.contents.raw
    cases = [("v3", {"data": "indices", "indices": "data"}, "fills 'matrix/data' with 'indices'"),
             ("v3", {"data": "indptr", "indptr": "indices", "indices": "data"}, "fills 'matrix/data' with 'indptr'"),
             ("v3", {"gene_ids": "gene_names", "gene_names": "gene_ids"},
              "fills 'matrix/features/id' with 'gene_names'"),
             ("v3", {"cell_names": "feature_types", "feature_types": "cell_names"},
              "fills 'matrix/barcodes' with 'feature_types'"),
             ("v2", {"gene_ids": "gene_names", "gene_names": "gene_ids"}, "fills 'GRCh38/genes' with 'gene_names'"),
             ("v2", {"gene_ids": "feature_types"}, "'feature_types', which group 'GRCh38' does not hold")]
    for i, (name, moves, match) in enumerate(cases):
        bad, out = tmp_path / f"bad{i}.sinr", tmp_path / f"bad{i}.h5"
        fills = _refilled(contents[name]["filled"], moves)
        bad.write_bytes(resealed(tmp_path / f"{name}.sinr", contents={**contents[name], "filled": fills}))
        _assert_refused(bad, out, match)


def test_a_10x_file_leaving_a_names_skeleton_unfilled_is_refused(tmp_path):
    """A names dataset of the 10x image left empty for the matrix's names (spec §14.5, S5) comes back
    empty unless `filled` lists it: a file whose `filled` left out the barcodes or the gene ids had
    decoded to a 10x .h5 with 0 barcodes for 587 cells, or 0 feature ids for 50 genes, and sinr
    verify had said ok."""
    good = tmp_path / "x.sinr"
    sinr.encode_whole(DATA / "pbmc500_cellranger.h5", good, **FAST)
    with sinr.open(good) as m:
        contents = m.contents.raw
    for i, (fill, path) in enumerate((("cell_names", "matrix/barcodes"), ("gene_ids", "matrix/features/id"))):
        bad, out = tmp_path / f"bad{i}.sinr", tmp_path / f"bad{i}.h5"
        fills = [e for e in contents["filled"] if e[1] != fill]
        bad.write_bytes(resealed(good, contents={**contents, "filled": fills}))
        match = f"leaves {path!r} empty for"
        _assert_refused(bad, out, match)


@pytest.mark.parametrize("kind", ["10x", "h5ad"])
def test_encoding_a_whole_file_twice_gives_the_same_bytes(tmp_path, rich_h5ad, kind):
    """A whole file encoded twice, a second apart, is the same file: its HDF5 images record no
    creation time (Cell Ranger's datasets track times; copies of them would stamp the moment)."""
    import time

    source = DATA / "pbmc500_cellranger.h5" if kind == "10x" else rich_h5ad
    first, second = tmp_path / "a.sinr", tmp_path / "b.sinr"
    sinr.encode_whole(source, first, chunk_cells=64, **FAST)
    time.sleep(1.1)
    sinr.encode_whole(source, second, chunk_cells=64, **FAST)
    assert first.read_bytes() == second.read_bytes()


def test_gene_ids_missing_for_some_genes_are_never_the_text_nan(tmp_path):
    """var['gene_ids'] (or feature_types) with missing values, as anndata.concat(join='outer',
    merge='first') leaves them: a whole file keeps var as it is and its matrix holds no ids; the
    matrix alone is refused in one line (the ids had been stored as 'nan', and two such genes then
    blocked every concat)."""
    var = pd.DataFrame({"gene_ids": ["ENSG1", np.nan, np.nan, "ENSG4"],
                        "feature_types": ["Gene Expression", None, "Gene Expression", "Peaks"]}, index=list("ABCD"))
    adata = anndata.AnnData(sp.csr_matrix(np.array([[1, 2, 0, 4], [0, 5, 6, 0]], dtype=np.float32)),
                            obs=pd.DataFrame(index=["c1", "c2"]), var=var)
    adata.write_h5ad(tmp_path / "a.h5ad")
    for source in (adata, tmp_path / "a.h5ad"):
        with pytest.raises(sinr.InvalidInputError, match=r"var\['gene_ids'\] has no value for 2 genes \(first 'B'\)"):
            sinr.encode(source, tmp_path / "alone.sinr", **FAST)
        sinr.encode_whole(source, tmp_path / "whole.sinr", force=True, **FAST)
        back = sinr.read_sinr(tmp_path / "whole.sinr")
        pd.testing.assert_frame_equal(back.var, anndata.read_h5ad(tmp_path / "a.h5ad").var)
        with sinr.open(tmp_path / "whole.sinr") as m:
            assert m.gene_ids is None and m.feature_types is None and m.gene_names == list("ABCD")
    assert not (tmp_path / "alone.sinr").exists()


def test_the_cli_summary_says_its_nonzeros_are_every_count_matrix(rich_h5ad, tmp_path, capsys):
    """An AnnData of several count matrices: the summary's nonzeros are all of theirs (its bits per
    nonzero, of the count matrices' bytes, count them all), said so beside the AnnData's shape, which
    is X's alone."""
    from scinrcodec.cli import main

    assert main(["encode", str(rich_h5ad), str(tmp_path / "r.sinr"), "--no-siren", "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    with sinr.open(tmp_path / "r.sinr") as m:
        names = m.matrix_names
        total = sum(sinr.open(tmp_path / "r.sinr", matrix=n).nnz for n in names)
    assert len(names) > 1 and f"{total:,} nonzeros in its {len(names)} count matrices)" in line, line


def test_a_layer_that_is_not_there_says_why(rich_h5ad, tmp_path):
    """--layer naming a matrix that is absent or dropped says so, not only that it holds no counts;
    --drop with a matrix-only input names the input."""
    from conftest import DATA, assert_one_error_line, sinr_cli

    source = DATA / "pbmc4k_v2_soupx_half"

    for extra, why in ((["--layer", "nothing"], "there is no layers/nothing"),
                       (["--layer", "counts", "--drop", "layers/counts"], "layers/counts is dropped (--drop)")):
        assert_one_error_line(sinr_cli("encode", rich_h5ad, tmp_path / "x.sinr", *extra), why)
    assert_one_error_line(sinr_cli("encode", source, tmp_path / "x.sinr", "--drop", "obs"),
                          f"--drop applies to a whole .h5ad, .zarr or 10x .h5, not to {source}")


def test_append_of_a_normalised_x_names_the_counts_layer(rich_h5ad, tmp_path):
    """`sinr append f.sinr new.h5ad` of an AnnData whose X is normalised and whose counts are a layer
    said only 'contains non-integer values' (so did scinrcodec.append); both name the layer, as encode
    does, but not encode's other way out (a whole AnnData cannot be appended to)."""
    sinr.encode(rich_h5ad, tmp_path / "base.sinr", layer="counts", **FAST)
    renamed = anndata.read_h5ad(rich_h5ad)
    renamed.obs_names = [f"new-{name}" for name in renamed.obs_names]
    renamed.write_h5ad(tmp_path / "new.h5ad")
    error = assert_one_error_line(sinr_cli("append", tmp_path / "base.sinr", tmp_path / "new.h5ad"), "X is not counts")
    assert "append that with --layer counts (layer='counts')" in error and "encode_whole" not in error
    with pytest.raises(sinr.InvalidInputError, match=r"X is not counts.*append that with --layer counts") as info:
        sinr.append(tmp_path / "base.sinr", renamed)  # the Python API as the CLI
    assert "encode_whole" not in str(info.value)
    assert sinr.open(tmp_path / "base.sinr").shape[1] == renamed.n_obs
    assert sinr_cli("append", tmp_path / "base.sinr", tmp_path / "new.h5ad", "--layer", "counts").returncode == 0
