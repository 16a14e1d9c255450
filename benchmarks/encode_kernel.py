"""A chunk's encoding per nonzero, one thread: `python -m benchmarks encode_kernel INPUT ...`.

For each input (anything `sinr encode` reads: a 10x .h5 of `scale`, a dataset folder): the file's
pass 1 (gene order, bands), then every chunk's block encoded by `encode_chunk` on this thread with
the local encoder's kept buffers, and the layout of each chunk alone (`arrange_block`: its cell
order, row counts and geometry, then `arrange`); medians of warm repeats over all of the input's
chunks (the first chunks of a large input, up to `--max-nnz` nonzeros). It isolates the chunk
kernels from reading the input, the second pass's threads and writing the file, which `scale`
measures whole. Run it with nothing else heavy running.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .measure import warm_median_seconds


def run_encode_kernel(inputs: list[Path], repeats: int = 5, max_nnz: int = 20_000_000) -> str:
    """A markdown table of ns per nonzero of encode_chunk and of the arrangement, one thread."""
    from scinrcodec.encoder import chunk as chunk_module
    from scinrcodec.encoder.driver import file_context, gene_statistics
    from scinrcodec.encoder.options import EncodeOptions
    from scinrcodec.io.readers import as_source
    from scinrcodec.progress import Progress

    lines = ["| input | chunks | nonzeros | encode_chunk ns/nnz | nonzeros/s | cell order + arrange ns/nnz |",
             "|---|---|---|---|---|---|"]
    for path in inputs:
        source = as_source(str(path))
        options = EncodeOptions(siren="never", jobs=1).chunked(source.nnz, source.shape[1])
        context, _, _ = file_context(options, *gene_statistics(source, options, Progress(False, None, "", "")))
        context = replace(context, reuse_buffers=True)
        blocks, nnz = [], 0
        for block in source.blocks(options.chunk_cells):
            if nnz >= max_nnz:
                break
            blocks.append(block)
            nnz += block.nnz

        def encode_all() -> None:
            for block in blocks:
                chunk_module.encode_chunk(block, context, None)

        def arrange_all() -> None:
            for block in blocks:
                chunk_module.arrange_block(block, context)

        encode = warm_median_seconds(encode_all, repeats)
        arrange = warm_median_seconds(arrange_all, repeats)
        lines.append(f"| {path.name} | {len(blocks)} | {nnz:,} | {1e9 * encode / nnz:.1f} | "
                     f"{nnz / encode / 1e6:.1f}M | {1e9 * arrange / nnz:.1f} |")
    return "\n".join(lines)
