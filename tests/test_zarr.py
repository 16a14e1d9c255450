"""AnnData zarr stores in and out: `sinr encode x.zarr` keeps the whole AnnData as an .h5ad input
does (zarr formats 2 and 3), `sinr decode y.sinr z.zarr` writes it back as a store, atomically;
what is not an AnnData store, or not a store, is one clear error line."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zlib

import anndata
import numpy as np
import pytest
import scipy.sparse as sp
import zarr
from anndata.tests.helpers import assert_equal

import scinrcodec as sinr
from conftest import DATA, FAST, assert_one_error_line, leftovers, sinr_cli
from test_anndata import assert_same_anndata, rich_anndata
from test_inputs import PEAK_OF_CLI
from scinrcodec import limits
from scinrcodec.io.zarr_store import ZarrCsrSource, open_zarr, write_zarr_store
from scinrcodec.wholefile import parts

FORMATS = (2, 3)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The rich AnnData of test_anndata as a store of each zarr format, and its .sinr."""
    folder = tmp_path_factory.mktemp("zarr")
    a = rich_anndata()
    paths = {}
    for fmt in FORMATS:
        paths[fmt] = folder / f"rich{fmt}.zarr"
        with anndata.settings.override(zarr_write_format=fmt):
            a.copy().write_zarr(paths[fmt])
    paths["sharded"] = folder / "rich_sharded.zarr"  # format 3 in shards, anndata's default soon
    with anndata.settings.override(zarr_write_format=3, auto_shard_zarr_v3=True):
        a.copy().write_zarr(paths["sharded"])
    return paths


@pytest.fixture(scope="module")
def store_sinr(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("zarr_sinr") / "rich.sinr"
    sinr.encode_whole(stores[2], out, chunk_cells=32, **FAST)
    return out


def zarr_format(path) -> int:
    return zarr.open_group(path, mode="r").metadata.zarr_format


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_zarr_store_round_trips_every_element(stores, fmt, tmp_path):
    """x.zarr -> .sinr -> .zarr gives the AnnData read_zarr gives, every element and type; read_sinr
    gives it as anndata compares it (string arrays come back as objects, as read_h5ad gives them,
    where read_zarr gives numpy's StringDType), with the count matrices as .sinr matrices."""
    original = anndata.read_zarr(stores[fmt])
    encoded = tmp_path / "x.sinr"
    result = sinr_cli("encode", stores[fmt], encoded, "--chunk-cells", "32", "--siren", "never", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "parts:    X, layers, obs, var, obsm, varm, obsp, varp, uns, raw" in result.stdout
    with sinr.open(encoded) as m:
        assert m.contents.object == "anndata"
        assert sorted(m.matrix_names) == ["layers/counts", "layers/spliced", "layers/unspliced", "raw/X"]
        assert_equal(original, m.to_anndata())
    for write_format in FORMATS:
        out = tmp_path / f"back{write_format}.zarr"
        result = sinr_cli("decode", encoded, out, "--quiet", shell_prefix=f"ANNDATA_ZARR_WRITE_FORMAT={write_format}")
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert "(zarr)" in result.stdout and leftovers(tmp_path) == []
        assert zarr_format(out) == write_format
        assert_same_anndata(original, anndata.read_zarr(out))


def test_zarr_and_h5ad_inputs_store_the_same(stores, store_sinr, tmp_path):
    """A store and an .h5ad of one AnnData encode to files that read back the same, strictly."""
    h5ad = tmp_path / "rich.h5ad"
    anndata.read_zarr(stores[2]).write_h5ad(h5ad)
    sinr.encode_whole(h5ad, tmp_path / "h5ad.sinr", chunk_cells=32, **FAST)
    a, b = sinr.open(store_sinr), sinr.open(tmp_path / "h5ad.sinr")
    assert a.matrix_names == b.matrix_names
    assert_same_anndata(a.to_anndata(), b.to_anndata())
    assert a.to_anndata().layers["counts"].dtype == np.int32


@pytest.mark.parametrize("fmt", [*FORMATS, "sharded"])
def test_count_matrices_of_a_store_stream_by_cells(stores, fmt):
    """X, a layer or raw.X in CSR reads a block of cells at a time, exactly, with its names; a
    worker can open it again from its spec."""
    original = anndata.read_zarr(stores[fmt])
    for layer, expected, var in (("counts", original.layers["counts"], original.var),
                                 ("raw", original.raw.X, original.raw.var)):
        source = sinr.read_matrix(stores[fmt], layer)
        assert isinstance(source, ZarrCsrSource) and source.spec().args["layer"] == layer
        assert (source.matrix() != expected.T).nnz == 0
        assert source.cell_names(0, source.shape[1]) == list(original.obs_names)
        assert source.gene_names == list(var.index) and source.gene_ids == list(var["gene_ids"])
        block = source.block(10, 20)
        assert (sp.csc_matrix((block.values, block.genes, block.indptr), shape=(source.shape[0], 10))
                != expected[10:20].T).nnz == 0


def test_layer_matrix_only_and_drop_as_for_h5ad(stores, tmp_path):
    """--layer, --matrix-only and --drop mean for a store what they mean for an .h5ad."""
    original = anndata.read_zarr(stores[3])
    out = tmp_path / "counts.sinr"
    result = sinr_cli("encode", stores[3], out, "--matrix-only", "--layer", "counts", "--siren", "never", "--quiet")
    assert result.returncode == 0, result.stderr
    with sinr.open(out) as m:
        assert m.contents is None and (m.to_scipy() != original.layers["counts"].T).nnz == 0
        assert list(m.obs_names) == list(original.obs_names)
    dropped = tmp_path / "dropped.sinr"
    result = sinr_cli("encode", stores[3], dropped, "--layer", "raw", "--drop", "obsm/X_umap", "--drop", "uns",
                      "--siren", "never", "--quiet")
    assert result.returncode == 0, result.stderr
    with sinr.open(dropped) as m:
        assert m.name == "raw/X"
        back = m.to_anndata()
    assert "X_umap" not in back.obsm and "X_pca" in back.obsm and not back.uns


def test_a_normalised_x_names_the_counts_layer_of_a_store(stores, tmp_path):
    """scinrcodec.encode of a store codes its X alone, as of an .h5ad: a normalised X is refused
    with the layer that holds counts named."""
    result = sinr_cli("encode", stores[2], tmp_path / "x.sinr", "--matrix-only", "--quiet")
    assert_one_error_line(result, "its layer 'counts' holds integer counts: encode that with --layer counts")
    with pytest.raises(sinr.InvalidInputError, match="non-integer"):
        sinr.encode(stores[2], tmp_path / "x.sinr", **FAST)


def test_decode_compression_of_a_store(store_sinr, tmp_path):
    """--compression: auto is zarr's default codec, gzip and none as named; lzf, HDF5's, is refused
    before any work."""
    codecs = {}
    for compression in ("auto", "gzip", "none"):
        out = tmp_path / f"{compression}.zarr"
        sinr.decode(store_sinr, out, compression=compression)
        codecs[compression] = zarr.open_group(out, mode="r")["layers/counts/data"].compressors
    assert codecs["auto"] and type(codecs["gzip"][0]).__name__ == "GZip" and codecs["none"] == ()
    result = sinr_cli("decode", store_sinr, tmp_path / "lzf.zarr", "--compression", "lzf")
    assert_one_error_line(result, "compression lzf is HDF5's; a zarr output takes auto (zarr's default), gzip or none")
    assert not (tmp_path / "lzf.zarr").exists() and leftovers(tmp_path) == []


def test_one_matrix_decodes_to_a_store_with_its_names(tmp_path):
    """A file of one matrix decodes to a store as to an .h5ad: X in float32 (or --dtype), its names."""
    encoded = tmp_path / "pbmc.sinr"
    sinr.encode(DATA / "pbmc4k_v2_soupx_half", encoded, **FAST)
    assert sinr.decode(encoded, tmp_path / "x.zarr") == "zarr"
    sinr.decode(encoded, tmp_path / "x.h5ad")
    expected = anndata.read_h5ad(tmp_path / "x.h5ad")
    back = anndata.read_zarr(tmp_path / "x.zarr")
    assert_equal(expected, back)
    assert back.X.dtype == np.float32
    sinr.encode_whole(tmp_path / "x.zarr", tmp_path / "again.sinr", **FAST)  # raw stored as anndata's 'null'
    again = sinr.read_sinr(tmp_path / "again.sinr")
    assert again.raw is None
    assert_equal(back, again)
    sinr.decode(encoded, tmp_path / "int.zarr", dtype="int32")
    assert anndata.read_zarr(tmp_path / "int.zarr").X.dtype == np.int32
    with pytest.raises(sinr.InvalidInputError, match="apply to .h5ad and .zarr outputs, not npz"):
        sinr.decode(encoded, tmp_path / "x.npz", dtype="int32")


def test_an_existing_store_is_replaced_only_with_force(store_sinr, stores, tmp_path):
    """An output store is a folder output: refused when it exists, replaced with --force only where
    it holds nothing but what a store's writer writes; a file named .zarr is no folder."""
    out = tmp_path / "out.zarr"
    shutil.copytree(stores[3], out)
    assert_one_error_line(sinr_cli("decode", store_sinr, out), "already exists (use --force")
    result = sinr_cli("decode", store_sinr, out, "--force", "--quiet")
    assert result.returncode == 0, result.stderr
    assert zarr_format(out) == 2 and not (out / "zarr.json").exists() and leftovers(tmp_path) == []
    mine = tmp_path / "mine.zarr"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert_one_error_line(sinr_cli("decode", store_sinr, mine, "--force"), "the folder holds 'notes.txt'")
    assert (mine / "notes.txt").read_text() == "keep"
    a_file = tmp_path / "file.zarr"
    a_file.write_text("not a store")
    assert_one_error_line(sinr_cli("decode", store_sinr, a_file), "already exists")
    assert_one_error_line(sinr_cli("decode", store_sinr, a_file, "--force"),
                          "is an existing file; this output is a folder")
    assert_one_error_line(sinr_cli("encode", a_file, tmp_path / "y.sinr"), "unknown input format")


def test_a_symbolic_link_named_as_the_output_store_is_named_as_one(store_sinr, tmp_path):
    """--force over a symbolic link named x.zarr (to a folder, or to nothing) was refused as 'is an
    existing file'; it is refused as a link, and neither it nor its folder is touched."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    for name, points_to in (("link.zarr", folder), ("dangling.zarr", tmp_path / "nothing")):
        link = tmp_path / name
        link.symlink_to(points_to)
        assert_one_error_line(sinr_cli("decode", store_sinr, link, "--force"),
                              f"{link}: is a symbolic link; this output is a folder, which does not replace one")
        assert link.is_symlink() and link.readlink() == points_to
    assert [p.name for p in folder.iterdir()] == ["keep.txt"] and leftovers(tmp_path) == []


def test_a_store_that_is_not_an_anndata_is_refused(tmp_path):
    for fmt in FORMATS:
        store = tmp_path / f"plain{fmt}.zarr"
        group = zarr.open_group(store, mode="w", zarr_format=fmt)
        group.create_array("x", shape=(3,), dtype="int32")
        result = sinr_cli("encode", store, tmp_path / "x.sinr")
        assert_one_error_line(result, "a zarr store whose root is not an AnnData (its encoding-type is None")
        with pytest.raises(sinr.InvalidInputError, match="not an AnnData"):
            sinr.encode_whole(store, tmp_path / "x.sinr", **FAST)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_error_line(sinr_cli("encode", empty, tmp_path / "x.sinr"), "holds no matrix.mtx(.gz) and is no AnnData")


def test_a_store_whose_root_metadata_is_damaged_is_named_as_one(tmp_path):
    """Root attributes that are not JSON were 'folder holds no matrix.mtx(.gz) and is no AnnData zarr
    store', and JSON nested deeper than Python's parser goes was 'internal error (RecursionError
    ...); please report it'; both name the damaged file."""
    for name, text, why in ((".zattrs", "{nope", "Expecting property name"),
                            (".zattrs", "[" * 100_000 + "]" * 100_000, "arrays or objects nested too deep"),
                            ("zarr.json", '{"zarr_format": 3, "node_type": "group", "attributes": '
                             + "[" * 100_000 + "]" * 100_000 + "}", "arrays or objects nested too deep")):
        store = tmp_path / "damaged.zarr"
        shutil.rmtree(store, ignore_errors=True)
        store.mkdir()
        (store / name).write_text(text)
        assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr"),
                              f"{store}: its {name} is unreadable ({why}")


def test_a_damaged_store_is_one_error_line(stores, tmp_path):
    """A chunk zarr cannot inflate, or metadata that is not JSON, is one error naming the store."""
    store = tmp_path / "bad.zarr"
    shutil.copytree(stores[2], store)
    (store / "layers" / "counts" / "data" / "0").write_bytes(b"garbage")
    for args in ((), ("--matrix-only", "--layer", "counts")):
        assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr", *args), "unreadable zarr content")
    (store / ".zmetadata").write_text("{")
    assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr"), "unreadable zarr content")
    assert not (tmp_path / "x.sinr").exists() and leftovers(tmp_path) == []


def test_a_member_whose_metadata_is_not_json_is_one_error_line_and_nothing_more(stores, tmp_path):
    """A store without consolidated metadata whose obs metadata is not JSON: zarr's listing read every
    member's metadata at once and left the others running when obs's failed, and Python printed
    their errors (FileNotFoundError tracebacks, 'Task was destroyed but it is pending!') after the
    error line as it exited, in most runs; the members are now read one at a time."""
    for fmt, attributes in ((2, ".zattrs"), (3, "zarr.json")):
        store = tmp_path / f"bad{fmt}.zarr"
        shutil.copytree(stores[fmt], store)
        if fmt == 2:
            (store / ".zmetadata").unlink()
        else:
            root = json.loads((store / "zarr.json").read_text())
            root.pop("consolidated_metadata")
            (store / "zarr.json").write_text(json.dumps(root))
        (store / "obs" / attributes).write_text("{nope")
        for _ in range(3):  # the exit's leftovers depend on the threads' timing: each run must be clean
            assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr"), "unreadable zarr content")


def test_a_zipped_store_is_named_as_one(stores, tmp_path):
    """A .zarr.zip (a zip is sniffed as an .npz by its content) was refused as "holds no 'format'
    array"; a zip holding a store's root metadata at its top (zarr's ZipStore) or in one folder (a
    zip of the folder) is now named as what it is."""
    for fmt in FORMATS:
        top = shutil.make_archive(str(tmp_path / f"top{fmt}"), "zip", stores[fmt])
        folder = shutil.make_archive(str(tmp_path / f"folder{fmt}"), "zip", stores[fmt].parent, stores[fmt].name)
        for archive in (top, folder):
            zipped = shutil.move(archive, archive.replace(".zip", ".zarr.zip"))
            assert_one_error_line(sinr_cli("encode", zipped, tmp_path / "x.sinr"),
                                  "a zip of a zarr store, which sinr does not read; unzip it and encode the store's "
                                  "folder")


def test_a_matrix_holding_more_values_than_its_shape_is_refused_before_its_scan(tmp_path):
    """The whole-file plan's checks of an .h5ad's matrices hold for a store's (parts.disk_format)."""
    store = tmp_path / "x.zarr"
    x = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=np.int32))
    anndata.AnnData(x).write_zarr(store)
    attrs = json.loads((store / "X" / ".zattrs").read_text())
    attrs["shape"] = [1, 1]
    (store / "X" / ".zattrs").write_text(json.dumps(attrs))
    (store / ".zmetadata").unlink()
    assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr"), "/X holds 3 values for 1 x 1 entries")


def test_a_matrix_read_whole_is_checked_against_the_memory_free_before_its_scan(tmp_path, monkeypatch):
    """A dense X (read whole, as a CSC one is) declaring 2**20 x 2**20 int32 whose chunks are not
    stored (zarr gives the fill value) was scanned for counts a slice at a time before its read was
    refused (2**34 items of such a 156 kB store: 18 s); it is refused before the scan."""
    store = tmp_path / "dense.zarr"
    anndata.AnnData(np.zeros((4, 3), dtype=np.int32)).write_zarr(store)
    (store / ".zmetadata").unlink()
    meta = store / "X" / ".zarray"
    doc = json.loads(meta.read_text())
    doc.update(shape=[2**20, 2**20], chunks=[4096, 4096])
    meta.write_text(json.dumps(doc))
    for chunk in (store / "X").glob("[0-9]*"):
        chunk.unlink()

    def scanned(obj):
        raise AssertionError(f"{obj.path} scanned before its size was checked")

    monkeypatch.setattr(parts, "disk_format", scanned)
    with pytest.raises(sinr.ResultTooLargeError, match="dense.zarr: X needs 4,096.0 GiB of memory"):
        sinr.encode_whole(store, tmp_path / "x.sinr", **FAST)
    assert not (tmp_path / "x.sinr").exists() and leftovers(tmp_path) == []


def test_index_pointers_are_checked_before_the_entries_they_point_to(tmp_path):
    """A cell whose pointers claim more entries than there are genes, or pointers that decrease,
    are refused before its entries are read, by the whole-file encode and the matrix alone."""
    store = tmp_path / "x.zarr"
    x = sp.csr_matrix(np.array([[1, 0], [0, 3], [2, 0]], dtype=np.int32))
    for pointers, why in (([0, 3, 3, 3], "a cell holds 3 entries for 2 genes"),
                          ([0, 2, 1, 3], "index pointers decrease or run past the 3 stored values")):
        anndata.AnnData(x).write_zarr(store)
        zarr.open_group(store, mode="r+")["X/indptr"][:] = pointers
        for args in ((), ("--matrix-only",)):
            assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr", *args), why)
        shutil.rmtree(store)


def test_a_chunk_far_larger_than_its_array_is_refused_before_reading(stores, tmp_path):
    """zarr inflates a chunk whole to read any item of it: an obs index of 80 names declaring a
    chunk of 2**28 (4 GiB of StringDType) is refused from its metadata, before anything is read."""
    store = tmp_path / "bomb.zarr"
    shutil.copytree(stores[2], store)
    (store / ".zmetadata").unlink()  # the metadata read is the array's own
    meta = store / "obs" / "_index" / ".zarray"
    doc = json.loads(meta.read_text())
    doc["chunks"] = [2**28]
    meta.write_text(json.dumps(doc))
    result = sinr_cli("encode", store, tmp_path / "x.sinr")
    assert_one_error_line(result, "obs/_index stores 80 items (1,280 bytes) in a chunk of 268,435,456 "
                                  "(4,294,967,296 bytes), which zarr inflates whole")
    with pytest.raises(sinr.InvalidInputError, match="which zarr inflates whole"):
        sinr.read_matrix(store, "counts")


def _zeros_compressed(codec: str, n_bytes: int) -> bytes:
    """n_bytes zeros (whole MiB) as one gzip member or one zstd frame, with its size declared or
    without ('zstd-unsized'), or after a frame of 24 zeros ('zstd-frames'), a MiB at a time."""
    import zstandard

    piece = bytes(1 << 20)
    if codec == "gzip":
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    else:
        compressor = zstandard.ZstdCompressor(level=1, write_content_size=codec != "zstd-unsized").compressobj(
            size=n_bytes)
    first = zstandard.ZstdCompressor().compress(bytes(24)) if codec == "zstd-frames" else b""
    return first + b"".join(compressor.compress(piece) for _ in range(n_bytes >> 20)) + compressor.flush()


# (zarr format, codec, the array, its chunk file, the bytes the chunk may inflate to, what the bomb inflates to)
BOMBS = [(3, "zstd", "X/data", "c/0", "24", 1 << 31),  # the reviewer's: a 240 kB store took 2.16 GB
         (2, "gzip", "uns/v", "0", "24", 1 << 30),  # 1 GiB in 4.7 MB
         (3, "zstd-frames", "uns/v", "c/0", "24", 1 << 31),  # numcodecs inflates every frame, the first declares 24
         (3, "zstd-unsized", "obs/_index", "c/0", "67,108,864", 1 << 31)]  # strings: MAX_TEXT_CHUNK_BYTES


@pytest.mark.parametrize("fmt, codec, array, chunk, bound, inflated", BOMBS)
def test_a_chunk_inflating_past_its_size_is_refused_before_zarr_inflates_it(tmp_path, fmt, codec, array, chunk,
                                                                            bound, inflated):
    """zarr and numcodecs inflate a chunk whole, with no cap: a 240 kB store whose X/data chunk of 3
    items was one zstd frame of 2 GiB of zeros took `sinr encode` 2.16 GB, a gzip chunk of a format-2
    store 4.3 GB. Each chunk file is checked as it is read, before zarr inflates it: a refusal in one
    line, at a peak well under the bomb; the store as written still encodes exactly."""
    clean, store = tmp_path / "clean.zarr", tmp_path / "bomb.zarr"
    a = anndata.AnnData(sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=np.int64)), uns={"v": np.arange(3)})
    with anndata.settings.override(zarr_write_format=fmt):
        write_zarr_store(clean, a, "gzip" if codec == "gzip" else "auto")
    shutil.copytree(clean, store)
    (store / array / chunk).write_bytes(_zeros_compressed(codec, inflated))
    assert sum(f.stat().st_size for f in store.rglob("*")) < 5 << 20
    runs = {path: subprocess.run([sys.executable, "-c", PEAK_OF_CLI, "encode", path, tmp_path / f"{path.stem}.sinr"],
                                 capture_output=True, text=True, timeout=300, check=False) for path in (store, clean)}
    code, peak = map(int, runs[store].stdout.split()[-2:])
    assert code == 1 and runs[store].stderr.strip() == (f"sinr: error: {store}: the chunk {chunk} of {array} does not "
                                                        f"inflate into its {bound} bytes"), runs[store].stderr
    assert peak < 512 << 20
    if array == "X/data":  # the count matrix alone, streamed by cells
        with pytest.raises(sinr.InvalidInputError, match=f"the chunk {chunk} of {array} does not inflate"):
            sinr.encode(store, tmp_path / "bomb.sinr", **FAST)
    assert not (tmp_path / "bomb.sinr").exists() and leftovers(tmp_path) == []
    assert runs[clean].stdout.split()[-2] == "0", runs[clean].stderr
    sinr.decode(tmp_path / "clean.sinr", tmp_path / "back.zarr")
    assert_equal(anndata.read_zarr(tmp_path / "back.zarr").X, a.X)


def test_a_codec_whose_output_cannot_be_bounded_is_refused(tmp_path):
    """A chunk's inflation is checked before zarr inflates it only for the codecs whose output can
    be bounded cheaply; a store compressed otherwise (lz4) is one line naming the array."""
    import numcodecs

    a = anndata.AnnData(sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=np.int32)), uns={"v": np.arange(3)})
    lz4 = tmp_path / "lz4.zarr"
    a.write_zarr(lz4)
    group = zarr.open_group(lz4, mode="r+")
    attrs = dict(group["uns/v"].attrs)
    del group["uns/v"]
    group.create_array("uns/v", data=np.arange(3), compressors=numcodecs.LZ4(), attributes=attrs)
    zarr.consolidate_metadata(lz4)
    assert_one_error_line(sinr_cli("encode", lz4, tmp_path / "x.sinr"),
                          f"{lz4}: uns/v is encoded with lz4, whose output sinr cannot bound before zarr inflates it")
    assert not (tmp_path / "x.sinr").exists()


def test_a_sharded_store_encodes_as_its_unsharded_twin(stores, tmp_path):
    """anndata writes zarr v3 stores in shards where auto_shard_zarr_v3 is set (its default from its
    next minor release), and `sinr encode` refused every one ('obs/_index is sharded, whose inner
    chunks sinr cannot check before zarr inflates them'). Each shard's index and inner chunks are
    now checked as zarr reads them: the store encodes to the very bytes of the same AnnData's
    unsharded store, reads back every element, and `sinr decode` under the setting writes shards
    that encode again to the same bytes."""
    sharded = stores["sharded"]
    assert zarr.open_group(sharded, mode="r")["X/data"].shards is not None
    encoded = {}
    for name, store in (("sharded", sharded), ("unsharded", stores[3])):
        encoded[name] = tmp_path / f"{name}.sinr"
        result = sinr_cli("encode", store, encoded[name], "--chunk-cells", "32", "--siren", "never", "--quiet")
        assert result.returncode == 0, result.stderr
    assert encoded["sharded"].read_bytes() == encoded["unsharded"].read_bytes()
    assert_equal(anndata.read_zarr(sharded), sinr.read_sinr(encoded["sharded"]))
    back = tmp_path / "back.zarr"
    result = sinr_cli("decode", encoded["sharded"], back, "--quiet",
                      shell_prefix="ANNDATA_ZARR_WRITE_FORMAT=3 ANNDATA_AUTO_SHARD_ZARR_V3=1")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert zarr.open_group(back, mode="r")["X/data"].shards is not None
    sinr.encode_whole(back, tmp_path / "again.sinr", chunk_cells=32, siren="never", progress=False)
    assert (tmp_path / "again.sinr").read_bytes() == encoded["sharded"].read_bytes()


def _compressed(codec: str, raw: bytes) -> bytes:
    """`raw` as one gzip member or one zstd frame (its size declared), as zarr's codecs write it."""
    import gzip

    import zstandard

    return gzip.compress(raw) if codec == "gzip" else zstandard.ZstdCompressor().compress(raw)


SHARDED = ("X/data", "uns/v")  # the arrays of _sharded_store written again in shards of three inner chunks


def _sharded_store(path, codec: str = "zstd", index_location: str = "end"):
    """A 2 x 3 CSR matrix of 3 int64 values and uns/v of 3 int64 in a format-3 store written in
    shards, whose X/data and uns/v are one shard of three inner chunks of one item each (anndata
    writes one inner chunk a shard), compressed by `codec` (or 'none'), the index at `index_location`."""
    from zarr.codecs import GzipCodec, ZstdCodec

    a = anndata.AnnData(sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]], dtype=np.int64)), uns={"v": np.arange(3)})
    with anndata.settings.override(zarr_write_format=3, auto_shard_zarr_v3=True):
        a.write_zarr(path)
    group = zarr.open_group(path, mode="r+")
    compressors = {"zstd": ZstdCodec(), "gzip": GzipCodec(), "none": None}[codec]
    for name in SHARDED:
        values, attrs = group[name][:], dict(group[name].attrs)
        del group[name]
        group.create_array(name, data=values, chunks=(1,), shards={"shape": (3,), "index_location": index_location},
                           compressors=compressors, attributes=attrs)
    zarr.consolidate_metadata(path)
    return a


def _write_shard(path, chunks: list[bytes], entries: list[tuple[int, int]] | None = None,
                 at_start: bool = False) -> None:
    """Write a shard file of inner chunks back to back and their index (zarr's: little-endian uint64
    offset and length of each, then the crc32c of those), at the file's start or end; `entries` in
    place of the chunks' own."""
    import google_crc32c

    if entries is None:
        at, entries = (16 * len(chunks) + 4 if at_start else 0), []
        for chunk in chunks:
            entries.append((at, len(chunk)))
            at += len(chunk)
    index = np.array(entries, dtype="<u8").tobytes()
    index += np.uint32(google_crc32c.value(index)).tobytes()
    data = b"".join(chunks)
    path.write_bytes(index + data if at_start else data + index)


# (codec, the array, what its first inner chunk inflates to): each shard of three inner chunks of one int64
SHARD_BOMBS = [("zstd", "X/data", 1 << 31), ("gzip", "uns/v", 1 << 30)]


@pytest.mark.parametrize("codec, array, inflated", SHARD_BOMBS)
def test_an_inner_chunk_inflating_past_its_size_is_refused_before_zarr_inflates_it(tmp_path, codec, array, inflated):
    """An inner chunk of a shard is inflated whole by zarr as an unsharded chunk is: one zstd frame of
    2 GiB of zeros, or a gzip member of 1 GiB, in place of 8 bytes. Refused in one line as its shard
    is read whole (the CLI) at a peak well under the bomb, and as the inner chunk alone is read by
    its byte range (the first cell of X, after the shard's index); the store as written encodes."""
    clean, store = tmp_path / "clean.zarr", tmp_path / "bomb.zarr"
    a = _sharded_store(clean, codec)
    shutil.copytree(clean, store)
    values = zarr.open_group(clean, mode="r")[array][:]
    _write_shard(store / array / "c" / "0", [_zeros_compressed(codec, inflated),
                                             *(_compressed(codec, v.tobytes()) for v in values[1:])])
    assert sum(f.stat().st_size for f in store.rglob("*")) < 5 << 20
    runs = {path: subprocess.run([sys.executable, "-c", PEAK_OF_CLI, "encode", path, tmp_path / f"{path.stem}.sinr"],
                                 capture_output=True, text=True, timeout=300, check=False) for path in (store, clean)}
    code, peak = map(int, runs[store].stdout.split()[-2:])
    why = f"{store}: the chunk at byte 0 of the shard c/0 of {array} does not inflate into its 8 bytes"
    assert code == 1 and runs[store].stderr.strip() == f"sinr: error: {why}", runs[store].stderr
    assert peak < 512 << 20
    if array == "X/data":
        with pytest.raises(sinr.InvalidInputError, match=why):
            sinr.read_matrix(store).block(0, 1)
    assert not (tmp_path / "bomb.sinr").exists() and leftovers(tmp_path) == []
    assert runs[clean].stdout.split()[-2] == "0", runs[clean].stderr
    assert_equal(sinr.read_sinr(tmp_path / "clean.sinr").X, a.X)


NO_CHUNK = (2**64 - 1, 2**64 - 1)
# (the index of a shard of three inner chunks of 8 bytes, and the refusal, given the byte the inner chunks
# start at (`low`) and the one the index starts at)
BAD_INDEXES = {
    "into its index": (lambda low, index: [(index, 8), (low + 8, 8), (low + 16, 8)],
                       lambda low, index: f"indexes an inner chunk of 8 bytes at byte {index}, outside its inner "
                                          f"chunks' bytes {low} to {low + 24}"),
    "past the end": (lambda low, index: [(low, 1000), (low + 8, 8), (low + 16, 8)],
                     lambda low, index: f"indexes an inner chunk of 1,000 bytes at byte {low}, outside its inner "
                                        f"chunks' bytes {low} to {low + 24}"),
    "wrapping": (lambda low, index: [(low + 16, 2**64 - 2), (low, 8), (low + 8, 8)],
                 lambda low, index: "indexes an inner chunk of 18,446,744,073,709,551,614 bytes at byte "
                                    f"{low + 16}, outside its inner chunks' bytes {low} to {low + 24}"),
    "overlapping": (lambda low, index: [(low + 4, 8), (low, 8), (low + 16, 8)],
                    lambda low, index: f"indexes an inner chunk of 8 bytes at byte {low + 4}, overlapping the one "
                                       f"of 8 bytes at byte {low}"),
    "of no bytes": (lambda low, index: [(low, 8), (low + 8, 0), (low + 16, 8)],
                    lambda low, index: f"indexes an inner chunk of 0 bytes at byte {low + 8}, which cannot hold its "
                                       "items"),
    "too short": (lambda low, index: [NO_CHUNK, NO_CHUNK],
                  lambda low, index: "holds 36 bytes, fewer than its index of 3 inner chunks (52 bytes)")}


@pytest.mark.parametrize("at_start", [False, True], ids=["index at end", "index at start"])
@pytest.mark.parametrize("case", BAD_INDEXES)
def test_a_shard_index_pointing_outside_its_shard_is_refused(tmp_path, case, at_start):
    """zarr slices a shard's bytes where its index says, unchecked: an inner chunk pointing into the
    index read the index's bytes as its values (X/data [1, 2, 3] as [24, 2, 3], uncompressed), one
    across two others the end of one and the start of the next (uns/v [0, 1, 2] as [2**32, 0, 2]); one
    of no bytes, one past the file's end, or whose length wraps past 2**64, and an index longer than
    its file, ended
    in numpy's errors ('cannot reshape array of size 0 into shape (1,)', 'read length must be
    non-negative or -1', 'buffer is smaller than requested size'). Each is one line naming the
    shard, as the whole shard is read (uns/v, by the CLI) and as its index is read alone (the first
    cell of X); the valid store, its index at either end, reads back exactly."""
    clean = tmp_path / "clean.zarr"
    a = _sharded_store(clean, "none", index_location="start" if at_start else "end")
    assert sinr.encode_whole(clean, tmp_path / "clean.sinr", **FAST)["nnz"] == 3
    back = sinr.read_sinr(tmp_path / "clean.sinr")
    assert_equal(back.X, a.X)
    assert_equal(back.uns["v"], a.uns["v"])
    assert sinr.read_matrix(clean).block(0, 1).values.tolist() == [1, 2]  # its index, then two inner chunks
    low, index = (52, 0) if at_start else (0, 24)
    entries, why = (f(low, index) for f in BAD_INDEXES[case])
    for array in SHARDED:
        store = tmp_path / f"bad_{array.replace('/', '_')}.zarr"
        shutil.copytree(clean, store)
        values = zarr.open_group(clean, mode="r")[array][:]
        chunks = [] if case == "too short" else [v.tobytes() for v in values]
        _write_shard(store / array / "c" / "0", chunks, entries, at_start)
        message = f"{store}: the shard c/0 of {array} {why}"
        if array == "uns/v":
            assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr"), message)
        else:
            with pytest.raises(sinr.InvalidInputError, match=re.escape(message)):
                sinr.read_matrix(store).block(0, 1)
    assert not (tmp_path / "x.sinr").exists()


NOT_FILES = {  # what lies where c/0, X's only shard (or chunk), belongs; whether zarr would read it in time
    "folder": (lambda c: (c.unlink(), c.mkdir()), True),
    "file on its path": (lambda c: (shutil.rmtree(c.parent), c.parent.write_bytes(b"")), True),
    "link to /dev/zero": (lambda c: (c.unlink(), c.symlink_to("/dev/zero")), False),
    "pipe": (lambda c: (c.unlink(), os.mkfifo(c)), False)}


@pytest.mark.parametrize("in_place", NOT_FILES)
@pytest.mark.parametrize("sharded", [True, False], ids=["sharded", "unsharded"])
def test_a_chunk_file_that_is_not_a_file_is_refused(tmp_path, sharded, in_place):
    """zarr's LocalStore reads a chunk file that is a folder, or one below a file where its folder
    belongs, as a chunk not stored (the array's fill value): X's only shard (or chunk), c/0, replaced
    by a folder was encoded as a matrix of zeros, uns/v as [0, 0, 0]; a device or a pipe it reads
    until it ends: a link to /dev/zero grew to the memory's limit (MemoryError at 1.4 GB under a
    2 GB ulimit), a pipe no one writes waited forever. Each is one line naming the chunk, before
    anything is read, as the whole store is read (the CLI, here under a 3 GB ulimit and a minute)
    and as a block of cells is (X; where zarr's read would end)."""
    clean = tmp_path / "clean.zarr"
    if sharded:
        _sharded_store(clean, "none")
    else:
        with anndata.settings.override(zarr_write_format=3, auto_shard_zarr_v3=False):
            anndata.AnnData(sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]])), uns={"v": np.arange(3)}).write_zarr(clean)
    place, ends = NOT_FILES[in_place]
    for array in SHARDED:
        store = tmp_path / f"bad_{array.replace('/', '_')}.zarr"
        shutil.copytree(clean, store)
        place(store / array / "c" / "0")
        message = f"{store}: the chunk c/0 of {array} is not a file"
        assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr", shell_prefix="ulimit -v 3000000;",
                                       timeout=60), message)
        if array == "X/data" and ends:
            with pytest.raises(sinr.InvalidInputError, match=re.escape(message)):
                sinr.read_matrix(store).block(0, 1)
    assert not (tmp_path / "x.sinr").exists()


def test_a_metadata_file_that_is_not_a_file_is_refused(tmp_path):
    """A store without consolidated metadata has zarr read each node's zarr.json as it opens it, through
    the same LocalStore: uns/v/zarr.json a link to /dev/zero grew to the memory's limit (MemoryError
    at 2.4 GB under a 3 GB ulimit). One line naming the file, before it is read."""
    store = tmp_path / "x.zarr"
    _sharded_store(store, "none")
    root = json.loads((store / "zarr.json").read_text())
    del root["consolidated_metadata"]
    (store / "zarr.json").write_text(json.dumps(root))
    (store / "uns/v/zarr.json").unlink()
    (store / "uns/v/zarr.json").symlink_to("/dev/zero")
    assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr", shell_prefix="ulimit -v 3000000;",
                                   timeout=60), f"{store}: uns/v/zarr.json is not a file")
    assert not (tmp_path / "x.sinr").exists()


def _edit_codecs(store, array: str, edit) -> None:
    """Rewrite the zarr.json of `array` in a format-3 store through `edit` (its metadata, in place)."""
    meta = store / array / "zarr.json"
    doc = json.loads(meta.read_text())
    edit(doc)
    meta.write_text(json.dumps(doc))
    zarr.consolidate_metadata(store)


def _nested(doc):
    sharding = doc["codecs"][0]["configuration"]
    sharding["codecs"] = [{"name": "sharding_indexed", "configuration": {**sharding, "chunk_shape": [1]}}]


def _index_codecs(doc):
    doc["codecs"][0]["configuration"]["index_codecs"][1] = {"name": "zstd",
                                                            "configuration": {"level": 0, "checksum": False}}


def _big_endian_index(doc):
    doc["codecs"][0]["configuration"]["index_codecs"][0]["configuration"] = {"endian": "big"}


def _shard_of_2_40(doc):
    doc["chunk_grid"]["configuration"]["chunk_shape"] = [2**40]


# (how uns/v's metadata is edited, the refusal)
SHARDS_REFUSED = {
    "nested": (_nested, "uns/v holds shards within its shards, which sinr does not read"),
    "outer codec": (lambda doc: doc["codecs"].append({"name": "crc32c"}),
                    ("uns/v is encoded with crc32c around its shards, which sinr does not read; sinr reads shards "
                     "whose codec is sharding_indexed alone")),
    "index codec": (_index_codecs, ("uns/v has a shard index of bytes + zstd (little-endian), which sinr does not "
                                    "read; sinr reads bytes (little-endian), with or without crc32c")),
    "big-endian index": (_big_endian_index, "uns/v has a shard index of bytes + crc32c (big-endian)"),
    "shard index over the memory free": (_shard_of_2_40, "the index of a shard of uns/v needs 16,384.0 GiB of memory")}


@pytest.mark.parametrize("case", SHARDS_REFUSED)
def test_shards_sinr_cannot_check_are_refused_naming_the_array(tmp_path, case):
    """Shards within shards, a codec around the shards (zarr then reads and inflates a shard whole),
    an index of a codec whose size is not fixed, and an index (16 bytes an inner chunk, which zarr
    reads whole) larger than the memory free: one line, before any chunk is read."""
    store = tmp_path / "x.zarr"
    _sharded_store(store)
    edit, why = SHARDS_REFUSED[case]
    _edit_codecs(store, "uns/v", edit)
    assert_one_error_line(sinr_cli("encode", store, tmp_path / "x.sinr"), f"{store}: {why}")


def test_a_shard_larger_than_the_memory_free_is_read_by_its_inner_chunks(tmp_path, monkeypatch):
    """zarr reads a shard's index whole, then only the inner chunks a read needs (a CSR X streams a
    block of cells at a time), never the shard inflated whole, yet a shard of 1 GiB (X/data of 2**27
    int64 in one shard of 1 MiB inner chunks) was refused with 0.75 GiB free ('a chunk of X/data's
    shard needs 1.0 GiB of memory'). Its index of 16 KiB is what is checked: read, where an index
    itself over the memory free (one inner chunk an item) is still refused."""
    monkeypatch.setattr(limits, "available_memory", lambda: 3 << 28)
    store = tmp_path / "x.zarr"
    _sharded_store(store)
    group = zarr.open_group(store, mode="r+")
    del group["X/data"]
    group.create_array("X/data", shape=(2**27,), dtype="int64", chunks=(2**17,), shards=(2**27,))
    zarr.consolidate_metadata(store)
    assert open_zarr(store)["X/data"][:3].tolist() == [0, 0, 0]
    _edit_codecs(store, "X/data", lambda doc: doc["codecs"][0]["configuration"].update(chunk_shape=[1]))
    with pytest.raises(sinr.ResultTooLargeError, match="the index of a shard of X/data needs 2.0 GiB of memory"):
        open_zarr(store)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_store_without_consolidated_metadata_encodes_to_the_same_bytes(stores, tmp_path, monkeypatch, fmt):
    """Without consolidated metadata zarr lists a group's members as the file system lists its folder
    (reversed here); the .sinr file had followed that order (its matrices and uns' keys: other bytes
    for the same AnnData, another file system's order giving others again). It now takes them sorted,
    as consolidated metadata and .h5ad files list them."""
    plain = tmp_path / "plain.zarr"
    shutil.copytree(stores[fmt], plain)
    if fmt == 2:
        (plain / ".zmetadata").unlink()
    else:
        root = json.loads((plain / "zarr.json").read_text())
        del root["consolidated_metadata"]
        (plain / "zarr.json").write_text(json.dumps(root))
    listed = zarr.storage.LocalStore.list_dir

    async def reversed_listing(self, prefix):
        for key in sorted([key async for key in listed(self, prefix)], reverse=True):
            yield key

    monkeypatch.setattr(zarr.storage.LocalStore, "list_dir", reversed_listing)
    sinr.encode_whole(stores[fmt], tmp_path / "consolidated.sinr", chunk_cells=32, **FAST)
    sinr.encode_whole(plain, tmp_path / "plain.sinr", chunk_cells=32, **FAST)
    assert (tmp_path / "plain.sinr").read_bytes() == (tmp_path / "consolidated.sinr").read_bytes()
    assert list(sinr.read_sinr(tmp_path / "plain.sinr").layers) == sorted(rich_anndata().layers)


def test_help_lists_zarr():
    for command in ((), ("encode",), ("decode",)):
        assert "AnnData .zarr" in " ".join(sinr_cli(*command, "--help").stdout.split())
