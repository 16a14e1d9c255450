"""Reliability: damaged files are rejected, round trips hold for any matrix, writes are safe,
readers share files across threads and leak nothing."""
from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import scinrcodec as sinr
from conftest import FAST, SMALL_SIREN
from scinrcodec.container import PREAMBLE
from scinrcodec.reader import SinrMatrix

MODES = {"lossless": FAST, "max-error": dict(mode="max-error", max_error=2, **FAST),
         "inr-only": dict(mode="inr-only", **SMALL_SIREN), "siren": SMALL_SIREN}


@pytest.fixture(scope="module")
def files(tmp_path_factory, pbmc):
    folder = tmp_path_factory.mktemp("modes")
    out = {}
    for name, options in MODES.items():
        path = folder / f"{name}.sinr"
        if name == "siren":
            import scinrcodec.encoder as enc

            saved, enc.SIREN_META_BITS = enc.SIREN_META_BITS, -10**9
            try:
                sinr.encode(pbmc, path, tile_nnz=64, patch_nnz=512, **options)
            finally:
                enc.SIREN_META_BITS = saved
        else:
            sinr.encode(pbmc, path, tile_nnz=64, patch_nnz=512, **options)
        out[name] = path.read_bytes()
    return out


def _read_all(blob: bytes) -> None:
    m = SinrMatrix(blob)
    m.to_scipy()
    m.gene(0), m.cell(0), m[1, 2], m[:5, :5]
    _ = m.gene_names, m.gene_ids, m.cell_names, m.feature_types


def _layout(blob: bytes) -> tuple[int, list[int]]:
    length = struct.unpack_from("<I", blob, 12)[0]
    header = msgpack.unpackb(blob[PREAMBLE.size: PREAMBLE.size + length], raw=False)
    start = PREAMBLE.size + length
    return start, [start + entry[1] for entry in header["sections"]] + [len(blob)]


def test_every_kind_of_damage_is_detected(files):
    """Byte flips (whole header and section table, 2,000+ section bytes), truncations at every
    section boundary and 200 random offsets, and appended garbage: every one raises SinrError."""
    rng = np.random.default_rng(11)
    tried = 0
    for name, blob in files.items():
        data_start, boundaries = _layout(blob)
        flips = list(range(data_start)) + rng.integers(data_start, len(blob), 600).tolist()
        cuts = boundaries[:-1] + rng.integers(0, len(blob), 200).tolist()
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
        print(f"{name}: {len(flips)} byte flips ({data_start} header/table bytes), {len(cuts)} truncations, "
              f"3 appends: all detected")
    assert tried > 2400 + 4 * 200


def test_damaged_files_give_one_line_from_the_cli(tmp_path, files):
    rng = np.random.default_rng(3)
    blob = files["siren"]
    data_start, boundaries = _layout(blob)
    for k, offset in enumerate([5, 40, data_start + 3] + rng.integers(data_start, len(blob), 5).tolist()):
        damaged = bytearray(blob)
        damaged[offset] ^= 0x10
        path = tmp_path / f"d{k}.sinr"
        path.write_bytes(bytes(damaged))
        for command in (["info", str(path)], ["decode", str(path), str(tmp_path / f"o{k}.npz")]):
            result = subprocess.run([sys.executable, "-m", "scinrcodec", *command], capture_output=True, text=True)
            assert result.returncode == 1 and "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / f"o{k}.npz").exists()


def test_fuzz_findings_stay_fixed():
    for path in sorted((Path(__file__).parent / "fuzz" / "crashes").glob("*")):
        if path.name.startswith("."):
            continue
        from fuzz.fuzz_reader import exercise, repair_checksums

        data = path.read_bytes()
        exercise(repair_checksums(data[1:]) if data and data[0] & 1 else data[1:])


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


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
EDGE_CASES = [sp.csr_matrix((0, 0), dtype=np.int64), sp.csr_matrix(np.array([[5]])),
              sp.csr_matrix(np.array([[0, 3, 0, 0, 9, 1]])), sp.csr_matrix(np.zeros((4, 1), dtype=np.int64)),
              sp.csr_matrix(np.full((6, 5), 3)), sp.csr_matrix(np.array([[0, 2**31 - 1], [0, 0]]))]


@PROPERTY
@given(count_matrices(), st.sampled_from([1, 3, 64]))
@example(EDGE_CASES[0], 1)
@example(EDGE_CASES[1], 1)
@example(EDGE_CASES[2], 3)
@example(EDGE_CASES[3], 3)
@example(EDGE_CASES[4], 64)
@example(EDGE_CASES[5], 1)
def test_lossless_round_trip_and_random_access_agree(tmp_path, matrix, tile_nnz):
    out = tmp_path / "p.sinr"
    sinr.encode(matrix, out, force=True, tile_nnz=tile_nnz, patch_nnz=4 * tile_nnz, **FAST)
    with sinr.open(out) as m:
        decoded = m.to_scipy()
        assert decoded.shape == matrix.shape and (decoded != matrix).nnz == 0
        dense = matrix.toarray()
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
    sinr.encode(matrix, out, force=True, mode="max-error", max_error=bound, tile_nnz=8, patch_nnz=32, **FAST)
    with sinr.open(out) as m:
        decoded = m.to_scipy().toarray()
        dense = matrix.toarray()
        assert np.all(np.abs(decoded - dense) <= bound)
        assert np.array_equal(decoded == 0, dense == 0)


# ------------------------------------------------------------------------- safe writes, threads

def test_killed_encode_leaves_no_output(tmp_path, pbmc):
    source = tmp_path / "in.h5ad"
    sinr.write_matrix(source, pbmc)
    before = source.read_bytes()
    out = tmp_path / "out.sinr"
    proc = subprocess.Popen([sys.executable, "-m", "scinrcodec", "encode", str(source), str(out),
                             "--steps", "100000", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]


def test_one_matrix_read_from_many_threads(tmp_path, pbmc):
    out = tmp_path / "t.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, patch_nnz=512, **FAST)
    dense = pbmc.counts.toarray()
    errors = []
    with sinr.open(out) as m:
        def work(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                for _ in range(60):
                    i, j = int(rng.integers(dense.shape[0])), int(rng.integers(dense.shape[1]))
                    assert m[i, j] == dense[i, j]
                    assert np.array_equal(m.gene(i), dense[i])
                    assert np.array_equal(m.cell(j), dense[:, j])
                    assert m.gene_names[i] == pbmc.gene_names[i]
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
