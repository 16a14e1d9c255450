"""concat and subset: several files into one and part of a file into a new one, exact, names
kept, genes aligned by id as anndata.concat aligns them, repeated cell names refused unless made
unique, every format-3 file's chunks copied into a segment of its own (or, where that cannot be,
the first file's chunks copied where the genes agree), outputs atomic."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import CONFORMANCE, DATA, FAST, assert_one_error_line, leftovers, needs, sinr_cli
from scinrcodec.cli import main
from scinrcodec.storage.container import read_footer
from scinrcodec.storage.opening import open_source


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """pbmc500 cut in three: a and b with every gene, c without the first five (and its own names)."""
    src = sinr.read_matrix(DATA / "pbmc500_cellranger.h5")
    m, ids, names, cells = src.matrix(), src.gene_ids, src.gene_names, src.cell_names(0, src.shape[1])
    folder = tmp_path_factory.mktemp("combine")
    cuts = {"a": (slice(None), slice(0, 200)), "b": (slice(None), slice(200, 450)),
            "c": (slice(5, None), slice(450, None))}
    for key, (genes, cols) in cuts.items():
        sinr.encode(sinr.CountMatrix(m[genes, cols], ids[genes], names[genes], cells[cols]), folder / f"{key}.sinr",
                    chunk_cells=64, **FAST)
    return folder, sp.csr_matrix(m), ids, cells


def chunk_bodies(path) -> list[bytes]:
    """Each chunk block of a file without its header: what concat copies byte for byte."""
    with sinr.open(path) as m:
        blob = open_source(str(path)).read(0, m.file_size)
        return [bytes(blob[o + h: o + b]) for o, h, _, b, _, _ in m.index.chunk_index.tolist()]


def test_concat_of_format_3_files_copies_every_chunk_into_a_segment_each(parts, tmp_path):
    """Each input becomes a segment (spec §5.5): its chunk blocks copied, only their headers (the
    checksum of the chunk's new cell indices) written anew, its gene tables kept."""
    folder, m, ids, cells = parts
    out = tmp_path / "ab.sinr"
    result = sinr.concat([folder / "a.sinr", folder / "b.sinr"], out)
    assert result["copied_chunks"] == result["chunks"] == 8 and result["segments"] == 2
    assert read_footer(open_source(str(out))).version == (3, 1)
    with sinr.open(out) as back:
        assert (back.to_scipy() != m[:, :450]).nnz == 0 and back.cell_names == cells[:450]
        assert back.gene_ids == ids
        back.verify()
    assert chunk_bodies(out) == chunk_bodies(folder / "a.sinr") + chunk_bodies(folder / "b.sinr")
    result = sinr.concat([folder / "a.sinr", folder / "b.sinr"], tmp_path / "re.sinr", recode=True)
    assert result["copied_chunks"] == 0 and "segments" not in result
    with sinr.open(tmp_path / "re.sinr") as back:
        assert back.n_segments == 1 and (back.to_scipy() != m[:, :450]).nnz == 0 and back.cell_names == cells[:450]


def test_concat_copies_chunks_from_the_file_it_opened_whatever_its_source(parts, tmp_path):
    """The copied chunks come through the open source: inputs given as bytes work too."""
    folder, m, _, cells = parts
    out = tmp_path / "ab_bytes.sinr"
    result = sinr.concat([(folder / "a.sinr").read_bytes(), (folder / "b.sinr").read_bytes()], out)
    assert result["copied_chunks"] == 8
    with sinr.open(out) as back:
        assert (back.to_scipy() != m[:, :450]).nnz == 0 and back.cell_names == cells[:450]


@pytest.mark.parametrize("join", ["inner", "outer"])
def test_concat_aligns_genes_by_id(parts, tmp_path, join):
    folder, m, ids, cells = parts
    out = tmp_path / f"{join}.sinr"
    result = sinr.concat([folder / "c.sinr", folder / "a.sinr"], out, join=join)
    with sinr.open(out) as back:
        expected_ids = ids[5:] + (ids[:5] if join == "outer" else [])
        assert back.gene_ids == expected_ids and back.cell_names == cells[450:] + cells[:200]
        rows = [ids.index(g) for g in expected_ids]
        expected = sp.hstack([m[:, 450:].tolil(), m[:, :200]]).tocsr()[rows]
        expected = expected.tolil()
        if join == "outer":
            expected[len(ids) - 5:, : len(cells) - 450] = 0  # c lacks those genes
        assert (back.to_scipy() != sp.csr_matrix(expected)).nnz == 0
        back.verify()
    # inner: a stores genes c lacks, so a is coded again after c's 3 chunks (137 cells); outer: segments
    assert result["copied_chunks"] == (3 if join == "inner" else 7)


def test_concat_with_a_file_without_cells_gives_it_no_segment(parts, tmp_path):
    folder, m, ids, cells = parts
    with sinr.open(folder / "a.sinr") as a:
        names = a.gene_names
    sinr.encode(sinr.CountMatrix(sp.csr_matrix((len(ids), 0), dtype=np.int64), ids, names, []), tmp_path / "e.sinr")
    result = sinr.concat([folder / "a.sinr", tmp_path / "e.sinr", folder / "b.sinr"], tmp_path / "aeb.sinr")
    assert result["segments"] == 2
    with sinr.open(tmp_path / "aeb.sinr") as back:
        assert (back.to_scipy() != m[:, :450]).nnz == 0 and back.cell_names == cells[:450]
    result = sinr.concat([tmp_path / "e.sinr", tmp_path / "e.sinr"], tmp_path / "ee.sinr")
    assert result["shape"] == (len(ids), 0) and "segments" not in result  # no chunk: nothing to copy
    # a file of one segment that lists the feature: appending adds a segment, combining recodes
    assert sinr.concat([folder / "a.sinr", tmp_path / "e.sinr"], tmp_path / "ae.sinr")["segments"] == 1
    sinr.append(tmp_path / "ae.sinr", sinr.CountMatrix(m[:, 200:450], ids, names, cells[200:450]))
    sinr.encode(sinr.CountMatrix(m[:, 450:], ids, names, cells[450:]), tmp_path / "c_max.sinr", mode="max-error",
                max_error=1, **FAST)
    sinr.concat([tmp_path / "ae.sinr", tmp_path / "c_max.sinr"], tmp_path / "mixed.sinr")
    with sinr.open(tmp_path / "ae.sinr") as back:
        assert back.n_segments == 2 and (back.to_scipy() != m[:, :450]).nnz == 0
    with sinr.open(tmp_path / "mixed.sinr") as back:
        assert back.n_segments == 1 and (back.to_scipy()[:, :450] != m[:, :450]).nnz == 0
        assert abs(back.to_scipy()[:, 450:] - m[:, 450:]).max() <= 1


def test_append_to_a_file_of_segments_adds_a_segment(parts, tmp_path):
    """Cells appended to what concat wrote become one more segment, coded against their own genes."""
    folder, m, ids, cells = parts
    out = tmp_path / "ab.sinr"
    sinr.concat([folder / "a.sinr", folder / "b.sinr"], out)
    with sinr.open(folder / "a.sinr") as a:
        names = a.gene_names
    result = sinr.append(out, sinr.CountMatrix(m[:, 450:], ids, names, cells[450:]))
    assert result["shape"] == m.shape
    with sinr.open(out) as back:
        assert back.n_segments == 3 and back.cell_names == cells
        assert (back.to_scipy() != m).nnz == 0
        back.verify()
    assert chunk_bodies(out)[:8] == chunk_bodies(folder / "a.sinr") + chunk_bodies(folder / "b.sinr")
    assert not leftovers(tmp_path)


def test_appended_cells_are_private_while_they_are_encoded(parts, tmp_path, monkeypatch):
    """The new cells of a file of segments, encoded beside it before they are copied in, are the
    owner's alone (0o600), as the temporary file is: they had been made with the umask's mode
    (0o644), readable by all while the file itself was 0o600."""
    from scinrcodec.encoder import append as appending

    folder, m, ids, cells = parts
    out = tmp_path / "ab.sinr"
    sinr.concat([folder / "a.sinr", folder / "b.sinr"], out)
    out.chmod(0o600)
    with sinr.open(folder / "a.sinr") as a:
        names = a.gene_names
    real, modes = appending.encode_stream, []

    def encode_stream(source, stream, options):
        modes.append(stat.S_IMODE(os.fstat(stream.fileno()).st_mode))
        return real(source, stream, options)

    monkeypatch.setattr(appending, "encode_stream", encode_stream)
    previous = os.umask(0o022)
    try:
        sinr.append(out, sinr.CountMatrix(m[:, 450:], ids, names, cells[450:]))
    finally:
        os.umask(previous)
    assert modes == [0o600] and stat.S_IMODE(out.stat().st_mode) == 0o600
    with sinr.open(out) as back:
        assert (back.to_scipy() != m).nnz == 0
    assert not leftovers(tmp_path)


def test_an_append_killed_leaves_only_its_temporary_file(parts, tmp_path):
    """SIGKILL (the OOM killer, a job's time limit) while the new cells of a file of segments are
    copied in had left them beside it too ('.ab.sinr.XXXX.tmp.cells', as large as the new cells),
    which a clean-up of the documented temporary files ('.NAME.XXXX.tmp') misses: the cells are now
    encoded into a file without a name."""
    folder, m, ids, cells = parts
    out = tmp_path / "ab.sinr"
    sinr.concat([folder / "a.sinr", folder / "b.sinr"], out)
    with sinr.open(folder / "a.sinr") as a:
        sinr.write_matrix(tmp_path / "new.h5ad", sinr.CountMatrix(m[:, 450:].tocsc(), ids, a.gene_names, cells[450:]))
    before = out.read_bytes()
    killed_while_copying = ("import os, signal, sys, scinrcodec as sinr\n"
                            "from scinrcodec.encoder import append\n"
                            "append.write_segments = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
                            "sinr.append(sys.argv[1], sys.argv[2])\n")
    run = subprocess.run([sys.executable, "-c", killed_while_copying, str(out), str(tmp_path / "new.h5ad")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == -9, run.stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == leftovers(tmp_path)
    assert len(leftovers(tmp_path)) == 1


def test_concat_decodes_every_chunk_it_copies_so_a_corrupt_input_is_refused(parts, tmp_path):
    """A tile byte changed in b is caught while its chunks are decoded for their new checksums
    (concat never copies what it has not verified), and no output is left."""
    from conformance.make_vectors import section_offset

    folder, _, _, _ = parts
    blob = (folder / "b.sinr").read_bytes()
    start, length = section_offset(blob, "tiles.data", chunk=1)
    damaged = bytearray(blob)
    damaged[start + length // 2] ^= 0x10
    bad = tmp_path / "b_bad.sinr"
    bad.write_bytes(bytes(damaged))
    with pytest.raises(sinr.CorruptFileError):
        sinr.concat([folder / "a.sinr", bad], tmp_path / "out.sinr")
    assert not (tmp_path / "out.sinr").exists() and not leftovers(tmp_path)


def test_concat_of_a_file_with_its_genes_in_another_order_keeps_its_order_in_its_segment(parts, tmp_path):
    """b with its genes permuted and the last three left out: its chunks are copied, its segment's
    gene order mapped to the output's genes (those genes zero in b's cells with join='outer')."""
    folder, m, ids, cells = parts
    with sinr.open(folder / "a.sinr") as a:
        names = a.gene_names
    order = np.random.default_rng(1).permutation(len(ids))[:-3]
    sinr.encode(sinr.CountMatrix(m[order][:, 200:450], [ids[i] for i in order], [names[i] for i in order],
                                 cells[200:450]), tmp_path / "b_perm.sinr", chunk_cells=64, **FAST)
    result = sinr.concat([folder / "a.sinr", tmp_path / "b_perm.sinr"], tmp_path / "out.sinr", join="outer")
    assert result["copied_chunks"] == 8 and result["segments"] == 2
    expected = m[:, :450].tolil()
    expected[np.setdiff1d(np.arange(len(ids)), order)[:, None], np.arange(200, 450)] = 0
    with sinr.open(tmp_path / "out.sinr") as back:
        assert back.gene_ids == ids and back.cell_names == cells[:450]
        assert (back.to_scipy() != sp.csr_matrix(expected)).nnz == 0
        back.verify()


def test_repeated_cell_names_are_refused_unless_made_unique(parts, tmp_path):
    folder, m, _, cells = parts
    a = folder / "a.sinr"
    with pytest.raises(sinr.InvalidInputError, match="named twice .*index_unique"):
        sinr.concat([a, a], tmp_path / "aa.sinr")
    assert not (tmp_path / "aa.sinr").exists()
    sinr.concat([a, a], tmp_path / "aa.sinr", index_unique="-", keys=["x", "y"])
    with sinr.open(tmp_path / "aa.sinr") as back:
        assert back.cell_names == [f"{c}-x" for c in cells[:200]] + [f"{c}-y" for c in cells[:200]]
        assert (back.to_scipy() != sp.hstack([m[:, :200], m[:, :200]])).nnz == 0
    with pytest.raises(sinr.InvalidInputError, match="keys must name each"):
        sinr.concat([a, a], tmp_path / "k.sinr", keys=["x"])
    with sinr.open(a) as first:
        again = sinr.CountMatrix(m[:, :3], first.gene_ids, first.gene_names, [f"{c}-x" for c in cells[:3]])
    with pytest.raises(sinr.InvalidInputError, match="already in the file"):
        sinr.append(tmp_path / "aa.sinr", again)


@pytest.mark.parametrize("label", [None, "sample"])
def test_a_file_without_gene_ids_is_aligned_by_name(parts, tmp_path, label):
    """Where one file holds no gene ids, every file's genes are aligned by name (its names had been
    compared with the other's ids: 'no gene in common', or each gene twice in an outer join); the
    output takes the ids from the file that has them."""
    folder, m, ids, cells = parts
    with sinr.open(folder / "a.sinr") as a:
        names = a.gene_names
        sinr.encode(sinr.CountMatrix(a.to_scipy(), None, names, a.cell_names), tmp_path / "noids.sinr", **FAST)
        sinr.encode(sinr.CountMatrix(a.to_scipy(), names, names, a.cell_names), tmp_path / "symbols.sinr", **FAST)
    for first in ("noids.sinr", "symbols.sinr"):  # ids that are the names (10x without Ensembl ids) are names
        for join in ("inner", "outer"):
            sinr.concat([tmp_path / first, folder / "b.sinr"], tmp_path / "out.sinr", join=join, label=label,
                        force=True)
            back = sinr.read_sinr(tmp_path / "out.sinr", dtype=np.int32)
            assert list(back.var_names) == names and (back.X != m[:, :450].T).nnz == 0, (first, join)
            assert list(back.var["gene_ids"]) == list(ids)  # the ids from the file whose ids are ids


def test_concat_of_10x_files_keeps_their_features(tmp_path):
    """Files encoded from 10x HDF5 combine as files of one matrix do (genes aligned by id, not by a
    symbol two genes may share), into a whole AnnData that keeps each feature's id and genome, so
    that the .h5 decoded from it carries Cell Ranger's ids, never the symbols in their place."""
    import anndata
    import h5py

    sinr.encode_whole(DATA / "pbmc500_cellranger.h5", tmp_path / "a.sinr", **FAST)  # what `sinr encode` does
    sinr.concat([tmp_path / "a.sinr", tmp_path / "a.sinr"], tmp_path / "aa.sinr", index_unique="-")
    back = sinr.read_sinr(tmp_path / "aa.sinr")
    with h5py.File(DATA / "pbmc500_cellranger.h5") as f:
        ids = [v.decode() for v in f["matrix/features/id"][:]]
        genomes = {v.decode() for v in f["matrix/features/genome"][:]}
    assert list(back.var["gene_ids"]) == ids and set(back.var["genome"]) == genomes and back.n_obs == 2 * 587
    sinr.decode(tmp_path / "aa.sinr", tmp_path / "aa.h5")
    with h5py.File(tmp_path / "aa.h5") as f, h5py.File(DATA / "pbmc500_cellranger.h5") as original:
        assert [v.decode() for v in f["matrix/features/id"][:]] == ids
        assert list(f["matrix/features/genome"][:]) == list(original["matrix/features/genome"][:])
    sinr.decode(tmp_path / "a.sinr", tmp_path / "a.h5ad")  # a 10x file's AnnData as read_sinr gives it
    pd.testing.assert_frame_equal(anndata.read_h5ad(tmp_path / "a.h5ad").var, sinr.read_sinr(tmp_path / "a.sinr").var,
                                  check_categorical=False)


def test_concat_with_a_label_makes_a_whole_anndata(parts, tmp_path):
    folder, m, ids, cells = parts
    sinr.concat([folder / "a.sinr", folder / "b.sinr"], tmp_path / "l.sinr", label="sample", keys=["s1", "s2"])
    back = sinr.read_sinr(tmp_path / "l.sinr", dtype=np.int32)
    assert list(back.obs["sample"]) == ["s1"] * 200 + ["s2"] * 250 and list(back.obs_names) == cells[:450]
    assert list(back.var["gene_ids"]) == list(ids)  # files of one matrix keep their genes' ids with a label too
    assert (back.X != m[:, :450].T).nnz == 0
    for join in ("inner", "outer"):  # c lacks a's first five genes: a label changes no gene, name or count
        sinr.concat([folder / "c.sinr", folder / "a.sinr"], tmp_path / "l.sinr", label="sample", join=join, force=True)
        sinr.concat([folder / "c.sinr", folder / "a.sinr"], tmp_path / "u.sinr", join=join, force=True)
        labelled, unlabelled = sinr.read_sinr(tmp_path / "l.sinr"), sinr.read_sinr(tmp_path / "u.sinr")
        assert list(labelled.obs["sample"]) == ["0"] * (len(cells) - 450) + ["1"] * 200
        # the same columns and values (a whole AnnData's repeated strings are categoricals, as write_h5ad stores them)
        pd.testing.assert_frame_equal(labelled.var.astype(object), unlabelled.var.astype(object))
        assert list(labelled.obs_names) == list(unlabelled.obs_names) and (labelled.X != unlabelled.X).nnz == 0
        assert labelled.n_vars == (len(ids) if join == "outer" else len(ids) - 5)
    files = {"s1": folder / "a.sinr", "s2": folder / "b.sinr"}  # a mapping's keys, as anndata.concat takes them
    sinr.concat(files, tmp_path / "k.sinr", label="sample")
    assert list(sinr.read_sinr(tmp_path / "k.sinr").obs["sample"]) == list(back.obs["sample"])
    with pytest.raises(sinr.InvalidInputError, match="not both"):
        sinr.concat(files, tmp_path / "x.sinr", label="sample", keys=["a", "b"])
    with pytest.raises(sinr.InvalidInputError, match="a list of .sinr files, not the one file"):
        sinr.concat(str(folder / "a.sinr"), tmp_path / "x.sinr")
    with pytest.raises(sinr.InvalidInputError, match=r"storage options \(--storage-option\) apply to URLs only"):
        sinr.subset(folder / "a.sinr", tmp_path / "x.sinr", cells=[0], storage_options={"anon": True})


def test_what_is_coded_again_keeps_the_inputs_max_error(parts, tmp_path):
    """Cells of files coded within --max-error E, coded again (a subset, a concat that cannot copy
    their chunks), stay in that mode: quantising a decoded value gives back its index, so the values
    are the inputs' as they decode and the file says they are within E; files of mixed modes give a
    lossless file of the values as they decode."""
    folder, m, ids, cells = parts
    lossy = tmp_path / "lossy.sinr"
    sinr.encode(sinr.CountMatrix(m[:, :200], ids, None, cells[:200]), lossy, mode="max-error", max_error=2,
                chunk_cells=64, **FAST)
    with sinr.open(lossy) as a:
        assert (a.to_scipy() != m[:, :200]).nnz > 0  # some values moved
        sinr.subset(lossy, tmp_path / "s.sinr", genes=ids[:40], cells=cells[10:90])
        sinr.concat([lossy, lossy], tmp_path / "ll.sinr", index_unique="-", recode=True)
        sinr.concat([folder / "a.sinr", lossy], tmp_path / "al.sinr", index_unique="-", recode=True)
        with sinr.open(tmp_path / "s.sinr") as s, sinr.open(tmp_path / "ll.sinr") as ll, \
                sinr.open(tmp_path / "al.sinr") as al:
            assert (s.mode, s.max_error, ll.mode, ll.max_error, al.mode) == ("max-error", 2, "max-error", 2, "lossless")
            assert (s.to_scipy() != a[ids[:40], cells[10:90]]).nnz == 0
            assert (ll.to_scipy() != sp.hstack([a.to_scipy()] * 2).tocsr()).nnz == 0
            assert (al.to_scipy() != sp.hstack([m[:, :200], a.to_scipy()]).tocsr()).nnz == 0


@pytest.mark.parametrize("options", [{"chunk_cells": 2048}, {"mode": "lossless", "max_error": 0},
                                     {"mode": "max-error", "max_error": 5, "siren": 7}, None, [1, 2]])
def test_append_codes_new_cells_as_the_file_does_whatever_its_informative_options_say(parts, tmp_path, options):
    """The matrix's `options` map is informative (spec §3.5: a reader ignores it whatever it holds):
    new cells are coded in the mode, error bound and chunk size the file codes by. A --max-error 2
    file whose map said nothing of its mode had taken cells coded losslessly under its lossy tables:
    append exited 0 and left the file failing its checksum; without a map (or with a list) it
    failed with an internal TypeError. concat --format-version 2 (which appends) likewise."""
    from conformance.make_vectors import edit

    folder, m, ids, cells = parts

    def set_options(parts_):
        if options is None:
            parts_.matrix.pop("options", None)
        else:
            parts_.matrix["options"] = options

    lossy = tmp_path / "lossy.sinr"
    sinr.encode(sinr.CountMatrix(m[:, :200], ids, None, cells[:200]), lossy, mode="max-error", max_error=2,
                chunk_cells=64, **FAST)
    lossy.write_bytes(edit(lossy.read_bytes(), set_options))
    sinr.append(lossy, sinr.CountMatrix(m[:, 200:300], ids, None, cells[200:300]))
    with sinr.open(lossy) as a:
        a.verify()
        assert (a.mode, a.max_error, a.shape[1], a.index.stages["row-bands"].chunk_cells) == ("max-error", 2, 300, 64)
        assert abs(a.to_scipy().astype(np.int64) - m[:, :300]).max() <= 2
    plain = tmp_path / "v2.sinr"
    sinr.encode(sinr.CountMatrix(m[:, :200], ids, None, cells[:200]), plain, chunk_cells=64, format_version=2, **FAST)
    plain.write_bytes(edit(plain.read_bytes(), set_options))
    sinr.concat([plain, folder / "b.sinr"], tmp_path / "cat.sinr", format_version=2)
    with sinr.open(tmp_path / "cat.sinr") as cat:
        cat.verify()
        assert cat.mode == "lossless" and (cat.to_scipy() != m[:, :450]).nnz == 0


def test_a_library_warning_is_one_line_of_the_command(tmp_path):
    """concat of whole files of which one has .raw: anndata warns that it drops .raw; the command had
    printed Python's form of it (the path and source line of scinrcodec's code that called
    anndata.concat), and twice before a refusal. It is one line now, once."""
    import anndata

    counts = sp.random(20, 30, density=0.3, format="csr", random_state=1, dtype=np.float64)
    counts.data = np.ceil(counts.data * 8)
    for name, raw in (("a", True), ("b", False)):
        adata = anndata.AnnData(counts.astype(np.int32), obs=pd.DataFrame(index=[f"{name}{i}" for i in range(20)]),
                                var=pd.DataFrame(index=[f"g{j}" for j in range(30)]))
        if raw:
            adata.raw = adata.copy()
            adata.layers["counts"] = adata.X.copy()
        sinr.write_sinr(adata, tmp_path / f"{name}.sinr", **FAST)
    warning = "sinr: warning: Only some AnnData objects have `.raw` attribute, not concatenating `.raw` attributes."
    result = sinr_cli("concat", tmp_path / "a.sinr", tmp_path / "b.sinr", "-o", tmp_path / "ab.sinr", "--quiet")
    assert result.returncode == 0 and result.stderr == warning + "\n", result.stderr
    result = sinr_cli("concat", tmp_path / "a.sinr", tmp_path / "b.sinr", "-o", tmp_path / "ab2.sinr", "--quiet",
                      "--join", "outer")
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and lines[0] == warning and len(lines) == 2 and lines[1].startswith("sinr: error: ")


def test_append_refuses_a_file_of_a_newer_minor_version(tmp_path):
    """A 3.3 file (spec §11.2: this reader skips what 3.3 adds) took new cells and kept its 3.3 label
    while its 3.3 sections were dropped from the footer; append refuses it now, as it refuses to add
    a segment to one, and the file stays as it was."""
    vector = CONFORMANCE / "v3_minor_version_3_3" / "matrix.sinr"
    target = tmp_path / "v33.sinr"
    target.write_bytes(vector.read_bytes())
    with sinr.open(target) as m:
        assert m.version == (3, 3)
        more = sinr.CountMatrix(m.to_scipy(), m.gene_ids, m.gene_names, [f"{c}-new" for c in m.cell_names])
    with pytest.raises(sinr.InvalidInputError, match="is of format 3.3, newer than this scinrcodec knows"):
        sinr.append(target, more)
    assert target.read_bytes() == vector.read_bytes() and leftovers(tmp_path) == []


@needs("torch")
def test_a_lossless_file_of_lossy_inputs_values_says_how_far_they_may_be(parts, tmp_path):
    """A file coded losslessly from values decoded from lossy files (a concat of mixed modes, a
    subset of an --inr-only file, and whatever is made of such a file again) records how far from
    the counts first encoded they may be (options.inputs_error), and `sinr info` says so: each had
    said 'lossless' alone, as if its values were the counts. Files of exact inputs record nothing."""
    folder, m, ids, cells = parts
    lossy, inr = tmp_path / "lossy.sinr", tmp_path / "inr.sinr"
    sinr.encode(sinr.CountMatrix(m[:, :200], ids, None, cells[:200]), lossy, mode="max-error", max_error=2,
                chunk_cells=64, **FAST)
    sinr.encode(sinr.CountMatrix(m[:, 200:260], ids, None, cells[200:260]), inr, mode="inr-only", chunk_cells=64,
                siren="always", steps=2, width=8, progress=False)
    made = {
        "copied": lambda out: sinr.concat([folder / "a.sinr", folder / "b.sinr", lossy], out, index_unique="-"),
        "first copied": lambda out: sinr.concat([folder / "a.sinr", lossy], out, index_unique="-", join="outer"),
        "recoded": lambda out: sinr.concat([folder / "a.sinr", lossy], out, index_unique="-", recode=True),
        "inr subset": lambda out: sinr.subset(inr, out, cells=cells[200:210]),
    }
    expected = {"copied": 2, "first copied": 2, "recoded": 2, "inr subset": -1}
    for key, make in made.items():
        out = tmp_path / f"{key}.sinr"
        make(out)
        with sinr.open(out) as o:
            assert (o.mode, o.options.get("inputs_error")) == ("lossless", expected[key]), key
    again = tmp_path / "again.sinr"
    sinr.concat([tmp_path / "recoded.sinr", folder / "b.sinr"], again, index_unique="-", recode=True)
    appended = tmp_path / "appended.sinr"
    sinr.concat([tmp_path / "inr subset.sinr", tmp_path / "recoded.sinr"], appended, index_unique="-")
    with sinr.open(appended) as a:
        new = sinr.CountMatrix(m[:, 460:470], a.gene_ids, a.gene_names, [f"new{i}" for i in range(10)])
    sinr.append(appended, new, progress=False)
    exact = tmp_path / "exact.sinr"
    sinr.concat([folder / "a.sinr", folder / "b.sinr"], exact, recode=True)
    with sinr.open(again) as g, sinr.open(appended) as a, sinr.open(exact) as e:
        assert (g.options.get("inputs_error"), a.options.get("inputs_error")) == (2, -1)
        assert "inputs_error" not in e.options and e.mode == "lossless"
    info = sinr_cli("info", str(again))
    assert "lossless of values decoded from lossy files (each within 2 of the counts first encoded)" in info.stdout
    assert "SIREN predictions, not the counts" in sinr_cli("info", str(appended)).stdout
    assert "decoded from" not in sinr_cli("info", str(exact)).stdout


@pytest.mark.parametrize("vector, value, expected", [
    ("bands_and_tiles", 2, 2), ("bands_and_tiles", -1, -1), ("bands_and_tiles", -5, None),
    ("bands_and_tiles", 2**31 - 1, None), ("bands_and_tiles", "2", None), ("bands_and_tiles", True, None),
    ("max_error_2", 3, None),  # a lossy file's mode says how far its values are
])
def test_a_recorded_inputs_error_is_read_only_where_valid(tmp_path, vector, value, expected):
    """options.inputs_error is informative (spec §12.7): read where a lossless file records an int of
    -1 .. 2^31 - 2, as the C++ reader reads it, else ignored, by info and by what appends to the file
    (which had raised on such a value), never refused."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fuzz.reseal import build, parse

    from scinrcodec.encoder.options import EncodeOptions

    parts = parse((Path(__file__).resolve().parent / "conformance" / vector / "matrix.sinr").read_bytes())
    parts.footer["matrices"][0]["options"]["inputs_error"] = value
    path = tmp_path / "m.sinr"
    path.write_bytes(build(parts))
    with sinr.open(path) as m:
        assert m.inputs_error == expected
        assert EncodeOptions.from_recorded(m.options).inputs_error == expected
    assert ("decoded from" in sinr_cli("info", str(path)).stdout) == (expected is not None)
    with pytest.raises(sinr.InvalidInputError, match="inputs_error is recorded by lossless files only"):
        EncodeOptions(mode="max-error", max_error=2, inputs_error=1)


def test_subset_by_names_in_their_order(parts, tmp_path):
    folder, m, ids, cells = parts
    with sinr.open(folder / "b.sinr") as b:
        genes, chosen = [b.gene_names[7], ids[2], b.gene_names[30]], [cells[400], cells[210], cells[300]]
        sinr.subset(folder / "b.sinr", tmp_path / "s.sinr", cells=chosen, genes=genes)
        with sinr.open(tmp_path / "s.sinr") as s:
            assert s.cell_names == chosen and s.gene_ids == [ids[7], ids[2], ids[30]]
            assert (s.to_scipy() != b[genes, chosen]).nnz == 0
            s.verify()
    sinr.subset(folder / "b.sinr", tmp_path / "g.sinr", genes=np.arange(50) % 2 == 0)
    assert sinr.open(tmp_path / "g.sinr").shape == (25, 250)
    with pytest.raises(sinr.SinrKeyError, match="no cell named 'nope'"):
        sinr.subset(folder / "b.sinr", tmp_path / "x.sinr", cells=["nope"])
    with pytest.raises(sinr.InvalidInputError, match="twice"):
        sinr.subset(folder / "b.sinr", tmp_path / "x.sinr", cells=[cells[300], cells[300]])


def test_subset_takes_positions_as_ints_and_says_so_for_the_command_lines_spelling(parts, tmp_path):
    """`sinr subset --cells '#3,#0'` cuts cells 3 and 0; the library takes them as the ints 3 and 0
    (strings are names, as labels are to pandas and anndata), and cells=['#3', '#0'] had failed with
    "no cell named '#3'" alone: it now says which int is meant. Both give the same file."""
    folder = parts[0]
    with sinr.open(folder / "b.sinr") as b:
        cells = b.cell_names
    assert main(["subset", str(folder / "b.sinr"), "-o", str(tmp_path / "cli.sinr"), "--cells", "#3,#0",
                 "--genes", "#5", "--quiet"]) == 0
    sinr.subset(folder / "b.sinr", tmp_path / "api.sinr", cells=[3, 0], genes=[5])
    with sinr.open(tmp_path / "cli.sinr") as cli, sinr.open(tmp_path / "api.sinr") as api:
        assert cli.cell_names == api.cell_names == [cells[3], cells[0]] and (cli.to_scipy() != api.to_scipy()).nnz == 0
    said = r"no cell named '#3', '#0' \(strings are names here; the cell at position 3 is the int 3, which the sinr " \
           r"command spells '#3'\)"
    with pytest.raises(sinr.SinrKeyError, match=said):
        sinr.subset(folder / "b.sinr", tmp_path / "x.sinr", cells=["#3", "#0"])
    with sinr.open(folder / "b.sinr") as b, pytest.raises(sinr.SinrKeyError, match="gene at position 5 is the int 5"):
        b.gene("#5")


def test_subset_of_bare_numbers_says_how_positions_are_spelled(parts, tmp_path):
    """`sinr get f CD3E 5` takes 5 as a position where no cell is named '5', but `sinr subset --cells 5,6`
    takes names (a list may hold both kinds): it said only "no cell named '5', '6'"; it now says how the
    command spells a position, as it did for the library's cells=['#3']."""
    folder = parts[0]
    error = assert_one_error_line(sinr_cli("subset", folder / "b.sinr", "-o", tmp_path / "x.sinr", "--cells", "5,6"))
    assert error == ("sinr: error: no cell named '5', '6' (strings are names here; the cell at position 5 is the "
                     "int 5, which the sinr command spells '#5')")
    with sinr.open(folder / "b.sinr") as b, pytest.raises(sinr.SinrKeyError, match="spells '#-1'"):
        b[["-1"], :]
    with sinr.open(folder / "b.sinr") as b, pytest.raises(sinr.SinrKeyError, match=r"^no gene named 'x1'$"):
        b.gene("x1")


def test_cli_concat_and_subset(parts, tmp_path):
    folder, m, _, cells = parts
    run = sinr_cli("concat", folder / "a.sinr", folder / "b.sinr", "-o", tmp_path / "ab.sinr")
    assert run.returncode == 0 and "wrote" in run.stdout and "copied:   8 chunks" in run.stdout, run.stderr
    run = sinr_cli("concat", folder / "a.sinr", folder / "b.sinr", "-o", tmp_path / "ab_re.sinr", "--recode")
    assert run.returncode == 0 and "wrote" in run.stdout and "copied" not in run.stdout, run.stderr
    (tmp_path / "cells.txt").write_text(f"\ufeff{cells[3]}\r\n{cells[0]}\n")  # a byte order mark, CRLF
    with sinr.open(folder / "a.sinr") as a:
        gene = a.gene_names[4]
    run = sinr_cli("subset", tmp_path / "ab.sinr", "-o", tmp_path / "s.sinr", "--cells", f"@{tmp_path / 'cells.txt'}",
                   "--genes", gene)
    assert run.returncode == 0, run.stderr
    with sinr.open(tmp_path / "s.sinr") as s:
        assert s.cell_names == [cells[3], cells[0]] and s.gene_names == [gene]
    import gzip

    (tmp_path / "cells.tsv.gz").write_bytes(gzip.compress(f"{cells[3]}\n{cells[0]}\n".encode()))  # as 10x's barcodes
    run = sinr_cli("subset", tmp_path / "ab.sinr", "-o", tmp_path / "z.sinr", "--cells", f"@{tmp_path / 'cells.tsv.gz'}")
    assert run.returncode == 0, run.stderr
    with sinr.open(tmp_path / "z.sinr") as s:
        assert s.cell_names == [cells[3], cells[0]]
    many = list(reversed(cells[:450]))  # a long list from a pipe, read once: its first 4 KiB had been lost
    run = sinr_cli("subset", tmp_path / "ab.sinr", "-o", tmp_path / "p.sinr", "--cells", "@/dev/stdin",
                   input="\n".join(many))
    assert run.returncode == 0 and len("\n".join(many)) > 8192, run.stderr
    with sinr.open(tmp_path / "p.sinr") as s:
        assert s.cell_names == many
    run = sinr_cli("subset", tmp_path / "ab.sinr", "-o", tmp_path / "i.sinr", "--cells", "#3,#0", "--genes", "#4")
    assert run.returncode == 0, run.stderr  # indices as `sinr get` takes them
    with sinr.open(tmp_path / "i.sinr") as s:
        assert s.cell_names == [cells[3], cells[0]] and s.gene_names == [gene]
    assert_one_error_line(sinr_cli("subset", tmp_path / "ab.sinr", "-o", tmp_path / "m.sinr", "--cells",
                                   f"#3,{cells[0]}"), "mixes #N indices and names")
    assert_one_error_line(sinr_cli("concat", folder / "a.sinr", folder / "a.sinr", "-o", tmp_path / "aa.sinr"),
                          "named twice")
    assert_one_error_line(sinr_cli("subset", tmp_path / "ab.sinr", "-o", tmp_path / "x.sinr"), "--cells, --genes")
    assert leftovers(tmp_path) == []


def test_a_file_naming_a_cell_twice_is_not_told_to_pass_index_unique(parts, tmp_path):
    """A file can list a barcode twice (encode keeps the names as given); concat refuses the repeat naming the file,
    and does not ask for index_unique, which appends one key to all of a file's cells and so cannot tell them apart
    (it had said "pass index_unique='-'" to a user who had passed it). A plain file and a whole AnnData alike."""
    import anndata as ad

    folder, m, ids, cells = parts
    names = list(cells[:200])
    names[7] = names[3]
    with sinr.open(folder / "a.sinr") as a:
        sinr.encode(sinr.CountMatrix(m[:, :200], ids, a.gene_names, names), tmp_path / "twice.sinr", **FAST)
    for name, cols, obs in (("twice_whole.sinr", slice(0, 200), names), ("b_whole.sinr", slice(200, 450), None)):
        whole = ad.AnnData(sp.csr_matrix(m[:, cols].T), obs=pd.DataFrame(index=obs or cells[cols]),
                           var=pd.DataFrame(index=ids))
        sinr.write_sinr(whole, tmp_path / name, **FAST)
    for twice, other in (("twice.sinr", folder / "b.sinr"), ("twice_whole.sinr", tmp_path / "b_whole.sinr")):
        for unique in (None, "-"):
            with pytest.raises(sinr.InvalidInputError) as refused:
                sinr.concat([tmp_path / twice, other], tmp_path / "out.sinr", index_unique=unique)
            assert twice in str(refused.value) and repr(names[3]) in str(refused.value)
            assert "pass index_unique" not in str(refused.value)
    assert_one_error_line(sinr_cli("concat", tmp_path / "twice.sinr", folder / "b.sinr", "-o", tmp_path / "out.sinr",
                                   "--index-unique", "-"), "named more than once in this file")
    assert not (tmp_path / "out.sinr").exists()


def test_a_subset_naming_a_cell_twice_says_which(parts, tmp_path):
    """A barcode list with a repeat (two whitelists joined, a list of cells and of ambient barcodes) is refused
    naming the barcode and its position, and a gene likewise: it had been 'a subset names a cell or gene twice',
    leaving the user to search a list of thousands."""
    folder, _, _, cells = parts
    with sinr.open(folder / "a.sinr") as a:
        gene = a.gene_names[3]
    listed = tmp_path / "cells.txt"
    listed.write_text("\n".join([cells[5], cells[9], cells[5]]) + "\n")
    assert_one_error_line(sinr_cli("subset", folder / "a.sinr", "-o", tmp_path / "s.sinr", "--cells", f"@{listed}"),
                          f"names cell {cells[5]!r} (#5) twice")
    with pytest.raises(sinr.InvalidInputError, match=re.escape(f"names gene {gene!r} (#3) twice")):
        sinr.subset(folder / "a.sinr", tmp_path / "s.sinr", genes=[3, 1, 3])
    assert leftovers(tmp_path) == [] and not (tmp_path / "s.sinr").exists()


@pytest.mark.parametrize("unknown", ["rare", "all"])
def test_fresh_gene_statistics_equal_pass_1s_for_the_genes_the_file_lacks(parts, tmp_path, unknown):
    """concat's shortcut past pass 1 gives pass 1's figures for the genes not yet stored: read from
    the few cells that hold them (rare genes), or block by block where most cells do (all genes)."""
    from scinrcodec.encoder.combine import Piece, PiecesSource
    from scinrcodec.encoder.driver import gene_statistics
    from scinrcodec.encoder.options import EncodeOptions
    from scinrcodec.progress import Progress

    folder, _, ids, _ = parts
    with sinr.open(folder / "b.sinr") as b, sinr.open(folder / "c.sinr") as c:
        c_genes = np.array([c.gene_ids.index(g) if g in c.gene_ids else -1 for g in ids])
        source = PiecesSource([Piece(b, None, np.arange(len(ids))), Piece(c, None, c_genes)], ids, None, None, None,
                              description="test")
        expected_nnz, expected_dev = gene_statistics(source, EncodeOptions(chunk_cells=64), Progress(False, None, "", ""))
        stored = b.index.genes()[0]
        rare = stored[np.argsort(expected_nnz[stored], kind="stable")[:3]]
        known = np.setdiff1d(stored, rare) if unknown == "rare" else np.zeros(0, np.int64)
        nnz, dev = source.fresh_gene_statistics(known, 64)
    fresh = np.setdiff1d(np.arange(len(ids)), known)
    assert (nnz[known] == 0).all() and (dev[known] == 0).all()
    assert np.array_equal(nnz[fresh], expected_nnz[fresh]) and expected_nnz[rare].sum() > 0
    np.testing.assert_allclose(dev[fresh], expected_dev[fresh], rtol=1e-9, atol=1e-9)
