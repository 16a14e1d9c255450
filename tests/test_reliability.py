"""Reliability: damaged and self-contradictory files are rejected, round trips hold for any matrix,
writes are safe, readers share files across threads and leak nothing."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import scinrcodec as sinr
from conftest import DATA, SANITIZED, needs, require
from fuzz.reseal import build, parse
from scinrcodec.wholefile.matrix import SinrMatrix
from scinrcodec.storage.container import PREAMBLE, TRAILER

FAST = dict(siren="never", progress=False)
SMALL_SIREN = dict(steps=20, batch=256, width=8, progress=False)
MODES = {"lossless": FAST, "max-error": dict(mode="max-error", max_error=2, **FAST),
         "inr-only": dict(mode="inr-only", **SMALL_SIREN), "siren": dict(siren="force", **SMALL_SIREN)}


@pytest.fixture(scope="module")
def pbmc():
    return sinr.read_matrix(DATA / "pbmc4k_v2_soupx_half")


@pytest.fixture(scope="module")
def files(tmp_path_factory, pbmc):
    require("torch")  # two modes fit SIRENs
    folder = tmp_path_factory.mktemp("modes")
    out = {}
    for name, options in MODES.items():
        path = folder / f"{name}.sinr"
        sinr.encode(pbmc, path, tile_nnz=64, patch_nnz=512, chunk_cells=90, **options)
        out[name] = path.read_bytes()
    return out


def _read_all(blob: bytes) -> None:
    m = SinrMatrix(blob)
    m.to_scipy()
    m.gene(0), m.cell(0), m[1, 2], m[:5, :5]
    _ = m.gene_names, m.gene_ids, m.cell_names, m.feature_types
    m.verify()


def _structure_offsets(blob: bytes) -> list[int]:
    """Offsets of every chunk header and section start: the boundaries worth cutting at."""
    parts = parse(blob)
    footer_start = len(blob) - TRAILER.size - int.from_bytes(blob[-TRAILER.size:][:8], "little")
    offsets = [PREAMBLE.size, footer_start, len(blob) - TRAILER.size]
    for matrix in parts.matrices:
        offsets += [entry[1] for entry in matrix.header["sections"]]
        offsets += [chunk.index_row[0] for chunk in matrix.chunks]
    return sorted(set(offsets))


def test_every_kind_of_damage_is_detected(files):
    """Byte flips in every byte of the preamble, footer and trailer, in every chunk header and in
    2,400 sampled body bytes; truncations at every structure boundary and 200 random offsets;
    appended garbage: every one raises SinrError."""
    rng = np.random.default_rng(11)
    tried = 0
    for name, blob in files.items():
        footer_start = len(blob) - TRAILER.size - int.from_bytes(blob[-TRAILER.size:][:8], "little")
        chunk_headers = [i for chunk in parse(blob).matrices[0].chunks
                         for i in range(chunk.index_row[0], chunk.index_row[0] + chunk.index_row[1])]
        flips = (list(range(PREAMBLE.size)) + list(range(footer_start, len(blob))) + chunk_headers
                 + rng.integers(PREAMBLE.size, footer_start, 600).tolist())
        cuts = _structure_offsets(blob) + rng.integers(0, len(blob), 200).tolist()
        for offset in flips:
            damaged = bytearray(blob)
            damaged[offset] ^= 1 << int(rng.integers(8))
            with pytest.raises(sinr.SinrError):
                _read_all(bytes(damaged))
        for cut in cuts:
            with pytest.raises(sinr.SinrError):
                _read_all(blob[:cut])
        for garbage in (b"\0", b"junk" * 100, blob[:64]):
            with pytest.raises(sinr.SinrError):
                _read_all(blob + garbage)
        tried += len(flips) + len(cuts) + 3
        _read_all(blob)
    assert tried > 4 * 900


def test_resealed_tile_damage_never_decodes_silently(files, pbmc):
    """With every CRC made valid again, damaged tile bytes are caught by the streams' end checks and
    the chunks' content checksums: a full decode never returns wrong numbers."""
    rng = np.random.default_rng(5)
    expected = pbmc.matrix().toarray()
    blob = files["lossless"]
    parts = parse(blob)
    detected = 0
    for _ in range(150):
        chunk = parts.matrices[0].chunks[int(rng.integers(len(parts.matrices[0].chunks)))]
        original = chunk.sections["tiles.data"]
        if not original:
            continue
        damaged = bytearray(original)
        damaged[int(rng.integers(len(damaged)))] ^= 1 << int(rng.integers(8))
        chunk.sections["tiles.data"] = bytes(damaged)
        try:
            decoded = SinrMatrix(build(parts)).to_scipy().toarray()
            assert np.array_equal(decoded, expected)  # a flip that changes nothing decoded is harmless
        except sinr.CorruptFileError:
            detected += 1
        chunk.sections["tiles.data"] = original
    assert detected >= 140


def test_damaged_files_give_one_line_from_the_cli(tmp_path, files):
    """decode and verify reject any damage; info reads only headers, so it may describe a file whose
    tiles are damaged, but fails cleanly on damage it reads."""
    rng = np.random.default_rng(3)
    blob = files["siren"]
    for k, offset in enumerate([5, len(blob) - 3, len(blob) - 40] + rng.integers(16, len(blob), 5).tolist()):
        damaged = bytearray(blob)
        damaged[offset] ^= 0x10
        path = tmp_path / f"d{k}.sinr"
        path.write_bytes(bytes(damaged))
        for command in (["info", str(path)], ["decode", str(path), str(tmp_path / f"o{k}.npz")],
                        ["verify", str(path)]):
            result = subprocess.run([sys.executable, "-m", "scinrcodec", *command], capture_output=True, text=True)
            assert "Traceback" not in result.stderr, result.stderr
            if command[0] != "info" or k < 3:
                assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / f"o{k}.npz").exists()


def test_fuzz_findings_stay_fixed():
    """Every input the reader fuzzer once failed on, and its whole seed corpus, end in SinrError or
    succeed (.ci/sanitize runs this through the AddressSanitizer build of the native core)."""
    from fuzz.targets import exercise_reader

    fuzz = Path(__file__).parent / "fuzz"
    inputs = sorted(fuzz.glob("crashes/*")) + sorted(fuzz.glob("corpus/*.bin"))
    assert len(inputs) > 8
    for path in inputs:
        if not path.name.startswith("."):
            exercise_reader(path.read_bytes())


def test_no_pickle_or_eval_in_the_package():
    source = Path(sinr.__file__).parent
    for path in source.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bpickle\b|\beval\(|\bexec\(|allow_pickle\s*=\s*True", text), path


# ------------------------------------------------------------------------------ properties

@st.composite
def count_matrices(draw):
    n_genes = draw(st.integers(0, 12))
    n_cells = draw(st.integers(0, 12))
    kind = draw(st.sampled_from(["random", "empty", "dense", "huge", "large"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (n_genes, n_cells)
    if kind == "empty":
        dense = np.zeros(shape, dtype=np.int64)
    elif kind == "dense":
        dense = rng.integers(1, 20, shape)
    elif kind == "huge":
        dense = np.zeros(shape, dtype=np.int64)
        if dense.size:
            dense.flat[rng.integers(dense.size)] = 2**31 - 1
    else:
        density = draw(st.floats(0.0, 1.0))
        high = 2**31 - 1 if kind == "large" else 10
        dense = np.where(rng.random(shape) < density, rng.integers(1, high, shape, endpoint=True), 0)
    return sp.csr_matrix(dense.astype(np.int64), shape=shape)


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
EDGE_CASES = [sp.csr_matrix((0, 0), dtype=np.int64), sp.csr_matrix(np.array([[5]])),
              sp.csr_matrix(np.array([[0, 3, 0, 0, 9, 1]])), sp.csr_matrix(np.zeros((4, 1), dtype=np.int64)),
              sp.csr_matrix(np.full((6, 5), 3)), sp.csr_matrix(np.array([[0, 2**31 - 1], [0, 0]]))]


@PROPERTY
@given(count_matrices(), st.sampled_from([1, 3, 64]), st.sampled_from([1, 2, 5, 100]))
@example(EDGE_CASES[0], 1, 1)
@example(EDGE_CASES[1], 1, 1)
@example(EDGE_CASES[2], 3, 2)
@example(EDGE_CASES[3], 3, 1)
@example(EDGE_CASES[4], 64, 2)
@example(EDGE_CASES[5], 1, 1)
def test_lossless_round_trip_and_random_access_agree(tmp_path, matrix, tile_nnz, chunk_cells):
    out = tmp_path / "p.sinr"
    sinr.encode(matrix, out, force=True, tile_nnz=tile_nnz, patch_nnz=4 * tile_nnz, chunk_cells=chunk_cells, **FAST)
    with sinr.open(out) as m:
        dense = matrix.toarray()
        assert np.array_equal(m.to_scipy().toarray(), dense) and m.to_scipy().shape == matrix.shape
        assert np.array_equal(m.to_scipy(layout="csc").toarray(), dense)
        for i in range(matrix.shape[0]):
            assert np.array_equal(m.gene(i), dense[i])
            for j in range(matrix.shape[1]):
                assert m[i, j] == dense[i, j]
        for j in range(matrix.shape[1]):
            assert np.array_equal(m.cell(j), dense[:, j])
        assert np.array_equal(m[:, :].toarray(), dense)


@PROPERTY
@given(count_matrices(), st.integers(1, 1000))
def test_max_error_bound_holds_everywhere(tmp_path, matrix, bound):
    out = tmp_path / "q.sinr"
    sinr.encode(matrix, out, force=True, mode="max-error", max_error=bound, tile_nnz=8, patch_nnz=32, chunk_cells=3,
                **FAST)
    with sinr.open(out) as m:
        decoded = m.to_scipy().toarray()
        dense = matrix.toarray()
        assert np.all(np.abs(decoded - dense) <= bound)
        assert np.array_equal(decoded == 0, dense == 0)


# ------------------------------------------------------------------------------------ API options

@pytest.mark.parametrize("options, fragment", [
    (dict(mode="max-error", max_error=1.5), "max_error must be an integer"),
    (dict(mode="max-error", max_error=True), "max_error must be an integer"),
    (dict(tile_nnz="64"), "tile_nnz must be an integer"),
    (dict(chunk_cells=0), "chunk_cells must be between"),
])
def test_encode_options_are_checked_not_coerced(tmp_path, pbmc, options, fragment):
    with pytest.raises(sinr.InvalidInputError, match=fragment):
        sinr.encode(pbmc, tmp_path / "x.sinr", **FAST, **options)
    assert not any(tmp_path.iterdir())


NAMES_CHECK = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import scinrcodec
names = scinrcodec.open(sys.argv[1]).cell_names
assert len(names) == 600_000 and names[-1] == "CELL000000599999-1", names[-1]
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux only")
@pytest.mark.skipif(SANITIZED, reason="AddressSanitizer cannot run under an address-space cap")
def test_cell_names_are_read_within_their_own_size(tmp_path):
    """600,000 cell names of one chunk read under a 2 GiB address-space cap: buffers follow the
    data (11 MB), not the 4,096-byte limit of a name (2.3 GiB for these names)."""
    n = 600_000
    cells = np.arange(0, n, 97)
    counts = sp.csc_matrix((np.ones(cells.size, np.int64), (np.zeros(cells.size, np.int64), cells)), shape=(1, n))
    path = tmp_path / "names.sinr"
    sinr.encode(sinr.CountMatrix(counts, gene_ids=["G1"], cell_names=[f"CELL{j:012d}-1" for j in range(n)]), path,
                chunk_cells=n, **FAST)
    run = subprocess.run([sys.executable, "-c", NAMES_CHECK, str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr


# ------------------------------------------------------------------------- safe writes, threads

@pytest.mark.skipif(SANITIZED, reason="fits SIRENs with torch, not the native core's memory safety")
@needs("torch")
def test_killed_encode_leaves_no_output(tmp_path, pbmc):
    source = tmp_path / "in.npz"
    sp.save_npz(source, sp.csr_matrix(pbmc.matrix()))
    before = source.read_bytes()
    out = tmp_path / "out.sinr"
    proc = subprocess.Popen([sys.executable, "-m", "scinrcodec", "encode", str(source), str(out), "--inr-only",
                             "--steps", "100000", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(6)
    assert proc.poll() is None, "the encode ended before it was killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert source.read_bytes() == before
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "in.npz")
    assert all(name.startswith(".out.sinr.") for name in leftovers)  # SIGKILL leaves the temporary file, only it


def test_one_matrix_read_from_many_threads(tmp_path, pbmc):
    out = tmp_path / "t.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, patch_nnz=512, chunk_cells=100, **FAST)
    dense = pbmc.matrix().toarray()
    errors = []
    with sinr.open(out) as m:
        def work(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                for _ in range(40):
                    i, j = int(rng.integers(dense.shape[0])), int(rng.integers(dense.shape[1]))
                    assert m[i, j] == dense[i, j]
                    assert np.array_equal(m.gene(i), dense[i])
                    assert np.array_equal(m.cell(j), dense[:, j])
                    assert m.gene_names[i] == pbmc.gene_names[i]
                assert np.array_equal(m.to_scipy().toarray(), dense)
            except BaseException as exc:  # collected and re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]


def test_opening_a_thousand_files_leaks_no_handles(tmp_path, pbmc):
    out = tmp_path / "h.sinr"
    sinr.encode(pbmc, out, **FAST)
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():
        pytest.skip("needs /proc to count open files")
    before = len(os.listdir(fd_dir))
    for _ in range(1000):
        with sinr.open(out) as m:
            m[0, 0]
        sinr.open(out).cell(1)
    assert len(os.listdir(fd_dir)) <= before + 2


FORKED_DECODE = """
import os, signal, sys
import scinrcodec as sinr
from scinrcodec.reader import assemble, decode
assemble._POOL_FROM_NNZ = 0  # this small file's read takes the pool's threads too
path = sys.argv[1]
whole = sinr.open(path).to_scipy()  # the parent's decode starts the shared pool's threads
assert decode._POOL is not None
pid = os.fork()
if pid == 0:  # a forked child (a torch DataLoader worker's default start) decodes on a pool of its own
    signal.alarm(30)  # a child that waits forever ends (SIGALRM: -14)
    os._exit(0 if (sinr.open(path).to_scipy() != whole).nnz == 0 else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")
def test_a_forked_child_decodes_after_its_parent_did(tmp_path, pbmc):
    """The shared decode pool is forgotten in a forked child: a child's whole read after its parent's
    had waited forever on a pool whose threads the fork did not copy."""
    path = tmp_path / "x.sinr"
    sinr.encode(pbmc, path, chunk_cells=16, **FAST)
    run = subprocess.run([sys.executable, "-c", FORKED_DECODE, str(path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 0 and run.stdout.strip() == "0", run.stdout + run.stderr


FORKED_AMID_A_SUMMARY = """
import os, signal, sys, threading
import numpy as np
import scinrcodec as sinr
import scinrcodec.reader.matrix as reader
m = sinr.open(sys.argv[1])
expected = np.asarray(m.to_scipy().sum(axis=1)).ravel()
parent, entered, release = os.getpid(), threading.Event(), threading.Event()
whole_pass = reader.matrix_moments


def paused(*args):  # the parent's summary pass, which holds the matrix's lock, still running as it forks
    if os.getpid() == parent:
        entered.set()
        release.wait()
    return whole_pass(*args)


reader.matrix_moments = paused
thread = threading.Thread(target=m.sum, args=(1,))
thread.start()
entered.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(30)  # a child that waits forever ends (SIGALRM: -14)
    os._exit(0 if np.array_equal(m.sum(axis=1), expected) else 3)
release.set()
thread.join()
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")
def test_a_child_forked_amid_a_read_of_its_parent_reads(tmp_path, pbmc):
    """A lock an open matrix keeps is free in a forked child: forked while another thread of the
    parent summed the matrix (a summary pass, under the matrix's lock), the child's own m.sum() had
    waited forever for the parent's thread, which the fork did not copy."""
    path = tmp_path / "x.sinr"
    sinr.encode(pbmc, path, chunk_cells=16, **FAST)
    run = subprocess.run([sys.executable, "-c", FORKED_AMID_A_SUMMARY, str(path)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 0 and run.stdout.strip() == "0", run.stdout + run.stderr


PAUSED_PREAD = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
static long long at = -1;
static int notify = -1, resume = -1;
void arm(long long offset, int w, int r) { at = offset; notify = w; resume = r; }
static void pause_here(off_t off, size_t n) {  /* once, in a thread other than the main one */
  if (at >= 0 && off <= at && at < off + (off_t)n && syscall(SYS_gettid) != getpid()) {
    char c = 1;
    at = -1;
    if (write(notify, &c, 1) != 1 || read(resume, &c, 1) != 1) _exit(9);
  }
}
#define PAUSED(name) ssize_t name(int fd, void *buf, size_t n, off_t off) { \
  static ssize_t (*real)(int, void *, size_t, off_t); \
  if (!real) real = dlsym(RTLD_NEXT, #name); \
  pause_here(off, n); \
  return real(fd, buf, n, off); }
PAUSED(pread)
PAUSED(pread64)
"""

def _forked_amid_a_paused_read(tmp_path, pbmc, script: str) -> None:
    """Run `script` (its arguments: a .sinr file of pbmc, and PAUSED_PREAD built) with PAUSED_PREAD as
    LD_PRELOAD, so that a read pauses in a thread, deterministically, as the process forks; it prints
    the child's exit status, 0 when the child did what it should."""
    import shutil

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or sys.platform != "linux":
        pytest.skip("needs a C compiler and Linux to pause a read")
    (tmp_path / "paused.c").write_text(PAUSED_PREAD)
    library = tmp_path / "paused.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", library, tmp_path / "paused.c", "-ldl"], check=True)
    path = tmp_path / "x.sinr"
    sinr.encode(pbmc, path, chunk_cells=16, **FAST)
    run = subprocess.run([sys.executable, "-c", script, str(path), str(library)], capture_output=True, text=True,
                         timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "LD_PRELOAD": str(library)})
    assert run.returncode == 0 and run.stdout.strip() == "0", run.stdout + run.stderr


FORKED_AMID_A_CORE_READ = """
import ctypes, os, signal, sys, threading
import numpy as np
import scinrcodec as sinr
path, library = sys.argv[1:3]
expected = sinr.open(path)
m = sinr.open(path)
notify, resume = os.pipe(), os.pipe()
ctypes.CDLL(library).arm(ctypes.c_longlong(m.index.sections.table["genes.order"].offset), notify[1], resume[0])
thread = threading.Thread(target=m.cell, args=(3,))
thread.start()
os.read(notify[0], 1)  # the core reads its gene table, under its own lock, the GIL released
pid = os.fork()
if pid == 0:
    signal.alarm(30)  # a child that waits forever ends (SIGALRM: -14)
    os._exit(0 if np.array_equal(m.cell(3), expected.cell(3)) and m[5, 7] == expected[5, 7] else 3)
os.write(resume[1], b"x")
thread.join()
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")
def test_a_child_forked_amid_a_core_read_of_its_parent_reads(tmp_path, pbmc):
    """A forked child opens core readers of its own: forked while a thread of the parent was inside the
    core's read of a cell (which holds the core's own lock as it reads the gene table, here paused in
    pread by an LD_PRELOAD library), the child's m.cell(j) had waited forever on that lock."""
    _forked_amid_a_paused_read(tmp_path, pbmc, FORKED_AMID_A_CORE_READ)


FORKED_AMID_A_PYTHON_READ = """
import ctypes, os, sys, threading
import scinrcodec as sinr
path, library = sys.argv[1:3]
m = sinr.open(path)
notify, resume = os.pipe(), os.pipe()
ctypes.CDLL(library).arm(ctypes.c_longlong(100), notify[1], resume[0])
thread = threading.Thread(target=m.byte_source.read, args=(100, 10))
thread.start()
os.read(notify[0], 1)  # the read is under way, its descriptor counted in use
pid = os.fork()
if pid == 0:
    before = len(os.listdir("/proc/self/fd"))
    m.close()
    os._exit(0 if len(os.listdir("/proc/self/fd")) == before - 1 else 3)
os.write(resume[1], b"x")
thread.join()
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc/self/fd"), reason="needs fork and /proc")
def test_a_child_forked_amid_a_read_of_its_parent_closes_the_file(tmp_path, pbmc):
    """close() in a forked child releases the file's descriptor: forked while a thread of the parent
    was reading it (paused in pread by an LD_PRELOAD library), the child counted that read as still
    using the descriptor, and its close() left it open until the matrix was collected."""
    _forked_amid_a_paused_read(tmp_path, pbmc, FORKED_AMID_A_PYTHON_READ)


FORKED_FILE_OBJECT = """
import io, os, sys
import numpy as np
import scinrcodec as sinr
with open(sys.argv[1], "rb") as f:
    m = sinr.open(f)
    expected = m.cell(5)
    pid = os.fork()
    if pid == 0:  # its file's position is its parent's too: a seek of either moves both
        try:
            m.cell(5)
        except sinr.SinrError as exc:
            os._exit(0 if "forked process" in str(exc) else 4)
        os._exit(3)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print(status if np.array_equal(m.cell(5), expected) else "parent")
with open(sys.argv[1], "rb") as f:  # an io.BytesIO is the child's own copy: it reads
    m = sinr.open(io.BytesIO(f.read()))
pid = os.fork()
if pid == 0:
    os._exit(0 if np.array_equal(m.cell(5), expected) else 5)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")
def test_a_file_object_is_read_only_in_the_process_that_opened_it(tmp_path, pbmc):
    """A matrix opened from a file object is refused in a forked child (an io.BytesIO, the child's own
    copy, is read), in one line naming what to open instead: the child's seeks and reads interleaved with its parent's (or its siblings', as
    torch's DataLoader workers) on one position, and cells came back wrong or as 'file is corrupt'."""
    path = tmp_path / "x.sinr"
    sinr.encode(pbmc, path, chunk_cells=16, **FAST)
    run = subprocess.run([sys.executable, "-c", FORKED_FILE_OBJECT, str(path)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 0 and run.stdout.split() == ["0", "0"], run.stdout + run.stderr


FORKED_AMID_AN_EPOCH = """
import os, signal, sys
import numpy as np
import scinrcodec as sinr
m = sinr.open(sys.argv[1])
epoch = m.iter_cells(batch_size=8, seed=3, buffer=1, dtype=np.int64)
next(epoch)  # the next buffer decodes meanwhile, on the epoch's own thread
rest = [(b.cells, b.X.toarray()) for b in m.iter_cells(batch_size=8, seed=3, buffer=1, dtype=np.int64)][1:]
pid = os.fork()
if pid == 0:  # the child goes on with the epoch
    signal.alarm(30)
    got = [(b.cells, b.X.toarray()) for b in epoch]
    same = len(got) == len(rest) and all(np.array_equal(a, c) and np.array_equal(x, y) for (a, x), (c, y) in zip(got, rest))
    os._exit(0 if same else 3)
status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(status if [b.cells.tolist() for b in epoch] == [c.tolist() for c, _ in rest] else "parent")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")
def test_a_child_forked_amid_an_epoch_goes_on_with_it(tmp_path, pbmc):
    """An epoch of iter_cells started before a fork goes on in the child, batch for batch as in the
    parent: the child had waited forever for the next buffer, which was decoding on the epoch's
    thread in the parent."""
    path = tmp_path / "x.sinr"
    sinr.encode(pbmc, path, chunk_cells=16, **FAST)
    run = subprocess.run([sys.executable, "-c", FORKED_AMID_AN_EPOCH, str(path)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 0 and run.stdout.strip() == "0", run.stdout + run.stderr
