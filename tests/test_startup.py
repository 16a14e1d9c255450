"""A fresh process that only reads pays for the reader alone: no JIT, no encoder, no AnnData stack."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import DATA

HEAVY = ("numba", "anndata", "h5py", "torch", "dask", "pandas", "scanpy")
PROBE = """
import json, sys
import scinrcodec
after_import = sorted(m for m in {heavy} if m in sys.modules)
m = scinrcodec.open(sys.argv[1])
m[0, 0], m.gene(0), m.cell(0), m.to_scipy()
print(json.dumps([after_import, sorted(m for m in {heavy} if m in sys.modules)]))
"""


def test_reading_loads_no_jit_encoder_or_anndata():
    run = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), str(DATA / "spec_example.sinr")],
                         capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(Path(__file__).parents[1]), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    after_import, after_reads = json.loads(run.stdout)
    assert after_import == [] and after_reads == []


ENCODE_10X = """
import json, sys
from scinrcodec.cli import main
assert main(["encode", sys.argv[1], sys.argv[2], "--quiet"]) in (0, None)
assert main(["decode", sys.argv[2], sys.argv[3], "--quiet"]) in (0, None)
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


def test_a_10x_file_encodes_and_decodes_without_the_anndata_stack(tmp_path):
    """A whole 10x .h5 (its matrix, and an HDF5 image of its other parts) goes into a .sinr file
    and back without importing anndata, pandas or dask: their import had been most of encoding a
    small 10x file (sinr encode of pbmc500's 50 genes 0.82 s, 2.6-3.0 s with them, one busy VM)."""
    run = subprocess.run([sys.executable, "-c", ENCODE_10X.format(heavy=HEAVY), str(DATA / "pbmc500_cellranger.h5"),
                          str(tmp_path / "x.sinr"), str(tmp_path / "back.h5")],
                         capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(Path(__file__).parents[1]), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == ["h5py"]


def test_numba_is_gone():
    package = Path(__file__).parents[1] / "scinrcodec"
    for path in package.rglob("*.py"):
        assert "numba" not in path.read_text(), path
    assert "numba" not in (package.parent / "pyproject.toml").read_text()
