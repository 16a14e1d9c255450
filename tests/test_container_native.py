"""The C++ container reader (native/core/.../storage, the R package's reader) against the Python
reader on every conformance vector: valid ones give the same numbers and names through every read
(whole, genes, cells, entries), invalid ones the same error class with the expected message."""
from __future__ import annotations

import json
from pathlib import Path

import msgpack
import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec
from scinrcodec import _native, errors

VECTORS = Path(__file__).resolve().parent / "conformance"


def _cases(kind: str) -> list[str]:
    return sorted(d.name for d in VECTORS.iterdir()
                  if (d / "case.json").is_file() and json.loads((d / "case.json").read_text())["kind"] == kind)


def _csc(parts) -> sp.csc_matrix:
    shape, indptr, indices, values = parts
    return sp.csc_matrix((values, indices, indptr), shape=shape)


def _coo(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coo = matrix.tocoo()
    order = np.lexsort((coo.col, coo.row))
    return coo.row[order].astype(np.int64), coo.col[order].astype(np.int64), coo.data[order].astype(np.int64)


@pytest.mark.parametrize("name", _cases("valid"))
def test_valid_vector_reads_as_python_does(name):
    folder = VECTORS / name
    with np.load(folder / "expected.npz", allow_pickle=False) as z:
        shape, genes, cells, values = (z[k] for k in ("shape", "genes", "cells", "values"))
    names = json.loads((folder / "names.json").read_text())
    r = _native.ContainerReader(str(folder / "matrix.sinr"))
    m = scinrcodec.open(folder / "matrix.sinr")
    assert r.shape == tuple(shape) and r.nnz == values.size and r.mode == m.mode and r.max_error == m.max_error
    for threads in (1, 3):
        whole = _csc(r.whole(threads))
        whole.check_format(full_check=True)
        assert all(np.array_equal(a, b) for a, b in zip(_coo(whole), (genes, cells, values)))
    assert {"gene_ids": r.gene_ids(), "gene_names": r.gene_names(), "feature_types": r.feature_types(),
            "cell_names": r.cell_names()} == names
    n_genes, n_cells = (int(x) for x in shape)
    if not n_genes or not n_cells:
        return
    rng = np.random.default_rng(0)
    pick_genes = np.concatenate([genes[:2], rng.integers(0, n_genes, 3), [n_genes - 1, genes[0] if genes.size else 0]])
    pick_cells = np.concatenate([cells[:2], rng.integers(0, n_cells, 3), [n_cells - 1, cells[0] if cells.size else 0]])
    rows = _csc(r.genes(pick_genes.tolist()))
    assert rows.shape == (pick_genes.size, n_cells)
    for i, g in enumerate(pick_genes.tolist()):
        assert np.array_equal(rows[i].toarray().ravel(), m.gene(g)), f"{name}: gene {g}"
    if n_genes < 1 << 20:  # a dense cell needs one slot per gene
        cols = _csc(r.cells(pick_cells.tolist()))
        assert cols.shape == (n_genes, pick_cells.size)
        for j, c in enumerate(pick_cells.tolist()):
            assert np.array_equal(cols[:, j].toarray().ravel(), m.cell(c)), f"{name}: cell {c}"
    block = _csc(r.block(pick_genes.tolist(), pick_cells.tolist()))
    assert np.array_equal(block.toarray(), m[pick_genes, pick_cells].toarray())
    if n_genes < 1 << 20:
        assert (_csc(r.block(None, pick_cells[:2].tolist())) != _csc(r.cells(pick_cells[:2].tolist()))).nnz == 0
    for g, c in list(zip(genes[:20].tolist(), cells[:20].tolist())) + list(zip(pick_genes.tolist(), pick_cells.tolist())):
        assert r.entry(g, c) == m.get(g, c)
    with pytest.raises(errors.SinrIndexError):
        r.entry(n_genes, 0)


def _read_all(path: Path) -> None:
    r = _native.ContainerReader(str(path))
    r.whole(2)
    r.gene_ids(), r.gene_names(), r.feature_types(), r.cell_names()


@pytest.mark.parametrize("name", _cases("invalid"))
def test_invalid_vector_is_refused_as_python_refuses_it(name):
    expected = json.loads((VECTORS / name / "expected_error.json").read_text())
    with pytest.raises(errors.SinrError) as caught:
        _read_all(VECTORS / name / "matrix.sinr")
    assert type(caught.value).__name__ == expected["error"], f"{name}: {caught.value}"
    assert expected["message_contains"] in str(caught.value), f"{name}: {caught.value}"
    for fragment in expected.get("message_contains_all", []):
        assert fragment in str(caught.value)


def test_named_matrix_and_missing_file(tmp_path):
    path = str(VECTORS / "lossless_default" / "matrix.sinr")
    assert _native.ContainerReader(path, "X").name == "X"
    with pytest.raises(errors.SinrKeyError, match="no matrix named 'nope'"):
        _native.ContainerReader(path, "nope")
    with pytest.raises(errors.InvalidInputError, match="cannot read"):
        _native.ContainerReader(str(tmp_path / "absent.sinr"))
    with pytest.raises(errors.FormatError, match="is a folder"):
        _native.ContainerReader(str(tmp_path))


def _outcome_python(blob: bytes):
    try:
        m = scinrcodec.open(blob)
        whole = m.to_scipy(layout="csc")
        names = (m.gene_ids, m.gene_names, m.feature_types, m.cell_names)
        return whole, names
    except errors.SinrError as exc:
        return exc


def _outcome_native(path: Path):
    try:
        r = _native.ContainerReader(str(path))
        whole = _csc(r.whole(2))
        names = (r.gene_ids(), r.gene_names(), r.feature_types(), r.cell_names())
        n_genes, n_cells = r.shape
        if n_genes and n_cells:
            r.entry(n_genes - 1, n_cells - 1)
            r.block([0, n_genes - 1], [n_cells - 1, 0])
        return whole, names
    except errors.SinrError as exc:
        return exc


def _agree(blob: bytes, tmp_path: Path) -> None:
    path = tmp_path / "case.sinr"
    path.write_bytes(blob)
    py, cc = _outcome_python(blob), _outcome_native(path)
    if isinstance(py, Exception) or isinstance(cc, Exception):
        assert isinstance(py, Exception) and isinstance(cc, Exception), f"python: {py!r}; native: {cc!r}"
        return
    assert (py[0] != cc[0]).nnz == 0 and py[1] == cc[1]


def test_fuzz_corpus_and_mutations_agree_with_python(tmp_path):
    """The reader fuzz corpus and its crashers, and random byte flips of a valid file with their
    checksums resealed (so the flips reach the cross-field checks and the tile decoder): the C++
    reader refuses exactly what the Python reader refuses, and reads the rest to the same numbers."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fuzz.reseal import reseal

    fuzz = Path(__file__).resolve().parent / "fuzz"
    for path in sorted([*(fuzz / "corpus").iterdir(), *(fuzz / "crashes").iterdir()]):
        data = path.read_bytes()
        if data:
            _agree(reseal(data[1:]) if data[0] & 1 else data[1:], tmp_path)
    base = (VECTORS / "bands_and_tiles" / "matrix.sinr").read_bytes()
    rng = np.random.default_rng(7)
    for _ in range(300):
        blob = bytearray(base)
        for at in rng.integers(0, len(blob), rng.integers(1, 4)):
            blob[at] ^= 1 << int(rng.integers(0, 8))
        _agree(reseal(bytes(blob)), tmp_path)


def test_pread_runs_reads_every_run_and_says_where_it_could_not(tmp_path):
    """A gather's runs in one native call: run r's bytes at run_start[r] into out[run_at[r]:
    run_at[r + 1]], exactly what slicing the file gives; -1 when the file ends inside a run (the
    source then raises FileChangedError), the errno of a failed read, and ValueError for runs that
    do not fit the buffer or go backwards, before anything is read."""
    import errno
    import os

    data = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    path = tmp_path / "bytes"
    path.write_bytes(data)
    starts, lengths = [90_000, 7, 50_000, 0], [10_000, 1, 4_096, 0]
    at = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    out = np.zeros(int(at[-1]), np.uint8)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert _native.pread_runs(fd, out, at, np.array(starts, np.int64)) == 0
        assert out.tobytes() == b"".join(data[s: s + n] for s, n in zip(starts, lengths))
        assert _native.pread_runs(fd, np.zeros(10, np.uint8), np.array([0, 10], np.int64),
                                  np.array([99_995], np.int64)) == -1
        for bad_at, bad_start in (([0, 11], [0]), ([0, 5, 3], [0, 0]), ([-1, 3], [0]), ([0, 3], [-1]), ([0], [0])):
            with pytest.raises(ValueError, match="pread_runs"):
                _native.pread_runs(fd, np.zeros(10, np.uint8), np.array(bad_at, np.int64), np.array(bad_start, np.int64))
    finally:
        os.close(fd)
    assert _native.pread_runs(-1, out, at, np.array(starts, np.int64)) == errno.EBADF


def test_a_local_gather_refuses_a_range_outside_the_file_before_reading(tmp_path):
    """A local file's gather checks every run against the file's size in one step and names the
    first outside it (FormatError), before any read; runs inside give the file's bytes."""
    from scinrcodec.storage.source import GATHER_GAP, LocalFileSource

    data = bytes(range(256)) * (4 * GATHER_GAP // 256)
    path = tmp_path / "bytes"
    path.write_bytes(data)
    far = 2 * GATHER_GAP  # runs this far apart are read apart
    source = LocalFileSource(path)
    try:
        buffer, placed = source.gather(np.array([far + 9, 10, 3 * far // 2]), np.array([100, 20, 7]))
        assert [buffer[p: p + n].tobytes() for p, n in zip(placed, [100, 20, 7])] == \
            [data[far + 9: far + 109], data[10:30], data[3 * far // 2: 3 * far // 2 + 7]]
        with pytest.raises(errors.FormatError, match=f"read of 200 bytes at {len(data) - 100} lies outside the file"):
            source.gather(np.array([10, len(data) - 100, len(data) + far]), np.array([5, 200, 3]))
    finally:
        source.close()


def _nested(depth: int):
    """A value of the footer whose deepest item has `depth` (spec §3.5: the footer map is depth 0)."""
    value: object = 1
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("edit, refused", [
    (lambda f: f.update(writer=5), None),  # informative keys: ignored whatever their type (§3.5)
    (lambda f: f["matrices"][0].update(options="fast"), None),
    (lambda f: f["matrices"][0].update(stats=[1, 2]), None),
    (lambda f: f.update(x_future=_nested(64)), None),
    (lambda f: f.update(x_future=_nested(65)), "nested 65 deep"),
    (lambda f: f.update(x_future=msgpack.ExtType(5, b"abc")), "ext type"),
    (lambda f: f["matrices"][0].update(options=msgpack.ExtType(1, b"")), "ext type"),
    (lambda f: f.update(x_future=[msgpack.Timestamp(1, 0)]), "ext type"),  # ext -1: msgpack decodes it itself
])
def test_footer_values_both_readers_take_or_refuse_alike(tmp_path, edit, refused):
    """Spec §3.5 on a resealed footer: the Python and the C++ reader read a file whose informative keys
    have other types, and both refuse ext types and values nested deeper than 64, whatever the key."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fuzz.reseal import build, parse

    parts = parse((VECTORS / "bands_and_tiles" / "matrix.sinr").read_bytes())
    edit(parts.footer)
    blob = build(parts)
    _agree(blob, tmp_path)
    outcome = _outcome_python(blob)
    if refused is None:
        assert not isinstance(outcome, Exception), outcome
    else:
        assert isinstance(outcome, errors.CorruptFileError) and refused in str(outcome), outcome


def test_a_repeated_key_is_named(tmp_path):
    from scinrcodec.storage.container import unpack_map

    payload = msgpack.Packer().pack_map_pairs([("format", "sinr"), ("format", "sinr")])
    with pytest.raises(errors.CorruptFileError, match="map key 'format' appears twice"):
        unpack_map(payload, what="footer")
    with pytest.raises(errors.CorruptFileError, match="map key 'xxxx.*'... appears twice"):  # cut at 64 characters
        unpack_map(msgpack.Packer().pack_map_pairs([("x" * 10**6, 1), ("x" * 10**6, 2)]), what="footer")


@pytest.mark.parametrize("name", [n for n in _cases("invalid") if n.startswith("siren_")])
def test_a_siren_error_names_the_file_and_chunk(name):
    """The SIREN checks know no file: both readers say which file and chunk failed them."""
    path = VECTORS / name / "matrix.sinr"
    for read in (_read_all, lambda p: scinrcodec.open(p).to_scipy()):
        with pytest.raises(errors.CorruptFileError, match=r"matrix\.sinr.*chunk \d+: "):
            read(path)
