"""The sinr command: every subcommand, and for every failure (issue 11, CLI findings) exactly one
`sinr: error:` line, status 1, no traceback and nothing left behind."""
from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, FAST, assert_one_error_line, leftovers, sinr_cli
from scinrcodec import cli
from scinrcodec.cli import main
from scinrcodec.io.matrix import CountMatrix
from scinrcodec.io.writers import write_matrix

ROOT = Path(__file__).parents[1]
SOURCE = DATA / "pbmc4k_v2_soupx_half"
OUTPUTS = ["out.h5ad", "out.h5", "out.mtx", "out.mtx.gz", "out.npz", "outdir"]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "x.sinr"
    assert main(["encode", str(SOURCE), str(out), "--no-siren", "--quiet"]) == 0
    return out


def _random_counts(n_genes: int, n_cells: int, density: float, high: int, seed: int = 0) -> sp.csc_matrix:
    m = sp.random(n_genes, n_cells, density=density, format="csc", random_state=seed)
    m.data = np.random.default_rng(seed).integers(1, high, m.nnz).astype(np.float64)
    return m


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A .sinr of 60,000 random counts (about 120 KB) and its .npz input: larger than `ulimit -f 64`."""
    folder = tmp_path_factory.mktemp("big")
    sp.save_npz(folder / "big.npz", _random_counts(300, 2000, 0.1, 1000))
    sinr.encode(folder / "big.npz", folder / "big.sinr", **FAST)
    return folder / "big.sinr"


def test_encode_info_get_decode_verify(tmp_path, encoded, capsys, pbmc):
    assert main(["info", str(encoded)]) == 0
    info = capsys.readouterr().out
    assert "150 genes x 80 cells" in info and "lossless" in info
    m = pbmc.matrix().tocsr()
    gene = int(m.getnnz(axis=1).argmax())
    cell = int(m[gene].indices[0])
    for g, c in ((str(gene), str(cell)), (pbmc.gene_names[gene], pbmc.cell_names(cell, cell + 1)[0]),
                 (pbmc.gene_ids[gene], f"#{cell}")):
        assert main(["get", str(encoded), g, c]) == 0
        assert capsys.readouterr().out.strip() == str(m[gene, cell])
    assert main(["verify", str(encoded)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["decode", str(encoded), str(tmp_path / "out.h5ad")]) == 0
    assert (sinr.read_matrix(tmp_path / "out.h5ad").matrix() != pbmc.matrix()).nnz == 0


def test_info_says_what_the_file_does_not_record(tmp_path, encoded, capsys):
    """The writer's statistics are informative (spec §3.5: a file may hold none, or a map of other
    types): without them info had printed '0 bands, 0 tiles', 'SIREN: tried in 0 bands, kept in 0'
    and put every tile stream under 'bitmap'; it says now that the file does not record them, and
    shows the tile streams unsplit."""
    from conformance.make_vectors import edit

    assert main(["info", str(encoded)]) == 0
    full = capsys.readouterr().out
    assert re.search(r"[1-9][0-9,]* bands, [1-9][0-9,]* tiles", full) and "SIREN:     tried in" in full
    assert "tile streams" not in full and "not recorded" not in full
    for stats in (None, [1, 2]):
        def change(parts, stats=stats):
            if stats is None:
                parts.matrix.pop("stats", None)
            else:
                parts.matrix["stats"] = stats
        bare = tmp_path / "bare.sinr"
        bare.write_bytes(edit(encoded.read_bytes(), change))
        assert main(["info", str(bare)]) == 0
        info = capsys.readouterr().out
        assert "bands and tiles not recorded" in info and "SIREN:     use not recorded" in info
        parts = {line[:18].strip(): int(line[18:32].replace(",", "")) for line in info.splitlines()
                 if line.startswith(("bitmap", "values", "tile streams"))}
        assert parts["tile streams"] > parts["bitmap"] + parts["values"]  # the bulk of the file, not split


def test_get_hash_forces_an_index(tmp_path, capsys):
    """Gene names that look like numbers: a bare number is the name, #N the index."""
    counts = sp.csc_matrix(np.arange(1, 13).reshape(4, 3))
    names = ["3", "0", "1", "2"]  # gene "0" is index 1
    sinr.encode(CountMatrix(counts, gene_names=names), tmp_path / "n.sinr", **FAST)
    for gene, cell, expected in (("0", "0", counts[1, 0]), ("#0", "0", counts[0, 0]), ("3", "#2", counts[0, 2]),
                                 ("#3", "2", counts[3, 2]), ("#2", "#1", counts[2, 1])):
        assert main(["get", str(tmp_path / "n.sinr"), gene, cell]) == 0
        assert capsys.readouterr().out.strip() == str(expected), (gene, cell)
    result = sinr_cli("get", tmp_path / "n.sinr", "#4", "0")
    assert_one_error_line(result)


def test_a_matrix_without_nonzeros_reports_no_bits_per_nonzero(tmp_path, capsys):
    sp.save_npz(tmp_path / "zero.npz", sp.csc_matrix((4, 3), dtype=np.int64))
    assert main(["encode", str(tmp_path / "zero.npz"), str(tmp_path / "zero.sinr")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "0 nonzeros" in out and "bits per nonzero" not in out
    assert main(["info", str(tmp_path / "zero.sinr")]) == 0  # its parts' bits per nonzero are '-', not bytes * 8
    info = capsys.readouterr().out
    rows = [line.split() for line in info.splitlines() if line.startswith(("headers", "total"))]
    assert rows and all(row[2] == "-" for row in rows)
    assert "1 chunk of up to 3 cells, 0 bands, 0 tiles" in info  # a count of one in the singular
    assert main(["verify", str(tmp_path / "zero.sinr")]) == 0
    assert "bytes, 1 matrix, 1 chunk, 0 nonzeros, 0 other parts checked" in capsys.readouterr().out


def test_lossy_modes_and_pattern_from_cli(tmp_path, capsys):
    modes = [["--max-error", "2"]] + [["--inr-only", "--steps", "20", "--width", "8"]] * (find_spec("torch") is not None)
    for flags in modes:
        out = tmp_path / f"{flags[0][2:]}.sinr"
        assert main(["encode", str(SOURCE), str(out), "--quiet", *flags]) == 0
        assert main(["info", str(out)]) == 0
    assert "max-error" in capsys.readouterr().out
    # --max-error 0 (every entry within 0: exact) is lossless, the same bytes; it had been refused
    assert main(["encode", str(SOURCE), str(tmp_path / "e0.sinr"), "--quiet", "--no-siren", "--max-error", "0"]) == 0
    assert main(["encode", str(SOURCE), str(tmp_path / "plain.sinr"), "--quiet", "--no-siren"]) == 0
    assert (tmp_path / "e0.sinr").read_bytes() == (tmp_path / "plain.sinr").read_bytes()
    pattern = tmp_path / "pattern.mtx"
    pattern.write_text("%%MatrixMarket matrix coordinate pattern general\n3 2 2\n1 1\n3 2\n")
    assert_one_error_line(sinr_cli("encode", pattern, tmp_path / "p.sinr"), "--pattern-as-ones")
    assert main(["encode", str(pattern), str(tmp_path / "p.sinr"), "--pattern-as-ones", "--quiet", "--no-siren"]) == 0
    assert sinr.decode(tmp_path / "p.sinr").toarray().tolist() == [[1, 0], [0, 0], [0, 1]]


def _bad_inputs(folder: Path, encoded: Path) -> dict[str, Path]:
    """One malformed input of each kind issue 11 lists, and damaged .sinr files."""
    paths = {}

    def mtx(name: str, text: str, **names: bytes) -> None:
        (folder / name).mkdir()
        (folder / name / "matrix.mtx").write_text(text)
        for stem, content in names.items():
            (folder / name / f"{stem}.tsv").write_bytes(content)
        paths[name] = folder / name

    head = "%%MatrixMarket matrix coordinate integer general\n"
    mtx("negative", head + "2 2 1\n1 1 -3\n")
    mtx("fraction", "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 0.5\n")
    mtx("nan", "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 nan\n")
    mtx("int2.5", head + "2 2 1\n1 1 2.5\n")
    mtx("nnz1e12", head + "1000000 1000000 1000000000000\n1 1 1\n")
    mtx("huge_dims", head + "3000000000 2 1\n1 1 1\n")
    mtx("duplicates", head + "2 2 2\n1 1 1\n1 1 2\n")
    mtx("value2^63", head + "2 2 1\n1 1 9223372036854775808\n")
    mtx("long_name", head + "2 2 1\n1 1 1\n", features=b"a\t" + b"G" * 100_000 + b"\nb\tB\n")
    mtx("bad_utf8", head + "2 2 1\n1 1 1\n", barcodes=b"\xff\nx\n")
    for name, indices, indptr in (("indptr.h5", [0, 1, 0], [0, 2, 1, 3]), ("shape.h5", [0, 7, 0], [0, 2, 2, 3])):
        with h5py.File(folder / name, "w") as f:
            g = f.create_group("matrix")
            g["data"], g["indices"], g["indptr"] = [1, 2, 3], indices, indptr
            g["shape"] = np.array([2, 3], np.int32)
            g["barcodes"] = np.array([b"a", b"b", b"c"])
            g["features/id"] = g["features/name"] = np.array([b"x", b"y"])
        paths[name] = folder / name
    sp.save_npz(folder / "oob.npz", sp.csc_matrix(np.eye(3)))
    with np.load(folder / "oob.npz") as z:
        arrays = dict(z)
    arrays["indices"] = np.array([0, 1, 9], np.int32)
    np.savez(folder / "oob.npz", **arrays)
    paths["oob.npz"] = folder / "oob.npz"
    (folder / "garbage.h5ad").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    paths["garbage.h5ad"] = folder / "garbage.h5ad"
    with h5py.File(folder / "loom.h5", "w") as f:  # a .loom file's layout: /matrix a dense dataset
        f["matrix"] = np.eye(3)
    paths["loom.h5"] = folder / "loom.h5"
    blob = encoded.read_bytes()
    for name, content in (("corrupt.sinr", blob[:-100] + bytes(b ^ 0xFF for b in blob[-100:])),
                          ("truncated.sinr", blob[: len(blob) // 2]),
                          ("future.sinr", blob[:8] + (9).to_bytes(2, "little") + blob[10:]),
                          ("plain.sinr", b"hello world, this is not a sinr file at all")):
        (folder / name).write_bytes(content)
        paths[name] = folder / name
    return paths


def test_every_failure_is_one_line(tmp_path, encoded):
    bad = _bad_inputs(tmp_path, encoded)
    out = tmp_path / "out"
    out.mkdir()
    (out / "exists.sinr").write_bytes(b"x")
    (out / "folder.sinr").mkdir()
    (out / "folder.sinr" / "keep").write_text("keep")
    shutil.copytree(out / "folder.sinr", out / "folder.h5ad")
    npz = out / "in.npz"
    sp.save_npz(npz, sp.csc_matrix(np.eye(3)))
    mtx_input = out / "mtx"
    shutil.copytree(SOURCE, mtx_input)
    cases = [
        (["encode", bad["negative"], out / "a.sinr"], "a negative value"),
        (["encode", bad["fraction"], out / "a.sinr"], "non-integer"),
        (["encode", bad["nan"], out / "a.sinr"], "NaN"),
        (["encode", bad["int2.5"], out / "a.sinr"], "not a whole number"),
        (["encode", bad["nnz1e12"], out / "a.sinr"], "1,000,000,000,000 entries"),
        (["encode", bad["huge_dims"], out / "a.sinr"], "3,000,000,000 genes is outside"),
        (["encode", bad["duplicates"], out / "a.sinr"], "coordinate twice"),
        (["encode", bad["value2^63"], out / "a.sinr"], "above 2,147,483,647"),
        (["encode", bad["long_name"], out / "a.sinr"], "100,000 bytes exceeds the limit"),
        (["encode", bad["bad_utf8"], out / "a.sinr"], "not valid UTF-8"),
        (["encode", bad["indptr.h5"], out / "a.sinr"], "index pointers decrease"),
        (["encode", bad["shape.h5"], out / "a.sinr"], "gene index lies outside 0..1"),
        (["encode", bad["oob.npz"], out / "a.sinr"], "gene index lies outside 0..2"),
        (["encode", bad["garbage.h5ad"], out / "a.sinr"], "unreadable"),
        (["encode", bad["loom.h5"], out / "a.sinr"], "not a 10x HDF5 file (its 'matrix' is a dataset"),
        (["encode", tmp_path / "nothing", out / "a.sinr"], "no such file"),
        (["encode", SOURCE, out / "exists.sinr", "--no-siren"], "--force"),
        (["encode", SOURCE, out / "folder.sinr", "--force"], "is an existing folder"),
        (["encode", npz, npz, "--force"], "the output is the input"),
        (["encode", mtx_input, out / "matrix.mtx.gz", "--force"], "a .sinr file cannot be named as .mtx"),
        (["encode", mtx_input, mtx_input / "x.sinr"], "lies inside the input folder"),
        (["concat", encoded, encoded, "-o", out / "c.h5ad", "--index-unique", "-"], "cannot be named as .h5ad"),
        (["subset", encoded, "-o", out / "s.h5", "--genes", "#0"], "cannot be named as .h5"),
        (["encode", SOURCE, out / "a.sinr", "--layer", "counts"],
         "--layer applies to .h5ad or AnnData .zarr input only"),
        (["encode", DATA / "pbmc500_cellranger.h5", out / "a.sinr", "--layer", "counts"],
         "a layer (--layer) applies to .h5ad input only, not to a 10x .h5"),
        (["encode", SOURCE, out / "a.sinr", "--max-error", str(2**31)], "expected at most 2,147,483,646"),
        (["encode", SOURCE, out / "a.sinr", "--max-error", "many"], "expected a whole number"),
        (["encode", SOURCE, out / "a.sinr", "--max-error", "-1"], "expected a non-negative number, not -1"),
        *[(["encode", SOURCE, out / "a.sinr", "--device", device],  # meta: a device that holds no data
           f"--device {device!r} is not usable here" if find_spec("torch") else "is a torch device")
          for device in ("cuda:7", "banana", "meta")],
        (["encode", SOURCE], "the following arguments are required"),
        (["compress", SOURCE], "invalid choice"),
        (["decode", bad["corrupt.sinr"], out / "f.h5ad"], "corrupt"),
        (["info", bad["truncated.sinr"]], "truncated"),
        (["get", bad["truncated.sinr"], "0", "0"], "truncated"),
        (["info", bad["future.sinr"]], "format 9.0 is not supported"),
        (["info", bad["plain.sinr"]], "not a .sinr file"),
        (["decode", encoded, out / "g.xyz"], "unknown output format"),
        (["decode", encoded, encoded, "--force"], "the output is the input"),
        (["decode", encoded, out / "folder.h5ad", "--force"], "is an existing folder"),
        (["get", encoded, "NO_SUCH_GENE", "0"], "no gene named"),
        (["get", encoded, "0", "999999"], "out of range"),
        (["get", encoded, "#\u0663", "#0"], "no gene named '#\u0663'"),  # an Arabic-Indic 3 is no index
        (["get", encoded, "0", "1_0"], "no cell named '1_0'"),
        (["decode", encoded, out / "x.npz", "--dtype", "int32"], "apply to .h5ad and .zarr outputs, not npz"),
        (["decode", encoded, out / "x.mtx", "--compression", "none"], "apply to .h5ad and .zarr outputs"),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: sinr_cli(*case[0]), cases))
    for (args, fragment), result in zip(cases, results):
        assert_one_error_line(result, fragment)
        assert "internal error" not in result.stderr, args
    assert (out / "exists.sinr").read_bytes() == b"x" and (out / "folder.sinr" / "keep").read_text() == "keep"
    assert sorted(p.name for p in out.iterdir()) == ["exists.sinr", "folder.h5ad", "folder.sinr", "in.npz", "mtx"]
    assert sp.load_npz(npz).nnz == 3 and (mtx_input / "matrix.mtx.gz").read_bytes() == (
        SOURCE / "matrix.mtx.gz").read_bytes()


NO_DAC = ("setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search")


def _without_root_override() -> tuple[str, ...]:
    """As root, permissions do not stop writes: drop the capability that lets them (setpriv)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: folder permissions cannot be tested")
    return NO_DAC


def _mount_namespace() -> tuple[str, ...]:
    """unshare -m: a private mount namespace, to mount a read-only or a tiny file system."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("no private mount namespace here (needs root and CAP_SYS_ADMIN)")
    return ("unshare", "-m")


def test_read_only_folder(tmp_path, encoded):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for args in (["encode", SOURCE, locked / "a.sinr"], ["decode", encoded, locked / "a.h5ad"],
                     ["decode", encoded, locked / "outdir"]):
            assert_one_error_line(sinr_cli(*args, wrapper=_without_root_override()), f"folder {locked} is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_append_refuses_a_write_protected_file(tmp_path, encoded):
    """A file whose mode forbids writing is not rewritten by append (its folder would let a new file
    replace it): refused as `>>` would be, the file left as it was."""
    _more_cells(encoded, tmp_path)
    target = tmp_path / "ro.sinr"
    shutil.copy(encoded, target)
    target.chmod(0o444)
    before = target.read_bytes()
    assert_one_error_line(sinr_cli("append", target, tmp_path / "more.h5ad", wrapper=_without_root_override()),
                          "is not writable (permission denied); append rewrites the file")
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["more.h5ad", "ro.sinr"]
    target.chmod(0o644)
    assert sinr_cli("append", target, tmp_path / "more.h5ad").returncode == 0  # the same append, allowed


def _more_cells(encoded, tmp_path) -> Path:
    """The cells of `encoded` under new names, as an .h5ad to append."""
    more = sinr.read_sinr(encoded, dtype=np.int32)
    more.obs_names = [f"{name}-new" for name in more.obs_names]
    more.write_h5ad(tmp_path / "more.h5ad")
    return tmp_path / "more.h5ad"


def test_append_says_once_that_it_waits_for_another_appends_lock(tmp_path, encoded):
    """`sinr append` to a file another append holds says so on stderr once, after about a second
    (it had said nothing however long it waited), then appends when the lock is released."""
    more, target = _more_cells(encoded, tmp_path), tmp_path / "t.sinr"
    shutil.copy(encoded, target)
    line = f"sinr: waiting for another append's lock on {target}\n"
    with open(target, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what another append holds while it works
        process = subprocess.Popen([sys.executable, "-m", "scinrcodec", "append", str(target), str(more)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            said = select.select([process.stderr], [], [], 60)[0]  # the command says something, or ends
            assert said and process.stderr.readline() == line, "nothing said in 60 s of waiting"
            assert process.poll() is None and target.read_bytes() == encoded.read_bytes()
        except BaseException:
            process.kill()
            raise
    stdout, rest = process.communicate(timeout=120)
    assert process.returncode == 0 and stdout.startswith("appended ") and line not in rest, rest
    with sinr.open(target) as m, sinr.open(encoded) as old:
        assert m.shape[1] == 2 * old.shape[1]


def test_append_waits_silently_for_the_library_and_under_quiet(tmp_path, encoded, monkeypatch, capsys):
    """The library prints nothing while append waits for the lock: it calls `waiting` once, however
    long the wait; the CLI gives it the line to print, none under --quiet."""
    from scinrcodec.encoder import append
    from scinrcodec.io import atomic

    more, target = _more_cells(encoded, tmp_path), tmp_path / "t.sinr"
    shutil.copy(encoded, target)
    monkeypatch.setattr(atomic, "LOCK_NOTICE_SECONDS", 0.01)
    calls = []
    with open(target, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=sinr.append, args=(target, sinr.read_matrix(more)),
                                  kwargs={"waiting": lambda: calls.append(time.monotonic())})
        worker.start()
        deadline = time.monotonic() + 60
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # twenty times the notice's delay: no second call
        assert len(calls) == 1 and worker.is_alive()
    worker.join(timeout=120)
    assert capsys.readouterr() == ("", "") and len(calls) == 1
    given = []
    real = append.append
    monkeypatch.setattr(append, "append", lambda *a, waiting=None, **k: (given.append(waiting), real(*a, **k))[1])
    shutil.copy(encoded, target)
    assert main(["append", str(target), str(more), "--quiet"]) == 0 and given == [None]
    shutil.copy(encoded, target)
    assert main(["append", str(target), str(more)]) == 0
    given[1]()
    assert capsys.readouterr().err == f"sinr: waiting for another append's lock on {target}\n"


def test_read_only_file_system(tmp_path, encoded):
    wrapper = _mount_namespace()
    ro = tmp_path / "ro"
    ro.mkdir()
    mount = f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} &&"
    for args in (["encode", SOURCE, ro / "a.sinr"], ["decode", encoded, ro / "a.h5"], ["decode", encoded, ro / "d"]):
        assert_one_error_line(sinr_cli(*args, shell_prefix=mount, wrapper=wrapper),
                              f"folder {ro} is not writable (read-only file system)")
    assert list(ro.iterdir()) == []


def test_append_on_a_read_only_file_system_says_so(tmp_path, encoded):
    """Not 'permission denied', which would send an operator to the file's mode: the mount is read-only."""
    wrapper = _mount_namespace()
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(encoded, ro / "x.sinr")
    before = (ro / "x.sinr").read_bytes()
    mount = f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} &&"
    assert_one_error_line(sinr_cli("append", ro / "x.sinr", _more_cells(encoded, tmp_path), shell_prefix=mount,
                                   wrapper=wrapper),
                          f"{ro / 'x.sinr'}: is not writable (read-only file system); append rewrites the file")
    assert (ro / "x.sinr").read_bytes() == before and sorted(p.name for p in ro.iterdir()) == ["x.sinr"]


@pytest.mark.parametrize("output", ["out.sinr", "out.h5ad", "out.h5"])
def test_full_file_system(tmp_path, big, output):
    """A real ENOSPC: a 64 KiB tmpfs, mounted in a private namespace."""
    wrapper = _mount_namespace()
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    args = (["encode", big.with_suffix(".npz"), "--no-siren", "--quiet"] if output == "out.sinr" else ["decode", big])
    assert sinr_cli(*args, tmp_path / output).returncode == 0  # a first run on a disk with room
    result = sinr_cli(*args, tiny / output, shell_prefix=f"mount -t tmpfs -o size=64k none {tiny} && ",
                      wrapper=wrapper)
    assert_one_error_line(result, "writing failed (No space left on device)")
    assert list(tiny.iterdir()) == []  # the namespace's tmpfs is gone; the folder below it stayed empty


@pytest.mark.parametrize("output", ["out.sinr"] + OUTPUTS)
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, big, output):
    """`ulimit -f 64` makes every write past 64 KiB fail with EFBIG, as a full disk fails with ENOSPC;
    HDF5 outputs must not crash (they once did: segmentation fault in libhdf5)."""
    work, warm = tmp_path / "work", tmp_path / "warm"
    work.mkdir()
    warm.mkdir()
    if output == "out.sinr":
        args = ["encode", big.with_suffix(".npz"), "--no-siren", "--quiet"]
    else:
        args = ["decode", big]
    assert sinr_cli(*args, warm / output).returncode == 0  # a first run, not under the limit
    result = sinr_cli(*args, work / output, shell_prefix="ulimit -f 64;")
    assert_one_error_line(result, "writing failed (File too large)")
    assert list(work.iterdir()) == []


def test_a_zarr_store_that_fails_midway_leaves_nothing(tmp_path):
    """zarr writes a store's chunks on its own event loop, which goes on with the others after one
    fails: a decode to .zarr that ran out of room (`ulimit -f`, as a full disk) left its temporary
    store behind in about a third of the runs, its late writes landing after the store was removed,
    and asyncio printed their tracebacks after the one-line error. Five runs of a store of many
    chunks: each one line, nothing left."""
    anndata, pd = pytest.importorskip("anndata"), pytest.importorskip("pandas")
    x = sp.random(20000, 300, density=0.1, format="csr", random_state=0,
                  data_rvs=lambda k: np.random.default_rng(0).integers(1, 50, k)).astype(np.int32)
    a = anndata.AnnData(x, obs=pd.DataFrame(index=[f"c{i}" for i in range(x.shape[0])]),
                        var=pd.DataFrame(index=[f"g{i}" for i in range(x.shape[1])]))
    a.obsm["pca"], a.layers["half"] = np.random.default_rng(1).random((x.shape[0], 50)), x * 0.5
    sinr.write_sinr(a, tmp_path / "w.sinr", **FAST)
    work = tmp_path / "work"
    work.mkdir()
    for i in range(5):
        result = sinr_cli("decode", tmp_path / "w.sinr", work / f"o{i}.zarr", "--quiet", shell_prefix="ulimit -f 200;")
        assert_one_error_line(result, "writing failed (File too large)")
    assert list(work.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_report_standard_output_cannot_take_is_named(tmp_path, encoded):
    """A standard output that cannot take the report (`> /dev/full`, as a full disk) is named as what
    failed: the bare 'No space left on device' had read as a failed encode, whose file was written."""
    for args in (("info", encoded), ("get", encoded, "#0", "#0"),
                 ("encode", DATA / "pbmc4k_v2_soupx_half", tmp_path / "e.sinr", "--no-siren")):
        assert_one_error_line(sinr_cli(*args, shell_prefix="exec >/dev/full;"),
                              "standard output: cannot write the command's report (No space left on device)")
    with sinr.open(tmp_path / "e.sinr") as m:  # the encode's work is done
        assert (m.to_scipy() != sinr.read_matrix(DATA / "pbmc4k_v2_soupx_half").matrix()).nnz == 0


def test_gzipped_outputs_record_their_own_name_and_no_time(tmp_path, encoded):
    """gzip's header names the output (not the temporary file it was written as) and holds no time:
    a matrix decodes to the same bytes at any hour."""
    import gzip

    sinr.decode(encoded, tmp_path / "m.mtx.gz")
    first = (tmp_path / "m.mtx.gz").read_bytes()
    time.sleep(1.1)  # gzip's time field counts seconds
    sinr.decode(encoded, tmp_path / "m.mtx.gz", force=True)
    sinr.decode(encoded, tmp_path / "folder")
    assert (tmp_path / "m.mtx.gz").read_bytes() == first and first[4:8] == bytes(4)
    assert first[10:].startswith(b"m.mtx\0")  # FNAME (flag bit 3), NUL-terminated
    for name in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"):
        head = (tmp_path / "folder" / name).read_bytes()
        assert head[4:8] == bytes(4) and head[10:].startswith(name[:-3].encode() + b"\0")
    assert gzip.decompress(first) == gzip.decompress((tmp_path / "folder" / "matrix.mtx.gz").read_bytes())


def test_a_closed_stdout_is_no_internal_error(encoded):
    """Started with stdout closed (`sinr info f >&-`), Python has no sys.stdout: nothing is printed,
    and the run ends as it would with its output discarded."""
    run = sinr_cli("info", encoded, shell_prefix="exec 1>&-;")
    assert (run.returncode, run.stderr) == (0, "")


def test_broken_pipe_is_silent(encoded):
    process = subprocess.Popen([sys.executable, "-m", "scinrcodec", "info", str(encoded)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    process.stdout.close()
    assert process.wait(timeout=120) == 141
    assert process.stderr.read() == b""
    process.stderr.close()
    command = f'"{sys.executable}" -m scinrcodec info "{encoded}" | head -1'
    shell = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert shell.stdout.startswith("file:") and shell.stderr == ""


# The `sinr` console script as pip writes it for the entry point pyproject.toml names, run with a signal
# {stop} sent to itself the moment the module {first} starts to import (a meta path finder, not a timer)
CONSOLE_SCRIPT = """
import os, signal, sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {first!r}:
            sys.meta_path.remove(self)
            print("interrupting", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.{stop})
        return None

sys.meta_path.insert(0, Interrupt())
from {module} import {function}
sys.exit({function}())
"""


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("first", ["numpy", "scinrcodec.report"])
def test_a_stop_during_the_imports_exits_130_without_a_traceback(encoded, first, stop):
    """Ctrl-C, SIGTERM or SIGHUP in the first 0.3 s of `sinr ...` (scinrcodec's imports: numpy's, or the
    CLI's own) ends the command as one during its work does: one line, exit 130 (Ctrl-C had printed
    KeyboardInterrupt's traceback; SIGTERM and SIGHUP killed it silently, status 143 or 129)."""
    entry = re.search(r'^sinr = "([\w.]+):(\w+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    script = CONSOLE_SCRIPT.format(first=first, module=entry[1], function=entry[2], stop=stop)
    run = subprocess.run([sys.executable, "-c", script, "info", str(encoded)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (run.returncode, run.stdout, run.stderr) == (130, "", "interrupting\nsinr: interrupted\n")


OPENBLAS_AT_NUMPY = """
import os, sys

class Seen:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            print("OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS"), file=sys.stderr, flush=True)
        return None

sys.meta_path.insert(0, Seen())
from {module} import {function}
sys.exit({function}())
"""


@pytest.mark.parametrize("given", [None, "3"])
def test_the_command_starts_one_openblas_thread_unless_told(encoded, given):
    """numpy and scipy load OpenBLAS, which the package never calls: the command starts it on one
    thread before numpy loads (a user's OPENBLAS_NUM_THREADS is kept), as under a limit on virtual
    memory (ulimit -v 300000) its thread setup had looped on a failed allocation and `sinr decode`
    hung, deaf to SIGTERM, where it now ends 'out of memory'."""
    entry = re.search(r'^sinr = "([\w.]+):(\w+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    run = subprocess.run([sys.executable, "-c", OPENBLAS_AT_NUMPY.format(module=entry[1], function=entry[2]), "info",
                          str(encoded)], capture_output=True, text=True, timeout=120,
                         env={**env, "PYTHONPATH": str(ROOT), **({"OPENBLAS_NUM_THREADS": given} if given else {})})
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[0] == f"OPENBLAS_NUM_THREADS {given or 1}"


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A .sinr whose decode to .mtx.gz takes seconds: time to stop it part-way."""
    path = tmp_path_factory.mktemp("large") / "large.sinr"
    sinr.encode(_random_counts(1000, 20000, 0.05, 50, seed=3), path, **FAST)
    return path


def _writing(out: Path, running) -> None:
    """Wait until a temporary output appears in `out` while `running()`."""
    deadline = time.monotonic() + 120
    while not leftovers(out) and running() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert leftovers(out), "the decode ended before writing its temporary file"


def _stop_signals_as_a_shell_leaves_them() -> None:
    """In a child: SIGHUP and SIGTERM at their defaults, as a terminal's shell starts a command, whatever
    this test run inherited (under nohup SIGHUP is ignored, and the command rightly keeps it so)."""
    for stop in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(stop, signal.SIG_DFL)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_during_decode_leaves_nothing(tmp_path, large, stop):
    """SIGTERM (a scheduler's) or SIGHUP (the terminal or ssh session closed; it had killed the
    command, leaving its temporary output behind) removes the partial output and exits 130."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [sys.executable, "-m", "scinrcodec", "decode", str(large), str(tmp_path / "large.mtx.gz")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               preexec_fn=_stop_signals_as_a_shell_leaves_them)
    _writing(tmp_path, lambda: process.poll() is None)
    process.send_signal(getattr(signal, stop))
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and stderr.decode().strip() == "sinr: interrupted"
    assert list(tmp_path.iterdir()) == []


def test_a_closed_terminal_stops_the_command_and_leaves_nothing(tmp_path, large):
    """A command on a terminal that closes (an ssh session dropped) gets SIGHUP from the kernel, which
    had killed it and left its temporary output behind: it removes it and exits 130, though its
    stderr, the terminal, is gone (the message fails with EIO)."""
    pty = pytest.importorskip("pty")
    pid, terminal = pty.fork()
    if pid == 0:  # the child: on its own terminal, as a login shell's command is
        try:
            _stop_signals_as_a_shell_leaves_them()
            os.execv(sys.executable, [sys.executable, "-m", "scinrcodec", "decode", str(large),
                                      str(tmp_path / "large.mtx.gz"), "--quiet"])
        finally:
            os._exit(127)
    ended = []

    def running() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        ended.extend([status] if done else [])
        return not done

    try:
        _writing(tmp_path, running)
    finally:
        os.close(terminal)  # the terminal hangs up
        status = ended[0] if ended else os.waitpid(pid, 0)[1]
    assert os.waitstatus_to_exitcode(status) == 130
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_while_the_temporary_file_is_made_leaves_none(tmp_path, monkeypatch):
    """An interrupt landing after the temporary output exists and before the writer holds its name
    (as SIGTERM can, right after the file appears: the race of test_a_stop_signal_during_decode_leaves_nothing)
    still removes it."""
    from scinrcodec.io import atomic

    close = os.close

    def interrupted_close(fd):  # the file exists now; the interrupt lands before its path is returned
        close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "close", interrupted_close)
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(tmp_path / "out.h5ad", force=False):
            pass
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_python_discards_still_keeps_the_output_out(tmp_path, encoded, capsys, monkeypatch):
    """SIGINT or SIGTERM landing in code whose exceptions Python discards (h5py's weakref callbacks, as
    in a decode to .h5ad) had let the decode finish and exit 0: the handler also sets a flag that keeps
    the output from being renamed into place, and the next run starts clear."""
    from scinrcodec import cli
    from scinrcodec.encoder import driver
    from scinrcodec.io import atomic

    with pytest.raises(KeyboardInterrupt):
        cli._interrupt(signal.SIGINT, None)
    try:
        with pytest.raises(KeyboardInterrupt):
            sinr.decode(encoded, tmp_path / "out.h5ad")
        assert leftovers(tmp_path) == [] and not (tmp_path / "out.h5ad").exists()
    finally:
        atomic.interrupted.clear()
    atomic.interrupted.set()  # as a handler leaves it
    assert main(["decode", str(encoded), str(tmp_path / "out.h5ad")]) == 0 and (tmp_path / "out.h5ad").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def interrupted_encode(*args, **kwargs):  # SIGINT arriving while main() encodes
        cli._interrupt(signal.SIGINT, None)

    monkeypatch.setattr(driver, "encode", interrupted_encode)
    assert main(["encode", str(SOURCE), str(tmp_path / "slow.sinr")]) == 130
    monkeypatch.undo()

    assert not atomic.interrupted.is_set() and not (tmp_path / "slow.sinr").exists()
    sinr.decode(encoded, tmp_path / "after.h5ad")  # an interrupted main() stops no later write of its process
    assert (tmp_path / "after.h5ad").exists()


def test_an_interrupt_python_discards_stops_the_command_without_a_traceback(tmp_path, encoded, capsys, monkeypatch):
    """A KeyboardInterrupt raised where Python discards it (a __del__ or weakref callback, as h5py's
    during a decode to .h5ad) had been printed as 'Exception ignored ... Traceback' while the command
    went on: it is raised again in the command, which stops with one line and exit 130."""
    from scinrcodec import cli
    from scinrcodec.wholefile import output

    class Dropped:
        def __del__(self):
            cli._interrupt(signal.SIGINT, None)

    real, went_on = output.write_decoded, []

    def write_decoded(*args, **kwargs):
        Dropped()  # collected at once: its KeyboardInterrupt goes to sys.unraisablehook
        time.sleep(0.5)  # where the interrupt raised again lands
        went_on.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(output, "write_decoded", write_decoded)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # Python's own (pytest's keeps quiet)
    hook = sys.unraisablehook
    assert main(["decode", str(encoded), str(tmp_path / "out.h5ad")]) == 130 and not went_on
    err = capsys.readouterr().err
    assert err.strip() == "sinr: interrupted" and not (tmp_path / "out.h5ad").exists()
    assert sys.unraisablehook is hook and signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def write_decoded_at_once(*args, **kwargs):  # the command ends before the interrupt is raised again
        Dropped()
        return real(*args, **kwargs)

    monkeypatch.setattr(output, "write_decoded", write_decoded_at_once)
    assert main(["decode", str(encoded), str(tmp_path / "out.mtx")]) == 130
    time.sleep(0.3)  # no interrupt lands here, in the caller's code, once main() has returned


def test_the_command_ignores_a_signal_once_it_is_done(tmp_path, encoded, monkeypatch):
    """Run as the `sinr` command (no argv), a finished command ignores SIGINT, SIGTERM and SIGHUP: one
    arriving as the process exits had turned a complete output into exit 130 and no message; called
    with argv (in a caller's process), main() puts the handlers back."""
    previous = {sig: signal.getsignal(sig) for sig in cli._STOPS}
    monkeypatch.setattr(sys, "argv", ["sinr", "info", str(encoded)])
    try:
        assert main() == 0
        assert all(signal.getsignal(sig) is signal.SIG_IGN for sig in previous)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert main(["info", str(encoded)]) == 0 and signal.getsignal(signal.SIGINT) is previous[signal.SIGINT]


def test_a_command_run_by_another_thread(tmp_path, encoded, capsys):
    """main(argv) from a thread other than the main one (a caller's worker pool) runs the command:
    it had failed with ValueError 'signal only works in main thread of the main interpreter', a
    traceback, before doing anything; the process's handlers and unraisable hook stay as they are."""
    handlers, hook = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}, sys.unraisablehook
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(main, ["info", str(encoded)]),
                pool.submit(main, ["decode", str(encoded), str(tmp_path / "x.mtx")]),
                pool.submit(main, ["info", str(tmp_path / "missing.sinr")])]
        assert [run.result() for run in runs] == [0, 0, 1]
    assert "missing.sinr: cannot read" in capsys.readouterr().err
    assert (tmp_path / "x.mtx").exists()
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers and sys.unraisablehook is hook


def test_a_signal_the_process_ignores_stays_ignored(encoded, monkeypatch):
    """A command started with SIGINT ignored (a job run with & by a script) leaves it
    ignored while it runs, as shells and their tools do: it had installed its own handler, so a
    Ctrl-C meant for the script's foreground stopped it with exit 130."""
    seen = []
    real = cli._info
    monkeypatch.setattr(cli, "_info", lambda args: (seen.append(signal.getsignal(signal.SIGINT)), real(args)))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(["info", str(encoded)]) == 0
        assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)



def test_a_discarded_sigterm_is_raised_again_where_sigint_is_ignored(tmp_path, encoded, monkeypatch):
    """Where the command was started ignoring SIGINT, a SIGTERM whose KeyboardInterrupt Python
    discards is raised again as a SIGTERM: sent again as SIGINT, it had been dropped, and the command
    went on to its end only to discard its output."""
    from scinrcodec.wholefile import output

    class Dropped:
        def __del__(self):
            cli._interrupt(signal.SIGTERM, None)

    real, went_on = output.write_decoded, []

    def write_decoded(*args, **kwargs):
        Dropped()
        time.sleep(0.5)
        went_on.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(output, "write_decoded", write_decoded)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(["decode", str(encoded), str(tmp_path / "out.mtx")]) == 130 and not went_on
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not (tmp_path / "out.mtx").exists()

def test_a_dash_is_refused_as_a_path(tmp_path, encoded):
    """'-' is neither read as standard input nor written as a file or folder named '-'."""
    for args in (["decode", encoded, "-"], ["encode", SOURCE, "-"], ["info", "-"], ["subset", encoded, "-o", "-"]):
        result = sinr_cli(*args, cwd=tmp_path)
        assert_one_error_line(result, "'-' (standard input or output) is not supported")
        assert not (tmp_path / "-").exists()


def test_siren_options_that_contradict_are_refused(tmp_path):
    assert_one_error_line(sinr_cli("encode", SOURCE, tmp_path / "x.sinr", "--siren", "always", "--no-siren"),
                          "not allowed with argument")


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_outputs_respect_the_umask(tmp_path, encoded, umask):
    prefix = f"umask {umask:03o};"
    assert sinr_cli("encode", SOURCE, tmp_path / "x.sinr", "--no-siren", "--quiet", shell_prefix=prefix).returncode == 0
    for name in ("out.h5ad", "out.mtx.gz", "outdir"):
        assert sinr_cli("decode", encoded, tmp_path / name, shell_prefix=prefix).returncode == 0
    for name in ("x.sinr", "out.h5ad", "out.mtx.gz", "outdir/matrix.mtx.gz", "outdir/barcodes.tsv.gz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert stat.S_IMODE((tmp_path / "outdir").stat().st_mode) == 0o777 & ~umask


@pytest.mark.parametrize("name", ["out.h5", "outdir"])
def test_force_replaces_outputs_of_the_same_kind(tmp_path, encoded, pbmc, name):
    assert sinr_cli("decode", encoded, tmp_path / name).returncode == 0
    assert_one_error_line(sinr_cli("decode", encoded, tmp_path / name), "already exists")
    result = sinr_cli("decode", encoded, tmp_path / name, "--force")
    assert result.returncode == 0, result.stderr
    assert (sinr.read_matrix(tmp_path / name).matrix() != pbmc.matrix()).nnz == 0
    assert leftovers(tmp_path) == []


def test_encode_refuses_an_output_named_as_another_format(tmp_path):
    """`sinr encode in out.h5ad` would have written a .sinr file under an .h5ad name."""
    for name in ("out.h5ad", "out.h5", "out.mtx.gz"):
        assert_one_error_line(sinr_cli("encode", SOURCE, tmp_path / name), "a .sinr file cannot be named as")
    assert list(tmp_path.iterdir()) == []


def test_force_never_replaces_a_device_or_pipe(tmp_path, encoded):
    """--force replaces an earlier output, not a named pipe or a device (`--force /dev/null` as root
    would have replaced /dev/null with a file)."""
    os.mkfifo(tmp_path / "pipe.h5ad")
    assert_one_error_line(sinr_cli("decode", encoded, tmp_path / "pipe.h5ad", "--force"), "is not a regular file")
    assert stat.S_ISFIFO((tmp_path / "pipe.h5ad").lstat().st_mode)


def test_a_fifo_read_as_a_sinr_file_is_refused_at_once(tmp_path, encoded):
    """A FIFO given where a .sinr file is read (info, get, decode, subset, concat, Python's open)
    is refused in one line, as encode refuses one: opening it had waited for a writer forever. A
    FIFO inside a folder given to encode is not opened either (it had hung the message that lists
    a folder's inputs)."""
    os.mkfifo(tmp_path / "f.sinr")
    for args in (("info",), ("get", "#0", "#0"), ("decode", tmp_path / "o.h5ad"), ("verify",),
                 ("subset", "-o", tmp_path / "s.sinr", "--cells", "#0")):
        assert_one_error_line(sinr_cli(args[0], tmp_path / "f.sinr", *args[1:], timeout=60), "f.sinr: not a regular file")
    assert_one_error_line(sinr_cli("concat", encoded, tmp_path / "f.sinr", "-o", tmp_path / "c.sinr", timeout=60),
                          "f.sinr: not a regular file")
    with pytest.raises(sinr.InvalidInputError, match="not a regular file"):
        sinr.open(tmp_path / "f.sinr")
    shutil.copyfile(encoded, tmp_path / "g.sinr")
    m = sinr.open(tmp_path / "g.sinr")
    m.close()  # a read after close opens the path again, which now names a FIFO
    (tmp_path / "g.sinr").unlink()
    os.mkfifo(tmp_path / "g.sinr")
    with pytest.raises(sinr.FileChangedError, match="cannot be opened again .*not a regular file"):
        m.cell(0)
    (tmp_path / "g.sinr").unlink()
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "matrix.mtx.gz")
    assert_one_error_line(sinr_cli("encode", tmp_path / "d", tmp_path / "e.sinr", timeout=60), "d: folder holds no")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.sinr"]


def test_a_path_that_is_not_utf8_reads(tmp_path, encoded):
    """A file name whose bytes are not UTF-8 (surrogates in Python's str) reaches the native core as
    a printable name: reads work and errors name it, where the core had refused the string."""
    path = tmp_path / os.fsdecode(b"bad\xff.sinr")
    shutil.copyfile(encoded, path)
    with sinr.open(path) as m, sinr.open(encoded) as expected:
        assert (m.to_scipy() != expected.to_scipy()).nnz == 0 and list(m.cell(3)) == list(expected.cell(3))
    path.write_bytes(encoded.read_bytes()[:5000])
    assert "bad" in assert_one_error_line(sinr_cli("info", path), "no .sinr trailer")


def test_demo_runs(capsys, tmp_path):
    """The demo's file, in a temporary folder unless --workdir names one, is named with the folder it
    is left in or said to be removed (its 'file:' line had named a path gone when the command ended)."""
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "round trip: exact" in out and "10x HDF5" in out
    shown = Path(re.search(r"^file: +(\S+) \(", out, re.M).group(1))
    assert not shown.exists() and out.rstrip().endswith("is removed: `sinr demo --workdir DIR` keeps it)")
    (tmp_path / "demo.sinr").write_bytes(b"mine")  # a workdir's demo.sinr is an output like any other
    assert_one_error_line(sinr_cli("demo", "--workdir", tmp_path), "demo.sinr: already exists")
    assert (tmp_path / "demo.sinr").read_bytes() == b"mine"
    assert main(["demo", "--workdir", str(tmp_path), "--force"]) == 0
    assert sinr.open(tmp_path / "demo.sinr").shape == (50, 587) and "removed" not in capsys.readouterr().out


def test_write_matrix_api_round_trip(tmp_path, pbmc):
    m = CountMatrix(pbmc.matrix(), pbmc.gene_ids, pbmc.gene_names, pbmc.cell_names(0, 80), pbmc.feature_types)
    write_matrix(tmp_path / "in.h5", m)
    assert main(["encode", str(tmp_path / "in.h5"), str(tmp_path / "x.sinr"), "--quiet", "--no-siren"]) == 0
    with sinr.open(tmp_path / "x.sinr") as f:
        assert f.cell_names == pbmc.cell_names(0, 80) and (f.to_scipy() != pbmc.matrix()).nnz == 0


def test_an_encodes_progress_counts_each_pass_on_its_own(tmp_path, pbmc, monkeypatch):
    """The bar counts pass 1 (counting) and pass 2 (coding) each from 0 to the nonzeros, so that its
    rate is nonzeros per second as the summary's is (it had counted both passes as one total, twice
    the nonzeros, and shown twice the rate)."""
    from scinrcodec.progress import Progress

    passes = []
    monkeypatch.setattr(Progress, "begin", lambda self, step, total: passes.append([step, total, 0]))
    monkeypatch.setattr(Progress, "update", lambda self, n: passes[-1].__setitem__(2, passes[-1][2] + n))
    sinr.encode(pbmc, tmp_path / "x.sinr", siren="never", progress=True)
    nnz = sinr.open(tmp_path / "x.sinr").nnz
    assert passes == [["pass 1 of 2, counting", nnz, nnz], ["pass 2 of 2, coding", nnz, nnz]]
    monkeypatch.undo()
    bar = Progress(True, 10, "encoding", "nonzeros")
    bar.update(10)
    bar.begin("pass 2 of 2, coding", 10)
    assert (bar.bar.n, bar.bar.total, bar.bar.desc.rstrip(": ")) == (0, 10, "encoding (pass 2 of 2, coding)")
    bar.close()


def _recorded_passes(monkeypatch) -> tuple[list, list]:
    """Every pass a Progress begins, as [name, total, nonzeros counted], and whether each bar was
    shown (drawing none: stderr made a terminal, so that only --quiet turns a bar off)."""
    import threading

    from scinrcodec.progress import Progress

    passes, shown, lock, made = [], [], threading.Lock(), Progress.__init__

    def update(self, n):
        with lock:  # a decode counts its chunks on the threads that decode them
            passes[-1][2] += n

    def init(self, enabled, *args, **kwargs):
        shown.append(enabled)
        made(self, False, *args, **kwargs)

    monkeypatch.setattr(Progress, "__init__", init)
    monkeypatch.setattr(Progress, "begin", lambda self, step, total: passes.append([step, total, 0]))
    monkeypatch.setattr(Progress, "update", update)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    return passes, shown


@pytest.mark.parametrize("output", OUTPUTS)
def test_decode_and_verify_show_each_pass_counting_the_nonzeros(tmp_path, encoded, monkeypatch, output):
    """`sinr decode` and `sinr verify` had shown nothing for minutes (a 6e7-nonzero file to .mtx.gz:
    a minute) and decode took no --quiet: decoding, then writing, is each a pass of a bar counted in
    nonzeros, a writer of one call (.npz, .h5ad) shown by name; verify counts the nonzeros it checks."""
    passes, shown = _recorded_passes(monkeypatch)
    nnz = sinr.open(encoded).nnz
    assert main(["decode", str(encoded), str(tmp_path / output)]) == 0
    one_call = output in ("out.h5ad", "out.npz")
    assert passes == [["decoding", nnz, nnz], ["writing", None, 0] if one_call else ["writing", nnz, nnz]]
    assert main(["decode", str(encoded), str(tmp_path / output), "--force", "--quiet"]) == 0
    assert main(["verify", str(encoded)]) == 0
    assert passes[2:] == [["decoding", nnz, nnz], passes[1], ["checking", nnz, nnz]]
    assert main(["verify", str(encoded), "--quiet"]) == 0
    assert shown == [True, False, True, False]


def test_a_whole_files_decode_and_verify_show_each_matrix_as_a_pass(tmp_path, monkeypatch):
    """A whole AnnData decodes each of its matrices, then anndata writes the .h5ad: a pass each; a
    whole 10x file decodes, then writes its values and indices (half a nonzero each); verify checks
    each matrix, then the other parts."""
    import anndata

    source = sinr.read_matrix(SOURCE)
    counts = source.matrix().T.tocsr()
    adata = anndata.AnnData(X=counts.astype(np.float32), layers={"counts": counts.astype(np.int32)})
    adata.raw = anndata.AnnData(X=counts[:, :100])
    sinr.encode_whole(adata, tmp_path / "whole.sinr", **FAST)
    write_matrix(tmp_path / "in.h5", CountMatrix(source.matrix(), source.gene_ids, source.gene_names,
                                                 source.cell_names(0, source.shape[1]), source.feature_types))
    assert main(["encode", str(tmp_path / "in.h5"), str(tmp_path / "10x.sinr"), "--quiet", "--no-siren"]) == 0
    passes, shown = _recorded_passes(monkeypatch)
    with sinr.open(tmp_path / "whole.sinr") as m:
        names = m.matrix_names
        nnz = {name: m.matrix(name).nnz for name in names}
    assert sorted(names) == ["X", "layers/counts", "raw/X"]
    assert main(["decode", str(tmp_path / "whole.sinr"), str(tmp_path / "whole.h5ad")]) == 0
    assert main(["verify", str(tmp_path / "whole.sinr")]) == 0
    assert passes == [[f"decoding {n}", nnz[n], nnz[n]] for n in names] + [["writing", None, 0]] + \
        [[f"checking {n}", nnz[n], nnz[n]] for n in names] + [["checking the other parts", None, 0]]
    del passes[:]
    nnz = sinr.open(tmp_path / "10x.sinr").nnz
    assert main(["decode", str(tmp_path / "10x.sinr"), str(tmp_path / "10x.h5")]) == 0
    assert passes == [["decoding", nnz, nnz], ["writing", nnz, nnz]] and shown == [True] * 3
    assert (sinr.read_matrix(tmp_path / "10x.h5").matrix() != source.matrix()).nnz == 0


def test_the_bar_numbers_its_passes_and_times_one_it_cannot_count(tmp_path, encoded, capsys):
    """A bar of several passes names each 'pass i of n'; a pass of no total shows its name and elapsed
    time only, until it counts (an encode's source of unknown size); the library shows a bar when
    asked to."""
    from scinrcodec.progress import Progress

    bar = Progress(True, None, "out.npz", "nonzeros", passes=2)
    bar.begin("decoding", 10)
    bar.update(10)
    assert (bar.bar.n, bar.bar.total, bar.bar.desc.rstrip(": ")) == (10, 10, "out.npz (pass 1 of 2, decoding)")
    bar.begin("writing", None)
    assert (bar.bar.n, bar.bar.total, str(bar.bar)) == (0, None, "out.npz (pass 2 of 2, writing): 00:00")
    bar.update(3)
    assert str(bar.bar).startswith("out.npz (pass 2 of 2, writing): 3.00 nonzeros [00:00")
    bar.close()
    capsys.readouterr()
    sinr.decode(encoded, tmp_path / "out.mtx", progress=True)
    assert sinr.open(encoded).verify(progress=True)["nnz"] == sinr.open(encoded).nnz
    assert (sinr.decode(encoded, progress=True) != sinr.decode(encoded)).nnz == 0
    err = capsys.readouterr().err
    assert "out.mtx (pass 2 of 2, writing)" in err and "verifying (checking)" in err
    assert "decoding (pass 2 of 2, decoding)" in err


def test_every_argument_of_every_command_says_what_it_takes_and_its_default():
    """`sinr X --help` is where a user looks: it says what X does (it had shown the usage alone), every
    positional and option of every command has a help line, and each option whose default is a value
    says so ('encode --siren' had left auto unstated, '--normalisation' and '--coordinates' said
    nothing, every command's input and output nothing)."""
    import argparse

    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    silent, unstated = [], []
    for name, parser in commands.choices.items():
        if not parser.description:
            silent.append(name)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                silent.append(label)
            elif action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) \
                    and "default" not in action.help:
                unstated.append(label)
    assert silent == [] and unstated == []


def test_a_whole_file_reports_the_bits_per_nonzero_of_its_count_matrices(tmp_path, capsys, pbmc):
    """An .h5ad as scanpy leaves it (X normalised, the counts in a layer) keeps X through anndata's I/O:
    the encode line divided the whole file by the counts' nonzeros (20.01 bits per nonzero for pbmc4k,
    whose counts take 5.59); it gives the count matrices' own bytes and bits, as `sinr info` does."""
    import anndata

    counts = pbmc.matrix().T.tocsr().astype(np.float32)
    normalised = counts.multiply(1e4 / counts.sum(axis=1)).tocsr().log1p().astype(np.float32)
    anndata.AnnData(X=normalised, layers={"counts": counts, "again": counts.copy()}).write_h5ad(tmp_path / "in.h5ad")
    assert main(["encode", str(tmp_path / "in.h5ad"), str(tmp_path / "out.sinr"), "--no-siren", "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    names = ("layers/counts", "layers/again")
    stored = sum(sinr.open(tmp_path / "out.sinr", matrix=name).stored_bytes for name in names)
    assert f", {stored:,} of them its 2 count matrices: {stored * 8 / (2 * pbmc.nnz):.2f} bits per nonzero (" in line


def test_an_encode_of_a_matrix_without_names_says_so(tmp_path, capsys):
    """A matrix encoded alone (an .mtx without its features and barcodes beside it, an .npz) was encoded
    without a word that no gene and no cell has a name; the summary now says so, and which files an
    .mtx's names come from. GEO's GSM1_matrix.mtx.gz beside GSM1_features.tsv.gz and
    GSM1_barcodes.tsv.gz has its names (7a508f0)."""
    for name in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"):
        shutil.copyfile(SOURCE / name, tmp_path / f"GSM1_{name}")
    shutil.copyfile(SOURCE / "matrix.mtx.gz", tmp_path / "counts.mtx.gz")
    runs = {}
    for out in ("lone", "cells", "geo", "folder"):
        if out == "cells":
            shutil.copyfile(SOURCE / "barcodes.tsv.gz", tmp_path / "barcodes.tsv.gz")
        source = {"folder": SOURCE, "geo": tmp_path / "GSM1_matrix.mtx.gz"}.get(out, tmp_path / "counts.mtx.gz")
        assert main(["encode", str(source), str(tmp_path / f"{out}.sinr"), "--no-siren", "--quiet"]) == 0
        runs[out] = capsys.readouterr().out
    beside = ("(an .mtx's come from features.tsv or genes.tsv and barcodes.tsv beside it, gzipped or not, with its "
              "prefix: GSM1_barcodes.tsv.gz for GSM1_matrix.mtx.gz)")
    assert f"\nnames:    no gene or cell names {beside}: read by position ('#N')" in runs["lone"]
    assert f"\nnames:    no gene names {beside}" in runs["cells"]
    assert "names:" not in runs["folder"] and "names:" not in runs["geo"]
    assert sinr.open(tmp_path / "lone.sinr").gene_names is None
    assert sinr.open(tmp_path / "geo.sinr").gene_names == sinr.open(tmp_path / "folder.sinr").gene_names
