"""Format 3's read kernels (native/core/src/tile.cpp with ValueModels.tables3): the kernels every read
path uses (decode_tiles with its filters, count_rows, decode_entry) decode format-3 streams of real
tiles exactly as the whole-tile decoder of tile3.hpp does, and give a hostile stream the status the
whole-tile decoder gives it (which test_tile3_native.py holds to the spec's rules)."""
from __future__ import annotations

import numpy as np
import pytest

from format3_tiles import encode_real_files, real_chunks, t3
from scinrcodec import _native
from scinrcodec.codec.tile import MODE_LOSSLESS, OK
from test_tile3_native import decode_native, encode_native

NO_SIREN = (np.zeros((0, 3), np.int64), np.zeros((0, 2), np.float64), np.zeros((0, 6), np.int64),
            np.zeros(0, np.int64))
NO_MODELS = (np.zeros((0, 48, 232), np.int32), np.zeros((0, 48, 256), np.uint8), np.zeros((0, 48), bool))


class Chunk3:
    """One real chunk coded as format 3: its streams in one buffer and its tile directory."""

    def __init__(self, chunk):
        self.tiles = chunk.tiles
        inputs = [t.tile for t in chunk.tiles]
        self.gaps, self.values = t3.chunk_counts(inputs, False)
        self.streams = encode_native(inputs, self.gaps, self.values)
        self.buf = np.frombuffer(b"".join(self.streams) or b"\0", np.uint8)
        self.length = np.array([len(s) for s in self.streams], np.int64)
        self.offset = np.concatenate([[0], np.cumsum(self.length)[:-1]]).astype(np.int64)
        self.G, self.C = chunk.gene_terms, chunk.cell_terms
        self.tables = _native.ChunkTables3(self.gaps, self.values)
        col = np.array([t.col0 for t in chunk.tiles], np.int64)
        self.dir = dict(k=np.array([len(t.tile.positions) for t in chunk.tiles], np.int64),
                        h=np.array([t.h for t in chunk.tiles], np.int64),
                        w=np.array([t.w for t in chunk.tiles], np.int64),
                        row=np.array([t.row0 for t in chunk.tiles], np.int64), col=col, first=col)
        self.n_cells = int(self.C.size)

    def truth(self) -> set[tuple[int, int, int]]:
        out = set()
        for t in self.tiles:
            for p, u in zip(t.tile.positions, t.tile.u):
                out.add((t.row0 + p // t.w, t.col0 + p % t.w, u + 1))
        return out

    def decode(self, buf=None, want_row=-1, want_col=-1, col_mask=None):
        d, n = self.dir, self.length.size
        capacity = d["k"].copy()
        out_start = np.concatenate([[0], np.cumsum(capacity)[:-1]]).astype(np.int64)
        total = max(int(capacity.sum()), 1)
        rows, cols, vals = np.zeros(total, np.int32), np.zeros(total, np.int32), np.zeros(total, np.int32)
        count, status = np.zeros(n, np.int64), np.full(n, -1, np.int64)
        mask = np.zeros(0, bool) if col_mask is None else col_mask
        _native.decode_tiles(self.buf if buf is None else buf, self.offset, self.length, d["k"], d["h"], d["w"],
                             d["row"], d["col"], d["first"], np.full(n, self.n_cells, np.int64),
                             np.zeros(n, np.int64), np.full(n, -1, np.int64), self.G, self.C, *NO_MODELS, *NO_SIREN,
                             MODE_LOSSLESS, 0, want_row, want_col, mask, out_start, rows, cols, vals, count, status,
                             tables3=[self.tables])
        got = set()
        for t in range(n):
            s = out_start[t]
            got |= set(zip(rows[s:s + count[t]].tolist(), cols[s:s + count[t]].tolist(),
                           vals[s:s + count[t]].tolist()))
        return got, status


@pytest.fixture(scope="module")
def chunks(tmp_path_factory):
    return [Chunk3(c) for path in encode_real_files(tmp_path_factory.mktemp("f3k")) for c in real_chunks(path)]


def test_whole_and_filtered_reads_are_exact(chunks):
    rng = np.random.default_rng(7)
    for chunk in chunks:
        truth = chunk.truth()
        got, status = chunk.decode()
        assert (status == OK).all() and got == truth
        rows = sorted({r for r, _, _ in truth})
        for row in rng.choice(rows, size=min(3, len(rows)), replace=False).tolist():
            assert chunk.decode(want_row=row)[0] == {e for e in truth if e[0] == row}
        for col in rng.choice(chunk.n_cells, size=3, replace=False).tolist():
            assert chunk.decode(want_col=col)[0] == {e for e in truth if e[1] == col}
        mask = rng.random(chunk.n_cells) < 0.3
        assert chunk.decode(col_mask=mask)[0] == {e for e in truth if mask[e[1]]}


def test_count_rows_and_entries(chunks):
    rng = np.random.default_rng(8)
    for chunk in chunks[:4]:
        truth = chunk.truth()
        d, n = chunk.dir, chunk.length.size
        counts = np.zeros(int(chunk.G.size), np.int64)
        status = np.full(n, -1, np.int64)
        _native.count_rows(chunk.buf, chunk.offset, chunk.length, d["k"], d["h"], d["w"], d["row"], counts, status,
                           model=np.zeros(n, np.int64), tables3=[chunk.tables])
        assert (status == OK).all()
        assert counts.tolist() == np.bincount([r for r, _, _ in truth], minlength=counts.size).tolist()
        by_entry = {(r, c): v for r, c, v in truth}
        picks = list(by_entry)[:20] + [(int(rng.integers(chunk.G.size)), int(rng.integers(chunk.n_cells)))
                                       for _ in range(20)]
        cum, lut, used = (a[0] if a.shape[0] else np.zeros((48,) + a.shape[2:], a.dtype) for a in NO_MODELS)
        for r, c in picks:
            t = next((i for i, tile in enumerate(chunk.tiles)
                      if tile.row0 <= r < tile.row0 + tile.h and tile.col0 <= c < tile.col0 + tile.w), None)
            if t is None:
                continue
            value, st = _native.decode_entry(chunk.buf, int(chunk.offset[t]), int(chunk.length[t]), int(d["k"][t]),
                                             int(d["h"][t]), int(d["w"][t]), int(d["row"][t]), int(d["col"][t]),
                                             int(d["first"][t]), chunk.n_cells, cum, lut, used, -1, None, chunk.G,
                                             chunk.C, MODE_LOSSLESS, 0, r, c, tables3=chunk.tables)
            assert st == OK and value == by_entry.get((r, c), 0)


def test_damaged_streams_get_the_whole_tile_decoders_status(chunks):
    """Every byte flip or cut of real streams: the read kernel's status equals tile3.hpp's."""
    rng = np.random.default_rng(9)
    checked = 0
    for chunk in chunks[:3]:
        shapes = [(t.h, t.w, len(t.tile.positions), t.row0, t.col0) for t in chunk.tiles]
        for t in rng.choice(len(chunk.streams), size=min(15, len(chunk.streams)), replace=False).tolist():
            stream = chunk.streams[t]
            if not stream:
                continue
            damaged = [bytearray(stream) for _ in range(4)]
            for d in damaged[:3]:
                d[int(rng.integers(len(d)))] ^= 1 << int(rng.integers(8))
            damaged[3] = damaged[3][:int(rng.integers(len(stream)))]
            for d in damaged:
                streams = list(chunk.streams)
                streams[t] = bytes(d)
                expected = decode_native(streams, shapes, chunk.G, chunk.C, chunk.gaps, chunk.values)[t][0]
                saved = chunk.buf, chunk.offset, chunk.length
                chunk.length = np.array([len(s) for s in streams], np.int64)
                chunk.offset = np.concatenate([[0], np.cumsum(chunk.length)[:-1]]).astype(np.int64)
                _, status = chunk.decode(buf=np.frombuffer(b"".join(streams) or b"\0", np.uint8))
                chunk.buf, chunk.offset, chunk.length = saved
                assert status[t] == expected
                checked += 1
    assert checked > 30
