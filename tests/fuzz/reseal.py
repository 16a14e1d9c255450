"""Take a .sinr file apart and put it back together with every checksum recomputed.

Fuzzing and the self-contradiction tests edit a file's structures and then re-seal it, so that
the edit reaches the reader's cross-field checks and the tile decoder instead of being stopped by
a CRC. Parsing is tolerant: `reseal` returns its input unchanged when the file cannot be parsed.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import msgpack
import numpy as np
import zstandard

from scinrcodec.storage.container import (MAGIC, PREAMBLE, TRAILER, ContainerWriter, crc32, pack_array,
                                          pack_header)


@dataclass
class ChunkParts:
    header: dict
    sections: dict[str, bytes]
    index_row: list[int]


@dataclass
class MatrixParts:
    header: dict
    sections: dict[str, bytes]
    chunks: list[ChunkParts] = field(default_factory=list)


@dataclass
class FileParts:
    version: tuple[int, int]
    footer: dict
    matrices: list[MatrixParts]
    sections: dict[str, bytes] = field(default_factory=dict)  # file-level sections (spec §14.1)


def _unzstd(data: bytes):
    return msgpack.unpackb(zstandard.ZstdDecompressor().decompressobj().decompress(data), raw=False,
                           strict_map_key=False)


def parse(blob: bytes) -> FileParts:
    """Split a file into footer, matrix headers and sections, chunk headers and sections, and
    file-level sections."""
    _, major, minor, _ = PREAMBLE.unpack_from(blob)
    length, _, _, _ = TRAILER.unpack_from(blob, len(blob) - TRAILER.size)
    start = len(blob) - TRAILER.size - length
    footer = _unzstd(blob[start: start + length])
    matrices = []
    for header in footer["matrices"]:
        sections = {name: blob[offset: offset + size] for name, offset, size, _ in header["sections"]}
        matrix = MatrixParts(header, sections)
        index = np.frombuffer(zstandard.ZstdDecompressor().decompressobj().decompress(sections["chunks.index"]),
                              dtype="<u8").reshape(-1, 6)
        for row in index.tolist():
            offset, header_length = row[0], row[1]
            chunk_header = _unzstd(blob[offset: offset + header_length])
            body = offset + header_length
            chunk_sections = {name: blob[body + rel: body + rel + size]
                              for name, rel, size, _ in chunk_header["sections"]}
            matrix.chunks.append(ChunkParts(chunk_header, chunk_sections, row))
        matrices.append(matrix)
    sections = {name: blob[offset: offset + size] for name, offset, size, _ in footer.get("sections") or []}
    return FileParts((major, minor), footer, matrices, sections)


def _band_crcs(sections: dict[str, bytes]) -> bytes | None:
    """Band CRCs recomputed from the stored geometry and tile lengths, when those still parse."""
    try:
        unz = zstandard.ZstdDecompressor().decompressobj
        rows = np.frombuffer(unz().decompress(sections["bands.rows"]), "<u4").astype(np.int64)
        widths = np.frombuffer(unz().decompress(sections["bands.widths"]), "<u4").astype(np.int64)
        lengths = np.frombuffer(unz().decompress(sections["tiles.bytes"]), "<u4").astype(np.int64)
        order = sections["cells.order"] if "cells.order" in sections else sections["cells.order_planes"]  # 4n bytes
        n_cells = len(unz().decompress(order)) // 4
        tiles = -(-n_cells // np.maximum(widths, 1))
        starts = np.concatenate([[0], np.cumsum(tiles)])
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        data = sections["tiles.data"]
        crcs = [crc32(data[offsets[min(a, lengths.size)]: offsets[min(b, lengths.size)]])
                for a, b in zip(starts[:-1], starts[1:])]
        return pack_array(np.array(crcs, dtype=np.int64), "u4") if len(rows) == len(widths) + 1 else None
    except Exception:  # a mutated directory: leave the stored CRCs as they are
        return None


def build(parts: FileParts, *, band_crcs: bool = True) -> bytes:
    """Write the parts back as a file with every CRC (and optionally band CRC) recomputed."""
    stream = io.BytesIO()
    preamble = PREAMBLE.pack(MAGIC, *parts.version, 0)
    stream.write(preamble)
    writer = ContainerWriter(stream, version=parts.version, start=PREAMBLE.size)
    matrices = []
    for matrix in parts.matrices:
        rows = []
        for chunk in matrix.chunks:
            sections = dict(chunk.sections)
            if band_crcs and "bands.crc32" in sections:
                sections["bands.crc32"] = _band_crcs(sections) or sections["bands.crc32"]
            table, offset = [], 0
            for name, payload in sections.items():
                table.append([name, offset, len(payload), crc32(payload)])
                offset += len(payload)
            header = pack_header({**chunk.header, "sections": table})
            at = writer.block(header)
            for payload in sections.values():
                writer.block(payload)
            rows.append([at, len(header), crc32(header), len(header) + offset, *chunk.index_row[4:]])
        sections = dict(matrix.sections)
        if matrix.chunks:
            sections["chunks.index"] = pack_array(np.array(rows, dtype=np.uint64).ravel(), "u8")
        table = [writer.section(name, payload) for name, payload in sections.items()]
        matrices.append({**matrix.header, "sections": table})
    footer = {**parts.footer, "matrices": matrices}
    if parts.sections:  # after the matrices, as writers put them
        footer["sections"] = [writer.section(name, payload) for name, payload in parts.sections.items()]
    writer.finish(footer)
    return stream.getvalue()


def reseal(blob: bytes) -> bytes:
    """The same file with every checksum made valid again (the input itself if it does not parse)."""
    try:
        return build(parse(blob))
    except Exception:  # a mutation broke the structure: the reader must reject it as it is
        return blob

