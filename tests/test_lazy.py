"""Out-of-core work: a lazy AnnData whose X is a dask array of the file's chunks (decoded only when
computed, and right when it is: scanpy gives what it gives in memory), and a cell-batch loader
that yields every cell once per epoch, deterministically for a seed."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, FAST
from scinrcodec.reader.lazy import MatrixRef

da = pytest.importorskip("dask.array")
sc = pytest.importorskip("scanpy")

CHUNK = 16  # 80 cells: 5 chunks


@pytest.fixture(scope="module")
def adata():
    source = sinr.read_matrix(DATA / "pbmc4k_v2_soupx_half")
    counts = source.matrix().T.tocsr()
    a = anndata.AnnData(X=counts.astype(np.float32), obs=pd.DataFrame(index=source.cell_names(0, counts.shape[0])),
                        var=pd.DataFrame({"gene_ids": source.gene_ids}, index=source.gene_names))
    a.obs["batch"] = pd.Categorical(np.resize(["b1", "b2", "b3"], a.n_obs))
    a.obs["depth"] = np.asarray(counts.sum(axis=1)).ravel()
    a.layers["spliced"] = counts.astype(np.int32)
    return a


@pytest.fixture(scope="module")
def path(adata, tmp_path_factory):
    out = tmp_path_factory.mktemp("lazy") / "pbmc.sinr"
    sinr.encode_whole(adata, out, chunk_cells=CHUNK, **FAST)
    return out


# ------------------------------------------------------------------------------------ lazy AnnData

def test_lazy_anndata_decodes_chunks_only_when_computed(path, adata, monkeypatch):
    calls = []
    original = sinr.SinrMatrix.cells_block

    def counting(self, start, stop, dtype=np.int64, *, jobs=None):
        calls.append((start, stop, jobs))
        return original(self, start, stop, dtype, jobs=jobs)

    monkeypatch.setattr(sinr.SinrMatrix, "cells_block", counting)
    lazy = sinr.read_lazy(path)
    assert calls == []
    assert isinstance(lazy.X, da.Array) and isinstance(lazy.X._meta, sp.csr_matrix)
    assert lazy.X.chunks == ((CHUNK,) * 5, (adata.n_vars,)) and lazy.X.dtype == np.float32
    assert isinstance(lazy.layers["spliced"], da.Array) and lazy.layers["spliced"].dtype == np.int32
    pd.testing.assert_frame_equal(lazy.obs, adata.obs)
    pd.testing.assert_frame_equal(lazy.var, adata.var)
    first = lazy.X[:CHUNK].compute()
    assert calls == [(0, CHUNK, 1)]  # one thread a block: dask runs blocks in parallel
    assert (first != adata.X[:CHUNK]).nnz == 0
    whole = lazy.X.compute()
    assert whole.dtype == np.float32 and (whole != adata.X).nnz == 0


def test_scanpy_runs_out_of_core_as_in_memory(path, adata):
    lazy = sinr.read_lazy(path)
    eager = adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a in (lazy, eager):
            sc.pp.normalize_total(a, target_sum=1e4)
            sc.pp.log1p(a)
            sc.pp.highly_variable_genes(a, flavor="seurat")  # per-gene means and dispersions
    assert isinstance(lazy.X, da.Array)
    np.testing.assert_allclose(lazy.X.compute().toarray(), eager.X.toarray(), rtol=1e-6)
    np.testing.assert_allclose(lazy.var["means"], eager.var["means"], rtol=1e-6)
    gene_means = lazy.X.map_blocks(lambda b: np.asarray(b.sum(axis=0)), chunks=(1, lazy.n_vars), dtype=np.float64,
                                   meta=np.zeros((0, 0))).sum(axis=0).compute() / lazy.n_obs
    np.testing.assert_allclose(gene_means, np.asarray(eager.X.mean(axis=0)).ravel(), rtol=1e-5)


def test_lazy_plain_file_and_one_modality(tmp_path):
    sinr.encode(DATA / "pbmc500_cellranger.h5", tmp_path / "plain.sinr", chunk_cells=100, **FAST)
    with sinr.open(tmp_path / "plain.sinr") as m:
        lazy = m.to_anndata(lazy=True)
        eager = m.to_anndata()
        assert lazy.X.dtype == np.float32 and len(lazy.X.chunks[0]) == m.n_chunks
        assert (lazy.X.compute() != eager.X).nnz == 0
        pd.testing.assert_frame_equal(lazy.var, eager.var)
        genes = m.to_anndata(lazy=True, feature_type="Gene Expression")
        assert isinstance(genes.X, da.Array) and genes.n_vars == eager.n_vars


def test_matrices_travel_to_other_processes_by_path_or_bytes(path, adata):
    with sinr.open(path) as m:
        ref = pickle.loads(pickle.dumps(MatrixRef(m)))
        assert ref.matrix.source == str(path) and ref.matrix is not m
        assert (ref.matrix.cells_block(2 * CHUNK, 3 * CHUNK, np.float32) != adata.X[2 * CHUNK: 3 * CHUNK]).nnz == 0
    in_memory = pickle.loads(pickle.dumps(MatrixRef(sinr.open(path.read_bytes()))))
    assert in_memory.matrix.source == "<bytes>" and in_memory.matrix.shape == (adata.n_vars, adata.n_obs)
    with open(path, "rb") as fh, pytest.raises(sinr.InvalidInputError, match="cannot go to another process"):
        pickle.dumps(MatrixRef(sinr.open(fh)))


def test_an_open_matrix_pickles_as_its_lazy_blocks_do(path, adata, tmp_path):
    """A SinrMatrix (for multiprocessing, dask) travels as its path, or its bytes, with its jobs,
    and opens the same version again; one of a file object, or of a file replaced since, is refused."""
    with sinr.open(path, jobs=1) as m:
        back = pickle.loads(pickle.dumps(m))
        assert type(back) is type(m) and back is not m and back.jobs == 1 and back.source == str(path)
        assert (back.T.to_scipy(dtype=np.float32) != adata.X).nnz == 0
    from_bytes = pickle.loads(pickle.dumps(sinr.open(path.read_bytes())))
    assert from_bytes.source == "<bytes>" and (from_bytes.T.to_scipy(dtype=np.float32) != adata.X).nnz == 0
    with open(path, "rb") as fh, pytest.raises(sinr.InvalidInputError, match="cannot go to another process"):
        pickle.dumps(sinr.open(fh))
    live = tmp_path / "live.sinr"
    live.write_bytes(path.read_bytes())
    travelled = pickle.dumps(sinr.open(live))
    sinr.subset(path, tmp_path / "other.sinr", cells=slice(0, CHUNK))
    os.replace(tmp_path / "other.sinr", live)
    with pytest.raises(sinr.FileChangedError, match="changed after it was opened in another process"):
        pickle.loads(travelled)
    with sinr.open(path) as m, pytest.raises(sinr.InvalidInputError, match="not iterable"):
        list(m)  # not an empty list: Python's fallback of m[0], m[1], ... ends at once
    with sinr.open(path) as m, pytest.raises(TypeError, match="not iterable"):  # a TypeError too, as Python's is
        list(m.T)
    with sinr.open(path) as m:
        assert not np.iterable(m)


def test_a_matrix_opened_by_a_relative_path_travels_after_the_folder_changes(path, adata, tmp_path, monkeypatch):
    """A matrix opened by a relative path travels (and reads after close()) as the file it opened, from
    the folder it was opened in: pickled after the process had changed folder, it had named the file
    beside the new folder, and the other process had failed with 'No such file or directory', or
    with 'the file changed ... (it was replaced or rewritten)' where a file of that name was there."""
    monkeypatch.chdir(path.parent)
    m = sinr.open(path.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(path, elsewhere / path.name)  # a file of the same name, another version of it
    monkeypatch.chdir(elsewhere)
    for ref in (pickle.loads(pickle.dumps(m)), pickle.loads(pickle.dumps(MatrixRef(m))).matrix):
        assert ref.source == str(path)
        assert (ref.T.to_scipy(dtype=np.float32) != adata.X).nnz == 0
    (elsewhere / path.name).unlink()
    m.close()
    assert (m.T.to_scipy(dtype=np.float32) != adata.X).nnz == 0  # opened again where it was


def test_a_worker_refuses_a_file_replaced_since_the_graph_was_built(path, tmp_path):
    """A graph built on one version of a file never decodes blocks of another: a worker that opens
    the path after the file was replaced (or rewritten) raises FileChangedError; the same version
    opens, once per process, when a block first reads it: unpickling opens nothing (dask's scheduler
    unpickles graphs too, and may not see the file)."""
    live = tmp_path / "live.sinr"
    live.write_bytes(path.read_bytes())
    with sinr.open(live) as m:
        travelled = pickle.dumps(MatrixRef(m))
        first = pickle.loads(travelled)
        assert pickle.loads(travelled).matrix is first.matrix and first.matrix.file_identity == m.file_identity
        assert pickle.loads(pickle.dumps(pickle.loads(travelled))).matrix is first.matrix  # passed on unopened
        sinr.subset(path, tmp_path / "other.sinr", cells=slice(0, CHUNK))
        os.replace(tmp_path / "other.sinr", live)
        assert pickle.loads(travelled).matrix is first.matrix  # this process still reads the version it opened
        (tmp_path / "ref.pickle").write_bytes(travelled)
        script = "import pickle, sys; ref = pickle.loads(open(sys.argv[1], 'rb').read()); print('unpickled'); ref.matrix"
        worker = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ref.pickle")], capture_output=True,
                                text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        assert worker.returncode != 0 and worker.stdout == "unpickled\n"
        assert "FileChangedError" in worker.stderr and "changed after it was opened in another process" in worker.stderr
        assert pickle.loads(pickle.dumps(MatrixRef(sinr.open(live)))).matrix.shape[1] == CHUNK


def test_a_file_opened_from_bytes_computes_on_dask_workers(path, adata):
    """A worker process gets the file's bytes (it has no path to open), once per matrix. A file
    object cannot go there: read_lazy refuses one at once while a client runs (it had failed at
    compute with distributed's TypeError and some 90 lines of logged tracebacks)."""
    distributed = pytest.importorskip("distributed")
    lazy = sinr.read_lazy(path.read_bytes())
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        x, layer = lazy.X.compute(), lazy.layers["spliced"].compute()
        with open(path, "rb") as fh, pytest.raises(sinr.InvalidInputError,
                                                   match="file object cannot go to dask.distributed's workers"):
            sinr.read_lazy(fh)
    assert (x != adata.X).nnz == 0 and (layer != adata.layers["spliced"]).nnz == 0
    with open(path, "rb") as fh:  # no client: its own process computes it
        assert (sinr.read_lazy(fh).X.compute() != adata.X).nnz == 0


@pytest.mark.parametrize("op", ["sum", "mean", "var", "min", "max"])
def test_reductions_along_either_axis(path, adata, op):
    """Either axis, numpy's negative ones, or every entry (None), as numpy gives them."""
    lazy = sinr.read_lazy(path)
    dense = adata.X.toarray().astype(np.float64)
    for axis in (0, 1, -1, -2, None):
        np.testing.assert_allclose(sinr.reduce_cells(lazy.X, op, axis).compute(), getattr(dense, op)(axis=axis),
                                   rtol=1e-9, atol=1e-9)
    for op_, axis in (("median", 0), (op, 2), (op, True), (op, 1.0), (op, np.array([0]))):
        with pytest.raises(sinr.InvalidInputError, match="op must be"):
            sinr.reduce_cells(lazy.X, op_, axis)
    import dask.array as da

    for other, what in ((adata.X, "not csr_matrix"), (da.ones((4, 4), chunks=2), "ndarray blocks, 2 along the genes"),
                        (lazy.X.rechunk({1: 10}), "csr_matrix blocks, [0-9]+ along the genes")):
        with pytest.raises(sinr.InvalidInputError, match=f"reduce_cells takes a lazy X .*{what}"):
            sinr.reduce_cells(other, op, 0)


def test_var_of_large_counts_is_exact(tmp_path):
    """Counts near a billion with a spread of about one: E[x^2] - E[x]^2 had cancelled to 0, 0.03 or
    768 (a QA report); each block's deviations from its own mean, combined, give numpy's variance."""
    rng = np.random.default_rng(0)
    dense = (10 ** 9 + rng.integers(0, 3, (60, 7))).astype(np.int64)
    dense[::5, 2] = 0  # zeros, as sparse counts hold them
    out = tmp_path / "large.sinr"
    sinr.encode(sp.csr_matrix(dense.T), out, chunk_cells=CHUNK, **FAST)
    x = sinr.read_lazy(out, dtype=np.int64).X
    assert x.numblocks[0] > 1
    def exact_var(a: np.ndarray) -> float:  # in integers: n sum(x^2) - sum(x)^2, over n^2
        values = [int(v) for v in a.ravel()]
        return (len(values) * sum(v * v for v in values) - sum(values) ** 2) / len(values) ** 2

    for axis, want in ((0, [exact_var(c) for c in dense.T]), (1, [exact_var(r) for r in dense]),
                       (None, exact_var(dense))):
        np.testing.assert_allclose(sinr.reduce_cells(x, "var", axis).compute(), want, rtol=1e-7)


def test_reductions_of_a_dense_lazy_x(tmp_path):
    """An X stored dense comes back as a dask array of numpy blocks: reduce_cells takes it too (it
    refused it, naming it as the very thing it takes)."""
    dense = np.random.default_rng(1).poisson(0.7, (40, 9)).astype(np.int32)
    out = tmp_path / "dense.sinr"
    sinr.write_sinr(anndata.AnnData(X=dense), out)
    x = sinr.read_lazy(out).X
    assert isinstance(x._meta, np.ndarray)
    for op in ("sum", "mean", "var", "min", "max"):
        for axis in (0, 1, None):
            np.testing.assert_allclose(sinr.reduce_cells(x, op, axis).compute(),
                                       getattr(dense.astype(np.float64), op)(axis=axis), rtol=1e-12)


def test_without_dask_lazy_reads_name_the_extra(path, monkeypatch):
    """A base install has no dask: read_lazy and reduce_cells say which extra installs it, in one line."""
    lazy = sinr.read_lazy(path)
    monkeypatch.setitem(sys.modules, "dask.array", None)  # `import dask.array` fails as where it is not installed
    for call in (lambda: sinr.read_lazy(path), lambda: sinr.reduce_cells(lazy.X, "sum", 0)):
        with pytest.raises(sinr.InvalidInputError) as err:
            call()
        assert str(err.value) == "lazy reading needs dask: pip install 'scinrcodec[dask]'"


def test_mean_and_var_of_no_cells_are_nan(path):
    """A lazy AnnData cut to no cells averages nothing: NaN, as numpy gives, never a plausible 0."""
    import warnings

    empty = sinr.read_lazy(path)[np.zeros(sinr.read_lazy(path).n_obs, dtype=bool)].X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's own "mean of empty slice"
        expected = {(op, axis): getattr(np.zeros((0, empty.shape[1])), op)(axis=axis)
                    for op in ("mean", "var") for axis in (0, None)}
    for (op, axis), want in expected.items():
        got = sinr.reduce_cells(empty, op, axis).compute()
        assert np.shape(got) == np.shape(want) and np.all(np.isnan(got)), (op, axis, got)
    assert np.array_equal(sinr.reduce_cells(empty, "sum", 0).compute(), np.zeros(empty.shape[1]))


# ------------------------------------------------------------------------------------------ loader

def _epoch(m, **kwargs) -> list:
    return list(m.iter_cells(**kwargs))


def test_every_cell_once_with_its_counts_and_obs(path, adata):
    with sinr.open(path) as m:
        obs = m.to_anndata(lazy=True).obs
        batches = _epoch(m, batch_size=12, seed=7)
    cells = np.concatenate([b.cells for b in batches])
    assert sorted(cells.tolist()) == list(range(adata.n_obs))
    assert [b.X.shape[0] for b in batches] == [12] * 6 + [8]
    assert not np.array_equal(cells, np.arange(adata.n_obs))
    for b in batches:
        assert isinstance(b.X, sp.csr_matrix) and b.X.dtype == np.float32
        assert (b.X != adata.X[b.cells]).nnz == 0
        pd.testing.assert_frame_equal(b.obs, obs.iloc[b.cells])


def test_batches_stay_valid_while_later_blocks_reuse_the_arrays(path, adata):
    """With a block per chunk, an epoch's block arrays are reused from the third block on: every
    batch kept to the end of the epoch still holds its cells' counts (batches copy their rows)."""
    with sinr.open(path) as m:
        assert m.n_chunks >= 4
        batches = _epoch(m, batch_size=7, seed=5, buffer=1, dtype=np.int64)
    assert sorted(np.concatenate([b.cells for b in batches]).tolist()) == list(range(adata.n_obs))
    for b in batches:
        assert (b.X != adata.X[b.cells]).nnz == 0


def test_epochs_are_deterministic_for_a_seed(path):
    with sinr.open(path) as m:
        order = lambda seed: np.concatenate([b.cells for b in _epoch(m, batch_size=10, seed=seed)])  # noqa: E731
        assert np.array_equal(order(1), order(1))
        assert not np.array_equal(order(1), order(2))


def test_block_shuffle_mixes_within_the_buffer(path):
    with sinr.open(path) as m:
        bounds = m.chunk_bounds()
        for b in _epoch(m, batch_size=CHUNK, seed=3, buffer=1, drop_last=True):
            chunks = np.unique(np.searchsorted(bounds, b.cells, side="right") - 1)
            assert chunks.size == 1  # one chunk per buffer, each batch exactly one chunk's cells
        spread = [np.unique(np.searchsorted(bounds, b.cells, side="right") - 1).size
                  for b in _epoch(m, batch_size=CHUNK, seed=3, buffer=5)]
        assert max(spread) > 1


def test_unshuffled_batches_follow_the_file(path, adata):
    with sinr.open(path) as m:
        batches = _epoch(m, batch_size=30, shuffle=False, dtype=np.int64, obs=False)
        assert [b.cells.tolist() for b in batches] == [list(range(0, 30)), list(range(30, 60)), list(range(60, 80))]
        assert all(b.obs is None and b.X.dtype == np.int64 for b in batches)
        assert len(_epoch(m, batch_size=30, shuffle=False, drop_last=True)) == 2
        with pytest.raises(sinr.InvalidInputError, match="batch_size must be between 1 and"):
            m.iter_cells(batch_size=0)
        for seed in (-1, "a", 1.5):
            with pytest.raises(sinr.InvalidInputError, match="seed must be"):
                m.iter_cells(seed=seed)
        for jobs in (0, -1, 2.5, "x"):  # refused at once, as open() refuses them
            with pytest.raises(sinr.InvalidInputError, match="jobs must be"):
                m.iter_cells(jobs=jobs)


def test_chunks_block_puts_a_head_first(path, adata):
    """A loader's carried cells go in front of the next block as it decodes (any value type)."""
    with sinr.open(path) as m:
        bounds = m.chunk_bounds()
        for dtype in (np.float32, np.int64, np.longdouble):  # longdouble: decoded as int32, then converted
            head = sp.csr_matrix(adata.X[[5, 2, 9]], dtype=dtype)
            block = m.chunks_block([1], dtype=dtype, head=head)
            cells = np.concatenate([[5, 2, 9], np.arange(bounds[1], bounds[2])])
            assert block.dtype == dtype and block.has_sorted_indices and block.shape == (cells.size, adata.n_vars)
            assert (block != adata.X[cells]).nnz == 0
        assert m.chunks_block([], head=head).shape == (3, adata.n_vars)
        for bad in (sp.csr_matrix((2, adata.n_vars + 1)), sp.csc_matrix((2, adata.n_vars)), np.zeros((2, 3))):
            with pytest.raises(sinr.SinrIndexError, match="head must be"):
                m.chunks_block([1], head=bad)


def test_chunks_block_decodes_listed_chunks_in_order(path, adata):
    with sinr.open(path) as m:
        bounds = m.chunk_bounds()
        block = m.chunks_block([3, 0], dtype=np.float32)
        cells = np.concatenate([np.arange(bounds[3], bounds[4]), np.arange(bounds[0], bounds[1])])
        assert block.shape == (cells.size, adata.n_vars) and block.has_sorted_indices
        assert (block != adata.X[cells]).nnz == 0
        assert m.chunks_block([]).shape == (0, adata.n_vars)
        for bad in ([1, 1], [5], [-1], [[0]], ["0"]):
            with pytest.raises(sinr.SinrIndexError):
                m.chunks_block(bad)


def test_shards_of_an_epoch_give_every_cell_once_each_decoding_its_own(path, adata):
    """shard=(k, n): the shards of one seed's epoch split its cells into runs of sizes within one
    cell of each other (each shard decodes only the chunks of its run), so that together they give
    every cell exactly once, each with its counts; more shards than chunks leave none empty."""
    with sinr.open(path) as m:
        n_chunks = m.n_chunks
        assert n_chunks >= 3
        for count, buffer in ((3, 1), (2, 2), (1, 4), (n_chunks + 2, 4), (7, 1)):
            seen, sizes = [], []
            for k in range(count):
                cells = []
                for batch in m.iter_cells(batch_size=7, seed=11, buffer=buffer, shard=(k, count), obs=False):
                    assert (batch.X != adata.X[batch.cells]).nnz == 0
                    cells.append(batch.cells)
                seen += cells
                sizes.append(sum(c.size for c in cells))
            assert sorted(np.concatenate(seen).tolist()) == list(range(adata.n_obs))
            assert max(sizes) - min(sizes) <= 1 and min(sizes) > 0, (count, sizes)
        unshuffled = [b.cells for b in m.iter_cells(batch_size=7, shuffle=False, shard=(1, 2), buffer=1)]
        assert np.concatenate(unshuffled).tolist() == list(range(adata.n_obs // 2, adata.n_obs))
        whole = [b.cells for b in m.iter_cells(batch_size=7, seed=5)]  # one shard: the epoch as before
        assert [c.tolist() for c in whole] == [b.cells.tolist() for b in m.iter_cells(batch_size=7, seed=5, shard=(0, 1))]
        for bad, message in (((2, 2), "shard index"), ((0, 0), "shard count"), ((0,), "shard must be"),
                             ([0, 2], "shard must be")):
            with pytest.raises(sinr.InvalidInputError, match=message):
                list(m.iter_cells(seed=1, shard=bad))
        with pytest.raises(sinr.InvalidInputError, match="need a seed every worker shares"):
            list(m.iter_cells(shard=(0, 2)))
        for dtype, message in (("foo", "is not a numpy type"), (np.int16, "cannot hold every count")):
            with pytest.raises(sinr.InvalidInputError, match=message):  # 'foo' had been numpy's TypeError
                list(m.iter_cells(seed=1, dtype=dtype))


def test_a_torch_dataloader_of_spawned_workers_reads_every_cell_once(path, adata, tmp_path):
    """The loader inside torch's DataLoader with spawned workers (each gets the open matrix pickled,
    opens it again, and takes its shard of the epoch): every cell once, and no leak report from
    nanobind at their exit (it had printed 'leaked instances' for the chunk tables the open matrix
    kept; multiprocessing's resource tracker may still warn of torch's own semaphores, 1 run in 8)."""
    pytest.importorskip("torch")
    script = tmp_path / "loader.py"
    script.write_text(f'''
import sys
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
import scinrcodec as sinr


class Cells(IterableDataset):
    def __init__(self, m):
        self.m = m
    def __iter__(self):
        worker = get_worker_info()
        for batch in self.m.iter_cells(batch_size=16, seed=3, buffer=1, shard=(worker.id, worker.num_workers)):
            yield torch.as_tensor(batch.cells), torch.as_tensor(batch.X.toarray())

if __name__ == "__main__":
    m = sinr.open({str(path)!r})
    cells, rows = [], []
    for c, x in DataLoader(Cells(m), batch_size=None, num_workers=2, multiprocessing_context="spawn"):
        cells.append(c.numpy())
        rows.append(x.numpy())
    order = np.concatenate(cells)
    print(len(order), len(set(order.tolist())))
    np.save(sys.argv[1], np.concatenate(rows)[np.argsort(order)])
''')
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "x.npy")], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(adata.n_obs)] * 2 and "nanobind: leaked" not in run.stderr, run.stderr
    assert np.array_equal(np.load(tmp_path / "x.npy"), adata.X.toarray())
