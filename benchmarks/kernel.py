"""Tile decoding per nonzero, one thread: `python -m benchmarks kernel FILE.sinr ...`.

For each file: `decode_batch` over every tile of the matrix with `jobs=1`, the scalar decoder
against the lockstep one (format 3's AVX2 lanes; format 2 has only the scalar decoder), and the
whole `to_scipy(layout="csc")` with `jobs=1`, medians of warm repeats in this process (the file's
chunks loaded first). It isolates the decoder from placing and first touch, which the whole read
adds. Run it with nothing else heavy running.
"""
from __future__ import annotations

from pathlib import Path

from .measure import warm_median_seconds


def run_kernel(files: list[Path], repeats: int = 7) -> str:
    """A markdown table of ns per nonzero of each file's tile decoding and whole CSC read."""
    import numpy as np

    import scinrcodec as sinr
    from scinrcodec import _native
    from scinrcodec.reader.decode import decode_batch, gather

    lines = ["| file | format | decode_batch scalar ns/nnz | decode_batch lanes ns/nnz | nonzeros/s | "
             "to_scipy(csc) jobs=1 ms | ns/nnz |", "|---|---|---|---|---|---|---|"]
    for path in files:
        m = sinr.open(path, jobs=1)
        index = m.index
        chunks = index.load_chunks(range(index.n_chunks))
        batch = gather(index, [(chunk, slice(0, chunk.geometry.n_tiles)) for chunk in chunks])
        per_nnz = {}
        for lanes in ("scalar", "auto"):
            before = _native.set_tile_lanes(lanes)
            try:
                per_nnz[lanes] = 1e9 * warm_median_seconds(
                    lambda: decode_batch(index, batch, jobs=1, value_dtype=np.int32), repeats) / m.nnz
            finally:
                _native.set_tile_lanes(before)
        whole = warm_median_seconds(lambda: m.to_scipy(layout="csc"), max(3, repeats // 2))
        version = m.version[0]
        best = per_nnz["auto"] if version == 3 else per_nnz["scalar"]
        lanes = f"{per_nnz['auto']:.1f}" if version == 3 else "—"
        lines.append(f"| {path.name} | {version} | {per_nnz['scalar']:.1f} | {lanes} | {1e3 / best:.0f}M | "
                     f"{1e3 * whole:.0f} | {1e9 * whole / m.nnz:.1f} |")
    return "\n".join(lines)
