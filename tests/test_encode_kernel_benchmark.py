"""`python -m benchmarks encode_kernel` on a small real cut: one row per input, whose chunk count and
nonzeros are the input's (the benchmark times what the encoder encodes, every chunk of a small file)."""
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def test_encode_kernel_times_every_chunk_of_a_small_input():
    benchmarks = pytest.importorskip("benchmarks.encode_kernel")
    from scinrcodec.encoder.options import EncodeOptions
    from scinrcodec.io.readers import as_source

    path = DATA / "pbmc4k_v2_soupx_half"
    table = benchmarks.run_encode_kernel([path], repeats=1)
    source = as_source(str(path))
    chunks = -(-source.shape[1] // EncodeOptions().chunked(source.nnz, source.shape[1]).chunk_cells)
    header, rule, row = table.splitlines()
    assert header.startswith("| input | chunks | nonzeros | encode_chunk ns/nnz")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == [path.name, str(chunks), f"{source.nnz:,}"]
    assert float(cells[3]) > 0 and float(cells[5]) > 0
