"""Cell Ranger 2 HDF5 files of several genomes (barnyard experiments: one group per genome) read as
one matrix, as Cell Ranger 3 lays such data out: the genome groups' genes stacked, each gene's genome
recorded, the cells the union of the groups' barcodes (io.tenx_h5.GenomeStack)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import assert_one_error_line, sinr_cli

CELLS, GENES = 80, 150  # pbmc4k (Cell Ranger 2.1) as tests/data holds it, cut for speed


@pytest.fixture(scope="module")
def cut(pbmc):
    """pbmc4k's counts (CSC), gene ids, names and barcodes."""
    assert pbmc.shape == (GENES, CELLS)
    return pbmc.matrix().tocsc(), pbmc.gene_ids, pbmc.gene_names, pbmc.cell_names(0, CELLS)


def _text(values) -> np.ndarray:
    return np.array([v.encode() for v in values])


def write_v2(path, cut, genomes: list[tuple[str, slice, list[int]]]):
    """A Cell Ranger 2 file of the genomes given as (name, genes, cells) of `cut`: one group each,
    ids and names prefixed with the genome as Cell Ranger's multi-genome references prefix them."""
    counts, ids, names, barcodes = cut
    with h5py.File(path, "w") as f:
        f.attrs["filetype"] = "matrix"
        f.attrs["chemistry_description"] = "Single Cell 3' v2"
        for genome, genes, cells in genomes:
            part = counts[genes][:, cells].tocsc()
            g = f.create_group(genome)
            g["data"], g["indices"] = part.data.astype(np.int32), part.indices.astype(np.int64)
            g["indptr"], g["shape"] = part.indptr.astype(np.int64), np.array(part.shape, dtype=np.int32)
            g["barcodes"] = _text(barcodes[j] for j in cells)
            g["genes"] = _text(f"{genome}_{i}" for i in ids[genes])
            g["gene_names"] = _text(f"{genome}_{n}" for n in names[genes])
    return path


def expected(cut, genomes) -> tuple[sp.csc_matrix, list[str], list[str]]:
    """The one matrix such a file holds (cells in `cut`'s order, a cell missing from a genome zero
    there), its gene ids and each gene's genome."""
    counts, ids, _, _ = cut
    blocks, gene_ids, of = [], [], []
    cells = sorted(set().union(*(cells for _, _, cells in genomes)))
    for genome, genes, held in genomes:
        keep = np.zeros(CELLS, bool)
        keep[held] = True
        part = counts[genes].tocsc() @ sp.diags(keep.astype(np.int32), dtype=np.int32)
        blocks.append(part[:, cells])
        named = [f"{genome}_{i}" for i in ids[genes]]
        gene_ids += named
        of += [genome] * len(named)
    return sp.vstack(blocks).tocsc(), gene_ids, of


def same(a, b) -> bool:
    return a.shape == b.shape and (sp.csc_matrix(a) != sp.csc_matrix(b)).nnz == 0


def _round_trip(tmp_path, cut, genomes) -> None:
    """`sinr encode` then `sinr decode` to .h5 and .h5ad give every count, id and genome back."""
    source = write_v2(tmp_path / "v2.h5", cut, genomes)
    want, ids, of = expected(cut, genomes)
    barcodes = [cut[3][j] for j in sorted(set().union(*(cells for _, _, cells in genomes)))]
    listed = ", ".join(f"{g} ({len(range(*genes.indices(GENES))):,} genes)" for g, genes, _ in genomes)
    done = sinr_cli("encode", source, tmp_path / "x.sinr")
    assert done.returncode == 0 and f"\ngenomes:  {listed}\n" in done.stdout, done.stderr
    assert f"\ngenomes:   {listed}\n" in sinr_cli("info", tmp_path / "x.sinr").stdout
    for out in ("back.h5", "back.h5ad"):
        done = sinr_cli("decode", tmp_path / "x.sinr", tmp_path / out)
        assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "back.h5") as f:  # Cell Ranger 3's layout, read with h5py: every integer
        g = f["matrix"]
        got = sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g["shape"][:]))
        assert g["data"].dtype == np.int32 and same(got, want)
        assert [v.decode() for v in g["features/id"][:]] == ids
        assert [v.decode() for v in g["features/genome"][:]] == of
        assert [v.decode() for v in g["barcodes"][:]] == barcodes
        assert f.attrs["version"] == 2 and f.attrs["chemistry_description"] == "Single Cell 3' v2"
    import anndata
    import scanpy

    for adata in (scanpy.read_10x_h5(tmp_path / "back.h5"), anndata.read_h5ad(tmp_path / "back.h5ad")):
        assert same(adata.X.T, want) and np.array_equal(adata.X.data, np.rint(adata.X.data))
        assert list(adata.var["gene_ids"]) == ids and list(adata.var["genome"]) == of
        assert list(adata.obs_names) == barcodes
    with sinr.open(tmp_path / "x.sinr") as m:
        assert same(m.to_scipy(), want) and m.gene_ids == ids and m.cell_names == barcodes


def test_two_genomes_of_the_same_barcodes_stack(tmp_path, cut):
    """A raw Cell Ranger 2 file: every genome group lists the same barcodes; the matrix is the stack."""
    everyone = list(range(CELLS))
    _round_trip(tmp_path, cut, [("hg19", slice(0, 100), everyone), ("mm10", slice(100, GENES), everyone)])


def test_genomes_of_different_barcodes_read_as_their_union(tmp_path, cut):
    """A filtered Cell Ranger 2 file lists in each genome group the barcodes called cells for that
    genome: the cells are their union, in the order of both lists, zeros where a genome lacks one."""
    human, mouse = list(range(0, 50)), list(range(30, CELLS, 2))
    _round_trip(tmp_path, cut, [("hg19", slice(0, 100), human), ("mm10", slice(100, GENES), mouse)])
    everyone = list(range(CELLS))
    genomes = [("hg19", slice(0, 10), everyone[1::2]), ("mm10", slice(10, 20), everyone)]
    stack = sinr.read_matrix(write_v2(tmp_path / "odd.h5", cut, genomes))  # the later group lists every barcode
    assert stack.cell_names(0, CELLS) == cut[3] and same(stack.matrix(), expected(cut, genomes)[0])


def test_three_genomes(tmp_path, cut):
    _round_trip(tmp_path, cut, [("GRCh38", slice(0, 60), list(range(0, 60))),
                                ("dm6", slice(60, 80), list(range(CELLS))),
                                ("mm10", slice(80, GENES), list(range(20, CELLS)))])


def test_blocks_and_workers_read_the_same_cells(tmp_path, cut):
    """Any cell range, and the encoder's worker processes (which open the file again), read the stack."""
    genomes = [("hg19", slice(0, 100), list(range(0, 50))), ("mm10", slice(100, GENES), list(range(30, CELLS)))]
    source = sinr.read_matrix(write_v2(tmp_path / "v2.h5", cut, genomes))
    want = expected(cut, genomes)[0]
    for per_block in (1, 7, 64, 1000):
        pieces = list(source.blocks(per_block))
        assert sum(b.nnz for b in pieces) == want.nnz == source.nnz
    for start, stop in ((0, 1), (25, 55), (49, 51), (CELLS - 3, CELLS)):
        block = source.block(start, stop)
        got = sp.csc_matrix((block.values, block.genes, block.indptr), shape=(GENES, stop - start))
        assert same(got, want[:, start:stop])
    done = sinr_cli("encode", tmp_path / "v2.h5", tmp_path / "x.sinr", "--matrix-only", "--jobs", "2",
                    "--chunk-cells", "16")
    assert done.returncode == 0, done.stderr
    with sinr.open(tmp_path / "x.sinr") as m:
        assert same(m.to_scipy(), want)


def test_a_gene_id_two_genomes_share_stays_twice(tmp_path, cut):
    """Ids are kept as written: two genomes' genes of one id stay two genes, told apart by genome."""
    source = write_v2(tmp_path / "v2.h5", cut, [("hg19", slice(0, 5), list(range(CELLS))),
                                                ("mm10", slice(5, 10), list(range(CELLS)))])
    with h5py.File(source, "a") as f:
        ids = f["mm10/genes"][:]
        ids[0] = f["hg19/genes"][0]
        f["mm10/genes"][...] = ids
    sinr.encode_whole(source, tmp_path / "x.sinr", siren=False, progress=False)
    sinr.decode(tmp_path / "x.sinr", tmp_path / "back.h5")
    with h5py.File(tmp_path / "back.h5") as f:
        shared = f["matrix/features/id"][0]
        assert list(f["matrix/features/id"][:]).count(shared) == 2
        assert [f["matrix/features/genome"][i] for i in (0, 5)] == [b"hg19", b"mm10"]
    with sinr.open(tmp_path / "x.sinr") as m, pytest.raises(sinr.SinrError, match="2 genes are named"):
        m.gene(shared.decode())


def test_what_lies_beside_the_genome_groups_comes_back(tmp_path, cut):
    """A dataset or link at the file's root beside the genome groups is kept in the Cell Ranger 3
    image a whole encode stores, as it is."""
    source = write_v2(tmp_path / "v2.h5", cut, [("hg19", slice(0, 10), list(range(CELLS))),
                                                ("mm10", slice(10, 20), list(range(CELLS)))])
    with h5py.File(source, "a") as f:
        f["notes"] = np.arange(3)
        f["notes"].attrs["by"] = "lab"
        f["alias"] = h5py.SoftLink("/notes")
    for args in (("encode", source, tmp_path / "x.sinr"), ("decode", tmp_path / "x.sinr", tmp_path / "back.h5")):
        done = sinr_cli(*args)
        assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "back.h5") as f:
        assert sorted(f) == ["alias", "matrix", "notes"] and list(f["notes"][:]) == [0, 1, 2]
        assert f["notes"].attrs["by"] == "lab" and f.get("alias", getlink=True).path == "/notes"


def test_a_file_of_no_nonzeros_lists_its_genomes_too(tmp_path):
    """`sinr encode` lists the genomes of a file whose counts are all zero, as `sinr info` does."""
    with h5py.File(tmp_path / "v2.h5", "w") as f:
        for genome, genes in (("hg19", 3), ("mm10", 2)):
            g = f.create_group(genome)
            g["data"], g["indices"] = np.zeros(0, np.int32), np.zeros(0, np.int64)
            g["indptr"], g["shape"] = np.zeros(5, np.int64), np.array([genes, 4], np.int32)
            g["barcodes"] = _text(f"AC{j}-1" for j in range(4))
            g["genes"] = g["gene_names"] = _text(f"{genome}_{i}" for i in range(genes))
    done = sinr_cli("encode", tmp_path / "v2.h5", tmp_path / "x.sinr")
    assert done.returncode == 0 and "0 nonzeros" in done.stdout, done.stderr
    assert "\ngenomes:  hg19 (3 genes), mm10 (2 genes)\n" in done.stdout


def _hostile(path, change) -> None:
    with h5py.File(path, "a") as f:
        change(f)


@pytest.mark.parametrize("change, message", [
    (lambda f: f["mm10"].__delitem__("indptr") or f["mm10"].create_dataset("indptr", data=np.arange(5)),
     "/mm10/indptr holds 5 index pointers for 80 cells"),
    (lambda f: f["mm10/shape"].write_direct(np.array([10, 70], np.int32)),
     "/mm10/indptr holds 81 index pointers for 70 cells"),
    (lambda f: f["mm10/shape"].write_direct(np.array([12, 300], np.int32)),
     "/mm10/genes holds 10 names for 12 entries"),
    (lambda f: f["mm10/indptr"].write_direct(np.full(81, 10**6, np.int64), dest_sel=np.s_[:]),
     "index pointers run from 1,000,000"),
    (lambda f: f["mm10/barcodes"].write_direct(f["mm10/barcodes"][:][::-1].copy()),
     "its genome groups order their shared barcodes differently"),
    (lambda f: f["mm10/barcodes"].write_direct(np.array([f["mm10/barcodes"][1]] * 80)),
     "genome group 'mm10' lists barcode"),
])
def test_groups_that_contradict_each_other_are_refused(tmp_path, cut, change, message):
    source = write_v2(tmp_path / "v2.h5", cut, [("hg19", slice(0, 10), list(range(CELLS))),
                                                ("mm10", slice(10, 20), list(range(CELLS)))])
    _hostile(source, change)
    assert_one_error_line(sinr_cli("encode", source, tmp_path / "x.sinr"), message)
    assert not (tmp_path / "x.sinr").exists()


def _halve(f, path: str) -> None:
    values = f[path][:] / 2
    del f[path]
    f[path] = values


@pytest.mark.parametrize("change, message", [
    (lambda f: _halve(f, "mm10/data"), "genome group 'mm10' (cells 0..79): contains non-integer values"),
    (lambda f: f["mm10"].__delitem__("barcodes"), "genome group 'mm10': has no 'barcodes' dataset"),
    (lambda f: f.create_group("extra"), "genome group 'extra': has no 'shape' dataset"),
])
def test_a_fault_in_one_genome_group_names_the_group(tmp_path, cut, change, message):
    """A file of several genome groups has no one matrix a message could be about: one naming a
    dataset the groups share (barcodes, shape) or cells 0..79 of some group is named by its group."""
    source = write_v2(tmp_path / "v2.h5", cut, [("hg19", slice(0, 10), list(range(CELLS))),
                                                ("mm10", slice(10, 20), list(range(CELLS)))])
    _hostile(source, change)
    assert_one_error_line(sinr_cli("encode", source, tmp_path / "x.sinr"), message)


def test_random_subsets_of_sorted_barcodes_read_exactly(tmp_path):
    """Groups holding random subsets of sorted barcodes (as Cell Ranger 2's filtered files do), of
    random counts: the cells are their sorted union, and every block reads each cell's entries of
    each genome, zeros where it lacks them."""
    rng = np.random.default_rng(7)
    pool = sorted({f"{''.join(rng.choice(list('ACGT'), 8))}-1" for _ in range(40)})
    for trial in range(25):
        groups = [f"g{k}" for k in range(int(rng.integers(2, 4)))]
        held = {group: np.flatnonzero(rng.random(len(pool)) < rng.uniform(0.2, 1)) for group in groups}
        sizes = {group: int(rng.integers(1, 6)) for group in groups}
        dense = {group: rng.integers(0, 3, size=(sizes[group], held[group].size)) * (rng.random(
            (sizes[group], held[group].size)) < 0.5) for group in groups}
        path = tmp_path / f"t{trial}.h5"
        with h5py.File(path, "w") as f:
            for group in groups:
                part = sp.csc_matrix(dense[group])
                g = f.create_group(group)
                g["data"], g["indices"], g["indptr"] = part.data.astype(np.int32), part.indices, part.indptr
                g["shape"] = np.array(part.shape, dtype=np.int32)
                g["barcodes"] = _text(pool[j] for j in held[group])
                g["genes"] = g["gene_names"] = _text(f"{group}_{i}" for i in range(sizes[group]))
        cells = sorted(set().union(*(held[group].tolist() for group in groups)))
        want = np.zeros((sum(sizes.values()), len(cells)), np.int64)
        row = 0
        for group in groups:
            for k, j in enumerate(held[group]):
                want[row: row + sizes[group], cells.index(j)] = dense[group][:, k]
            row += sizes[group]
        source = sinr.read_matrix(path)
        assert source.cell_names(0, len(cells)) == [pool[j] for j in cells]
        for per_block in (1, 3, 64):
            got = sp.hstack([sp.csc_matrix((b.values, b.genes, b.indptr), shape=(want.shape[0], b.n_cells))
                             for b in source.blocks(per_block)] or [sp.csc_matrix(want.shape)])
            assert np.array_equal(got.toarray(), want), (trial, per_block)


def test_many_genome_groups_of_different_barcodes_are_merged_in_time_of_their_barcodes(tmp_path):
    """The union's merge keeps the barcodes ready to be placed as it goes, rather than asking each
    group of every group's next barcode at each step: 150 groups of 400 barcodes of their own (a
    2.3 MB file) took 77 s in that merge, and now take a fraction of a second."""
    groups, per = 150, 400
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        for k in range(groups):
            g = f.create_group(f"g{k:03d}")
            g["data"], g["indices"] = np.full(per, k + 1, np.int32), np.zeros(per, np.int64)
            g["indptr"], g["shape"] = np.arange(per + 1, dtype=np.int64), np.array([1, per], np.int32)
            g["barcodes"] = _text(f"{i:06d}-{k}" for i in range(per))
            g["genes"] = g["gene_names"] = _text([f"gene{k}"])
    done = sinr_cli("encode", path, tmp_path / "x.sinr", "--matrix-only", timeout=40)
    assert done.returncode == 0, done.stderr
    with sinr.open(tmp_path / "x.sinr") as m:
        assert m.cell_names == sorted(f"{i:06d}-{k}" for k in range(groups) for i in range(per))
        counts = m.to_scipy(layout="csc")
        assert counts.nnz == groups * per and np.array_equal(counts.sum(axis=1).A1, np.arange(1, groups + 1) * per)
