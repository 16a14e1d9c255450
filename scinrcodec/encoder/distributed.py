"""Encoding chunks on a Dask cluster (`pip install scinrcodec[dask]`).

Each chunk is one task. A source that can be reopened elsewhere (it has `spec()`; files on
storage the workers share) is read by the workers themselves, each task reading its own slice of
cells; any other source's blocks are read by the driver and sent with their tasks. The driver
writes chunks in order as they complete, so the file is byte for byte the one a local encode
writes.
"""
from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import CancelledError
from typing import Iterator

from ..errors import ClusterError, InvalidInputError
from ..io.sources import MatrixSource, one_line
from .chunk import EncodedChunk, FileContext, encode_chunk

IN_FLIGHT_PER_WORKER = 2


def _encode_slice(spec, start: int, stop: int, context: FileContext) -> EncodedChunk:
    """A worker's task: reopen the source, read cells start..stop-1, encode them."""
    from ..io.readers import open_source_spec

    source = open_source_spec(spec)
    return encode_chunk(source.block(start, stop), context, source.cell_names(start, stop))


def encode_chunks_on(client, source: MatrixSource, context: FileContext, blocks: Iterator, *,
                     skip: int = 0) -> Iterator[EncodedChunk]:
    """The chunks of `source` after its first `skip` cells, encoded as tasks of `client`, in order.
    `blocks` is the driver's iterator of blocks, already past those cells: a source that cannot be
    reopened elsewhere is read through it, once. A failure of the cluster itself (a closed client,
    no workers, a lost connection, a worker killed) is a ClusterError; a task's own error, and the
    driver's reading of the source, raise as they are."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise InvalidInputError("encoding on a cluster needs Dask: pip install 'scinrcodec[dask]'") from exc
    if not isinstance(client, Client):
        raise InvalidInputError(f"client must be a dask.distributed.Client, not {type(client).__name__}")
    if client.status in ("closing", "closed"):
        raise ClusterError("the Dask client is closed; encode with an open one")
    options = context.options
    # hash=False: a content-hashed key would be shared with an earlier encode of the same matrix,
    # and that encode's futures, released later, would take the data from under this one's tasks
    # ("lost dependencies"; dask/distributed#8576)
    shared = _on_cluster(lambda: client.scatter(context, broadcast=True, hash=False))
    workers = max(1, len(_on_cluster(client.scheduler_info).get("workers", {})))
    spec = source.spec() if hasattr(source, "spec") else None
    if spec is not None and spec.kind == "scipy":  # an in-memory matrix travels to each worker once
        spec = _on_cluster(lambda: client.scatter(spec, broadcast=True, hash=False))
    pending: deque = deque()
    limit = IN_FLIGHT_PER_WORKER * workers
    if spec is not None:
        for start in range(skip, source.shape[1], options.chunk_cells):
            stop = min(start + options.chunk_cells, source.shape[1])
            pending.append(_on_cluster(lambda a=start, b=stop: client.submit(_encode_slice, spec, a, b, shared,
                                                                              pure=False)))
            while len(pending) > limit:
                yield _result(pending.popleft())
    else:
        for block in blocks:
            names = source.cell_names(block.start, block.start + block.n_cells)
            pending.append(_on_cluster(lambda b=block, n=names: client.submit(encode_chunk, b, shared, n, pure=False)))
            while len(pending) > limit:
                yield _result(pending.popleft())
    while pending:
        yield _result(pending.popleft())


def _cluster_error(exc: BaseException) -> ClusterError:
    return ClusterError(f"the Dask cluster failed ({type(exc).__name__}: {one_line(exc)})")


def _on_cluster(call):
    """A call to the client (scatter, submit, the scheduler's info): its failures are the cluster's."""
    try:
        return call()
    except (OSError, RuntimeError, TimeoutError, CancelledError) as exc:
        raise _cluster_error(exc) from exc


def _result(future) -> EncodedChunk:
    """A task's chunk: its own error raised as it is, the cluster's (a worker killed, the task
    cancelled, the connection lost) a ClusterError."""
    from distributed.scheduler import KilledWorker

    try:
        return future.result()
    except Exception as exc:
        if future.status == "error" and not isinstance(exc, KilledWorker):
            raise  # the task's own
        raise _cluster_error(exc) from exc
    except asyncio.CancelledError as exc:  # the client's event loop shut down under it (a BaseException)
        raise _cluster_error(exc) from exc
