"""Conformance vectors (tests/conformance/): scinrcodec must decode every valid vector to its
expected.npz and names.json, and refuse every invalid one with exactly the error its
expected_error.json names; and make_vectors.py must reproduce every vector byte for byte.

Invalid vectors go through the whole read path (open, both full decodes, every name list,
verify) from a path, from bytes and from a file object; any exception that is not the expected
SinrError subclass fails the test. Vectors of both format versions run (v3_*: major 3).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scinrcodec
from scinrcodec import errors

from conftest import SANITIZED

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "conformance"
GENERATOR = VECTORS / "make_vectors.py"
MEMORY_LIMIT = 2 << 30  # bytes of address space for the memory-limited cases

# Invalid vectors that the reader does not refuse as it should: each stays a strict xfail until the
# reader is fixed (then the xfail fails and this entry must go).
READER_BUGS: dict[str, str] = {}


def _cases(kind: str) -> list[str]:
    if not VECTORS.is_dir():
        return []
    return sorted(d.name for d in VECTORS.iterdir()
                  if (d / "case.json").is_file() and json.loads((d / "case.json").read_text())["kind"] == kind)


VALID = _cases("valid")
INVALID = _cases("invalid")


def _load(name: str, file: str):
    return json.loads((VECTORS / name / file).read_text())


def _expected(name: str) -> dict[str, np.ndarray]:
    with np.load(VECTORS / name / "expected.npz", allow_pickle=False) as z:
        return {key: z[key] for key in ("shape", "genes", "cells", "values")}


def _sorted_coo(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coo = matrix.tocoo()
    rows, cols, data = (np.asarray(x, np.int64) for x in (coo.row, coo.col, coo.data))
    order = np.lexsort((cols, rows))
    return rows[order], cols[order], data[order]


def check_valid(folder: Path, *, memory_limited: bool) -> None:
    """Everything a reader must get right about one valid vector. With memory_limited, reads that
    allocate per gene (a genes x cells CSR, a dense cell column) are skipped."""
    name = folder.name
    exp = _expected(name)
    names = _load(name, "names.json")
    case = _load(name, "case.json")
    shape = tuple(int(x) for x in exp["shape"])
    genes, cells, values = exp["genes"], exp["cells"], exp["values"]
    blob = (folder / "matrix.sinr").read_bytes()
    m = scinrcodec.open(folder / "matrix.sinr")
    assert m.shape == shape and m.nnz == values.size and m.mode == case["mode"] and m.max_error == case["max_error"]

    for layout in ("csc",) if memory_limited else ("csc", "csr"):
        got = _sorted_coo(m.to_scipy(layout=layout))
        assert all(np.array_equal(a, b) for a, b in zip(got, (genes, cells, values))), f"{name}: {layout} decode"
    for source in (blob, io.BytesIO(blob)):  # bytes in memory and a file object read the same
        got = _sorted_coo(scinrcodec.open(source).to_scipy(layout="csc"))
        assert all(np.array_equal(a, b) for a, b in zip(got, (genes, cells, values)))

    assert {"gene_ids": m.gene_ids, "gene_names": m.gene_names, "feature_types": m.feature_types,
            "cell_names": m.cell_names} == names

    # entries: nonzeros spread over the matrix, and zeros next to them
    lookup = dict(zip(zip(genes.tolist(), cells.tolist()), values.tolist()))
    picks = np.unique(np.linspace(0, values.size - 1, min(values.size, 40)).astype(np.int64)) if values.size else []
    for idx in picks:
        g, c = int(genes[idx]), int(cells[idx])
        assert m[g, c] == values[idx]
        for gg, cc in ((g, (c + 1) % shape[1]), ((g + 1) % shape[0], c)):
            assert m[gg, cc] == lookup.get((gg, cc), 0)
    if shape[0] and shape[1]:
        assert m[shape[0] - 1, shape[1] - 1] == lookup.get((shape[0] - 1, shape[1] - 1), 0)
        assert m[0, 0] == lookup.get((0, 0), 0)

    # genes (rows over cells): a few expressed ones, the last gene, and an unexpressed one if any
    expressed = np.unique(genes)
    rows = set(expressed[np.linspace(0, expressed.size - 1, min(expressed.size, 4)).astype(np.int64)].tolist()) \
        if expressed.size else set()
    rows.update([shape[0] - 1] if shape[0] else [])
    unexpressed = np.setdiff1d(np.arange(min(shape[0], expressed.size + 1)), expressed)
    rows.update(unexpressed[:1].tolist())
    for g in sorted(rows):
        dense = np.zeros(shape[1], np.int64)
        dense[cells[genes == g]] = values[genes == g]
        assert np.array_equal(m.gene(g), dense), f"{name}: gene {g}"

    # cells (columns over genes), and one submatrix
    if not memory_limited and shape[1]:
        for c in sorted({0, shape[1] // 2, shape[1] - 1} | set(cells[:1].tolist())):
            dense = np.zeros(shape[0], np.int64)
            dense[genes[cells == c]] = values[cells == c]
            assert np.array_equal(m.cell(c), dense), f"{name}: cell {c}"
    if shape[0] and shape[1]:
        sub_genes = np.unique(np.concatenate([genes[:3], [shape[0] - 1]])).astype(np.int64)
        sub_cells = np.unique(np.concatenate([cells[:3], [0, shape[1] - 1]])).astype(np.int64)
        block = m[sub_genes, sub_cells].toarray()
        want = np.array([[lookup.get((g, c), 0) for c in sub_cells.tolist()] for g in sub_genes.tolist()])
        assert np.array_equal(block, want)

    # names as keys
    if names["gene_ids"] and expressed.size:
        g = int(expressed[0])
        if names["gene_ids"].count(names["gene_ids"][g]) == 1 and (names["gene_names"] or []).count(
                names["gene_ids"][g]) <= 1:
            assert np.array_equal(m.gene(names["gene_ids"][g]), m.gene(g))
    if names["cell_names"] and values.size:
        c = int(cells[0])
        if names["cell_names"].count(names["cell_names"][c]) == 1:
            assert m.get(int(genes[0]), names["cell_names"][c]) == values[0]
            if not memory_limited:
                assert np.array_equal(m.cell(names["cell_names"][c]), m.cell(c))

    for key in case.get("stats_dropped", []):
        assert key not in m.stats
    if case.get("stats_dropped"):
        assert {"position_bits", "value_bits"} <= set(m.stats)
        assert all(np.isfinite(v) for v in m.stats.values())

    report = m.verify()
    assert report["nnz"] == values.size

    # summaries of both axes from one pass, against the entries (they hold an item per gene)
    if not memory_limited:
        for axis, items, n in ((0, cells, shape[1]), (1, genes, shape[0])):
            assert np.array_equal(m.count_nonzero(axis), np.bincount(items, minlength=n))
            assert np.array_equal(m.sum(axis), np.bincount(items, weights=values, minlength=n).astype(np.int64))
            squares = np.bincount(items, weights=values.astype(np.float64) ** 2, minlength=n)
            entries = shape[axis]  # axis 0: each cell over the genes
            if entries:
                mean = np.bincount(items, weights=values, minlength=n) / entries
                np.testing.assert_allclose(m.var(axis), squares / entries - mean * mean, rtol=1e-9, atol=1e-9)
        assert m.sum() == int(values.sum()) and m.count_nonzero() == values.size


@pytest.mark.parametrize("name", VALID)
def test_valid_vector(name):
    case = _load(name, "case.json")
    if not case.get("memory_limited"):
        check_valid(VECTORS / name, memory_limited=False)
        return
    if SANITIZED:  # ASan cannot run under an address-space cap: the same checks, in this process
        check_valid(VECTORS / name, memory_limited=True)
        return
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS is enforced on Linux only")
    # in a fresh process whose address space is capped: opening and decoding must not allocate per gene
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, __file__, "--memory-limited", str(VECTORS / name)],
                         capture_output=True, text=True, timeout=300, cwd=HERE.parent, env=env)
    assert run.returncode == 0, run.stdout + run.stderr


def _generator():
    """The vector generator as a module: its file surgery helpers and its `outcome` of a file."""
    sys.path.insert(0, str(VECTORS))
    try:
        import make_vectors
    finally:
        sys.path.remove(str(VECTORS))
    return make_vectors


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=READER_BUGS[n]))
                                  if n in READER_BUGS else n for n in INVALID])
def test_invalid_vector(name):
    expected = _load(name, "expected_error.json")
    cls = getattr(errors, expected["error"])
    path = VECTORS / name / "matrix.sinr"
    blob = path.read_bytes()
    for source in (path, blob, io.BytesIO(blob)):
        exc = _generator().outcome(source)
        assert exc is not None, f"{name}: read without error"
        assert type(exc) is cls, f"{name}: {type(exc).__name__}: {exc}"
        assert expected["message_contains"] in str(exc), f"{name}: {exc}"
        for fragment in expected.get("message_contains_all", []):
            assert fragment in str(exc), f"{name}: {exc}"


@pytest.mark.parametrize("source", ["path", "bytes"])
def test_a_selection_that_decodes_whole_chunks_checks_their_checksum(source):
    """W1 (spec §6.6): a read that decodes a whole chunk checks its content checksum, whichever way it
    was asked: every cell named in a list, every gene over every cell (a chunk's every band), through
    the core (a local file) or the Python reader (bytes); the same reads of the valid file are exact."""
    corrupt, valid = (VECTORS / name / "matrix.sinr" for name in ("chunk_checksum", "bands_and_tiles"))
    opened = (lambda p: scinrcodec.open(p)) if source == "path" else (lambda p: scinrcodec.open(p.read_bytes()))
    with opened(valid) as m:
        n_genes, n_cells = m.shape
        genes, cells = list(range(n_genes)), list(range(n_cells))
        expected = m.to_scipy()
    reads = {"m[:, cells]": lambda m: m[:, cells], "m[genes, cells]": lambda m: m[genes, cells],
             "m.select(genes, cells)": lambda m: m.select(genes, cells), "m.T[cells, :]": lambda m: m.T[cells, :].T}
    for what, read in reads.items():
        with opened(valid) as m:
            assert (read(m) != expected).nnz == 0, what
        with opened(corrupt) as m, pytest.raises(errors.CorruptFileError, match="fails its checksum"):
            read(m)
    if source == "path":  # the core's own reads, as R's x[genes, ] and x[, cells] make them
        core = scinrcodec._native.ContainerReader(str(corrupt))
        core.set_keep_bytes(0)  # as the Python reader keeps it: no block decoded in runs
        for read in (lambda: core.genes(genes), lambda: core.cells(cells)):
            with pytest.raises(errors.CorruptFileError, match="fails its checksum"):
                read()


# Spec §9.3: the rules a chunk's names derive from, which hold before any of its names is returned (a
# chunk breaking only others, K11 say, may still give its names; a read of its bands or tiles refuses).
NAME_RULES = frozenset({"K1", "K2", "K3", "K5", "K6", "CP1", "CB1", "CB2", "CB3"})


def _name_rule_vectors() -> list[str]:
    from test_reference_decoder import EXPECTED_RULE  # the rule each invalid vector breaks first

    return [name for name in INVALID if EXPECTED_RULE.get(name) in NAME_RULES]


@pytest.mark.parametrize("name", _name_rule_vectors())
def test_cell_names_refuse_a_chunk_their_rules_refuse(name):
    expected = _load(name, "expected_error.json")
    try:
        m = scinrcodec.open(VECTORS / name / "matrix.sinr")
    except errors.SinrError as exc:  # refused at open: no name can come back
        assert type(exc).__name__ == expected["error"], f"{name}: {exc}"
        return
    with m:
        if not m._index.has_cell_names:
            assert m.cell_names is None
            return
        with pytest.raises(getattr(errors, expected["error"])):
            m.cell_names


def test_cell_names_of_a_chunk_whose_tiles_are_corrupt():
    """Spec §9.3: names derive from a chunk's header and name section, so a chunk whose tile table
    breaks K11 gives them (without loading its tables), while every read of its values refuses."""
    with scinrcodec.open(VECTORS / "tile_nnz_not_adding_up" / "matrix.sinr") as m:
        names = json.loads((VECTORS / "bands_and_tiles" / "names.json").read_text())["cell_names"]
        assert m.cell_names == names
        with pytest.raises(errors.CorruptFileError):
            m.to_scipy()


@pytest.mark.parametrize("name", INVALID)
def test_summaries_refuse_what_a_whole_decode_refuses(name):
    """The one-pass summaries read every chunk as a whole decode does: where that decode refuses an
    opened invalid vector, they refuse it too (a typed error), and where it reads, they agree."""
    try:
        m = scinrcodec.open(VECTORS / name / "matrix.sinr")
    except errors.SinrError:
        return
    with m:
        try:
            whole = m.to_scipy(layout="csc")
        except errors.SinrError:
            with pytest.raises(errors.SinrError):
                m.sum(axis=0)
            return
        assert np.array_equal(m.sum(axis=0), np.asarray(whole.sum(axis=0)).ravel())
        assert np.array_equal(m.count_nonzero(axis=1), np.diff(whole.tocsr().indptr))


def test_every_decoding_read_refuses_more_genes_than_the_names_hold():
    """A footer claiming one more gene than its names hold is refused by each read that trusts the
    shape, on an open that has read no names (to_scipy had read gene 51 as an empty gene): the
    package's reads of a path and of bytes, the summaries, and the core's reads, R's among them."""
    from scinrcodec import _native

    path = VECTORS / "shape_more_genes_than_names" / "matrix.sinr"
    refusal = "holds 50 names, expected 51"
    reads = {"csr": lambda m: m.to_scipy(), "csc": lambda m: m.to_scipy(layout="csc"),
             "sums of genes": lambda m: m.sum(axis=1), "cells_block": lambda m: m.cells_block(0, 1),
             "an entry": lambda m: m[50, 0], "a cell": lambda m: m[:, [0]], "a gene": lambda m: m.gene(0)}
    for source in (path, path.read_bytes()):
        for what, read in reads.items():
            with scinrcodec.open(source) as m, pytest.raises(errors.CorruptFileError, match=refusal):
                read(m)
                pytest.fail(f"{what} read {m.shape[0]} genes")
    core_reads = {"whole": lambda r: r.whole(), "entry": lambda r: r.entry(50, 0), "cells": lambda r: r.cells([0]),
                  "moments": lambda r: r.moments()}
    for what, read in core_reads.items():
        with pytest.raises(errors.CorruptFileError, match=refusal):
            read(_native.ContainerReader(str(path)))
            pytest.fail(f"the core's {what} read 51 genes")


def test_a_read_of_a_tiles_last_row_checks_its_ending():
    """v3_tile_final_state's damaged tile 0 holds genes 5, 29 and 40 (40 its last row) of 11 cells,
    every entry nonzero. A read of gene 40 decodes every symbol of the tile, so rule T7 applies
    (spec §9.4, §6.1.6): it had been checked only where the read kept the tile's first row too, and
    gene 40, its entries and m[[40], :] came back as wrong numbers (113 for 25) where a cell read
    refused the tile."""
    path = VECTORS / "v3_tile_final_state" / "matrix.sinr"
    for source in (path, path.read_bytes()):
        for what, read in (("gene", lambda m: m.gene(40)), ("rows", lambda m: m[[40], :]),
                           ("entry", lambda m: m[40, 2]), ("genes' sum", lambda m: m[[40], :].sum())):
            with scinrcodec.open(source) as m, pytest.raises(errors.CorruptFileError, match="does not end where"):
                read(m)
                pytest.fail(f"the {what} read returned numbers")


@pytest.mark.parametrize("name", INVALID)
def test_verify_refuses_invalid_vector(name, capsys):
    """`sinr verify` alone (no decode before it) fails on every invalid vector, with one line naming
    the problem, and the library's verify of every matrix raises the vector's category of error
    (its message may name another of the file's faults: verify checks in its own order)."""
    from scinrcodec.cli import main
    from scinrcodec.wholefile.describe import verify_file

    expected = _load(name, "expected_error.json")
    path = VECTORS / name / "matrix.sinr"
    with pytest.raises(getattr(errors, expected["error"])):
        with scinrcodec.open(path) as m:
            verify_file(m)
    assert main(["verify", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("sinr: error: ") and err.count("\n") == 1, err


def test_vector_folders_are_complete():
    """Every case has its files, and the manifest names exactly the files on disk."""
    assert VALID and INVALID
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    assert sorted(manifest["cases"]) == sorted(VALID + INVALID)
    for name, entry in manifest["cases"].items():
        folder = VECTORS / name
        need = {"matrix.sinr", "case.json"} | ({"expected.npz", "names.json"} if entry["kind"] == "valid"
                                               else {"expected_error.json"})
        assert {f.name for f in folder.iterdir()} == need
        for file, digest in entry["files"].items():
            data = (folder / file).read_bytes()
            assert digest == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, f"{name}/{file}"
    for name in INVALID:
        expected = _load(name, "expected_error.json")
        assert expected["error"] in ("CorruptFileError", "FormatError", "UnsupportedVersionError")


def test_parse_and_rebuild_round_trip():
    """The generator's file surgery helpers rebuild every valid vector byte for byte (so each invalid
    vector differs from its base only by its edit)."""
    mv = _generator()
    for name in VALID:
        blob = (VECTORS / name / "matrix.sinr").read_bytes()
        assert mv.build_file(mv.parse_file(blob)) == blob, name


def _regenerate(out: Path, *extra: str) -> Path:
    run = subprocess.run([sys.executable, str(GENERATOR), "--out", str(out), *extra], capture_output=True, text=True,
                         timeout=600, cwd=HERE.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def _differences(out: Path, needs_torch: bool) -> list[str]:
    diffs = []
    for name in VALID + INVALID:
        if _load(name, "case.json").get("needs_torch", False) != needs_torch:
            continue
        if not (out / name).is_dir():
            diffs.append(f"{name}: not regenerated")
            continue
        for file in sorted((VECTORS / name).iterdir()):
            fresh = out / name / file.name
            if not fresh.exists() or fresh.read_bytes() != file.read_bytes():
                diffs.append(f"{name}/{file.name}")
    return diffs


def test_vectors_are_reproducible(tmp_path):
    """A fresh run of make_vectors.py --no-torch (about 4 s) reproduces, byte for byte, every vector
    that needs no SIREN fit: all but the inr_only_*, siren_force_* cases and the invalid cases made
    from them (case.json "needs_torch"), which test_siren_vectors_are_reproducible covers."""
    assert _differences(_regenerate(tmp_path, "--no-torch"), needs_torch=False) == []


@pytest.mark.skipif(os.environ.get("SINR_CONFORMANCE_SIREN") != "1",
                    reason="slow (a full run of make_vectors.py, SIREN fits included, about 10 s): set "
                           "SINR_CONFORMANCE_SIREN=1")
def test_siren_vectors_are_reproducible(tmp_path):
    """The vectors with a SIREN fit (torch on the CPU, one thread) are reproduced byte for byte too,
    and so is the manifest. A different CPU or torch build could round a trained weight
    differently: then regenerate the vectors."""
    pytest.importorskip("torch")
    out = _regenerate(tmp_path)
    assert _differences(out, needs_torch=True) == []
    assert (out / "manifest.json").read_bytes() == (VECTORS / "manifest.json").read_bytes()


if __name__ == "__main__":  # the memory-limited check, run by test_valid_vector in a capped process
    if sys.argv[1:2] == ["--memory-limited"]:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        check_valid(Path(sys.argv[2]), memory_limited=True)
        print("ok")


def test_cell_names_promised_but_missing_are_refused():
    """has_cell_names true over chunks without `cells.names` (K6): the names alone, read without
    loading the chunks, are refused as loading them is."""
    mv = _generator()
    blob = mv.edit((VECTORS / "no_names" / "matrix.sinr").read_bytes(),
                   lambda parts: parts.matrix.update(has_cell_names=True))
    with scinrcodec.open(blob) as m, pytest.raises(errors.CorruptFileError, match="cell names contradict"):
        m.cell_names
    with scinrcodec.open(blob) as m, pytest.raises(errors.CorruptFileError, match="cell names contradict"):
        m.to_scipy()
