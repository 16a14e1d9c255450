"""The sinr command: every subcommand, and one clear line with a non-zero exit for every error."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import DATA
from scinrcodec.cli import main
from scinrcodec.container import PREAMBLE

SOURCE = str(DATA / "pbmc4k_v2_soupx_half")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scinrcodec", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "x.sinr"
    assert main(["encode", SOURCE, str(out), "--no-siren", "--quiet"]) == 0
    return out


def test_encode_info_get_decode(tmp_path, encoded, capsys, pbmc):
    assert main(["info", str(encoded)]) == 0
    info = capsys.readouterr().out
    for part in ("bitmap", "values", "weights", "names", "permutations", "header", "bits/nonzero", "lossless"):
        assert part in info
    gene = int(pbmc.counts.getnnz(axis=1).argmax())
    cell = int(pbmc.counts[gene].indices[0])
    expected = pbmc.counts[gene, cell]
    for g, c in ((str(gene), str(cell)), (pbmc.gene_names[gene], pbmc.cell_names[cell]),
                 (pbmc.gene_ids[gene], str(cell))):
        assert main(["get", str(encoded), g, c]) == 0
        assert capsys.readouterr().out.strip() == str(expected)
    assert main(["decode", str(encoded), str(tmp_path / "out.h5ad")]) == 0
    assert (tmp_path / "out.h5ad").exists()


def test_encode_with_siren_shows_progress(tmp_path):
    out = tmp_path / "s.sinr"
    result = run("encode", SOURCE, str(out), "--steps", "20", "--width", "8")
    assert result.returncode == 0, result.stderr
    assert "fitting SIRENs" in result.stderr and "wrote" in result.stdout


def test_lossy_modes_from_cli(tmp_path, capsys):
    for flag in (["--max-error", "2"], ["--inr-only", "--steps", "20"]):
        out = tmp_path / f"{flag[0][2:]}.sinr"
        assert main(["encode", SOURCE, str(out), "--quiet", *flag]) == 0
        assert main(["info", str(out)]) == 0
    assert "exact:" in capsys.readouterr().out


def _assert_clean_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sinr: error:"), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_errors_are_one_line(tmp_path, encoded):
    negative = tmp_path / "neg.mtx"
    negative.write_text("%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 -3\n")
    fractional = tmp_path / "frac.mtx"
    fractional.write_text("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 0.5\n")
    nan = tmp_path / "nan.mtx"
    nan.write_text("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 nan\n")
    garbage = tmp_path / "garbage.h5ad"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    blob = encoded.read_bytes()
    corrupt = tmp_path / "corrupt.sinr"
    corrupt.write_bytes(blob[:-100] + bytes(b ^ 0xFF for b in blob[-100:]))
    truncated = tmp_path / "truncated.sinr"
    truncated.write_bytes(blob[: len(blob) // 2])
    future = tmp_path / "future.sinr"
    future.write_bytes(blob[:8] + (9).to_bytes(2, "little") + blob[10:])
    not_sinr = tmp_path / "plain.sinr"
    not_sinr.write_bytes(b"hello world, this is not a sinr file at all")
    exists = tmp_path / "exists.sinr"
    exists.write_bytes(b"x")
    cases = [
        (["encode", str(negative), str(tmp_path / "a.sinr")], "negative"),
        (["encode", str(fractional), str(tmp_path / "b.sinr")], "non-integer"),
        (["encode", str(nan), str(tmp_path / "c.sinr")], "NaN"),
        (["encode", str(garbage), str(tmp_path / "d.sinr")], "unreadable"),
        (["encode", str(tmp_path / "nothing"), str(tmp_path / "e.sinr")], "no such file"),
        (["encode", SOURCE, str(exists), "--no-siren"], "--force"),
        (["decode", str(corrupt), str(tmp_path / "f.h5ad")], "corrupt"),
        (["info", str(truncated)], "truncated"),
        (["get", str(truncated), "0", "0"], "truncated"),
        (["info", str(future)], "version 9"),
        (["info", str(not_sinr)], "not a .sinr file"),
        (["decode", str(encoded), str(tmp_path / "g.xyz")], "unknown output format"),
        (["decode", str(encoded), str(encoded)], "already exists"),
        (["get", str(encoded), "NO_SUCH_GENE", "0"], "no gene named"),
        (["get", str(encoded), "0", "999999"], "out of range"),
    ]
    for args, fragment in cases:
        _assert_clean_error(run(*args), fragment)
    assert exists.read_bytes() == b"x"
    assert not (tmp_path / "f.h5ad").exists()


def test_demo_runs(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "round trip: exact" in out and "10x HDF5" in out


def test_header_preamble_size_is_documented():
    assert PREAMBLE.size == 20
