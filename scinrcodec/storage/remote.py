"""A .sinr file behind a URL (s3://, gs://, http(s)://, any fsspec URL), read in few round trips.

Over a network a read costs round trips, not bytes. So the reader plans the byte ranges a read
needs and hands them to `prefetch`, which merges ranges separated by small gaps and fetches them
all at once, concurrently, on fsspec's event loop; the reads that follow are served from the
fetched blocks (kept up to CACHE_BYTES, least recently used first out). Only bytes not cached yet
are requested: a range a cached block already begins or ends is fetched without them. Opening
fetches the first 16 bytes and the last SUFFIX_BYTES in one concurrent batch: the preamble, the
trailer, and usually the footer and, written just before it, the chunk index; a footer or chunk
index reaching further back costs one more request of exactly the bytes missing. A whole-matrix
read `stream`s its chunks' blocks: all requested at once (CONCURRENCY in flight), at most
STREAM_AHEAD_BYTES ahead of the decoder, each handed over as soon as it arrives.

Every ranged response is checked: a server that ignores Range (HTTP 200), a body of the wrong
length, or an object whose size or ETag differ from what opening saw each raise a RemoteError
subclass naming the URL; transient failures (connection refused or dropped, 5xx, 429, timeouts)
are retried RETRIES times before RemoteConnectionError. HTTP and S3 responses are read through
fsspec's own session and client (so storage_options apply) to see their status and headers;
other fsspec filesystems are read with their async or sync range API.
"""
from __future__ import annotations

import asyncio
import bisect
import os
import queue
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from ..errors import (FormatError, InvalidInputError, RangeNotSupportedError, RemoteAccessError, RemoteChangedError,
                      RemoteConnectionError, RemoteError, RemoteNotFoundError, SinrError)
from .container import MAGIC
from .urls import redacted
from .source import ByteSource, fork_safe_lock

SUFFIX_BYTES = 64 << 10  # read with the preamble at open: the trailer, footer and chunk index of files of up to
# thousands of chunks (at 2 KiB, one of 102 chunks took a second round trip), in the time of one round trip
MERGE_GAP = 16 << 10  # ranges closer than this are fetched as one ...
MAX_MERGED_BYTES = 8 << 20  # ... unless that makes a request larger than this (large ones go in parallel)
CACHE_BYTES = 256 << 20
CONCURRENCY = 64  # requests in flight at once
STREAM_AHEAD_BYTES = 64 << 20  # a stream fetches at most this much beyond what its consumer has taken
RETRIES = 3
BACKOFF_SECONDS = (0.05, 0.2, 0.5)
# An HTTP(S) server that sends nothing for this long (to connect, or between two reads of a body) has
# stalled: the request fails and is retried, as a dropped connection is; without it, aiohttp's own
# default (300 s in all) made a stalled read wait 20 minutes over its tries. A client timeout given
# in storage_options (client_kwargs={"timeout": aiohttp.ClientTimeout(...)}) replaces it. S3 reads
# have botocore's (60 s).
HTTP_STALL_SECONDS = 60.0
# The schemes whose filesystems pyproject's remote extra installs (fsspec's HTTP, s3fs): a package
# missing for another scheme (gcsfs for gs://, adlfs for az://) is named by fsspec's message alone.
REMOTE_EXTRA_SCHEMES = ("http", "https", "s3", "s3a")
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
CANCEL_SECONDS = 2.0  # an interrupted transfer's requests, cancelled, are waited for this long at most


def _client_defaults(url: str, storage_options: dict) -> dict:
    """storage_options with this reader's defaults where they set none: for http(s), a client timeout
    that ends a stalled request after HTTP_STALL_SECONDS (the whole transfer may take as long as it
    takes); for S3, one attempt per request in botocore, whose own retries (5 attempts a request,
    with backoff) inside each of ours made a failing endpoint take 40 requests and 36 s to report."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        client = storage_options.get("client_kwargs") or {}
        if "timeout" in client:
            return storage_options
        import aiohttp

        stall = aiohttp.ClientTimeout(total=None, sock_connect=HTTP_STALL_SECONDS, sock_read=HTTP_STALL_SECONDS)
        return {**storage_options, "client_kwargs": {**client, "timeout": stall}}
    if scheme in ("s3", "s3a"):
        config = storage_options.get("config_kwargs") or {}
        if "retries" in config:
            return storage_options
        return {**storage_options, "config_kwargs": {**config, "retries": {"total_max_attempts": 1}}}
    return storage_options


def merge_ranges(ranges: list[tuple[int, int]], gap: int, limit: int = MAX_MERGED_BYTES,
                 gap_free=lambda start, end: True) -> list[tuple[int, int]]:
    """Sorted, merged [start, end) ranges: overlapping ones always, and those at most `gap` apart
    while the merged range stays within `limit` bytes and gap_free(start, end) says the bytes
    between them are worth fetching (not cached already)."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and (start < merged[-1][1] or start <= merged[-1][1] + gap
                       and max(end, merged[-1][1]) - merged[-1][0] <= limit and gap_free(merged[-1][1], start)):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


_OPEN: weakref.WeakSet[RemoteSource] = weakref.WeakSet()  # every source of this process, for _after_fork


def _after_fork() -> None:
    for source in list(_OPEN):
        source._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


_UNKNOWN_OPTION = re.compile(r"unexpected keyword argument '([^']+)'")


class _Failure(Exception):
    """A classified failure of one request: the error to raise (a RemoteError, InvalidInputError for
    an option the filesystem does not take, FormatError for a web page that is no .sinr file), and
    whether a retry may help."""

    def __init__(self, error: RemoteError | InvalidInputError | FormatError, transient: bool) -> None:
        super().__init__(str(error))
        self.error, self.transient = error, transient


class RemoteSource(ByteSource):
    """A remote object read by byte ranges through fsspec, with batched, cached, checked fetches.

    requests, round_trips and bytes_fetched count what it has asked the server for (round_trips:
    batches of concurrent requests). A process forked while it is open (a torch DataLoader's
    workers) reads it on a filesystem, lock and cache of its own."""

    batched = True

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        try:
            import fsspec
            import fsspec.asyn
        except ImportError:
            raise InvalidInputError(f"{redacted(url)}: reading a URL needs fsspec: pip install 'scinrcodec[remote]'"
                                    ) from None
        self.url, self.name = url, redacted(url)  # the name is what messages and `sinr info` show
        self.storage_options = dict(storage_options or {})
        self._connect()
        self.requests = self.round_trips = self.bytes_fetched = 0
        self._lock = fork_safe_lock()
        self._inflight: list[tuple[int, int, threading.Event]] = []  # (start, end, done) being fetched, by start
        self._blocks: dict[int, bytes] = {}
        self._starts: list[int] = []
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._cached = 0
        self.size, self.etag = -1, None
        self._open()
        _OPEN.add(self)

    def _connect(self) -> None:
        """The filesystem and the event loop its requests run on, made for this process (_pid)."""
        import fsspec
        import fsspec.asyn

        url = self.url
        try:
            self.fs, self.path = fsspec.core.url_to_fs(url, **_client_defaults(url, self.storage_options))
        except ImportError as exc:
            extra = " (pip install 'scinrcodec[remote]')" if url.split("://", 1)[0] in REMOTE_EXTRA_SCHEMES else ""
            raise InvalidInputError(f"{self.name}: {exc}{extra}") from None
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"{self.name}: not a URL fsspec can open ({exc})") from None
        except Exception as exc:  # a filesystem that connects or reads as it is made (ftp://, a zip:: chain)
            raise self._classify(exc, tries=1).error from None
        protocols = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        self._kind = "http" if "http" in protocols or "https" in protocols else "s3" if (
            "s3" in protocols and hasattr(self.fs, "_call_s3")) else "async" if self.fs.async_impl else "sync"
        self._loop = self.fs.loop if self.fs.async_impl else fsspec.asyn.get_loop()
        self._pid = os.getpid()

    def _connected(self) -> None:
        """Before a request: in a process forked since the filesystem was made (a torch DataLoader's
        workers, a fork Pool's), a filesystem of this process's own (the parent's event loop has no
        thread here: a request put on it had waited forever)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._connect()

    def _forked(self) -> None:
        """In a forked child, before anything runs there: the fetches in flight and the cache are the
        parent's, as its threads left them (the fetches never to end): this process starts with its
        own, empty."""
        self._inflight = []
        self._blocks, self._starts, self._recent, self._cached = {}, [], OrderedDict(), 0

    # ------------------------------------------------------------------------------- reading

    def read(self, offset: int, length: int) -> memoryview:
        """Bytes at offset..offset+length: from the cache when held, else fetched."""
        self._check(offset, length)
        if length == 0:
            return memoryview(b"")
        with self._lock:
            hit = self._lookup(offset, length)
        if hit is not None:
            return hit
        self.prefetch([(offset, length)])
        with self._lock:
            joined = self._joined(offset, offset + length)
        if joined is not None:
            return joined
        data = self._fetch([(offset, offset + length)])[0]  # evicted meanwhile by another thread's reads
        self._store([(offset, data)])
        return memoryview(data)

    def prefetch(self, ranges) -> None:
        """Fetch the bytes of the (offset, length) ranges not cached yet in one concurrent batch,
        gaps up to MERGE_GAP merged, so that the reads of them that follow cost no round trip. Bytes
        another thread is fetching already are waited for, not asked for again (dask's threads, or
        a threaded loader, reading the same chunk headers and gene tables at once)."""
        ranges = [(o, n) for o, n in ranges if n > 0]
        for o, n in ranges:
            self._check(o, n)
        with self._lock:
            holes = [hole for o, n in ranges if self._lookup(o, n) is None for hole in self._holes(o, o + n)]
            if not holes:
                return
            mine, others = self._unclaimed(holes)
            merged = merge_ranges(mine, MERGE_GAP, MAX_MERGED_BYTES,  # never across bytes cached or on the way
                                  lambda start, end: start >= end or self._holes(start, end) == [(start, end)]
                                  and self._unclaimed([(start, end)]) == ([(start, end)], set()))
            claims = [(start, end, threading.Event()) for start, end in merged]
            for claim in claims:
                bisect.insort(self._inflight, claim, key=lambda c: c[0])
        try:
            if claims:
                batch = {start for start, _, _ in claims}
                self._batch([lambda c=claim: self._get_and_keep(*c, batch) for claim in claims])
        finally:
            with self._lock:
                self._inflight = [c for c in self._inflight if c not in claims]
            for _, _, done in claims:  # a failed fetch too: a waiting thread then finds the bytes missing and
                done.set()  # asks for them itself
        for event in others:
            event.wait()

    def ready_in_order(self, ranges) -> Iterator[int]:
        """Each range's position in order, its bytes cached first: a window of up to half
        STREAM_AHEAD_BYTES of ranges is fetched at once (prefetch: one round trip) when its first is due."""
        ranges = [(int(o), int(n)) for o, n in ranges]
        window_end = 0
        for k in range(len(ranges)):
            if k == window_end:
                size, window_end = 0, k
                while window_end < len(ranges) and (window_end == k or
                                                    size + ranges[window_end][1] <= STREAM_AHEAD_BYTES // 2):
                    size += ranges[window_end][1]
                    window_end += 1
                self.prefetch(ranges[k:window_end])
            yield k

    def stream(self, ranges) -> Iterator[int]:
        """Fetch the (offset, length) ranges concurrently and yield each one's position in the list
        once its bytes are cached, in the order they arrive (cached ones first): one round trip
        however many, so a whole-matrix read decodes the first chunks while the others are still
        on the way. Memory stays bounded: a range is requested only while the bytes fetched and not
        yet taken (a range counts as taken when the caller asks for the next one) stay within
        STREAM_AHEAD_BYTES, and at most CONCURRENCY requests are in flight."""
        ranges = [(int(o), int(n)) for o, n in ranges]
        for o, n in ranges:
            self._check(o, n)
        with self._lock:
            plans = [[] if n == 0 or self._lookup(o, n) is not None else self._holes(o, o + n) for o, n in ranges]
        pending = [k for k, holes in enumerate(plans) if holes]
        if not pending:
            yield from range(len(ranges))
            return
        arrived: queue.Queue = queue.Queue()
        ahead, wake = [0], asyncio.Event()

        def taken(size: int) -> None:  # on the loop: the caller took a range
            ahead[0] -= size
            wake.set()

        async def fetch(k: int, gate: asyncio.Semaphore) -> None:
            async def part(start: int, end: int):
                async with gate:
                    return await self._retrying(lambda: self._get(start, end))
            parts = [(a, min(a + MAX_MERGED_BYTES, b)) for start, b in plans[k]
                     for a in range(start, b, MAX_MERGED_BYTES)]
            try:
                results = await asyncio.gather(*(part(a, b) for a, b in parts))
            except _Failure as failure:
                arrived.put((k, failure.error))
            except Exception as exc:  # handed to the caller's thread, raised there, typed
                error = RemoteError(f"{self.name}: request failed ({type(exc).__name__}: {exc})")
                error.__cause__ = exc
                arrived.put((k, error))
            else:
                self._store([(a, data) for (a, _), (data, _, _) in zip(parts, results)])
                arrived.put((k, None))

        async def run() -> None:
            gate = asyncio.Semaphore(CONCURRENCY)
            tasks = []
            try:
                for k in pending:
                    size = sum(b - a for a, b in plans[k])
                    while ahead[0] and ahead[0] + size > STREAM_AHEAD_BYTES:
                        wake.clear()
                        await wake.wait()
                    ahead[0] += size
                    tasks.append(asyncio.ensure_future(fetch(k, gate)))
                await asyncio.gather(*tasks)
            finally:
                await _cancelled(tasks)

        self._connected()
        with self._lock:
            self.round_trips += 1
        future, over = self._submitted(run())
        future.add_done_callback(lambda _: arrived.put((None, None)))  # wakes the wait below if run() ends early
        try:
            yield from (k for k, holes in enumerate(plans) if not holes)
            for _ in pending:
                k, error = arrived.get()
                if k is None:  # run() ended before every range arrived: cancelled, or failed outside fetch
                    failure = None if future.cancelled() else future.exception()
                    if isinstance(failure, SinrError):
                        raise failure
                    raise RemoteError(f"{self.name}: the transfer stopped before every range arrived"
                                      + (f" ({type(failure).__name__}: {failure})" if failure else "")) from failure
                if error is not None:
                    raise error
                yield k
                self._loop.call_soon_threadsafe(taken, sum(b - a for a, b in plans[k]))
        finally:
            if future.cancel():  # not over (interrupted, or the caller stopped early): over before it goes on
                over.wait(CANCEL_SECONDS)

    def gather(self, offsets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cached blocks holding the ranges, joined into one buffer (a range not cached is
        fetched first): one copy of each block rather than one read per range."""
        ends = offsets + lengths
        with self._lock:
            starts = np.array(self._starts, dtype=np.int64)
            block = np.searchsorted(starts, offsets, side="right") - 1
            covered = block >= 0
            if starts.size:
                sizes = np.array([len(self._blocks[s]) for s in self._starts], dtype=np.int64)
                covered &= starts[block] + sizes[block] >= ends
        if not covered.all():  # fetched now; a range may then span blocks, which read() joins
            missing = np.flatnonzero(~covered)
            self.prefetch(zip(offsets[missing].tolist(), lengths[missing].tolist()))
            return self._read_each(offsets, lengths)
        used = np.unique(block)
        with self._lock:
            parts = [self._blocks.get(int(s)) for s in starts[used]]
        if any(part is None for part in parts):  # evicted meanwhile by another thread
            return self._read_each(offsets, lengths)
        base = np.concatenate([[0], np.cumsum([len(p) for p in parts])[:-1]]).astype(np.int64)
        buffer = np.frombuffer(parts[0], dtype=np.uint8) if len(parts) == 1 else \
            np.frombuffer(b"".join(parts), dtype=np.uint8)
        return buffer, base[np.searchsorted(used, block)] + offsets - starts[block]

    def close(self) -> None:
        """Drop the cached blocks."""
        with self._lock:
            self._blocks.clear()
            self._starts.clear()
            self._recent.clear()
            self._cached = 0

    # --------------------------------------------------------------------------------- cache

    def _read_each(self, offsets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """gather() by one read() per range, ranges one after another: unlike the base class's runs,
        no gap between two ranges is read (it is not cached, and would cost a round trip)."""
        at = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        buffer = np.empty(int(at[-1]), np.uint8)
        for k, (offset, length) in enumerate(zip(offsets.tolist(), lengths.tolist())):
            buffer[at[k]: at[k] + length] = np.frombuffer(self.read(offset, length), np.uint8)
        return buffer, at[:-1]

    def _lookup(self, offset: int, length: int) -> memoryview | None:
        """A view of cached bytes covering [offset, offset + length), or None (lock held)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        for start in self._starts[max(i - 7, 0): i + 1][::-1]:
            data = self._blocks[start]
            if start + len(data) >= offset + length:
                self._recent.move_to_end(start)
                return memoryview(data)[offset - start: offset - start + length]
        return None

    def _covering(self, offset: int) -> tuple[int, bytes] | None:
        """The cached block holding byte `offset` that reaches furthest, among the nearest (lock held)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        best = None
        for start in self._starts[max(i - 7, 0): i + 1]:
            data = self._blocks[start]
            if start + len(data) > offset and (best is None or start + len(data) > best[0] + len(best[1])):
                best = (start, data)
        return best

    def _unclaimed(self, holes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], set]:
        """The parts of the holes no other thread is fetching, and the events of the fetches that
        hold the rest (lock held; claims never overlap, as each is made of unclaimed bytes)."""
        mine, waits = [], set()
        for start, end in holes:
            at = start
            for claim_start, claim_end, event in self._inflight:
                if claim_end <= at or claim_start >= end:
                    continue
                if claim_start > at:
                    mine.append((at, claim_start))
                waits.add(event)
                at = claim_end
                if at >= end:
                    break
            if at < end:
                mine.append((at, end))
        return mine, waits

    def _holes(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) no cached block holds (lock held)."""
        holes, at = [], start
        while at < end:
            block = self._covering(at)
            if block is not None:
                at = min(end, block[0] + len(block[1]))
                continue
            j = bisect.bisect_right(self._starts, at)
            stop = min(end, self._starts[j]) if j < len(self._starts) else end
            holes.append((at, stop))
            at = stop
        return holes

    def _joined(self, start: int, end: int) -> memoryview | None:
        """The bytes of [start, end) from the cached blocks that hold it, joined (and kept as one
        block) when it spans several; None when a part is not cached (lock held)."""
        parts, at = [], start
        while at < end:
            block = self._covering(at)
            if block is None:
                return None
            block_start, data = block
            parts.append(memoryview(data)[at - block_start: min(end, block_start + len(data)) - block_start])
            at = block_start + len(data)
        if len(parts) == 1:
            return parts[0]
        data = b"".join(parts)
        self._blocks_put(start, data)
        return memoryview(data)

    def _blocks_put(self, start: int, data: bytes) -> None:
        """Keep one block, unless a longer one starts at the same offset (lock held)."""
        old = self._blocks.get(start)
        if old is not None and len(old) >= len(data):
            return
        if old is None:
            bisect.insort(self._starts, start)
        self._cached += len(data) - (len(old) if old is not None else 0)
        self._blocks[start] = data
        self._recent[start] = None
        self._recent.move_to_end(start)

    def _store(self, blocks: list[tuple[int, bytes]], keep: set[int] = frozenset()) -> None:
        """Keep fetched blocks; drop the least recently used others beyond CACHE_BYTES, never those
        of this batch (nor the blocks starting at `keep`: the rest of a batch stored range by range)."""
        with self._lock:
            for start, data in blocks:
                self._blocks_put(start, data)
            keep = {start for start, _ in blocks} | keep
            for start in list(self._recent):
                if self._cached <= CACHE_BYTES:
                    break
                if start not in keep:
                    self._cached -= len(self._blocks.pop(start))
                    del self._recent[start]
                    self._starts.pop(bisect.bisect_left(self._starts, start))

    # ------------------------------------------------------------------------------ fetching

    def _open(self) -> None:
        """Size, ETag, the first 16 bytes and the last SUFFIX_BYTES (a suffix range, `bytes=-N`:
        the object's size is not known yet), in one concurrent batch."""
        if self._kind in ("http", "s3"):
            try:
                (head, head_size, head_etag), (tail, size, etag) = self._batch(
                    [lambda: self._get(0, 16, check=False), lambda: self._get(-SUFFIX_BYTES, None, check=False)])
            except RemoteChangedError:  # no suffix range satisfied: an empty object, or a server refusing them
                head, head_size, head_etag = self._head_of_nonempty()
                start = max(head_size - SUFFIX_BYTES, 0)
                tail, size, etag = self._batch([lambda: self._get(start, head_size, check=False)])[0]
            if head_size != size or (etag and head_etag and etag != head_etag):
                raise RemoteChangedError(f"{self.name}: the object changed while it was being opened")
        else:
            info, (head, _, _), (tail, _, _) = self._batch(
                [self._info, lambda: self._get(0, 16, check=False), lambda: self._get(-SUFFIX_BYTES, None, check=False)])
            size, etag = info.get("size"), info.get("ETag") or info.get("etag") or None
        if not isinstance(size, int):
            raise RemoteError(f"{self.name}: the server does not say how large the object is")
        self.size, self.etag = size, etag
        if len(tail) != min(size, SUFFIX_BYTES) or len(head) != min(size, 16):
            raise RangeNotSupportedError(f"{self.name}: the server ignored a byte-range request")
        self._store([(0, head), (size - len(tail), tail)])

    def _head_of_nonempty(self) -> tuple[bytes, int, str | None]:
        """The first 16 bytes, the size and ETag of an object whose suffix range was refused: a
        FormatError when the object is empty (no range of it can be satisfied)."""
        try:
            head, size, etag = self._batch([lambda: self._get(0, 16, check=False)])[0]
        except RemoteChangedError:
            size = 0
        if size == 0:
            raise FormatError(f"{self.name}: not a .sinr file (the object is empty)")
        if not isinstance(size, int):
            raise RemoteError(f"{self.name}: the server does not say how large the object is")
        return head, size, etag

    async def _get_and_keep(self, start: int, end: int, done: threading.Event,
                            batch: set[int]) -> tuple[bytes, int | None, str | None]:
        """Fetch one claimed range and cache it as soon as it arrives (evicting none of its `batch`),
        waking the threads that wait for it, not for the rest of the batch."""
        fetched = await self._get(start, end)
        self._store([(start, fetched[0])], keep=batch)
        done.set()
        return fetched

    def _fetch(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of each [start, end) range, fetched concurrently and checked."""
        results = self._batch([lambda s=s, e=e: self._get(s, e) for s, e in ranges])
        return [data for data, _, _ in results]

    def _batch(self, calls: list) -> list:
        """Run coroutine factories concurrently on the filesystem's loop: one round trip (when
        at most CONCURRENCY). The first failure is raised as its RemoteError."""
        async def run():
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(call):
                async with gate:
                    return await self._retrying(call)
            return await _all(one(call) for call in calls)

        self._connected()
        with self._lock:
            self.round_trips += 1
        results = self._run(run())
        for result in results:
            if isinstance(result, _Failure):
                raise result.error from None
            if isinstance(result, BaseException):
                raise result
        return results

    def _run(self, coroutine):
        """The coroutine's result, run on the filesystem's loop while this thread waits (_submitted)."""
        future, over = self._submitted(coroutine)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            over.wait(CANCEL_SECONDS)
            raise

    def _submitted(self, coroutine) -> tuple:
        """The coroutine started on the filesystem's loop: its future, and an event set once it is
        over. A caller interrupted (Ctrl-C) or failing cancels the future and waits for the event,
        briefly: a task left pending on the loop was reported at exit ('Task was destroyed but it
        is pending!') after the command's own line."""
        over = threading.Event()

        async def run():
            try:
                return await coroutine
            finally:
                over.set()

        if not self._loop.is_running():  # fsspec's loop thread gone (the interpreter exiting): no wait forever
            coroutine.close()
            raise RemoteError(f"{self.name}: fsspec's event loop is not running (is the interpreter exiting?)")
        return asyncio.run_coroutine_threadsafe(run(), self._loop), over

    async def _retrying(self, call):
        for attempt in range(RETRIES + 1):
            with self._lock:
                self.requests += 1
            try:
                result = await call()
            except _Failure as failure:
                if not failure.transient or attempt == RETRIES:
                    raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every library's own error types: classified, never leaked
                failure = self._classify(exc)
                if not failure.transient or attempt == RETRIES:
                    raise failure from None
            else:
                if isinstance(result, tuple):
                    with self._lock:
                        self.bytes_fetched += len(result[0])
                return result
            await asyncio.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])

    async def _info(self) -> dict:
        if self._kind == "sync":
            return await asyncio.to_thread(self.fs.info, self.path)
        return await self.fs._info(self.path)

    async def _get(self, start: int, end: int | None, *, check: bool = True) -> tuple[bytes, int | None, str | None]:
        """(bytes, the object's size, its ETag) of [start, end), or the last -start bytes when end
        is None; size and ETag as the response gives them (None where it does not)."""
        if self._kind == "http":
            data, size, etag = await self._http_get(start, end)
        elif self._kind == "s3":
            data, size, etag = await self._s3_get(start, end)
        elif self._kind == "async":
            data, size, etag = await self.fs._cat_file(self.path, start=start, end=end), None, None
        else:
            data, size, etag = await asyncio.to_thread(self.fs.cat_file, self.path, start=start, end=end), None, None
        if check:
            if (size is not None and size != self.size) or (etag and self.etag and etag != self.etag):
                raise _Failure(RemoteChangedError(f"{self.name}: the object was replaced while open (its size or "
                                                  "ETag changed); open it again"), False)
            if len(data) != end - start:
                raise _Failure(RemoteChangedError(f"{self.name}: {len(data)} bytes came back for a range of "
                                                  f"{end - start} (the object changed or the server is broken)"),
                               False)
        return data, size, etag

    async def _http_get(self, start: int, end: int | None) -> tuple[bytes, int | None, str | None]:
        session = await self.fs.set_session()
        kwargs = dict(self.fs.kwargs)
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Range"] = f"bytes={start}" if end is None else f"bytes={start}-{end - 1}"
        headers["Accept-Encoding"] = "identity"
        async with session.get(self.fs.encode_url(self.path), headers=headers, **kwargs) as response:
            if response.status == 200 and response.content_length == 0:  # an empty object (nginx)
                return b"", 0, response.headers.get("ETag")
            if response.status == 200:  # the whole object: a .sinr file's begins with its magic
                if await response.content.read(len(MAGIC)) != MAGIC:
                    kind = response.headers.get("Content-Type", "").split(";")[0].strip() or "document"
                    raise _Failure(FormatError(f"{self.name}: not a .sinr file (the server answered a byte-range "
                                               f"request with a whole {kind} document: a folder's listing, or a "
                                               "web page?)"), False)
                raise _Failure(RangeNotSupportedError(f"{self.name}: the server ignores byte ranges (HTTP 200 to a "
                                                      "Range request); download the file and open it locally"),
                               False)
            if response.status != 206:
                raise _status_failure(self.name, response.status, response.reason)
            data = await response.read()
            return data, _total(response.headers.get("Content-Range")), response.headers.get("ETag")

    async def _s3_get(self, start: int, end: int | None) -> tuple[bytes, int | None, str | None]:
        bucket, key, version = self.fs.split_path(self.path)
        extra = {"VersionId": version} if version else {}
        rng = f"bytes={start}-{end - 1}" if end is not None else f"bytes={start}"
        response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key, Range=rng, **extra)
        try:
            data = await response["Body"].read()
        finally:
            response["Body"].close()
        if not response.get("ContentRange"):
            raise _Failure(RangeNotSupportedError(f"{self.name}: the server ignores byte ranges"), False)
        return data, _total(response.get("ContentRange")), response.get("ETag")

    def _classify(self, exc: BaseException, tries: int = RETRIES + 1) -> _Failure:
        """The RemoteError for an exception of fsspec, aiohttp, botocore or the OS, after `tries`."""
        status, code = None, None
        seen = exc
        while seen is not None:
            if status is None and isinstance(getattr(seen, "status", None), int):
                status = seen.status
            response = getattr(seen, "response", None)
            if isinstance(response, dict):
                code = code or response.get("Error", {}).get("Code")
                status = status or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            seen = seen.__cause__ or seen.__context__
        what = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        unknown = _UNKNOWN_OPTION.search(str(exc)) if isinstance(exc, TypeError) else None
        if unknown and unknown.group(1) in self.storage_options:  # fsspec hands options it does not know to
            # the client, which refuses them at each request (a keyword the user did not give is a library's)
            return _Failure(InvalidInputError(f"{self.name}: storage option {unknown.group(1)!r} is not one "
                                              f"{self.name.split('://')[0]}:// takes (--storage-option, "
                                              "storage_options=)"), False)
        if isinstance(exc, FileNotFoundError) or status == 404 or code in ("NoSuchKey", "NoSuchBucket"):
            return _Failure(RemoteNotFoundError(f"{self.name}: no such object"), False)
        if isinstance(exc, PermissionError) or status in (401, 403) or code == "AccessDenied":
            return _Failure(RemoteAccessError(f"{self.name}: access denied ({' '.join(what.split())})"), False)
        if status in (412, 416) or code in ("PreconditionFailed", "InvalidRange"):
            return _Failure(RemoteChangedError(f"{self.name}: the object was replaced while open; open it again"),
                            False)
        if status in _TRANSIENT_STATUS or (status is None and isinstance(exc, (OSError, asyncio.TimeoutError))) \
                or _is_connection_error(exc):
            after = f" after {tries} tries" if tries > 1 else ""
            return _Failure(RemoteConnectionError(f"{self.name}: connection failed{after} ({' '.join(what.split())})"),
                            True)
        return _Failure(RemoteError(f"{self.name}: request failed ({' '.join(what.split())})"), False)


async def _all(coroutines) -> list:
    """asyncio.gather of the coroutines, exceptions returned as results; cancelled, it cancels them
    and returns once they are over (gather leaves them to end on their own)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await _cancelled(tasks)


async def _cancelled(tasks: list) -> None:
    """Cancel the tasks not over yet and wait until they are."""
    waiting = [task for task in tasks if not task.done()]
    for task in waiting:
        task.cancel()
    if waiting:
        await asyncio.wait(waiting)


def _status_failure(name: str, status: int, reason: str | None) -> _Failure:
    text = f"HTTP {status}{' ' + reason if reason else ''}"
    if status == 404:
        return _Failure(RemoteNotFoundError(f"{name}: no such object ({text})"), False)
    if status in (401, 403):
        return _Failure(RemoteAccessError(f"{name}: access denied ({text})"), False)
    if status in (412, 416):
        return _Failure(RemoteChangedError(f"{name}: the object was replaced while open ({text}); open it again"),
                        False)
    if status in _TRANSIENT_STATUS:
        return _Failure(RemoteConnectionError(f"{name}: the server failed after {RETRIES + 1} tries ({text})"), True)
    return _Failure(RemoteError(f"{name}: unexpected answer ({text})"), False)


def _total(content_range: str | None) -> int | None:
    """The object's size from a Content-Range header ('bytes 0-15/1234'), or None."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _is_connection_error(exc: BaseException) -> bool:
    """aiohttp's and botocore's connection and payload errors (imported only if loaded)."""
    import sys

    kinds = []
    if "aiohttp" in sys.modules:
        import aiohttp
        kinds += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    if "botocore" in sys.modules:
        from botocore import exceptions
        kinds += [exceptions.ConnectionError, exceptions.HTTPClientError, exceptions.ReadTimeoutError]
    return isinstance(exc, tuple(kinds)) if kinds else False
