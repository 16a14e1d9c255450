"""io.h5chunks: slices of gzip'd HDF5 datasets inflated by libdeflate equal h5py's, for every
filter pipeline and dtype a matrix's arrays come in; anything else is read by h5py; a damaged
chunk is an InvalidInputError, never wrong numbers."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from scinrcodec.errors import InvalidInputError
from scinrcodec.io.h5chunks import DatasetSlices, _inflatable_pipeline

N, CHUNK = 10_007, 1_000  # the last chunk is partial
RANGES = [(0, N), (0, 1), (999, 1001), (1000, 2000), (2500, 2501), (3, 9_999), (9_990, N), (5, 5)]


def _values(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.poisson(2.0, N) * rng.integers(1, 5, N)).astype(dtype)


@pytest.fixture
def h5(tmp_path):
    f = h5py.File(tmp_path / "arrays.h5", "w")
    yield f
    f.close()


@pytest.mark.parametrize("dtype", ["<i4", "<i8", "<u2", ">i4", "<f4", "<f8", "u1"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_slices_equal_h5py(h5, dtype, shuffle):
    ds = h5.create_dataset("x", data=_values(dtype), chunks=(CHUNK,), compression="gzip", compression_opts=4,
                           shuffle=shuffle)
    slices = DatasetSlices(ds, "test")
    assert _inflatable_pipeline(ds) is not None
    for lo, hi in RANGES:  # consecutive reads share their boundary chunk
        got = slices.read(lo, hi)
        assert got.dtype == ds.dtype and np.array_equal(got, ds[lo:hi])


@pytest.mark.parametrize("options", [dict(compression="lzf"), dict(compression="gzip", fletcher32=True),
                                     dict(chunks=None), dict(chunks=(CHUNK,))])
def test_other_layouts_read_by_h5py(h5, options):
    ds = h5.create_dataset("x", data=_values("<i8"), **options)
    assert _inflatable_pipeline(ds) is None
    slices = DatasetSlices(ds, "test")
    for lo, hi in RANGES:
        assert np.array_equal(slices.read(lo, hi), ds[lo:hi])


def test_unwritten_chunks_hold_the_fill_value(h5):
    ds = h5.create_dataset("x", shape=(N,), dtype="<i4", chunks=(CHUNK,), compression="gzip", shuffle=True,
                           fillvalue=3)
    ds[2000:3000] = np.arange(1000)
    slices = DatasetSlices(ds, "test")
    assert np.array_equal(slices.read(0, N), ds[:])


def test_damaged_chunk_is_an_error(tmp_path):
    path = tmp_path / "damaged.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=_values("<i8"), chunks=(CHUNK,), compression="gzip", shuffle=True)
    with h5py.File(path, "r") as f:
        info = f["x"].id.get_chunk_info(3)
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset + info.size // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with h5py.File(path, "r") as f:
        slices = DatasetSlices(f["x"], "damaged.h5")
        assert np.array_equal(slices.read(0, 3 * CHUNK), f["x"][: 3 * CHUNK])
        with pytest.raises(InvalidInputError, match="damaged.h5: chunk 3 of /x"):
            slices.read(3 * CHUNK, 3 * CHUNK + 10)
