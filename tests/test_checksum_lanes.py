"""The content checksum's batched kernel (native/core/src/checksum.cpp: AVX-512, AVX2 and scalar
lanes chosen at run time) gives the spec's sum on every path the CPU has: against the reference
decoder's own hash on random nonzeros of every length around the lanes' widths, and through whole
reads of real files, which verify every chunk's checksum (a wrong sum fails them as corrupt).

The path is a process-wide setting of the extension: _native.set_checksum_path('scalar' | 'avx2' |
'avx512' | 'auto') refuses a path the CPU lacks; _native.checksum_path() says which runs now."""
from __future__ import annotations

import numpy as np
import pytest

import scinrcodec
from conftest import DATA, native_setting, reference_decoder
from scinrcodec import _native
from scinrcodec.codec.checksum import content_checksum


def _available() -> list[str]:
    paths = []
    for path in ("scalar", "avx2", "avx512"):
        try:
            previous = _native.set_checksum_path(path)
        except ValueError:
            continue
        _native.set_checksum_path(previous)
        paths.append(path)
    return paths


PATHS = _available()


def checksum_path(path: str):
    return native_setting(_native.set_checksum_path, path)


def test_scalar_is_always_there_and_auto_runs_the_widest():
    assert PATHS[0] == "scalar"
    with checksum_path("auto"):
        assert _native.checksum_path() == PATHS[-1]
    with pytest.raises(ValueError, match="must be"):
        _native.set_checksum_path("sse")


@pytest.mark.parametrize("path", PATHS)
def test_every_path_sums_the_specs_hash(path):
    rng = np.random.default_rng(11)
    for n in (0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 1023, 1024, 1025, 3000):
        genes = rng.integers(0, 2**31 - 1, n)
        cells = rng.integers(0, 2**32, n)  # the cell's high bits drop out of g + c * 2**32 mod 2**64
        values = rng.integers(-2**31, 2**31, n).astype(np.int32)  # sign-extended, as the spec's
        values[:2] = [np.iinfo(np.int32).min, np.iinfo(np.int32).max][:n]
        expected = sum(reference_decoder().content_hash(int(g), int(c), int(v) & (2**64 - 1)) for g, c, v in zip(genes, cells, values))
        with checksum_path(path):
            assert int(content_checksum(genes, cells, values)) == expected % 2**64, n


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("layout", ["csr", "csc"])
def test_whole_reads_verify_on_every_path(path, layout, tmp_path):
    """Both placing kernels checksum what they place through the batched kernel."""
    out = tmp_path / "x.sinr"
    scinrcodec.encode(DATA / "pbmc4k_v2_soupx_half", out, siren="never", progress=False, format_version=3,
                      chunk_cells=700, tile_nnz=64)
    with checksum_path("scalar"):
        expected = scinrcodec.open(out).to_scipy(layout=layout)
    with checksum_path(path):
        got = scinrcodec.open(out, jobs=2).to_scipy(layout=layout)
    assert (got != expected).nnz == 0 and got.nnz == expected.nnz > 0
