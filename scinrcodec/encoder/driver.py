"""The encoder: two passes over a source, chunks encoded on every core, one file written in order.

pass 1: gene statistics (nonzeros and mean log1p deviation per gene) -> the file's gene order,
gene terms and band boundaries; pass 2: each chunk of `chunk_cells` consecutive cells is encoded
on its own (threads: the compiled kernels release the GIL) and written as soon as all chunks
before it are. The output does not depend on the number of jobs.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import replace
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from .. import __version__
from ..codec.geometry import balanced_patch_nnz, genes_sorted_in_bands, plan_band_rows
from ..codec.stages import FEATURE_MINORS, MATRIX_KEYS, stages_for
from ..errors import InvalidInputError
from ..limits import DEFAULT_CHUNK_CELLS, DEFAULT_TILE_NNZ, check_allocation
from ..io.atomic import atomic_path
from ..io.formats import check_sinr_output
from ..io.sources import CellBlock, MatrixSource, check_complete_names
from ..model.baseline import accumulate_gene_stats, quantise_terms
from ..model.siren_train import run_stoppable
from ..progress import Progress
from ..storage.container import ContainerWriter, write_version
from ..storage.layout import CHUNK_INDEX_FIELDS, MATRIX_SECTIONS
from .chunk import EncodedChunk, FileContext, encode_chunk, write_chunk
from .memory import ChunkMemory
from .options import EncodeOptions
from .siren_fit import INSTALL_TORCH, PROBE_BANDS, SirenPlanner, check_device, needs_torch, torch_available

MATRIX_NAME = "X"
SUMMED_STATS = ("position_bits", "value_bits", "bands", "tiles", "siren_tried", "siren_kept", "siren_saved_bits")


BYTES_PER_GENE = 64  # what an encode holds per gene (statistics, order, terms, maps), for check_allocation


def gene_statistics(source: MatrixSource, options: EncodeOptions, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1: nonzeros per gene and the sum of their log1p deviations from their cells' means,
    block after block in order (the sums do not depend on threads nor on the blocks), the next block
    read and checked meanwhile. A block is the cells pass 2's chunks will hold where the source
    knows its nonzeros: handing a block over costs about 40 us whatever it holds, and 2**26 cells
    of one entry had taken 1.6 s in blocks of 2,048."""
    check_allocation(BYTES_PER_GENE * source.shape[0], f"{source.description}: encoding {source.shape[0]:,} genes")
    gene_nnz = np.zeros(source.shape[0], dtype=np.int64)
    deviation = np.zeros(source.shape[0], dtype=np.float64)
    cells = options.chunked(source.nnz, source.shape[1]).chunk_cells if source.nnz is not None else \
        options.chunk_cells or DEFAULT_CHUNK_CELLS
    for block in _read_ahead(source.blocks(cells)):
        accumulate_gene_stats(block.indptr, block.genes, block.values, gene_nnz, deviation)
        progress.update(block.nnz)
    return gene_nnz, deviation


def _read_ahead(blocks: Iterator[CellBlock]) -> Iterator[CellBlock]:
    """The blocks of `blocks` in order, each next one read (and checked) on a thread of its own
    while the caller works on this one: pass 1 of a 6e7 matrix in memory spent 0.35 s checking
    blocks and 0.18 s counting, one after the other. An error reading a block is raised where
    that block would have been yielded."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sinr-read-ahead") as pool:
        pending = pool.submit(next, blocks, None)
        while (block := pending.result()) is not None:
            pending = pool.submit(next, blocks, None)
            yield block


# Writer choices by format version (major): format 3 puts each band's rows in increasing gene
# index (format-3-design §4, §5 item 4: a cell's nonzeros of a band come out sorted by gene, and
# files are 0.3-0.6% smaller); format 2 keeps the density order, so its files keep their bytes.
GENE_SORTED_BANDS = {2: False, 3: True}


def file_context(options: EncodeOptions, gene_nnz: np.ndarray,
                 deviation: np.ndarray) -> tuple[FileContext, np.ndarray, int]:
    """Gene order (by nonzeros, descending; unexpressed genes last, by index), gene terms, bands;
    in format 3 each band's genes are then sorted by index (GENE_SORTED_BANDS)."""
    order = np.argsort(-gene_nnz, kind="stable")
    n_stored = int(np.count_nonzero(gene_nnz))
    nnz = int(gene_nnz.sum())
    tile_nnz = options.tile_nnz or DEFAULT_TILE_NNZ
    patch_nnz = options.patch_nnz or balanced_patch_nnz(nnz, tile_nnz)
    band_rows = plan_band_rows(gene_nnz[order], patch_nnz)
    if GENE_SORTED_BANDS[options.format_version]:
        order[:n_stored] = genes_sorted_in_bands(order[:n_stored], band_rows)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    terms = np.zeros(order.size, dtype=np.int64)
    stored = order[:n_stored]
    terms[:n_stored] = quantise_terms(deviation[stored] / gene_nnz[stored])
    return FileContext(rank, order, terms, band_rows, tile_nnz, options), order[:n_stored], patch_nnz


def _planner(options: EncodeOptions) -> SirenPlanner | None:
    if needs_torch(options):
        return SirenPlanner(sample=None, force=options.siren == "force")
    if options.siren == "auto" and torch_available():
        return SirenPlanner(sample=PROBE_BANDS)
    return None


class CodedChunks(NamedTuple):
    """What pass 2 wrote: the chunk index rows, each chunk's statistics, and the required features
    (spec §5.1.1) their sections need, which their matrix lists."""

    index_rows: list[list[int]]
    stats: list[dict]
    features: set[str]


def encode_chunks(source: MatrixSource, context: FileContext, options: EncodeOptions, writer: ContainerWriter,
                  progress: Progress, client=None, side_tasks: Sequence[Callable[[], None]] = ()) -> CodedChunks:
    """Pass 2: every chunk, encoded on `jobs` threads (or as tasks of a Dask client) and written in
    order. `side_tasks` (work independent of the chunks) run on the threads once every chunk is
    submitted (after the SIREN probe's redone chunks, if any), each a task of its own, on the cores
    the last chunks leave idle; with a Dask client, in this thread after the chunks. They have ended
    on return, and those not started are cancelled when the encode fails. A block without nonzeros or
    names is the same chunk as the last such block of its size (wherever it lies), so it is coded once:
    each had cost 1.3 ms however few its cells, and a file declaring 2**31 cells has 131,072 chunks."""
    planner = _planner(options)
    blocks = source.blocks(options.chunk_cells)
    coded = CodedChunks([], [], set())
    memory = ChunkMemory()

    def write(chunk) -> None:
        coded.index_rows.append(write_chunk(writer, chunk))
        coded.stats.append(chunk.stats)
        coded.features.update(chunk.features)
        progress.update(chunk.nnz)
        memory.after_chunk()  # else glibc keeps each chunk's freed temporaries resident (encoder.memory)

    probing = planner is not None and planner.sample is not None  # auto: the first chunk's bands decide
    if client is not None:
        first = next(blocks, None) if probing else None
        if first is not None:
            names = source.cell_names(first.start, first.start + first.n_cells)
            chunk = encode_chunk(first, replace(context, siren_planner=planner), names)
            planner = _planner_after_probe(chunk)
            if planner is not None:
                chunk = encode_chunk(first, replace(context, siren_planner=planner), names)
            write(chunk)
        from .distributed import encode_chunks_on

        for chunk in encode_chunks_on(client, source, replace(context, siren_planner=planner), blocks,
                                      skip=first.n_cells if first is not None else 0):
            write(chunk)
        for task in side_tasks:
            task()
        return coded
    if planner is not None and not probing:
        # loaded here, where Ctrl-C stops it, not in a worker thread, where nothing can (auto's probe loads it
        # in a worker, where a band of the first chunk passes its screen)
        import torch  # noqa: F401
    local = replace(context, reuse_buffers=True)  # threads of this process only: Dask's workers allocate
    stop = threading.Event()  # set on any exception (Ctrl-C, SIGTERM): running SIREN fits end at their next step
    pending: deque = deque()  # (block, its cell names, the future of its chunk), in order
    empty: dict[int, EncodedChunk] = {}  # n_cells -> the chunk of that many cells, no nonzeros and no names
    side_done: list = []  # the futures of `side_tasks`, once submitted
    with ThreadPoolExecutor(max_workers=options.n_jobs) as pool:

        def submit(block: CellBlock, plan: SirenPlanner | None, names=None) -> None:
            names = names if names is not None else source.cell_names(block.start, block.start + block.n_cells)
            if not block.nnz and names is None and block.n_cells in empty:
                future = Future()
                future.set_result(empty[block.n_cells])
            else:
                future = pool.submit(run_stoppable, stop, encode_chunk, block, replace(local, siren_planner=plan), names)
            pending.append((block, names, future))

        def write_next() -> None:
            nonlocal planner, probing
            block, names, future = pending.popleft()
            chunk = future.result()
            if probing:  # the first chunk: the others were started under the plan it nearly always
                probing = False  # picks (no SIREN); if a network paid they are redone, then this one
                planner = _planner_after_probe(chunk)
                if planner is not None:
                    started = list(pending)
                    pending.clear()
                    for *_, other in started:
                        other.cancel()  # those already running end on their own, their chunks dropped
                    for other, other_names, _ in started:
                        submit(other, planner, other_names)
                    chunk = encode_chunk(block, replace(context, siren_planner=planner), names)
            if not chunk.nnz and names is None:
                empty.setdefault(chunk.n_cells, chunk)
            write(chunk)

        try:
            for i, block in enumerate(blocks):
                submit(block, planner if i == 0 or not probing else None)
                while len(pending) > options.n_jobs:
                    write_next()
            while pending:
                if not side_done and not probing:  # behind every chunk
                    side_done = [pool.submit(task) for task in side_tasks]
                write_next()
            for future in side_done or [pool.submit(task) for task in side_tasks]:
                future.result()
        except BaseException:
            stop.set()
            for future in [*side_done, *(future for *_, future in pending)]:
                future.cancel()
            raise
    return coded


def _planner_after_probe(first: EncodedChunk) -> SirenPlanner | None:
    """`auto` after its probe of the first chunk (networks tried on a sample of its bands): if one
    was kept, every band of every chunk tries one (the first chunk encoded again so), else none."""
    return SirenPlanner(sample=None) if first.stats.get("siren_kept") else None


def write_matrix(writer: ContainerWriter, source: MatrixSource, options: EncodeOptions, *, name: str = MATRIX_NAME,
                 progress: Progress | None = None, client=None) -> dict:
    """Encode one matrix into an open container; return its footer entry."""
    progress = progress or Progress(False, None, "", "")
    progress.begin("pass 1 of 2, counting", source.nnz)
    gene_nnz, deviation = gene_statistics(source, options, progress)
    options = options.chunked(int(gene_nnz.sum()), source.shape[1])
    context, stored_order, patch_nnz = file_context(options, gene_nnz, deviation)
    nnz = int(gene_nnz.sum())
    progress.begin("pass 2 of 2, coding", nnz)
    # The gene sections, known before any chunk, packed each as a task of its own while the last
    # chunks encode, not after them (the names of 33,694 genes take 0.13 s at their zstd level)
    gene_sections = [(f"names.{field}", values) for field, values in
                     gene_name_sections(source.gene_ids, source.gene_names, source.feature_types)]
    gene_sections += [("genes.order", stored_order), ("genes.baseline", context.gene_terms[: stored_order.size])]
    packed: dict[str, bytes] = {}

    def packer(name: str, values) -> Callable[[], None]:
        def pack() -> None:
            packed[name] = MATRIX_SECTIONS[name].pack(values)
        return pack

    coded = encode_chunks(source, context, options, writer, progress, client,
                          side_tasks=[packer(name, values) for name, values in gene_sections])
    table = [writer.section(name, packed[name]) for name, _ in gene_sections]
    table.append(chunk_index_section(writer, coded.index_rows))
    stats = summarise(coded.stats)
    return {
        "name": name, "shape": [int(source.shape[0]), int(source.shape[1])], "nnz": nnz,
        "mode": options.mode, "n_stored_genes": int(stored_order.size), "n_chunks": len(coded.index_rows),
        "gene_names_are_ids": names_are_ids(source.gene_ids, source.gene_names),
        "has_cell_names": source.has_cell_names,
        "stages": stages_for(options.mode, options.max_error, context.tile_nnz, patch_nnz, options.chunk_cells,
                             major=options.format_version),
        **MATRIX_KEYS[options.format_version],
        **({"required_features": sorted(coded.features)} if coded.features else {}),  # format 3's (chunk.py)
        "options": options.recorded(), "stats": stats, "sections": table,
    }


def names_are_ids(gene_ids: list[str] | None, gene_names: list[str] | None) -> bool:
    """Whether the gene names are the ids: a matrix then stores the ids only (its header says so)."""
    return gene_names is not None and gene_names == gene_ids


def gene_name_sections(gene_ids: list[str] | None, gene_names: list[str] | None,
                       feature_types: list[str] | None) -> list[tuple[str, list[str]]]:
    """The gene name sections a matrix stores, (field, values) in their order: those it has, the
    names left out where they are the ids."""
    fields = (("gene_ids", gene_ids), ("gene_names", None if names_are_ids(gene_ids, gene_names) else gene_names),
              ("feature_types", feature_types))
    return [(field, values) for field, values in fields if values is not None]


def chunk_index_section(writer: ContainerWriter, index_rows: list[list[int]]) -> list:
    """Write `chunks.index` (six uint64 per chunk, spec §5.4.1); return its section table entry."""
    index = np.asarray(index_rows, dtype=np.uint64).reshape(-1, len(CHUNK_INDEX_FIELDS))
    return writer.section("chunks.index", MATRIX_SECTIONS["chunks.index"].pack(index.ravel()))


def summarise(chunk_stats: list[dict], previous: dict | None = None) -> dict:
    """The footer's statistics: sums over chunks (added to a file's `previous` ones)."""
    previous = previous or {}
    return {key: round(previous.get(key, 0) + sum(s.get(key, 0) for s in chunk_stats), 1) for key in SUMMED_STATS}


def finish_file(writer: ContainerWriter, matrices: list[dict], sections: list | None = None) -> int:
    """Write the footer naming every matrix and file-level section, in the lowest minor version that
    defines every required feature they list (spec §11.2); return the file's size. Only a format
    that has required features reads them: a version 2 matrix map append keeps may hold the key,
    which its readers ignore (spec §5.1.1)."""
    listed = "required_features" in MATRIX_KEYS[writer.version[0]]
    minor = max((FEATURE_MINORS[f] for m in matrices for f in m["required_features"]), default=0) if listed else 0
    return writer.finish({"format": "sinr", "writer": f"scinrcodec {__version__}", "matrices": matrices,
                          "sections": sections or []}, minor=minor)


def encode_stream(source: MatrixSource, stream: BinaryIO, options: EncodeOptions, client=None) -> dict:
    """Encode `source` as the one matrix of a file written to a binary stream; return its size and
    statistics."""
    nnz_hint = source.nnz
    progress = Progress(options.progress, nnz_hint, "encoding", "nonzeros")
    try:
        writer = ContainerWriter(stream, version=write_version(options.format_version))
        matrix = write_matrix(writer, source, options, progress=progress, client=client)
    finally:
        progress.close()
    size = finish_file(writer, [matrix])
    return {"bytes": size, "nnz": matrix["nnz"], "shape": tuple(matrix["shape"]), "chunks": matrix["n_chunks"],
            **matrix["stats"]}


def checked_options(options: dict) -> EncodeOptions:
    """Encode keyword options as EncodeOptions, unknown names refused, and a SIREN or a torch device
    asked for refused without torch (the encode extra) or where the device is not usable."""
    unknown = set(options) - EncodeOptions.names()
    if unknown:
        raise InvalidInputError(f"unknown encode option(s): {', '.join(sorted(unknown))}")
    opts = EncodeOptions(**options)
    if torch_available():
        check_device(opts.device)
    elif needs_torch(opts):  # --inr-only's values are the SIREN's: --siren never is no way out for it
        raise InvalidInputError(f"--inr-only needs torch to fit its SIRENs: {INSTALL_TORCH}" if opts.mode == "inr-only"
                                else f"the SIREN needs torch: {INSTALL_TORCH}, or use --siren never")
    elif opts.device is not None:
        raise InvalidInputError(f"--device {opts.device!r} is a torch device: {INSTALL_TORCH} for torch")
    return opts


def encode(source, output: str | os.PathLike, *, force: bool = False, client=None, pattern_as_ones: bool = False,
           **options) -> dict:
    """Encode `source` (a path, scipy.sparse genes x cells, AnnData, or MatrixSource) to a .sinr
    file, atomically; an existing `output` is replaced only with force=True. With a
    dask.distributed `client`, chunks are encoded as tasks of its cluster; the file is the same
    either way. pattern_as_ones reads a Matrix Market `pattern` field as counts of 1. `options`
    are EncodeOptions' fields, as `sinr encode`'s options: jobs, siren ('auto', 'always',
    'never'), format_version, mode='max-error' with max_error=E (--max-error E) or
    mode='inr-only', layer, chunk_cells, ... Returns sizes and statistics."""
    from ..io.readers import as_source

    opts = checked_options(options)
    inputs = [source] if isinstance(source, (str, os.PathLike)) else []
    check_sinr_output(output, force=force, inputs=inputs)
    src = as_source(source, opts.layer, pattern_as_ones=pattern_as_ones)
    check_complete_names(src)
    inputs += list(src.paths)
    with atomic_path(Path(output), force=force, inputs=inputs) as tmp, open(tmp, "wb") as stream:
        return encode_stream(src, stream, opts, client)
