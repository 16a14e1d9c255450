"""atheris harness over the reader: open + info + random reads + full decode.

Run: python tests/fuzz/fuzz_reader.py -max_total_time=600 -timeout=20 -rss_limit_mb=4096 tests/fuzz/corpus
Any exception other than the package's own errors, a hang or an allocation beyond the RSS limit
is a finding; each one found is kept in tests/fuzz/crashes/ and replayed by tests/test_reliability.py.

The first input byte chooses how the rest is read: as a file as is (checksums and all), or as a
file whose CRCs are repaired first, so that mutations reach the parsing and decoding behind them.
"""
from __future__ import annotations

import sys
import zlib

import atheris
import constriction  # noqa: F401  (dependencies are imported first so only scinrcodec is instrumented)
import msgpack
import numpy  # noqa: F401
import scipy.sparse  # noqa: F401
import zstandard  # noqa: F401

with atheris.instrument_imports(include=["scinrcodec"]):
    from scinrcodec.container import PREAMBLE, seal_preamble
    from scinrcodec.errors import SinrError
    from scinrcodec.reader import SinrMatrix
    from scinrcodec.report import describe


def repair_checksums(blob: bytes) -> bytes:
    """Recompute section and header CRCs of a (mutated) file, when its header still parses."""
    try:
        _, major, minor, length, _ = PREAMBLE.unpack_from(blob)
        header = msgpack.unpackb(blob[PREAMBLE.size: PREAMBLE.size + length], raw=False)
        data = blob[PREAMBLE.size + length:]
        for entry in header["sections"]:
            entry[3] = zlib.crc32(data[entry[1]: entry[1] + entry[2]])
        packed = msgpack.packb(header, use_bin_type=True)
    except Exception:
        return blob
    return seal_preamble(major, minor, packed) + packed + data


def exercise(blob: bytes) -> None:
    try:
        matrix = SinrMatrix(blob)
        describe(matrix, len(blob))
        _ = matrix.gene_names, matrix.gene_ids, matrix.cell_names, matrix.feature_types
        n_genes, n_cells = matrix.shape
        if n_genes and n_cells:
            matrix[0, 0]
            matrix[n_genes - 1, n_cells - 1]
            matrix.gene(0)
            matrix.cell(n_cells - 1)
            matrix[: min(n_genes, 5), : min(n_cells, 5)]
        matrix.to_scipy()
    except SinrError:
        pass


def test_one_input(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    exercise(repair_checksums(body) if data[0] & 1 else body)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
