"""Encoding beyond one process and one pass: jobs, a Dask cluster, appending cells."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, assert_one_error_line
from scinrcodec.errors import FileChangedError
from scinrcodec.io.readers import open_source_spec, read_matrix
from scinrcodec.io.sources import ScipySource

FAST = dict(siren="never", progress=False)


@pytest.fixture(scope="module")
def pbmc():
    return sinr.read_matrix(DATA / "pbmc4k_v2_soupx_half")


def test_jobs_and_a_dask_cluster_give_identical_bytes(tmp_path, pbmc, monkeypatch):
    distributed = pytest.importorskip("distributed")
    blobs = {}
    for jobs in (1, 2):
        sinr.encode(pbmc, tmp_path / f"{jobs}.sinr", jobs=jobs, chunk_cells=20, **FAST)
        blobs[jobs] = (tmp_path / f"{jobs}.sinr").read_bytes()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        for _ in range(3):  # the same matrix again and again: each encode's scattered data is its own
            sinr.encode(pbmc, tmp_path / "dask.sinr", chunk_cells=20, client=client, force=True, **FAST)
        path = tmp_path / "in.npz"
        sp.save_npz(path, sp.csr_matrix(pbmc.matrix()))
        elsewhere = tmp_path / "workers"  # the workers' folder holds another in.npz: a relative path is the driver's
        elsewhere.mkdir()
        sp.save_npz(elsewhere / "in.npz", sp.csr_matrix(pbmc.matrix()[:, :40]))
        client.run(os.chdir, str(elsewhere))
        monkeypatch.chdir(tmp_path)
        sinr.encode("in.npz", tmp_path / "dask-file.sinr", chunk_cells=20, client=client, **FAST)
        sinr.encode(path, tmp_path / "local-file.sinr", chunk_cells=20, **FAST)
        # streamed by the driver (workers cannot reopen it), after the SIREN probe of its first chunk
        mtx, probing = DATA / "pbmc4k_v2_soupx_half", dict(siren="auto", progress=False)
        sinr.encode(mtx, tmp_path / "dask-mtx.sinr", chunk_cells=20, client=client, **probing)
        sinr.encode(mtx, tmp_path / "local-mtx.sinr", chunk_cells=20, **probing)
    assert blobs[1] == blobs[2] == (tmp_path / "dask.sinr").read_bytes()
    assert (tmp_path / "dask-file.sinr").read_bytes() == (tmp_path / "local-file.sinr").read_bytes()
    assert (tmp_path / "dask-mtx.sinr").read_bytes() == (tmp_path / "local-mtx.sinr").read_bytes()


def test_a_cluster_that_fails_is_a_cluster_error(tmp_path, pbmc, monkeypatch):
    """A closed client, or a connection to the cluster lost mid-encode (an OSError of dask's comms),
    is a ClusterError, not 'writing failed' or a bare RuntimeError; nothing is written."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        client = distributed.Client(cluster)
        lost = OSError("Stream is closed")

        def fail(*args, **kwargs):
            raise lost

        with monkeypatch.context() as patch:
            patch.setattr(client, "submit", fail)
            with pytest.raises(sinr.ClusterError, match="the Dask cluster failed .OSError: Stream is closed"):
                sinr.encode(pbmc, tmp_path / "lost.sinr", client=client, **FAST)
        from scinrcodec.encoder import distributed as on_cluster

        def out_of_memory(*args, **kwargs):  # a task's own error (torch's, fitting a SIREN) is not the cluster's
            raise RuntimeError("CUDA out of memory")

        with monkeypatch.context() as patch:
            patch.setattr(on_cluster, "encode_chunk", out_of_memory)
            with pytest.raises(RuntimeError, match="^CUDA out of memory"):
                sinr.encode(pbmc, tmp_path / "oom.sinr", client=client, **FAST)
        client.close()
        with pytest.raises(sinr.ClusterError, match="the Dask client is closed"):
            sinr.encode(pbmc, tmp_path / "closed.sinr", client=client, **FAST)
    assert list(tmp_path.iterdir()) == []


def _die(*args, **kwargs):
    os._exit(1)


def _kill_encoders() -> None:
    from scinrcodec.encoder import distributed as on_cluster

    on_cluster.encode_chunk = _die


def test_a_worker_killed_is_a_cluster_error(tmp_path, pbmc):
    """A worker that dies under a task (out of memory, killed) ends the encode with a ClusterError,
    not dask's KilledWorker (which the CLI had called an internal error)."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.run(_kill_encoders)
        sp.save_npz(tmp_path / "in.npz", sp.csr_matrix(pbmc.matrix()))  # read by the workers
        with pytest.raises(sinr.ClusterError, match="the Dask cluster failed .KilledWorker"):
            sinr.encode(tmp_path / "in.npz", tmp_path / "killed.sinr", client=client, chunk_cells=20, **FAST)
    assert [p.name for p in tmp_path.iterdir()] == ["in.npz"]


def test_a_scheduler_lost_mid_encode_is_one_error_line(tmp_path, pbmc):
    """`sinr encode --scheduler` whose scheduler dies (a job's node lost) ends with one error line and
    no output: distributed had logged two tracebacks (distributed.client, ERROR) before it. The
    scheduler has no worker, so the encode waits on it until it is killed."""
    pytest.importorskip("distributed")
    sp.save_npz(tmp_path / "in.npz", sp.csr_matrix(pbmc.matrix()))
    with open(tmp_path / "scheduler.log", "w+") as log:
        scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                      "--port", "0", "--no-dashboard"], stdout=log, stderr=log)
        try:
            address = _logged(log, re.compile(r"Scheduler at: +(tcp://\S+)")).group(1)
            encode = subprocess.Popen([sys.executable, "-m", "scinrcodec", "encode", tmp_path / "in.npz",
                                       tmp_path / "out.sinr", "--scheduler", address, "--no-siren", "--quiet"],
                                      stderr=subprocess.PIPE, text=True)
            _logged(log, re.compile("Receive client connection"))
            time.sleep(2)  # the client's handshake done (killed during it, the encode says 'cannot connect')
        finally:
            scheduler.kill()
            scheduler.wait()
        _, stderr = encode.communicate(timeout=120)
    assert_one_error_line(subprocess.CompletedProcess(encode.args, encode.returncode, "", stderr),
                          "the Dask cluster failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "scheduler.log"]


def _logged(log, pattern: re.Pattern, seconds: float = 60) -> re.Match:
    """The first match of `pattern` in the file `log` as it is written, within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        log.seek(0)
        found = pattern.search(log.read())
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{pattern.pattern!r} not logged in {seconds} s")


def test_a_worker_never_encodes_another_version_of_the_input(tmp_path, pbmc, monkeypatch):
    """A source's spec carries its file's absolute path and the version the driver read (size,
    modification time): a worker that finds the file replaced or rewritten refuses it, where it had
    encoded the new cells into the old file's layout without a word."""
    path = tmp_path / "in.npz"
    sp.save_npz(path, sp.csr_matrix(pbmc.matrix()))
    spec = read_matrix(path).spec()
    assert spec.args["path"] == str(path) and open_source_spec(spec).shape == pbmc.shape
    sp.save_npz(tmp_path / "other.npz", sp.csr_matrix(pbmc.matrix()[:, :40]))
    os.replace(tmp_path / "other.npz", path)
    with pytest.raises(FileChangedError, match="in.npz: not the version the encode began with"):
        open_source_spec(spec)
    from scinrcodec.io import npz

    read_arrays = npz.checked_compressed

    def replaced_meanwhile(*args, **kwargs):  # another version renamed over the file while it is read
        os.replace(tmp_path / "later.npz", path)
        return read_arrays(*args, **kwargs)

    sp.save_npz(tmp_path / "later.npz", sp.csr_matrix(pbmc.matrix()[:, :20]))
    monkeypatch.setattr(npz, "checked_compressed", replaced_meanwhile)
    with pytest.raises(FileChangedError, match="in.npz: changed while it was read"):
        read_matrix(path)
    monkeypatch.undo()
    (tmp_path / "real" / "sub").mkdir(parents=True)
    os.replace(path, tmp_path / "real" / "in.npz")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "link").symlink_to(tmp_path / "real" / "sub")
    monkeypatch.chdir(tmp_path / "work")  # 'link/..' is real/, not work/: the spec keeps the path as given
    assert open_source_spec(read_matrix("link/../in.npz").spec()).shape == (pbmc.shape[0], 20)


def _split(pbmc, at: int):
    matrix = pbmc.matrix().tocsc()
    cells = pbmc.cell_names(0, matrix.shape[1])
    first = matrix[:, :at].tolil()
    first[100:, :] = 0  # the appended cells express genes the file has never stored
    first = sp.csc_matrix(first)
    whole = sp.hstack([first, matrix[:, at:]]).tocsc()
    return (ScipySource(first, pbmc.gene_ids, pbmc.gene_names, cells[:at]),
            ScipySource(matrix[:, at:], pbmc.gene_ids, pbmc.gene_names, cells[at:]), whole, cells)


def test_append_is_exact_and_keeps_old_chunks(tmp_path, pbmc):
    first, second, whole, cells = _split(pbmc, 50)
    path = tmp_path / "a.sinr"
    sinr.encode(first, path, chunk_cells=16, **FAST)
    before = path.read_bytes()
    result = sinr.append(path, second)
    after = path.read_bytes()
    with sinr.open(path) as m:
        assert m.shape == whole.shape and result["chunks"] == m.n_chunks == 4 + 2
        assert np.array_equal(m.to_scipy().toarray(), whole.toarray()) and m.cell_names == cells
        for g in range(0, whole.shape[0], 13):
            assert np.array_equal(m.gene(g), whole[g].toarray().ravel())
        m.verify()
    body_end = len(before) - 24 - int.from_bytes(before[-24:-16], "little")
    assert after[:body_end] == before[:body_end]  # existing chunks copied, not re-encoded


def test_appending_no_cells_leaves_the_file_as_it_was(tmp_path, pbmc):
    """An empty batch (a stream's last, say) adds nothing: the file is not rewritten."""
    first, _, _, _ = _split(pbmc, 50)
    path = tmp_path / "a.sinr"
    sinr.encode(first, path, chunk_cells=16, **FAST)
    before, stamp = path.read_bytes(), path.stat().st_ino
    empty = sp.csc_matrix((first.shape[0], 0), dtype=np.int32)
    result = sinr.append(path, ScipySource(empty, pbmc.gene_ids, pbmc.gene_names, []))
    assert path.read_bytes() == before and path.stat().st_ino == stamp
    with sinr.open(path) as m:
        assert result == {"bytes": len(before), "shape": m.shape, "nnz": m.nnz, "chunks": m.n_chunks}


def test_append_keeps_the_files_permissions(tmp_path, pbmc):
    """A group-shared (0o664) or read-only (0o444) file stays so: the rewrite copies its mode."""
    first, second, _, _ = _split(pbmc, 50)
    for mode in (0o664, 0o444):
        path = tmp_path / f"{mode:o}.sinr"
        sinr.encode(first, path, chunk_cells=16, **FAST)
        path.chmod(mode)
        sinr.append(path, second)
        assert path.stat().st_mode & 0o777 == mode


def test_append_through_a_link_extends_the_file_it_names(tmp_path, pbmc):
    """A symbolic link to the file stays a link, to the file now holding the new cells."""
    first, second, whole, _ = _split(pbmc, 50)
    (tmp_path / "data").mkdir()
    target, link = tmp_path / "data" / "a.sinr", tmp_path / "link.sinr"
    sinr.encode(first, target, chunk_cells=16, **FAST)
    link.symlink_to(target)
    sinr.append(link, second)
    assert link.is_symlink() and link.resolve() == target.resolve()
    with sinr.open(target) as m:
        assert np.array_equal(m.to_scipy().toarray(), whole.toarray())


def test_append_refuses_other_genes_and_leaves_the_file_intact(tmp_path, pbmc):
    first, second, _, cells = _split(pbmc, 50)
    path = tmp_path / "a.sinr"
    sinr.encode(ScipySource(first.matrix(), pbmc.gene_ids, pbmc.gene_names, cells[:50], pbmc.feature_types), path,
                **FAST)
    before = path.read_bytes()
    matrix = second.matrix()
    other_ids = ScipySource(matrix, [g + "-x" for g in pbmc.gene_ids], pbmc.gene_names, cells[50:])
    fewer = ScipySource(matrix[:20], pbmc.gene_ids[:20], pbmc.gene_names[:20], cells[50:])
    no_names = ScipySource(matrix, pbmc.gene_ids, pbmc.gene_names)
    assert pbmc.feature_types is not None  # a feature of another type: not the same genes
    other_types = ScipySource(matrix, pbmc.gene_ids, pbmc.gene_names, cells[50:],
                              ["Antibody Capture"] + pbmc.feature_types[1:])
    no_gene_names = ScipySource(matrix, pbmc.gene_ids, None, cells[50:])  # in any order: nothing to check by
    for bad in (other_ids, fewer, no_names, other_types, no_gene_names):
        with pytest.raises(sinr.InvalidInputError):
            sinr.append(path, bad)
        assert path.read_bytes() == before
    damaged = tmp_path / "damaged.sinr"  # a flipped byte in a chunk's tiles: refused, not extended
    with sinr.open(path) as m:
        offset, header_length = (int(v) for v in m.index.chunk_index[0, :2])
    damaged.write_bytes(before[:offset + header_length + 40] + bytes([before[offset + header_length + 40] ^ 4])
                        + before[offset + header_length + 41:])
    copy = damaged.read_bytes()
    with pytest.raises(sinr.CorruptFileError, match="checksum mismatch"):
        sinr.append(damaged, second)
    assert damaged.read_bytes() == copy
    damaged.unlink()
    negative = ScipySource(sp.csc_matrix(-matrix.toarray()), pbmc.gene_ids, pbmc.gene_names, cells[50:])
    with pytest.raises(sinr.InvalidInputError):
        sinr.append(path, negative)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sinr"]


def test_streamed_file_and_matrix_in_memory_encode_to_the_same_bytes(tmp_path, pbmc):
    """Streaming changes how the input is read, never the file: a 10x .h5 read chunk by chunk and
    the same matrix held in memory give identical bytes (so identical size)."""
    h5 = tmp_path / "in.h5"
    matrix = sp.csc_matrix(pbmc.matrix())
    in_memory = sinr.CountMatrix(matrix, pbmc.gene_ids, pbmc.gene_names, pbmc.cell_names(0, matrix.shape[1]),
                                 pbmc.feature_types)
    sinr.encode(in_memory, tmp_path / "mem.sinr", chunk_cells=30, **FAST)
    sinr.decode(tmp_path / "mem.sinr", h5)
    sinr.encode(h5, tmp_path / "streamed.sinr", chunk_cells=30, **FAST)
    assert (tmp_path / "streamed.sinr").read_bytes() == (tmp_path / "mem.sinr").read_bytes()


def _tiny_fit() -> None:
    """One CPU fit of a patch of 300 points, 3 steps: what the tests of torch's thread count run."""
    from scinrcodec.model import siren_train

    rng = np.random.default_rng(0)
    coords, targets = [rng.uniform(-1, 1, (300, 2)).astype(np.float32)], [rng.normal(size=300).astype(np.float32)]
    siren_train.fit_sirens(coords, targets, width=8, hidden_layers=1, steps=3, batch=64, learning_rate=1e-3, seed=0,
                           device="cpu")


def test_a_siren_fit_runs_on_its_own_thread_alone(monkeypatch):
    """A fit on the CPU runs torch on its thread alone, and fits that overlap (chunk workers fit at
    once) give torch back its thread count when the last one ends, in the thread that called and in
    threads that start after (torch's count is partly process-wide): torch's threads beside the
    workers had spun against each other (a screened band of visium took 16.8 s to fit where one
    thread takes 0.67 s)."""
    torch = pytest.importorskip("torch")
    import scinrcodec.model.siren_train as siren_train

    seen, first_in, first_done = [], threading.Event(), threading.Event()
    fit_chunk = siren_train._fit_chunk

    def spy(*args):  # the second fit starts within the first and ends after it
        seen.append(torch.get_num_threads())
        if threading.current_thread().name == "first":
            first_in.set()
        elif threading.current_thread().name == "second":
            first_done.wait(60)
        return fit_chunk(*args)

    monkeypatch.setattr(siren_train, "_fit_chunk", spy)
    fit = _tiny_fit
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        fit()
        assert seen == [1] and torch.get_num_threads() == 3
        seen.clear()
        first = threading.Thread(target=lambda: (fit(), first_done.set()), name="first")
        second = threading.Thread(target=fit, name="second")
        first.start()
        first_in.wait(60)
        second.start()
        first.join()
        second.join()
        assert seen == [1, 1] and torch.get_num_threads() == 3
        after = []
        late = threading.Thread(target=lambda: after.append(torch.get_num_threads()))
        late.start()
        late.join()
        assert after == [3]
    finally:
        torch.set_num_threads(before)


def test_a_probe_that_keeps_a_network_has_the_chunks_started_meanwhile_redone(tmp_path, pbmc, monkeypatch):
    """`auto` starts the chunks after the first while it probes that one, under the plan the probe
    nearly always picks (no network). When a network pays (here every one: its metadata counted as a
    saving) they are encoded again with every band trying one, as `always` encodes them, whatever
    the number of jobs; the file decodes exactly."""
    pytest.importorskip("torch")
    from scinrcodec.encoder import siren_fit

    monkeypatch.setattr(siren_fit, "SIREN_META_BITS", -10**9)
    small = dict(steps=10, batch=256, width=8, hidden_layers=1, chunk_cells=20, patch_nnz=100, progress=False)
    always = sinr.encode(pbmc, tmp_path / "always.sinr", siren="always", **small)
    assert always["siren_kept"] == always["siren_tried"] > 2 * siren_fit.PROBE_BANDS * always["chunks"]
    for jobs in (1, 2):
        stats = sinr.encode(pbmc, tmp_path / f"auto{jobs}.sinr", siren="auto", jobs=jobs, **small)
        assert stats["chunks"] == always["chunks"] > 2
        assert stats["siren_tried"] == stats["siren_kept"] == always["siren_kept"]
    blocks = {name: _chunk_blocks(tmp_path / f"{name}.sinr") for name in ("always", "auto1", "auto2")}
    assert blocks["auto1"] == blocks["auto2"] == blocks["always"]
    with sinr.open(tmp_path / "auto2.sinr") as m:
        assert np.array_equal(m.to_scipy().toarray(), pbmc.matrix().toarray())


def test_gene_names_are_packed_beside_the_last_chunks(tmp_path, pbmc, monkeypatch):
    """The gene names' zstd (0.14 s for 33,694 genes) runs once, on an encoding thread, queued behind
    every chunk, so that it fills a core the last chunks leave idle; the file is the one packed in
    order, and a failure there ends the encode with no file and no temporary left."""
    from scinrcodec.encoder import driver

    sinr.encode(pbmc, tmp_path / "before.sinr", jobs=2, chunk_cells=20, **FAST)
    events = []
    encode_chunk, gene_ids = driver.encode_chunk, driver.MATRIX_SECTIONS["names.gene_ids"]

    def chunk(block, *args, **kwargs):
        events.append(("chunk", block.start))
        return encode_chunk(block, *args, **kwargs)

    class Names:
        def pack(self, values):
            events.append(("names", threading.current_thread() is threading.main_thread()))
            return gene_ids.pack(values)

    monkeypatch.setattr(driver, "encode_chunk", chunk)
    monkeypatch.setitem(driver.MATRIX_SECTIONS, "names.gene_ids", Names())
    stats = sinr.encode(pbmc, tmp_path / "beside.sinr", jobs=2, chunk_cells=20, **FAST)
    assert stats["chunks"] > 3 and len(events) == stats["chunks"] + 1
    # after every chunk but, at most, the one the other thread took just before it
    assert [event for event in events if event[0] == "names"] == [("names", False)]
    assert events.index(("names", False)) >= stats["chunks"] - 1
    assert (tmp_path / "beside.sinr").read_bytes() == (tmp_path / "before.sinr").read_bytes()

    class Failing:
        def pack(self, values):
            raise RuntimeError("no names")

    monkeypatch.setitem(driver.MATRIX_SECTIONS, "names.gene_ids", Failing())
    with pytest.raises(RuntimeError, match="no names"):
        sinr.encode(pbmc, tmp_path / "failed.sinr", jobs=2, chunk_cells=20, **FAST)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["before.sinr", "beside.sinr"]


def test_no_numpy_blas_call_in_the_package():
    """No call of numpy's BLAS (`@`, dot, linalg, einsum's optimize) in the package: OpenBLAS's
    threads spin for a while after each one, and a dot product in the SIREN screen took 0.05-0.1 s of
    a core from the encoder's threads (a sixth of a 6M-nonzero encode). Sums of products are einsum
    or ufuncs. (torch's own threads fit the SIRENs, where a network is tried at all.)"""
    blas = {"dot", "vdot", "inner", "matmul", "tensordot", "linalg", "cov", "corrcoef", "polyfit"}
    found = []
    for path in sorted(Path(sinr.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult)) or \
                    (isinstance(node, ast.Attribute) and node.attr in blas) or \
                    (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numpy")
                     and any(alias.name in blas for alias in node.names)) or \
                    (isinstance(node, ast.keyword) and node.arg == "optimize"):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


def _chunk_blocks(path) -> list[bytes]:
    """The bytes of each chunk block of a file, by its chunk index."""
    data = path.read_bytes()
    with sinr.open(path) as m:
        return [data[int(offset): int(offset) + int(length)] for offset, _, _, length, _, _ in m.index.chunk_index]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_amid_a_siren_fit_gives_torch_its_thread_count_back(monkeypatch):
    """A process forked while a thread fits (a DataLoader's or multiprocessing's fork beside an
    encode) holds none of the parent's fits: its own fit saves and gives back its torch thread count,
    and a fork while a thread held the fits' lock does not leave the child's first fit waiting for
    ever. The child had inherited the parent's count of running fits (1), so its fits never saw
    themselves as the last and left torch on one thread (3 set, 1 after)."""
    torch = pytest.importorskip("torch")
    import signal

    from scinrcodec.model import siren_train

    inside, leave = threading.Event(), threading.Event()
    fit_chunk = siren_train._fit_chunk

    def held(*args):  # the parent's fit waits here while the process forks
        if threading.current_thread().name == "parent fit":
            inside.set()
            leave.wait(60)
        return fit_chunk(*args)

    monkeypatch.setattr(siren_train, "_fit_chunk", held)
    fit = _tiny_fit
    before = torch.get_num_threads()
    parent = threading.Thread(target=fit, name="parent fit")
    parent.start()
    try:
        assert inside.wait(60)
        for lock_held in (False, True):
            if lock_held:
                siren_train._fitting_lock.acquire()  # as a thread entering or leaving a fit holds it
            pid = os.fork()
            if pid == 0:  # the child: exit 0 if its fit gives torch back its 3 threads
                code = 1
                try:
                    signal.alarm(30)  # a fit waiting for ever on the lock ends the child
                    torch.set_num_threads(3)
                    fit()
                    code = 0 if torch.get_num_threads() == 3 else 2
                finally:
                    os._exit(code)
            if lock_held:
                siren_train._fitting_lock.release()
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, (lock_held, os.waitstatus_to_exitcode(status))
    finally:
        leave.set()
        parent.join()
        torch.set_num_threads(before)
