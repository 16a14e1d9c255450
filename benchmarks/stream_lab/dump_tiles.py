"""Dump the tiles the format-2 encoder codes, as the stream lab's input.

The lab (native/lab/stream_lab.cpp) compares candidate format-3 tile streams on exactly the
symbols format 2 codes: each tile's nonzero positions, value indices and contexts, and each
chunk's value histogram. Run from the repository root:

    python -m benchmarks.stream_lab.dump_tiles ../shared/data/pbmc4k_v2_soupx_half /tmp/lab/pbmc4k.bin

File layout (little-endian): magic b"SLAB0001", then per chunk a record: int64 n_tiles, int64 nnz,
int64 n_cells, int64 n_rows; int64[n_tiles] tile_k, tile_h, tile_w, tile_row0, tile_col0; int32[nnz]
positions, u, contexts, rows, cols; int64[48*231] histogram. A record with n_tiles = -1 ends the file.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

MAGIC = b"SLAB0001"


def dump(source: str, target: str, chunk_cells: int = 4096) -> None:
    import scinrcodec
    from scinrcodec.encoder import chunk as chunk_mod

    original_encode_tiles = chunk_mod.encode_tiles
    original_arrange = chunk_mod.arrange
    records: list[bytes] = []
    state: dict = {}

    def arrange(indptr, genes, values, cell_order, gene_rank, row_nnz, row_starts, widths, tile_starts, n_cells,
                out=None):
        result = original_arrange(indptr, genes, values, cell_order, gene_rank, row_nnz, row_starts, widths,
                                  tile_starts, n_cells, out)
        state["rows"], state["cols"] = result[0], result[1]
        state["row_starts"], state["widths"], state["tile_starts"] = row_starts, widths, tile_starts
        state["n_cells"] = n_cells
        return result

    def encode_tiles(tile_k, tile_n, positions, u, contexts, cum, code_values, max_symbols, out):
        row_starts = np.asarray(state["row_starts"], np.int64)
        widths = np.asarray(state["widths"], np.int64)
        n_cells = int(state["n_cells"])
        heights = np.diff(row_starts)
        per_band = -(-n_cells // widths)
        band = np.repeat(np.arange(widths.size), per_band)
        j = np.arange(band.size) - np.repeat(np.cumsum(per_band) - per_band, per_band)
        col0 = j * widths[band]
        w = np.minimum(widths[band], n_cells - col0)
        hist = np.bincount(np.asarray(contexts, np.int64) * 231 + chunk_mod.value_bins_of(u), minlength=48 * 231)
        tile_k = np.asarray(tile_k, np.int64)
        head = np.array([tile_k.size, int(tile_k.sum()), n_cells, int(row_starts[-1])], np.int64)
        parts = [head, tile_k, heights[band], w, row_starts[band], col0]
        body = [np.asarray(a, np.int32) for a in (positions, u, contexts, state["rows"], state["cols"])]
        records.append(b"".join(p.astype("<i8").tobytes() for p in parts) +
                       b"".join(b.astype("<i4").tobytes() for b in body) + hist.astype("<i8").tobytes())
        return original_encode_tiles(tile_k, tile_n, positions, u, contexts, cum, code_values, max_symbols, out)

    chunk_mod.encode_tiles = encode_tiles
    chunk_mod.arrange = arrange
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    out_sinr = Path(target).with_suffix(".sinr")
    scinrcodec.encode(source, str(out_sinr), chunk_cells=chunk_cells, jobs=1, siren="never", force=True,
                      format_version=2)  # the symbols format 2 codes, whose tiles the lab's candidates replace
    with open(target, "wb") as f:
        f.write(MAGIC)
        for r in records:
            f.write(r)
        f.write(np.array([-1], "<i8").tobytes())


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[1] in ("-h", "--help"):
        sys.exit("usage: python -m benchmarks.stream_lab.dump_tiles SOURCE TARGET.bin [CHUNK_CELLS]")
    dump(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
