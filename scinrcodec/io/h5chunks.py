"""Slices of a 1-D HDF5 dataset, inflated by libdeflate where its chunks allow.

Cell Ranger and anndata write a matrix's arrays gzip'd (deflate, usually after the byte shuffle),
and h5py inflates them with zlib: reading a 10x .h5 cost the encoder more than encoding it, since
the encoder reads every value twice (gene statistics, then chunks). libdeflate inflates the same
chunks about 5-8 times faster. A dataset whose layout or filters are anything else (contiguous,
another compressor, a checksum filter) is read by h5py as before, and so is a chunk stored with a
filter skipped or not stored at all.
"""
from __future__ import annotations

import math

import deflate
import numpy as np

from ..errors import InvalidInputError
from ..storage.container import items_from_planes

H5Z_FILTER_DEFLATE = 1
H5Z_FILTER_SHUFFLE = 2
INFLATED_PIPELINES = ((H5Z_FILTER_DEFLATE,), (H5Z_FILTER_SHUFFLE, H5Z_FILTER_DEFLATE))  # in the order HDF5 applies them


class DatasetSlices:
    """`read(lo, hi)`: elements lo..hi-1 of a 1-D dataset. Consecutive reads share the chunk at
    their boundary: it is inflated once."""

    def __init__(self, ds, what: str) -> None:
        self._ds, self._what = ds, what
        self._pipeline = _inflatable_pipeline(ds)
        self._cached: tuple[int, np.ndarray] | None = None

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Elements lo..hi-1, each chunk they touch inflated once."""
        if self._pipeline is None or hi <= lo:
            return self._ds[lo:hi]
        size = self._ds.chunks[0]
        out = np.empty(hi - lo, dtype=self._ds.dtype)
        for i in range(lo // size, (hi - 1) // size + 1):
            a, b = max(lo, i * size), min(hi, (i + 1) * size)
            out[a - lo: b - lo] = self._chunk(i)[a - i * size: b - i * size]
        return out

    def _chunk(self, i: int) -> np.ndarray:
        if self._cached is not None and self._cached[0] == i:
            return self._cached[1]
        values = self._inflated(i)
        self._cached = (i, values)
        return values

    def _inflated(self, i: int) -> np.ndarray:
        size, dtype = self._ds.chunks[0], self._ds.dtype
        try:
            mask, raw = self._ds.id.read_direct_chunk((i * size,))
        except (OSError, ValueError, KeyError, RuntimeError):
            mask = -1  # not stored (the fill value): h5py knows what it holds
        if mask != 0:
            return self._ds[i * size: (i + 1) * size]
        n_bytes = size * dtype.itemsize
        try:
            inflated = deflate.zlib_decompress(raw, n_bytes)
        except deflate.DeflateError as exc:
            raise InvalidInputError(f"{self._what}: chunk {i:,} of {self._ds.name} does not inflate") from exc
        if len(inflated) != n_bytes:
            raise InvalidInputError(f"{self._what}: chunk {i:,} of {self._ds.name} inflates to {len(inflated):,} "
                                    f"bytes, not {n_bytes:,}")
        if self._pipeline == INFLATED_PIPELINES[1]:
            return items_from_planes(inflated, dtype)
        return np.frombuffer(inflated, dtype=dtype)


def check_inflation(ds, what: str) -> None:
    """Refuse a dataset with a stored chunk that inflates to more than the chunk's bytes. HDF5's
    deflate filter grows its buffer to whatever the stream holds before it keeps the chunk's part:
    a 9 MB .h5ad whose uns array of 3 items was one chunk inflating to 2 GiB took 2.2 GB to read,
    and was read. Each chunk whose filters libdeflate can undo is inflated here once, into a buffer
    of the chunk's size, one at a time. A variable-length type (strings) is left to HDF5: what its
    chunk holds on the disk (references to the heap) is not its type's size."""
    if ds.chunks is None or ds.dtype.hasobject or _pipeline(ds) not in INFLATED_PIPELINES:
        return
    n_bytes = math.prod(ds.chunks) * ds.id.get_type().get_size()
    offsets: list[tuple[int, ...]] = []  # chunk_iter walks the index once (get_chunk_info(i) walks it to i)
    ds.id.chunk_iter(lambda info: offsets.append(info.chunk_offset) if info.filter_mask == 0 else None)
    for offset in offsets:  # a chunk stored with a filter skipped is not what libdeflate undoes
        try:
            deflate.zlib_decompress(ds.id.read_direct_chunk(offset)[1], n_bytes)
        except deflate.DeflateError as exc:
            raise InvalidInputError(f"{what}: the chunk at {offset} of {ds.name} does not inflate into its "
                                    f"{n_bytes:,} bytes") from exc


def _pipeline(ds) -> tuple[int, ...]:
    """The dataset's filters, in the order HDF5 applies them."""
    plist = ds.id.get_create_plist()
    return tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))


def _inflatable_pipeline(ds) -> tuple[int, ...] | None:
    """The dataset's filter pipeline when libdeflate can undo it (chunked, 1-D, deflate with or
    without the shuffle before it, nothing else), else None."""
    import h5py

    if ds.chunks is None or ds.ndim != 1 or ds.dtype.kind not in "iuf":
        return None
    if ds.id.get_create_plist().get_layout() != h5py.h5d.CHUNKED:
        return None
    pipeline = _pipeline(ds)
    return pipeline if pipeline in INFLATED_PIPELINES else None
