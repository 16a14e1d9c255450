"""Every output format round-trips exactly, with its names, and is read by the tools users have;
outputs are atomic: checked first, replaced only when asked and safe, never left half written."""
from __future__ import annotations

import errno
import gzip
import os
import re
import shutil
import stat

import anndata
import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, DATASETS, FAST, leftovers
from scinrcodec.io import atomic, h5ad, mtx, npz, tenx_h5, writers
from scinrcodec.io.matrix import CountMatrix
from scinrcodec.io.writers import check_output, write_matrix

FORMATS = ["out.h5ad", "out.h5", "out.mtx", "out.mtx.gz", "out.npz", "outdir"]
NAMED = ("out.h5ad", "out.h5", "outdir")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, matrices):
    folder = tmp_path_factory.mktemp("encoded")
    for name in DATASETS:
        sinr.encode(matrices[name], folder / f"{name}.sinr", **FAST)
    return folder


def same(a, b) -> bool:
    return a.shape == b.shape and (sp.csr_matrix(a) != sp.csr_matrix(b)).nnz == 0


@pytest.mark.parametrize("output", FORMATS)
def test_decode_to_every_format_round_trips(tmp_path, encoded, matrices, output):
    for name in DATASETS:
        source = matrices[name]
        m = source.matrix()
        target = tmp_path / name / output
        target.parent.mkdir()
        assert sinr.decode(encoded / f"{name}.sinr", target) == writers.output_kind(target)
        back = sinr.read_matrix(target)
        assert same(back.matrix(), m), (name, output)
        if output in NAMED:
            assert back.gene_names == source.gene_names and back.gene_ids == source.gene_ids
            assert back.feature_types == source.feature_types
            assert back.cell_names(0, m.shape[1]) == source.cell_names(0, m.shape[1])
        assert leftovers(target.parent) == []


def test_outputs_are_read_by_their_own_tools(tmp_path, encoded, pbmc):
    """anndata, scipy and h5py read the outputs as their formats define them, without scinrcodec."""
    m = pbmc.matrix()
    for output in FORMATS:
        sinr.decode(encoded / "pbmc4k_v2_soupx_half.sinr", tmp_path / output)
    adata = anndata.read_h5ad(tmp_path / "out.h5ad")
    assert adata.X.dtype == np.float32 and same(adata.X.T, m)  # the dtype policy (io/dtypes.py)
    assert list(adata.obs_names) == pbmc.cell_names(0, 80) and list(adata.var["gene_ids"]) == pbmc.gene_ids
    with h5py.File(tmp_path / "out.h5") as f:
        g = f["matrix"]
        assert g["data"].dtype == np.int32 and g["indices"].dtype == np.int64 and list(g["shape"][:]) == [150, 80]
        assert same(sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=(150, 80)), m)
        assert [b.decode() for b in g["barcodes"][:]] == pbmc.cell_names(0, 80)
        assert [b.decode() for b in g["features/name"][:]] == pbmc.gene_names
        assert f.attrs["filetype"] == "matrix" and f.attrs["version"] == 2  # Cell Ranger's loader needs them
    for output in ("out.mtx", "out.mtx.gz", "outdir/matrix.mtx.gz"):
        opener = gzip.open if output.endswith(".gz") else open
        with opener(tmp_path / output, "rb") as fh:
            assert same(scipy.io.mmread(fh), m)
    assert same(sp.load_npz(tmp_path / "out.npz"), m)
    with gzip.open(tmp_path / "outdir" / "features.tsv.gz", "rt") as fh:
        assert fh.readline().rstrip("\n").split("\t") == [pbmc.gene_ids[0], pbmc.gene_names[0], "Gene Expression"]


def test_npz_output_is_what_save_npz_writes(tmp_path, pbmc):
    """The .npz writer closes its own zip (numpy 1's savez did not, on a failed write: see
    test_cli.py::test_full_disk_is_one_line_and_leaves_nothing) and writes what save_npz writes."""
    import zipfile

    matrix = _matrix(pbmc)
    write_matrix(tmp_path / "out.npz", matrix)
    sp.save_npz(tmp_path / "scipy.npz", sp.csc_matrix(matrix.counts, dtype=np.int64))
    members = [[(i.filename, i.compress_type, i.file_size) for i in zipfile.ZipFile(tmp_path / name).infolist()]
               for name in ("out.npz", "scipy.npz")]
    assert members[0] == members[1]
    back = sp.load_npz(tmp_path / "out.npz")
    assert back.format == "csc" and back.dtype == np.int64 and same(back, matrix.counts)


def test_matrix_market_outputs_stream_back(tmp_path, encoded):
    """Entries are written cell by cell, as 10x does, so encoding them again streams."""
    sinr.decode(encoded / "pbmc4k_v2_soupx_half.sinr", tmp_path / "outdir")
    source = sinr.read_matrix(tmp_path / "outdir")
    list(source.blocks(16))
    assert source.streams is True


def _matrix(pbmc) -> CountMatrix:
    return CountMatrix(pbmc.matrix(), pbmc.gene_ids, pbmc.gene_names, pbmc.cell_names(0, pbmc.shape[1]),
                       pbmc.feature_types)


def test_write_matrix_and_the_cells_view_take_progress_as_reads_do(tmp_path, encoded, monkeypatch):
    """write_matrix(progress=True) and m.T.to_scipy(progress=True), as decode, verify and to_scipy take
    it: the first had raised AttributeError ('bool' object has no attribute 'begin'), the second
    TypeError."""
    from scinrcodec.progress import Progress

    passes = []
    monkeypatch.setattr(Progress, "begin", lambda self, step, total: passes.append((step, total)))
    with sinr.open(encoded / f"{DATASETS[0]}.sinr") as m:
        counts = m.to_scipy()
        assert (m.T.to_scipy(progress=True) != counts.T).nnz == 0 and passes
        passes.clear()
        write_matrix(tmp_path / "w.mtx", CountMatrix(counts.tocsc()), progress=True)
    assert passes == [("writing", counts.nnz)]
    assert (sinr.read_matrix(tmp_path / "w.mtx").matrix() != counts).nnz == 0

@pytest.mark.parametrize("shape", [(0, 0), (3, 2)])
def test_matrix_market_of_no_entries_reads_back(tmp_path, shape):
    """A matrix with no nonzero (or no cell and gene) is written 'coordinate integer general', as
    every other (scipy had written 'real', and 'symmetric' for 0 x 0, which readers refuse)."""
    empty = CountMatrix(sp.csc_matrix(shape, dtype=np.int32))
    write_matrix(tmp_path / "e.mtx", empty)
    assert (tmp_path / "e.mtx").read_text().startswith("%%MatrixMarket matrix coordinate integer general\n")
    back = sinr.read_matrix(tmp_path / "e.mtx")
    assert back.shape == shape and back.matrix().nnz == 0


def test_a_folder_refuses_names_its_tsv_files_cannot_hold(tmp_path, pbmc):
    """A tab in a name (which .sinr names may hold) would split it in features.tsv or
    barcodes.tsv: the folder is refused, not written with other names."""
    cells = pbmc.cell_names(0, pbmc.shape[1])
    m = CountMatrix(pbmc.matrix(), pbmc.gene_ids, pbmc.gene_names, ["a\tb"] + cells[1:], pbmc.feature_types)
    with pytest.raises(sinr.InvalidInputError, match=re.escape(f"cell name {'a' + chr(9) + 'b'!r} holds a tab")):
        write_matrix(tmp_path / "out", m)
    assert leftovers(tmp_path) == [] and not (tmp_path / "out").exists()


def test_a_trailing_slash_names_a_folder(tmp_path, encoded):
    """A name with a dot is a folder when written with a trailing slash, as users write folders."""
    sinr.decode(encoded / "pbmc4k_v2_soupx_half.sinr", f"{tmp_path}/sample.v2/")
    assert sorted(p.name for p in (tmp_path / "sample.v2").iterdir()) == ["barcodes.tsv.gz", "features.tsv.gz",
                                                                          "matrix.mtx.gz"]


def test_replacing_outputs(tmp_path, pbmc):
    m = _matrix(pbmc)
    for name in ("x.h5", "x.npz", "folder"):
        write_matrix(tmp_path / name, m)
        with pytest.raises(sinr.OutputExistsError, match="--force"):
            write_matrix(tmp_path / name, m)
        write_matrix(tmp_path / name, m, force=True)
        assert same(sinr.read_matrix(tmp_path / name).matrix(), m.counts)
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    with pytest.raises(sinr.OutputError, match="holds 'notes.txt'"):
        write_matrix(tmp_path / "folder", m, force=True)
    assert (tmp_path / "folder" / "notes.txt").read_text() == "mine"
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(sinr.OutputError, match="is an existing file; this output is a folder"):
        write_matrix(tmp_path / "plain", m, force=True)
    (tmp_path / "y.h5ad").mkdir()
    with pytest.raises(sinr.OutputError, match="is an existing folder; the output must be a file"):
        write_matrix(tmp_path / "y.h5ad", m, force=True)
    with pytest.raises(sinr.OutputError, match="folder .* does not exist"):
        write_matrix(tmp_path / "missing" / "x.h5", m)
    with pytest.raises(sinr.OutputError, match="plain is not a folder"):  # it had said it does not exist
        write_matrix(tmp_path / "plain" / "x.h5", m)
    with pytest.raises(sinr.InvalidInputError, match="unknown output format"):
        write_matrix(tmp_path / "x.xyz", m)
    assert leftovers(tmp_path) == []


def test_check_output_refuses_an_output_holding_the_input(tmp_path, pbmc):
    write_matrix(tmp_path / "folder", _matrix(pbmc))
    assert check_output(tmp_path / "other", force=False) == "mtx-dir"
    with pytest.raises(sinr.InvalidInputError, match="the output folder holds the input"):
        check_output(tmp_path, force=True, inputs=[tmp_path / "folder" / "matrix.mtx.gz"])
    with pytest.raises(sinr.InvalidInputError, match="the output is the input"):
        check_output(tmp_path / "folder" / "matrix.mtx.gz", force=True, inputs=[tmp_path / "folder" / "matrix.mtx.gz"])
    for inside in ("x.h5ad", "sub/x.h5ad"):  # an input folder (10x's, a zarr store) is its files: never written to
        with pytest.raises(sinr.InvalidInputError, match="lies inside the input folder .*folder, which is never changed"):
            check_output(tmp_path / "folder" / inside, force=True, inputs=[tmp_path / "folder"])
    assert check_output(tmp_path / "x.h5ad", force=False, inputs=[tmp_path / "folder"]) == "h5ad"


@pytest.mark.parametrize("output", ["out.sinr", "appended.sinr", "out.h5", "outdir"])
def test_outputs_reach_the_disk_before_their_name(tmp_path, pbmc, monkeypatch, output):
    """Each file an output writes is fsynced before the rename gives it its name, and the folder
    after: a machine that crashed just after (a node lost) had been able to leave the name on an
    empty or partial file, an appended file among them, where the command had said it succeeded."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to name the file an fsync is given")
    matrix, target = _matrix(pbmc), tmp_path / output
    if output == "appended.sinr":
        sinr.encode(CountMatrix(matrix.counts[:, :40], matrix.gene_ids, matrix.gene_names, matrix.cell_names[:40]),
                    target, **FAST)
    events = []
    fsync, replace, rename_new = os.fsync, os.replace, atomic._rename_new
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("rename", str(b))), replace(a, b))[1])
    monkeypatch.setattr(atomic, "_rename_new", lambda a, b, **k: (events.append(("rename", str(b))),
                                                                  rename_new(a, b, **k))[1])
    if output == "out.sinr":
        sinr.encode(matrix, target, **FAST)
    elif output == "appended.sinr":
        sinr.append(target, CountMatrix(matrix.counts[:, 40:], matrix.gene_ids, matrix.gene_names,
                                        matrix.cell_names[40:]))
    else:
        write_matrix(target, matrix)
    renamed = events.index(("rename", str(target)))
    synced = [path for event, path in events[:renamed] if event == "fsync"]
    temporary = re.compile(re.escape(str(tmp_path / f".{output}.")) + r"[0-9a-f]{16}\.tmp")
    assert any(temporary.fullmatch(path) for path in synced), events
    if output == "outdir":
        assert {os.path.basename(path) for path in synced} >= {"matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"}
    assert ("fsync", str(tmp_path)) in events[renamed:], events


def test_a_folder_replaced_with_force_is_never_left_half_removed(tmp_path, pbmc, monkeypatch):
    """An interrupt landing while the old folder is removed (a Ctrl-C, a scheduler's SIGTERM) had left
    it without its matrix and no new one in its place: the new folder now takes the old one's place
    in one step (renameat2 RENAME_EXCHANGE), and only then is the old one removed."""
    if atomic.renameat2 is None:
        pytest.skip("no renameat2 here: the old folder is removed first")
    old, new = _matrix(pbmc), _matrix(pbmc)
    new.counts = new.counts * 2
    write_matrix(tmp_path / "folder", old)
    real_rmtree = shutil.rmtree

    def interrupted_rmtree(path, *args, **kwargs):  # the first removal is interrupted after one file
        monkeypatch.setattr(shutil, "rmtree", real_rmtree)
        os.unlink(os.path.join(path, "matrix.mtx.gz"))
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", interrupted_rmtree)
    with pytest.raises(KeyboardInterrupt):
        write_matrix(tmp_path / "folder", new, force=True)
    assert same(sinr.read_matrix(tmp_path / "folder").matrix(), new.counts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_folder_replaced_with_force_whose_old_one_stays_says_so(tmp_path, pbmc, monkeypatch):
    """Where the folder a --force output replaced cannot be removed entirely (a file in it made
    immutable, a busy mount point), the output is in place and the command fails naming what is left
    of the old folder, where it had said 'wrote' and left it under a hidden name."""
    if atomic.renameat2 is None:
        pytest.skip("no renameat2 here: the old folder is removed first")
    old, new = _matrix(pbmc), _matrix(pbmc)
    new.counts = new.counts * 2
    write_matrix(tmp_path / "folder", old)

    def stuck_rmtree(path, *args, **kwargs):
        if kwargs.get("ignore_errors"):
            return
        raise PermissionError(errno.EPERM, "Operation not permitted", str(path))

    monkeypatch.setattr(shutil, "rmtree", stuck_rmtree)
    with pytest.raises(sinr.OutputError, match="could not be removed entirely: what is left of it is ") as failed:
        write_matrix(tmp_path / "folder", new, force=True)
    left = str(failed.value).split("what is left of it is ")[1].split(" (")[0]
    assert same(sinr.read_matrix(tmp_path / "folder").matrix(), new.counts)
    assert same(sinr.read_matrix(left).matrix(), old.counts)


def test_a_stop_after_the_rename_leaves_a_finished_output_finished(tmp_path, pbmc, monkeypatch):
    """A stop signal landing in the folder's fsync after the rename (about 8 ms, longer on NFS) had
    ended a finished command as 'interrupted' (exit 130) with its output complete, so that a pipeline
    would run it again and find it there: the output's rename is its commit point."""
    real_sync = atomic._sync

    def stopped_in_the_folders_sync(path, *, folder=False):
        if folder:
            raise KeyboardInterrupt
        real_sync(path, folder=folder)

    monkeypatch.setattr(atomic, "_sync", stopped_in_the_folders_sync)
    write_matrix(tmp_path / "out.npz", _matrix(pbmc))
    assert same(sinr.read_matrix(tmp_path / "out.npz").matrix(), _matrix(pbmc).counts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_no_memory_to_open_a_stored_image_is_not_a_corrupt_file(tmp_path, monkeypatch):
    """A MemoryError opening a whole file's stored HDF5 image (a 10x file's fields under ulimit -v) is
    'out of memory', where it had been 'section ... does not hold what its contents entry says': the
    file is sound, and the user needs memory, not another copy of it."""
    from scinrcodec.cli import main

    assert main(["encode", str(DATA / "pbmc500_cellranger.h5"), str(tmp_path / "whole.sinr"), "--quiet"]) == 0
    with sinr.open(tmp_path / "whole.sinr") as m:
        contents = m.contents
        monkeypatch.setattr(h5py, "File", lambda *args, **kwargs: (_ for _ in ()).throw(MemoryError()))
        with pytest.raises(MemoryError), contents.hdf5("h5"):
            pass


@pytest.mark.parametrize("output", FORMATS)
def test_failed_writes_leave_nothing(tmp_path, pbmc, monkeypatch, output):
    """A write failing with ENOSPC (or an interrupt) mid-file is one OutputError and no temporary file;
    HDF5 outputs are written by Python, not by libhdf5, so they fail the same way."""
    real_open = open

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def failing_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return FullDisk(fh) if "w" in mode else fh

    matrix = _matrix(pbmc)  # read before gzip is patched: the fixture itself is gzip text
    real_gzip_open = gzip.open

    def failing_gzip_open(path, mode="rb", **kwargs):
        return FullDisk(real_open(path, "wb")) if "w" in mode else real_gzip_open(path, mode, **kwargs)

    for module in (h5ad, tenx_h5, npz, mtx):  # each format's module writes its own files
        monkeypatch.setattr(module, "open", failing_open, raising=False)
    monkeypatch.setattr(gzip, "open", failing_gzip_open)
    with pytest.raises(sinr.OutputError, match="No space left on device"):
        write_matrix(tmp_path / output, matrix)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setattr(scipy.io, "mmwrite", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr(tenx_h5, "_fill_10x", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr(np.lib.format, "write_array", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr(h5ad, "to_anndata", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        write_matrix(tmp_path / output, matrix)
    assert list(tmp_path.iterdir()) == []


def test_outputs_respect_the_umask(tmp_path, pbmc):
    previous = os.umask(0o027)
    try:
        for name in ("x.h5", "x.h5ad", "x.npz", "x.mtx", "folder"):
            write_matrix(tmp_path / name, _matrix(pbmc))
    finally:
        os.umask(previous)
    for name in ("x.h5", "x.h5ad", "x.npz", "x.mtx", "folder/barcodes.tsv.gz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o750


def _tells_the_umask() -> bool:
    try:
        with open("/proc/self/status", "rb") as fh:
            return b"Umask:" in fh.read()
    except OSError:
        return False


@pytest.mark.skipif(not _tells_the_umask(), reason="needs a system that tells the umask without setting it (Linux "
                                                   "4.7 and later)")
def test_outputs_leave_the_umask_of_other_threads_alone(tmp_path, pbmc, monkeypatch):
    """A write reads the umask without setting it: it had set 0o022 for a moment at every output, and
    a file another thread of the process made meanwhile was world-readable under a umask of 0o077
    (2 files of some 10,000 in 10 s, a thread encoding beside one making files)."""
    previous = os.umask(0o077)
    monkeypatch.setattr(os, "umask", lambda mask: pytest.fail(f"the umask was set to {mask:03o}"))
    try:
        sinr.encode(pbmc, tmp_path / "x.sinr", **FAST)
        write_matrix(tmp_path / "folder", _matrix(pbmc))
    finally:
        monkeypatch.undo()
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x.sinr").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o700


def test_encode_output_needs_force_and_is_atomic(tmp_path, pbmc):
    out = tmp_path / "x.sinr"
    out.write_bytes(b"keep me")
    with pytest.raises(sinr.OutputExistsError):
        sinr.encode(pbmc, out, **FAST)
    assert out.read_bytes() == b"keep me"
    sinr.encode(pbmc, out, force=True, **FAST)
    assert same(sinr.decode(out), pbmc.matrix())
    with pytest.raises(sinr.InvalidInputError, match="negative"):
        sinr.encode(sp.csc_matrix(np.array([[1.0, -2.0]])), out, force=True, **FAST)
    assert same(sinr.decode(out), pbmc.matrix())
    assert [p.name for p in tmp_path.iterdir()] == ["x.sinr"]


def test_a_matrix_of_no_genes_decodes_to_an_h5ad_that_encodes_again(tmp_path):
    """var's columns of a matrix without genes are text columns of no rows (they had been float64,
    which an .h5ad input refuses as gene ids)."""
    counts = sinr.CountMatrix(sp.csc_matrix((0, 3), dtype=np.int64), cell_names=["a", "b", "c"])
    sinr.encode(counts, tmp_path / "none.sinr")
    sinr.decode(tmp_path / "none.sinr", tmp_path / "none.h5ad")
    sinr.encode(tmp_path / "none.h5ad", tmp_path / "again.sinr")
    with sinr.open(tmp_path / "again.sinr") as m:
        assert m.shape == (0, 3) and m.cell_names == ["a", "b", "c"]


def test_a_name_holding_nul_is_refused_in_one_line(tmp_path, monkeypatch):
    """Names are refused a NUL character where they are read (an mtx folder's features.tsv too); a
    file written before that, holding one, decodes to .npz but is refused for .h5ad and .h5, whose
    strings cannot hold it (it had been an untyped ValueError, 'internal error' from the CLI)."""
    import gzip

    folder = tmp_path / "mtx"
    sinr.encode(sinr.CountMatrix(sp.csc_matrix(np.arange(1, 7, dtype=np.int64).reshape(2, 3)), gene_names=["a", "c"],
                                 cell_names=["x", "y", "z"]), tmp_path / "ok.sinr")
    sinr.decode(tmp_path / "ok.sinr", folder)
    features = gzip.decompress((folder / "features.tsv.gz").read_bytes()).replace(b"a\ta", b"a\0b\ta\0b")
    (folder / "features.tsv.gz").write_bytes(gzip.compress(features))
    with pytest.raises(sinr.InvalidInputError, match="contains a NUL character"):
        sinr.encode(folder, tmp_path / "nul.sinr")
    import scinrcodec.io.sources as sources

    with monkeypatch.context() as patched:  # a file from before names were checked for NUL
        patched.setattr(sources, "_check_each_name", lambda names, what: None)
        sinr.encode(sinr.CountMatrix(sp.csc_matrix(np.arange(1, 7, dtype=np.int64).reshape(2, 3)),
                                     gene_names=["a\0b", "c"], cell_names=["x", "y", "z"]), tmp_path / "old.sinr")
    sinr.decode(tmp_path / "old.sinr", tmp_path / "old.npz")
    for output in ("old.h5ad", "old.h5"):
        with pytest.raises(sinr.InvalidInputError, match=r"gene names: the name 'a\\x00b' contains a NUL character"):
            sinr.decode(tmp_path / "old.sinr", tmp_path / output)
        assert not (tmp_path / output).exists()
