from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from scinrcodec import read_matrix

DATA = Path(__file__).parent / "data"
# optional packages (an extra's, or the test extra's) and what tests need each for: a base install
# (pip install scinrcodec[test] without torch, dask or fsspec) runs every other test
OPTIONAL = {"torch": "fits SIRENs (the encode extra)", "fsspec": "reads URLs or fsspec files (the remote extra)",
            "atheris": "replays the fuzzers' inputs"}


def require(package: str) -> None:
    """Skip the calling test or fixture where an optional package is not installed."""
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{OPTIONAL[package]}: needs {package}, not installed")


def needs(package: str) -> pytest.MarkDecorator:
    """The mark of a test that needs an optional package."""
    return pytest.mark.skipif(importlib.util.find_spec(package) is None,
                              reason=f"{OPTIONAL[package]}: needs {package}, not installed")
REFERENCE_DECODER = Path(__file__).resolve().parents[1] / "spec" / "reference_decoder.py"
DATASETS = ["pbmc4k_v2_soupx_half", "frozen_pbmc_donor_a_v1", "visium_spaceranger3",
            "mouse_gut_cimseq_smartseq2", "pbmc500_3p_lt_x_50genes"]
FAST = dict(siren=False, progress=False)
SMALL_SIREN = dict(siren=True, steps=40, batch=512, width=16, progress=False)
# Set by .ci/sanitize: the native core runs under AddressSanitizer, whose shadow memory needs
# terabytes of address space, so tests that cap the address space (RLIMIT_AS) cannot run as such.
SANITIZED = os.environ.get("SINR_SANITIZED") == "1"


def thinned_copies(matrix, copies: int, seed: int = 0) -> sp.csc_matrix:
    """`copies` copies of a real matrix's cells side by side, each binomially thinned with its own
    probability from U(0.5, 1), as the scale benchmark makes its inputs: many cells of a real shape."""
    m = sp.csc_matrix(matrix)
    rng = np.random.default_rng(seed)
    out = sp.hstack([sp.csc_matrix((rng.binomial(m.data.astype(np.int64), rng.uniform(0.5, 1.0)), m.indices, m.indptr),
                                   shape=m.shape) for _ in range(copies)], format="csc")
    out.eliminate_zeros()
    return out


def reference_decoder():
    """spec/reference_decoder.py as a module (loaded once): the spec transcribed, not the library."""
    if "reference_decoder" not in sys.modules:
        spec = importlib.util.spec_from_file_location("reference_decoder", REFERENCE_DECODER)
        module = importlib.util.module_from_spec(spec)
        sys.modules["reference_decoder"] = module
        spec.loader.exec_module(module)
    return sys.modules["reference_decoder"]


CONFORMANCE = Path(__file__).parent / "conformance"
@pytest.fixture(scope="session")
def matrices():
    return {name: read_matrix(DATA / name) for name in DATASETS}


@pytest.fixture(scope="session")
def pbmc(matrices):
    return matrices["pbmc4k_v2_soupx_half"]


def sinr_cli(*args: str, shell_prefix: str = "", wrapper: tuple[str, ...] = (), timeout: float = 300,
             **kwargs) -> subprocess.CompletedProcess:
    """Run `sinr ARGS` in a fresh interpreter; `shell_prefix` (e.g. 'ulimit -f 64;') runs it under bash
    first, `wrapper` (e.g. setpriv ...) runs the whole command."""
    command = [sys.executable, "-m", "scinrcodec", *map(str, args)]
    if shell_prefix:
        command = ["bash", "-c", shell_prefix + ' exec "$@"', "sinr", *command]
    command = [*wrapper, *command]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


def assert_one_error_line(result: subprocess.CompletedProcess, fragment: str = "") -> str:
    """A failure of the CLI: status 1, exactly one `sinr: error:` line on stderr, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("sinr: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary outputs (.NAME.XXXX.tmp) left in a folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


@contextlib.contextmanager
def native_setting(setter, value):
    """A process-wide setting of the extension for the block: `setter` (a _native.set_... function)
    returns the setting before, which is put back after."""
    previous = setter(value)
    try:
        yield
    finally:
        setter(previous)
