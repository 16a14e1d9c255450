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


def test_numba_is_gone():
    package = Path(__file__).parents[1] / "scinrcodec"
    for path in package.rglob("*.py"):
        assert "numba" not in path.read_text(), path
    assert "numba" not in (package.parent / "pyproject.toml").read_text()
