"""Hostile conditions (issue 17): a file rewritten, truncated or replaced under an open reader,
several processes writing one output or appending to one file at once, and files declaring
dimensions no memory holds. Each case runs real processes against each other.

The races run for SINR_STRESS_SECONDS (default 3) on a schedule drawn from SINR_STRESS_SEED
(default 1): run `SINR_STRESS_SECONDS=60 pytest tests/test_hostile.py` for the minute-long loops.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from scinrcodec.cli import main
from scinrcodec.io import atomic
from scinrcodec.io.atomic import atomic_path

from conftest import FAST, SANITIZED, assert_one_error_line, leftovers, sinr_cli

HERE = Path(__file__).resolve().parent
STRESS_SECONDS = float(os.environ.get("SINR_STRESS_SECONDS", "3"))
STRESS_SEED = int(os.environ.get("SINR_STRESS_SEED", "1"))
ENV = {**os.environ, "PYTHONPATH": str(HERE.parent)}


def _cut(pbmc, cells: slice, prefix: str = "") -> sinr.CountMatrix:
    counts = sp.csc_matrix(pbmc.matrix())[:, cells]
    names = [prefix + name for name in pbmc.cell_names(0, pbmc.shape[1])[cells]]
    return sinr.CountMatrix(counts, gene_ids=pbmc.gene_ids, gene_names=pbmc.gene_names, cell_names=names,
                            feature_types=pbmc.feature_types)


# ------------------------------------------------------------------ a file changing under a reader

def _reader(path: str, expected: str, seconds: float) -> None:
    """Read `path` over and over (whole decodes, entries, genes, cells), opening it again after each
    FileChangedError. Every result must equal one version of the file (expected: an .npz per
    version, keyed by nonzeros); opening may fail with any SinrError (the file caught mid-write),
    reading an opened file only with FileChangedError. Prints what it saw."""
    versions = {}
    for file in sorted(Path(expected).glob("*.npz")):
        dense = sp.load_npz(file).toarray()
        versions[int(np.count_nonzero(dense))] = dense
    rng = np.random.default_rng(0)
    seen = {"ok": 0, "changed": 0, "other": 0}
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            m = sinr.open(path, jobs=2)
        except sinr.SinrError:  # caught mid-rewrite: truncated, no trailer yet
            seen["other"] += 1
            continue
        try:
            dense = versions[m.nnz]
            for _ in range(50):
                i, j = int(rng.integers(dense.shape[0])), int(rng.integers(dense.shape[1]))
                assert m[i, j] == dense[i, j]
                assert np.array_equal(m.cell(j), dense[:, j])
                assert np.array_equal(m.gene(i), dense[i])
                assert np.array_equal(m.to_scipy(layout="csc").toarray(), dense)
                seen["ok"] += 1
        except sinr.FileChangedError:
            seen["changed"] += 1
        finally:
            m.close()
    print(seen["ok"], seen["changed"], seen["other"])


def test_reader_survives_rewrites_truncations_and_replacements(tmp_path, pbmc):
    """A reader never dies (SIGBUS from a shrunken memory map, before) and never returns numbers of
    neither version while another process rewrites the file in place, truncates it and puts it
    back, or renames another file over it, on a seeded schedule."""
    versions = {}
    for name, cells in (("a", slice(0, 50)), ("b", slice(50, 80))):
        matrix = _cut(pbmc, cells)
        sinr.encode(matrix, tmp_path / f"{name}.sinr", chunk_cells=16, tile_nnz=64, **FAST)
        versions[name] = (tmp_path / f"{name}.sinr").read_bytes()
        expected = tmp_path / "expected"
        expected.mkdir(exist_ok=True)
        sp.save_npz(expected / f"{name}.npz", sp.csr_matrix(matrix.counts))
    assert len({sp.load_npz(f).nnz for f in expected.glob("*.npz")}) == 2
    path = tmp_path / "live.sinr"
    path.write_bytes(versions["a"])
    reader = subprocess.Popen([sys.executable, __file__, "reader", str(path), str(expected), str(STRESS_SECONDS)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    rng = random.Random(STRESS_SEED)
    stop = time.monotonic() + STRESS_SECONDS
    while reader.poll() is None and time.monotonic() < stop:
        time.sleep(rng.uniform(0.0, 0.05))
        blob = versions[rng.choice("ab")]
        action = rng.choice(["in place", "truncate", "rename"])
        if action == "in place":  # as shutil.copyfile(other, path) does: truncate, then write
            with open(path, "wb") as fh:
                fh.write(blob[: len(blob) // 2])
                fh.flush()
                time.sleep(rng.uniform(0.0, 0.01))
                fh.write(blob[len(blob) // 2:])
        elif action == "truncate":
            os.truncate(path, rng.randrange(len(blob)))
            time.sleep(rng.uniform(0.0, 0.01))
            path.write_bytes(blob)
        else:
            (tmp_path / "next.sinr").write_bytes(blob)
            os.replace(tmp_path / "next.sinr", path)
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, (reader.returncode, err[-3000:])
    ok, changed, other = (int(x) for x in out.split())
    print(f"reader: {ok} checked reads, {changed} FileChangedError, {other} opens of a file caught mid-write")
    assert ok > 0 and changed > 0, out


def test_changed_file_raises_a_clear_error(tmp_path, pbmc):
    """Truncated or rewritten in place after opening: the next read that touches the file raises
    FileChangedError; a file renamed over the path leaves the open one readable, exactly; a read
    after close opens the file again, and only if it is unchanged goes on."""
    a, b = tmp_path / "a.sinr", tmp_path / "b.sinr"
    sinr.encode(_cut(pbmc, slice(0, 50)), a, chunk_cells=16, **FAST)
    sinr.encode(_cut(pbmc, slice(50, 80)), b, chunk_cells=16, **FAST)
    want = sp.csc_matrix(pbmc.matrix())[:, :50].toarray()
    live = tmp_path / "live.sinr"
    for change in ("truncate", "copy over"):
        shutil.copyfile(a, live)
        with sinr.open(live) as m:
            if change == "truncate":
                os.truncate(live, live.stat().st_size // 2)
            else:
                shutil.copyfile(b, live)
            with pytest.raises(sinr.FileChangedError, match="changed while open"):
                m.to_scipy()
    shutil.copyfile(a, live)
    with sinr.open(live) as m:
        os.replace(shutil.copyfile(b, tmp_path / "c.sinr"), live)
        assert np.array_equal(m.to_scipy().toarray(), want)
    with sinr.open(live) as m:  # read after close (a lazy array outside its `with`): the same file is read again
        pass
    assert np.array_equal(m.to_scipy().toarray(), sp.csc_matrix(pbmc.matrix())[:, 50:80].toarray())
    m.close()
    shutil.copyfile(a, live)
    with pytest.raises(sinr.FileChangedError, match="changed since it was opened"):
        m.cell(0)


def test_close_racing_reads_never_fails_them(tmp_path):
    """close() while other threads read (a `with` block ending under a running lazy computation):
    every read returns the file's bytes, none meets a closed or reused descriptor; the descriptor
    closes once the last read using it ends, and reads after it open the file again."""
    import threading

    from scinrcodec.storage.source import LocalFileSource
    path = tmp_path / "bytes.bin"
    data = np.random.default_rng(STRESS_SEED).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    source = LocalFileSource(path)
    failures: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            offset, length = rng.randrange(0, len(data) - 4096), rng.randrange(1, 4096)
            try:
                assert bytes(source.read(offset, length)) == data[offset: offset + length]
                buffer = bytearray(length)
                source.read_into(memoryview(buffer), offset)
                assert bytes(buffer) == data[offset: offset + length]
            except BaseException as exc:  # noqa: BLE001 - any failure of a read is the finding
                failures.append(exc)
                return

    threads = [threading.Thread(target=reader, args=(STRESS_SEED + i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + min(STRESS_SECONDS, 2.0)
    closes = 0
    while time.monotonic() < deadline and not failures:
        source.close()
        closes += 1
        with open(os.devnull, "rb"):  # takes the lowest free descriptor: a closed one would be reused
            time.sleep(0.0005)
    stop.set()
    for thread in threads:
        thread.join()
    source.close()
    assert failures == [] and closes > 10
    assert bytes(source.read(0, 16)) == data[:16]  # read after close: opened again
    source.close()


# ------------------------------------------------------------------------- outputs never replaced

@pytest.mark.parametrize("is_dir", [False, True])
@pytest.mark.parametrize("noreplace", ["renameat2", "fallback"])
def test_output_that_appears_meanwhile_is_kept(tmp_path, monkeypatch, is_dir, noreplace):
    """Without force, the rename itself refuses an output that another process created while this
    one worked: the other's output stays, this one's temporary file goes; with force it is
    replaced. Both with renameat2(RENAME_NOREPLACE) and with the link / mkdir fallback."""
    if noreplace == "fallback":
        monkeypatch.setattr(atomic, "renameat2", None)
    elif atomic.renameat2 is None:
        pytest.skip("no renameat2 here")
    target = tmp_path / ("out" if is_dir else "out.sinr")

    def make(path: Path, text: str) -> None:
        if is_dir:
            path.mkdir(exist_ok=True)
            (path / "matrix.mtx.gz").write_text(text)
        else:
            path.write_text(text)

    def content(path: Path) -> str:
        return (path / "matrix.mtx.gz" if is_dir else path).read_text()

    with pytest.raises(sinr.OutputExistsError, match="appeared while"):
        with atomic_path(target, force=False, is_dir=is_dir, folder_files={"matrix.mtx.gz"}) as tmp:
            make(tmp, "mine")
            make(target, "theirs")
    assert content(target) == "theirs" and leftovers(tmp_path) == []
    with atomic_path(target, force=True, is_dir=is_dir, folder_files={"matrix.mtx.gz"}) as tmp:
        make(tmp, "mine")
    assert content(target) == "mine" and leftovers(tmp_path) == []
    shutil.rmtree(target) if is_dir else target.unlink()
    with atomic_path(target, force=False, is_dir=is_dir, folder_files={"matrix.mtx.gz"}) as tmp:
        make(tmp, "new")
    assert content(target) == "new" and leftovers(tmp_path) == []


def _race(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Start the CLI commands at once; wait for all."""
    procs = [subprocess.Popen([sys.executable, "-m", "scinrcodec", *c], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV) for c in commands]
    results = []
    for proc, command in zip(procs, commands):
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return results


def _rounds() -> tuple[random.Random, float]:
    """The seeded schedule of a race test, and when it stops starting new rounds."""
    return random.Random(STRESS_SEED), time.monotonic() + STRESS_SECONDS


def test_concurrent_writers_leave_one_complete_output(tmp_path, pbmc):
    """Two to four `sinr encode` (round after round, on the seeded schedule), then two `sinr decode`
    to one output at once, without --force: exactly one succeeds, the others fail with one line
    and the output is that one's, whole."""
    source = tmp_path / "in.npz"
    counts = sp.csr_matrix(pbmc.matrix())
    sp.save_npz(source, counts)
    out = tmp_path / "out.sinr"
    rng, stop = _rounds()
    while True:
        out.unlink(missing_ok=True)
        n = rng.randint(2, 4)
        results = _race([["encode", str(source), str(out), "--no-siren", "--quiet", "--jobs", "1"]] * n)
        assert sorted(r.returncode for r in results) == [0] + [1] * (n - 1), [r.stderr for r in results]
        for r in results:
            if r.returncode:
                assert_one_error_line(r, str(out))
                assert "appeared while" in r.stderr or "already exists" in r.stderr
        with sinr.open(out) as m:
            m.verify()
            assert (m.to_scipy() != counts).nnz == 0
        assert leftovers(tmp_path) == []
        if time.monotonic() > stop:
            break
    decoded = tmp_path / "out.npz"
    results = _race([["decode", str(out), str(decoded), "--jobs", "1"]] * 2)
    assert sorted(r.returncode for r in results) == [0, 1], [r.stderr for r in results]
    assert (sp.load_npz(decoded) != counts).nnz == 0
    assert leftovers(tmp_path) == []


def test_concurrent_appends_lose_no_cells(tmp_path, pbmc):
    """Two or three processes appending to one file at once (round after round, on the seeded
    schedule) wait for each other's lock: every cell of every append is in the file, each
    append's cells together, in some order."""
    base = tmp_path / "d.sinr"
    rng, stop = _rounds()
    round_ = 0
    while True:
        n_appends = rng.randint(2, 3)
        base.unlink(missing_ok=True)
        sinr.encode(_cut(pbmc, slice(0, 20)), base, chunk_cells=16, **FAST)
        parts = []
        for k in range(n_appends):
            part = _cut(pbmc, slice(20 + 20 * k, 40 + 20 * k), prefix=f"R{round_}A{k}-")
            shutil.rmtree(tmp_path / f"part{k}", ignore_errors=True)
            sinr.write_matrix(tmp_path / f"part{k}", part)
            parts.append(part)
        results = _race([["append", str(base), str(tmp_path / f"part{k}"), "--quiet", "--jobs", "1"]
                         for k in range(n_appends)])
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        with sinr.open(base) as m:
            m.verify()
            names = m.cell_names
            assert m.shape[1] == 20 + 20 * n_appends
            counts = sp.csc_matrix(m.to_scipy())
        for part in parts:
            first = names.index(part.cell_names[0])
            assert names[first: first + 20] == part.cell_names
            assert (counts[:, first: first + 20] != sp.csc_matrix(part.counts)).nnz == 0
        assert leftovers(tmp_path) == []
        round_ += 1
        if time.monotonic() > stop:
            break


def test_append_refuses_cells_already_in_the_file(tmp_path, pbmc):
    """The same sample appended twice would give duplicate cell names: refused, file unchanged."""
    folder = tmp_path / "part"
    sinr.write_matrix(folder, _cut(pbmc, slice(40, 80)))
    base = tmp_path / "d.sinr"
    sinr.encode(_cut(pbmc, slice(0, 60)), base, **FAST)
    before = base.read_bytes()
    result = sinr_cli("append", base, folder, "--quiet")
    assert_one_error_line(result, "already in the file")
    assert base.read_bytes() == before


# ------------------------------------------------------------------------------------- verify

def test_verify_reads_every_stored_anndata_element(tmp_path, pbmc, capsys):
    """An AnnData element whose section is CRC-valid, well framed and of the declared size but
    holds no HDF5 image (spec §14 rule S5): `sinr verify` fails, naming the section; it used to
    check only the checksum and the size."""
    anndata = pytest.importorskip("anndata")
    import msgpack
    import zlib

    from scinrcodec.storage.container import END_MAGIC, MAGIC, PREAMBLE, TRAILER, pack_array, pack_header, read_footer
    from scinrcodec.storage.opening import open_source

    counts = sp.csr_matrix(pbmc.matrix().T, dtype=np.int32)
    adata = anndata.AnnData(X=counts, uns={"note": "kept"})
    adata.write_h5ad(tmp_path / "a.h5ad")
    sinr.encode_whole(tmp_path / "a.h5ad", tmp_path / "a.sinr", **FAST)
    data = (tmp_path / "a.sinr").read_bytes()
    footer = read_footer(open_source(data))
    body, table = data[:footer.offset], footer.content["sections"]
    with sinr.open(data) as m:
        contents = m.contents.raw
    garbage = bytes(range(256)) * 4
    payloads = {"anndata.uns": pack_array(np.frombuffer(garbage, np.uint8), "u1"),
                "contents": msgpack.packb({**contents, "elements": [dict(e, bytes=len(garbage)) if e["element"] == "uns"
                                                                    else e for e in contents["elements"]]})}
    for name, payload in payloads.items():
        table = [e for e in table if e[0] != name] + [[name, len(body), len(payload), zlib.crc32(payload)]]
        body += payload
    preamble = PREAMBLE.pack(MAGIC, *footer.version, 0)
    packed = pack_header({**footer.content, "sections": table})
    damaged = tmp_path / "damaged.sinr"
    damaged.write_bytes(preamble + body[PREAMBLE.size:] + packed
                        + TRAILER.pack(len(packed), zlib.crc32(preamble + packed), 0, END_MAGIC))
    assert main(["verify", str(tmp_path / "a.sinr")]) == 0
    assert main(["verify", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sinr: error: ") and err.count("\n") == 1 and "'anndata.uns'" in err, err


# ------------------------------------------------------------------------------------ interrupts

@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches /proc/PID/maps for torch to load")
def test_interrupted_training_stops_at_once(tmp_path, pbmc):
    """SIGTERM (as Ctrl-C) while worker threads fit SIRENs: the encode stops within seconds (it used
    to wait for every fit), exits 130, leaves no temporary file and the existing output as it was."""
    pytest.importorskip("torch")
    source = tmp_path / "in.npz"
    sp.save_npz(source, sp.csr_matrix(pbmc.matrix()))
    out = tmp_path / "out.sinr"
    out.write_bytes(b"the existing output")
    proc = subprocess.Popen([sys.executable, "-m", "scinrcodec", "encode", str(source), str(out), "--force",
                             "--inr-only", "--steps", "1000000", "--jobs", "2", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not (
            leftovers(tmp_path) and "libtorch" in maps.read_text(errors="replace")):
        time.sleep(0.1)
    time.sleep(1.5)  # torch loaded: the fits are running in the worker threads
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert time.monotonic() - sent < 6, f"took {time.monotonic() - sent:.1f} s to stop"
    # 130, or (seen now and then once torch is loaded) CPython ending the process with SIGINT's own
    # status after main() returned 130: both are what a shell reports as an interrupt
    assert proc.returncode in (130, -signal.SIGINT) and err.strip() == "sinr: interrupted", (proc.returncode, err)
    assert out.read_bytes() == b"the existing output" and leftovers(tmp_path) == []


def test_a_failed_or_interrupted_decode_cancels_its_queued_work():
    """When one decode task fails (a corrupt chunk, or Ctrl-C in the waiting thread), the tasks not
    yet started are cancelled (they used to run, the whole queue, before the process could exit),
    and those already running have ended when the exception reaches the caller (they had gone on
    reading a file the caller may close at once)."""
    from scinrcodec.reader.decode import run_all

    done, running = [], []

    def task(i: int) -> None:
        if i == 0:
            time.sleep(0.02)  # the others start meanwhile
            raise KeyboardInterrupt
        running.append(i)
        time.sleep(0.05)
        done.append(i)

    calls = 20 * ((os.cpu_count() or 1) + 1)
    with pytest.raises(KeyboardInterrupt):
        run_all(task, [(i,) for i in range(calls)])
    assert sorted(done) == sorted(running)
    assert running or (os.cpu_count() or 1) == 1  # one worker: only the failing call started
    time.sleep(0.1)
    assert len(done) <= 2 * (os.cpu_count() or 1), len(done)


# ---------------------------------------------------------------------- a read-only install

def test_cli_runs_from_a_read_only_install_as_another_user(pbmc):
    """The CLI as a user who can write nothing of the install nor of HOME (a numba cache once made
    `sinr encode` fail there with a traceback): the package is mounted read-only, HOME does not
    exist, and the commands run as nobody where that user can reach the interpreter."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs root, setpriv and a private mount namespace (unshare -m)")
    user: tuple[str, ...] = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    if subprocess.run([*user, sys.executable, "-c", "import scipy"], capture_output=True, env=ENV).returncode:
        user = ()  # this interpreter is out of nobody's reach: root, on the read-only mount, without HOME
    work = Path(tempfile.mkdtemp(prefix="sinr-ro-"))
    try:
        work.chmod(0o777)
        sinr.write_matrix(work / "first", _cut(pbmc, slice(0, 40)))
        sinr.write_matrix(work / "more", _cut(pbmc, slice(40, 80)))
        for path in [work / "more", work / "first", *(work / "more").iterdir(), *(work / "first").iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        cli = " ".join([*user, sys.executable, "-m", "scinrcodec"])
        root = HERE.parent
        script = (f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && cd {work} && "
                  f"{cli} encode first a.sinr --quiet && {cli} verify a.sinr && {cli} decode a.sinr a.npz && "
                  f"{cli} append a.sinr more --quiet")
        run = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=300,
                             env={**ENV, "HOME": "/nonexistent"})
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stdout + run.stderr
        counts = sp.csr_matrix(pbmc.matrix())
        assert (sp.load_npz(work / "a.npz") != counts[:, :40]).nnz == 0
        with sinr.open(work / "a.sinr") as m:
            assert (m.to_scipy() != counts).nnz == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- huge dimensions

HUGE_CHECK = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import numpy as np
import scinrcodec as sinr
folder = sys.argv[1]
m = sinr.open(folder + "/matrix.sinr")
with np.load(folder + "/expected.npz") as z:
    genes, cells, values = z["genes"], z["cells"], z["values"]
small = m[0:10, 0:5].toarray()
want = np.zeros((10, 5), np.int64)
keep = (genes < 10) & (cells < 5)
want[genes[keep], cells[keep]] = values[keep]
assert np.array_equal(small, want)
assert m.to_scipy(layout="csc").nnz == values.size
for read in (lambda: m.cell(0), lambda: m[:, 0:2], lambda: m.to_scipy()):
    try:
        read()
    except sinr.ResultTooLargeError as exc:
        assert "GiB" in str(exc) and "2,147,483,647 genes" in str(exc), exc
    else:
        raise AssertionError("a read of 2**31-1 genes fitted in 2 GiB")
print("ok")
"""


HUGE_WITHOUT_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # a net only: the checks must come first
import numpy as np
import scinrcodec as sinr
from scinrcodec import limits
limits.available_memory = lambda: 1 << 30  # what the machine has free, as the checks see it
folder, out = sys.argv[1], sys.argv[2]
m = sinr.open(folder + "/matrix.sinr")
assert m[0:10, 0:5].nnz >= 0 and m.to_scipy(layout="csc").nnz > 0
reads = (lambda: m.to_scipy(), lambda: m[:, 0:2], lambda: sinr.read_sinr(folder + "/matrix.sinr"),
         lambda: sinr.subset(folder + "/matrix.sinr", out, cells=[0, 1]),
         lambda: sinr.encode(m.to_scipy(layout="csc"), out))
for read in reads:
    try:
        read()
    except sinr.ResultTooLargeError as exc:
        assert "free to this process" in str(exc), exc  # refused before allocating, not after
    else:
        raise AssertionError("a read of 2**31-1 genes fitted in 1 GiB")
print("ok")
"""


@pytest.mark.skipif(SANITIZED or not sys.platform.startswith("linux"), reason="needs RLIMIT_AS (Linux, no ASan)")
def test_huge_declared_dimensions_are_refused_before_allocating(tmp_path):
    """Linux grants an allocation larger than the memory free (overcommit) and kills the process as
    it fills it, past any except (a machine-wide OOM kill with 23 GiB): reads, read_sinr, subset and
    encode of 2**31-1 genes check their arrays against the memory free first."""
    run = subprocess.run([sys.executable, "-c", HUGE_WITHOUT_LIMIT, str(HERE / "conformance" / "huge_gene_count"),
                          str(tmp_path / "out.sinr")], capture_output=True, text=True, timeout=300, env=ENV)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr


@pytest.mark.skipif(SANITIZED or not sys.platform.startswith("linux"), reason="needs RLIMIT_AS (Linux, no ASan)")
def test_huge_declared_dimensions_give_a_typed_error():
    """2**31-1 genes under a 2 GiB address-space limit: small reads work, reads whose result cannot
    fit raise ResultTooLargeError (a SinrError: the CLI prints its one line) saying how large,
    never a bare MemoryError."""
    folder = HERE / "conformance" / "huge_gene_count"
    run = subprocess.run([sys.executable, "-c", HUGE_CHECK, str(folder)], capture_output=True, text=True,
                         timeout=300, env=ENV)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr


if __name__ == "__main__":  # the reader process of the rewrite test
    if sys.argv[1:2] == ["reader"]:
        _reader(sys.argv[2], sys.argv[3], float(sys.argv[4]))
