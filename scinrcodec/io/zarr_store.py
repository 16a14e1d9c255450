"""AnnData zarr stores (AnnData.write_zarr's folders, zarr format 2 or 3): recognised by their
root group's encoding-type, read through anndata's own I/O, written by anndata's write_zarr.

A CSR count matrix (X, a layer or raw.X) streams a block of cells at a time, as an .h5ad's does; a
CSC or dense one, and every other part, is read whole by anndata once what its arrays declare fits
the memory free (limits.check_allocation). Every array's chunk is checked before any is read: zarr
inflates a chunk whole to read any item of it, so its shape may not be far larger than the array,
and each chunk file, as it is read, may not inflate past the chunk's bytes (checked_store); codecs
whose output cannot be bounded so are refused. A sharded array (zarr v3's sharding_indexed, which
anndata writes where auto_shard_zarr_v3 is set) is checked the same way, a level down: its shard
index must fit the shard file and point inside it, and each inner chunk may not inflate past the
inner chunk's bytes. A store is written into a temporary folder that is renamed into place
(io.atomic), as anndata's settings say: its zarr_write_format (2 unless anndata.settings or the
environment variable ANNDATA_ZARR_WRITE_FORMAT says 3), in shards where auto_shard_zarr_v3 is set.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, SinrError
from ..limits import MAX_NAME_BYTES, MAX_TEXT_CHUNK_BYTES, check_allocation, check_chunk
from ..storage.layout import ANNDATA_PARTS
from .h5ad import cells_by_genes_source, to_anndata
from .h5ad_output import COMPRESSIONS, quiet_anndata
from .hdf5 import NAME_OVERHEAD_BYTES, text_attr
from .matrix import CountMatrix
from .sources import (CellBlock, MatrixSource, RandomAccessSource, SourceSpec, check_names, check_shape,
                      checked_pointers, one_line, path_spec, validated_block, var_field)

ROOT_METADATA = (".zattrs", "zarr.json")  # a group's attributes: format 2's file, format 3's (in 'attributes')
METADATA_FILES = frozenset({".zattrs", ".zgroup", ".zarray", ".zmetadata", "zarr.json"})  # a node's, not members
MAX_METADATA_BYTES = 64 << 20  # a root metadata file larger than this is not read to recognise a store
# what write_zarr puts at a store's top (a trailing '/': a folder): a folder holding anything else is never replaced
ZARR_ENTRIES = frozenset({*(METADATA_FILES - {".zarray"}), *(f"{part}/" for part in ANNDATA_PARTS)})  # a root's
GZIP_LEVEL = 4  # h5py's default gzip level, as .h5ad outputs use
TEXT_CODECS = frozenset({"vlen-utf8", "vlen-bytes"})  # a chunk of strings: its bytes depend on the text
COMPRESSORS = frozenset({"blosc", "zstd", "gzip", "zlib"})  # those whose output checked_store bounds
CRC32C = "crc32c"  # format 3's checksum: 4 bytes after the chunk's compressed bytes
SHARDING = "sharding_indexed"  # format 3's shards: inner chunks back to back, and their index
NO_INNER_CHUNK = 2**64 - 1  # a shard index's offset and length of an inner chunk not stored


# ------------------------------------------------------------------------------------ reading

def _root_document(meta: Path):
    """The JSON of a root metadata file, None where there is none (or one too large to be one);
    ValueError where it is not JSON, nested deeper than the parser goes included."""
    if not meta.is_file() or meta.stat().st_size > MAX_METADATA_BYTES:
        return None
    try:
        return json.loads(meta.read_bytes())
    except RecursionError as exc:
        raise ValueError("arrays or objects nested too deep") from exc


def root_attributes(path: Path) -> dict | None:
    """The attributes of the zarr group at folder `path`, read as JSON (zarr not imported); None
    where it holds no zarr group's metadata."""
    for name in ROOT_METADATA:
        try:
            doc = _root_document(path / name)
        except (OSError, ValueError):
            continue
        if name == "zarr.json":
            doc = doc.get("attributes", {}) if isinstance(doc, dict) and doc.get("node_type") == "group" else None
        if isinstance(doc, dict):
            return doc
    return None


def is_zarr(path: Path, head: bytes) -> bool:
    """A folder holding a zarr group whose encoding-type is anndata's."""
    if not path.is_dir():
        return False
    attributes = root_attributes(path)
    return attributes is not None and attributes.get("encoding-type") == "anndata"


def not_anndata(path: Path) -> str | None:
    """Why a folder holding a zarr group, or its root metadata damaged, is no AnnData store; None for
    a folder that holds neither."""
    for name in ROOT_METADATA:
        try:
            _root_document(path / name)
        except (OSError, ValueError) as exc:
            return f"its {name} is unreadable ({one_line(exc)}): a damaged zarr store"
    attributes = root_attributes(path)
    if attributes is None:
        return None
    kind = attributes.get("encoding-type")
    return (f"a zarr store whose root is not an AnnData (its encoding-type is {kind!r}, not 'anndata'); sinr reads "
            "the stores AnnData.write_zarr writes")


@contextlib.contextmanager
def zarr_errors(what: str):
    """zarr's and numcodecs' failures on a damaged or unexpected store, as one clear error."""
    try:
        yield
    except SinrError:
        raise
    except Exception as exc:  # zarr, numcodecs and json raise many types for a store they cannot read
        raise InvalidInputError(f"{what}: unreadable zarr content ({one_line(exc)})") from exc


def _arrays(obj) -> list:
    """The zarr arrays of `obj`: itself, or every array under a group."""
    import zarr

    if isinstance(obj, zarr.Array):
        return [obj]
    return [a for member in _members(obj) for a in _arrays(member)]


def _members(group) -> list:
    """The arrays and groups in `group`, their metadata read one at a time: zarr's own listing reads
    every member's at once and, when one fails, leaves the others running, whose errors Python
    prints as tracebacks when it exits, after the one error line. Consolidated metadata is listed
    as zarr lists it (nothing is read)."""
    if group.metadata.consolidated_metadata is not None:
        return [member for _, member in group.members()]
    folder = Path(group.store.root, group.path)
    members = []
    for name in sorted(os.listdir(folder)):
        if name not in METADATA_FILES and (folder / name).is_dir():
            with contextlib.suppress(KeyError):  # a folder holding no zarr node: zarr's listing skips it too
                members.append(group[name])
    return members


def declared_bytes(obj) -> int:
    """Bytes that reading an array, or every array under a group, takes by the shapes and types they
    declare (metadata only): items x their size, a string's Python object besides."""
    return sum(a.size * (a.dtype.itemsize + (NAME_OVERHEAD_BYTES if a.dtype.kind in "OSTU" else 0))
               for a in _arrays(obj))


@dataclass(frozen=True)
class ShardIndex:
    """Where a shard file keeps its index (zarr's sharding_indexed codec): an (offset, length) pair
    of little-endian uint64 for each of its inner chunks, both 2**64-1 for one not stored, then a
    crc32c or not, at the file's start or end."""

    inner_chunks: int
    checksum: bool
    at_start: bool

    @property
    def n_bytes(self) -> int:
        return 16 * self.inner_chunks + (4 if self.checksum else 0)


@dataclass(frozen=True)
class ChunkBound:
    """What one chunk of an array (an inner chunk, where the array is sharded) may inflate to, the
    codec that inflates it, and the index of the array's shards."""

    path: str
    n_bytes: int
    compressor: str | None  # one of COMPRESSORS, or None (stored as it is)
    checksum: bool  # a crc32c follows the compressed bytes
    shard: ShardIndex | None = None


def _names(codecs: list) -> list:
    """The names of a format-3 codec list."""
    return [c.get("name") if isinstance(c, dict) else c for c in codecs]


def _sharding(a, codecs: list, what: str) -> tuple[ShardIndex, list]:
    """The index of `a`'s shards and the codecs of its inner chunks, where its codecs are a sharding
    codec alone (zarr then reads a shard's index, then the inner chunks a read needs) whose index is
    little-endian uint64, with or without crc32c; anything else is refused."""
    outer = _names(codecs)
    if outer != [SHARDING]:
        other = next(n for n in outer if n != SHARDING)
        raise InvalidInputError(f"{what}: {a.path} is encoded with {other} around its shards, which sinr does not "
                                f"read; sinr reads shards whose codec is {SHARDING} alone")
    config = codecs[0].get("configuration") or {}
    inner, index = config.get("codecs") or [], config.get("index_codecs") or []
    if SHARDING in _names(inner):
        raise InvalidInputError(f"{what}: {a.path} holds shards within its shards, which sinr does not read")
    first = index[0] if index and isinstance(index[0], dict) else {}
    endian = (first.get("configuration") or {}).get("endian", "little")
    if _names(index) not in (["bytes"], ["bytes", CRC32C]) or endian != "little":
        raise InvalidInputError(f"{what}: {a.path} has a shard index of {' + '.join(map(str, _names(index)))} "
                                f"({endian}-endian), which sinr does not read; sinr reads bytes (little-endian), with "
                                "or without crc32c")
    inner_chunks = math.prod(s // c for s, c in zip(a.shards, a.chunks))
    return ShardIndex(inner_chunks, len(index) == 2, config.get("index_location") == "start"), inner


def chunk_bound(a, what: str) -> ChunkBound:
    """The bound of `a`'s chunks (inner chunks, where it is sharded): its chunk shape x item size
    (strings, whose size no type fixes: MAX_NAME_BYTES an item, MAX_TEXT_CHUNK_BYTES at the least). A
    codec whose output cannot be bounded before zarr inflates it (or one that changes the size) is
    refused, as are shards whose index sinr does not read (_sharding)."""
    meta = a.metadata.to_dict()
    shard = None
    if meta["zarr_format"] == 2:
        filters = [f.get("id") for f in meta.get("filters") or []]
        compressor = (meta.get("compressor") or {}).get("id")
        serializer, after = (filters[0], filters[1:]) if filters and filters[0] in TEXT_CODECS else ("bytes", filters)
        after += [compressor] if compressor else []
    else:
        codecs = meta.get("codecs", [])
        if SHARDING in _names(codecs):
            shard, codecs = _sharding(a, codecs, what)
        names = [n for n in _names(codecs) if n != "transpose"]  # reorders the items, keeps their bytes
        serializer, after = (names[0], names[1:]) if names else ("bytes", [])
    checksum = bool(after) and after[-1] == CRC32C
    after = after[:-1] if checksum else after
    unbounded = [n for n in after if n not in COMPRESSORS][:1] or after[1:2] or (
        [serializer] if serializer not in TEXT_CODECS | {"bytes"} else [])
    if unbounded:
        raise InvalidInputError(f"{what}: {a.path} is encoded with {unbounded[0]}, whose output sinr cannot bound "
                                "before zarr inflates it; sinr reads one of blosc, zstd, gzip or zlib (or none)")
    items = math.prod(a.chunks)
    n_bytes = (max(MAX_TEXT_CHUNK_BYTES, 4 + items * (4 + MAX_NAME_BYTES)) if serializer in TEXT_CODECS
               else items * a.dtype.itemsize)
    return ChunkBound(a.path, n_bytes, after[0] if after else None, checksum, shard)


def check_chunks(group, what: str) -> dict[str, ChunkBound]:
    """Refuse a store where an array's chunk, which zarr inflates whole to read any item of it, is far
    larger than the array or more than the memory free (limits.check_chunk; a sharded array's inner
    chunk), a shard's index is more than the memory free (zarr reads it whole, then only the inner
    chunks a read needs, never a shard inflated whole: anndata's shards are up to 1 GB), or where
    its codecs cannot be bounded; the bound of each array's chunks, by its path."""
    bounds = {}
    for a in _arrays(group):
        check_chunk(a.path, a.chunks, a.shape, a.dtype.itemsize, what, "zarr")  # an inner chunk, where sharded
        bounds[a.path] = chunk_bound(a, what)
        if bounds[a.path].shard is not None:
            check_allocation(bounds[a.path].shard.n_bytes, f"{what}: the index of a shard of {a.path}")
    return bounds


def check_inflation(bound: ChunkBound, chunk: str, data, what: str) -> None:
    """Refuse a chunk's stored bytes that inflate past its bound, before zarr inflates them: blosc and
    zstd declare their size in headers (what their decoders allocate), gzip and zlib are inflated
    into a buffer of the bound (libdeflate), zstd frames without their size streamed a MiB at a time."""
    import deflate
    import zstandard

    data = memoryview(data)[:-4] if bound.checksum else memoryview(data)
    size = len(data)
    try:
        if bound.compressor == "blosc":
            size = int.from_bytes(data[4:8], "little") if len(data) >= 16 else 0  # else not blosc: zarr says so
        elif bound.compressor == "zstd":
            size = _zstd_declared(data)
            if size is None:
                size = 0
                with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as stream:
                    while size <= bound.n_bytes and (piece := stream.read(1 << 20)):
                        size += len(piece)
        elif bound.compressor in ("gzip", "zlib"):
            inflate = deflate.gzip_decompress if bound.compressor == "gzip" else deflate.zlib_decompress
            size = len(inflate(data, bound.n_bytes))
    except (deflate.DeflateError, zstandard.ZstdError):
        size = bound.n_bytes + 1
    if size > bound.n_bytes:
        raise InvalidInputError(f"{what}: the chunk {chunk} of {bound.path} does not inflate into its "
                                f"{bound.n_bytes:,} bytes")


ZSTD_SKIPPABLE = 0x184D2A50  # the magic of a skippable frame, its low 4 bits any


def _zstd_declared(data: memoryview) -> int | None:
    """The bytes the zstd frames in `data` declare, all of them (numcodecs inflates every frame into
    one buffer of their sum), or None where a frame does not declare its size; read from each frame's
    header and its blocks' headers. ZstdError where they run past the end."""
    import zstandard

    total, at = 0, 0
    while at < len(data):
        if int.from_bytes(data[at: at + 4], "little") & ~0xF == ZSTD_SKIPPABLE:
            at += 8 + int.from_bytes(data[at + 4: at + 8], "little")
            continue
        frame = zstandard.get_frame_parameters(data[at:])
        if frame.content_size == zstandard.CONTENTSIZE_UNKNOWN:
            return None
        total += frame.content_size
        at += zstandard.frame_header_size(data[at:])
        last = False
        while not last:
            if at + 3 > len(data):
                raise zstandard.ZstdError("a zstd frame runs past the chunk's end")
            header = int.from_bytes(data[at: at + 3], "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            at += 3 + (1 if kind == 1 else size)  # an RLE block stores one byte for its `size`
        at += 4 if frame.has_checksum else 0
    return total


def _check_index_fits(bound: ChunkBound, shard: str, size: int, what: str) -> None:
    """Refuse a shard file of `size` bytes too small to hold its index, whose size the shard and
    inner chunk shapes fix (zarr reads that many bytes of it for any read)."""
    if size < bound.shard.n_bytes:
        raise InvalidInputError(f"{what}: the shard {shard} of {bound.path} holds {size:,} bytes, fewer than its "
                                f"index of {bound.shard.inner_chunks:,} inner chunks ({bound.shard.n_bytes:,} bytes)")


def shard_chunks(bound: ChunkBound, shard: str, index, size: int, what: str) -> np.ndarray:
    """The (offset, length) of each inner chunk stored in a shard of `size` bytes, from its index
    (`index`, its bytes), each refused unless it is bytes in the shard outside the index and
    outside every other inner chunk (one stored once for two equal ones allowed): zarr slices what
    an index says, unchecked, so an inner chunk pointing into the index reads the index's bytes as
    its values, one across two others the end of one and the start of the next."""
    layout = bound.shard
    pairs = np.frombuffer(index, "<u8", count=2 * layout.inner_chunks).reshape(-1, 2)
    pairs = pairs[(pairs != NO_INNER_CHUNK).any(axis=1)]
    low, high = (layout.n_bytes, size) if layout.at_start else (0, size - layout.n_bytes)
    offsets, lengths = pairs[:, 0], pairs[:, 1]
    outside = (offsets < low) | (offsets > high) | (lengths > high - offsets)  # the last wraps only where the 2nd holds
    if outside.any():
        offset, length = (int(v) for v in pairs[np.argmax(outside)])
        raise InvalidInputError(f"{what}: the shard {shard} of {bound.path} indexes an inner chunk of {length:,} "
                                f"bytes at byte {offset:,}, outside its inner chunks' bytes {low:,} to {high:,}")
    if (lengths == 0).any():  # no codec writes a chunk as no bytes (one not stored is 2**64-1 twice)
        raise InvalidInputError(f"{what}: the shard {shard} of {bound.path} indexes an inner chunk of 0 bytes at "
                                f"byte {int(offsets[np.argmax(lengths == 0)]):,}, which cannot hold its items")
    ranked = pairs[np.argsort(offsets, kind="stable")]
    before, after = ranked[:-1], ranked[1:]
    overlap = (after[:, 0] < before[:, 0] + before[:, 1]) & (after != before).any(axis=1)
    if overlap.any():
        (offset, length), (other, other_length) = (map(int, p[np.argmax(overlap)]) for p in (after, before))
        raise InvalidInputError(f"{what}: the shard {shard} of {bound.path} indexes an inner chunk of {length:,} "
                                f"bytes at byte {offset:,}, overlapping the one of {other_length:,} bytes at byte "
                                f"{other:,}")
    return pairs


def check_shard(bound: ChunkBound, shard: str, data, what: str) -> None:
    """Refuse a whole shard file (`data`) whose index does not fit it or points outside it, or any of
    whose inner chunks inflates past its bound (check_inflation)."""
    size, layout = len(data), bound.shard
    _check_index_fits(bound, shard, size, what)
    index = data[:layout.n_bytes] if layout.at_start else data[size - layout.n_bytes:]
    for offset, length in shard_chunks(bound, shard, index, size, what).tolist():
        check_inflation(bound, f"at byte {offset:,} of the shard {shard}", data[offset: offset + length], what)


def _index_request(layout: ShardIndex, byte_range) -> bool:
    """Whether a byte range of a shard is the one zarr reads its index by (then the inner chunks the
    index names, each by its own range)."""
    from zarr.abc.store import RangeByteRequest, SuffixByteRequest

    if layout.at_start:
        return isinstance(byte_range, RangeByteRequest) and (byte_range.start, byte_range.end) == (0, layout.n_bytes)
    return isinstance(byte_range, SuffixByteRequest) and byte_range.suffix == layout.n_bytes


def _stored_size(path: Path, name: str, what: str) -> int | None:
    """The bytes of the chunk or metadata file `name` at `path` (a link to a file: the file's), None
    where none is stored. Anything else there is refused: zarr's LocalStore reads a folder, or a path
    through a file, as a file not stored (a chunk's fill value, so a folder in place of a shard read
    as zeros), a device or a pipe until it ends (a link to /dev/zero: never), where only a missing
    file means not stored."""
    try:
        status = path.stat()
    except FileNotFoundError:
        if not path.is_symlink():  # nothing there (a dangling link is something)
            return None
        status = None
    except OSError:  # a file where a folder of the path belongs, a link loop
        status = None
    if status is None or not stat.S_ISREG(status.st_mode):
        raise InvalidInputError(f"{what}: {name} is not a file (a folder, a device, a pipe or a link to none), which "
                                "zarr cannot read")
    return status.st_size


def checked_store(path: Path):
    """A read-only zarr store of folder `path` whose chunks are checked as they are read (bind the
    arrays' bounds to it with .bounds): zarr and numcodecs inflate a chunk whole, in their own code,
    with no cap on its size (a 240 kB store, one zstd frame of 2 GiB of zeros, took 2.16 GB). Of a
    shard, zarr reads the whole file (check_shard) or its index (which must fit the file, checked
    before it is read, and point inside it), then each inner chunk it needs by its byte range."""
    from zarr.storage import LocalStore

    class CheckedStore(LocalStore):
        def __init__(self, root, *, read_only: bool = True) -> None:
            super().__init__(root, read_only=read_only)
            self.bounds: dict[str, ChunkBound] = {}  # none while the metadata is read

        def _bound(self, key: str) -> tuple[ChunkBound | None, str]:
            """The bound of the chunk file `key`, and its name within its array."""
            folder, _, name = key.rpartition("/")
            if name in METADATA_FILES:
                return None, name
            while folder and folder not in self.bounds:
                folder = folder.rpartition("/")[0]
            return self.bounds.get(folder) if folder else None, key[len(folder) + 1:]

        async def get(self, key, prototype=None, byte_range=None):
            bound, chunk = self._bound(key)
            index = bound is not None and bound.shard is not None and _index_request(bound.shard, byte_range)
            # a node's metadata too (where not consolidated) is checked as a chunk is
            size = _stored_size(self.root / key, key if bound is None else f"the chunk {chunk} of {bound.path}",
                                str(path))
            if index and size is not None:  # else a shard not stored
                _check_index_fits(bound, chunk, size, str(path))
            buffer = await super().get(key, prototype, byte_range)
            if buffer is None or bound is None:
                return buffer
            data = buffer.as_numpy_array()
            if bound.shard is None:
                check_inflation(bound, chunk, data, str(path))
            elif byte_range is None:
                check_shard(bound, chunk, data, str(path))
            elif index:
                shard_chunks(bound, chunk, data, size, str(path))
            else:  # an inner chunk, by the range its checked index gives
                check_inflation(bound, f"at byte {byte_range.start:,} of the shard {chunk}", data, str(path))
            return buffer

    return CheckedStore(path, read_only=True)


def open_zarr(path: Path):
    """The root group of an AnnData zarr store, read-only, its chunks checked (check_chunks) and each
    chunk checked as it is read (checked_store)."""
    import warnings

    import zarr

    with zarr_errors(str(path)), warnings.catch_warnings():
        # zarr's note on a codec around shards, as it opens such an array, which check_chunks refuses
        warnings.filterwarnings("ignore", message="Combining a `sharding_indexed` codec", category=UserWarning)
        store = checked_store(path)
        group = zarr.open_group(store, mode="r")
        store.bounds = check_chunks(group, str(path))
    return group


def read_zarr_elem(group, path: str, what: str):
    """One element of a store, read by anndata once its declared size fits the memory free; a failure
    names it."""
    from anndata.io import read_elem

    with zarr_errors(what):
        obj = group[path]
        check_allocation(declared_bytes(obj), f"{what}: {path}")
    try:
        return read_elem(obj)
    except SinrError:  # a chunk refused as it is read (checked_store)
        raise
    except Exception as exc:  # anndata raises many types for elements it cannot read
        raise InvalidInputError(f"{what}: {path} is unreadable ({one_line(exc)})") from exc


def _obs_names(group, what: str) -> list:
    """The store's cell names: obs's index column, read alone."""
    obs = group.get("obs")
    index = None if obs is None else text_attr(obs, "_index")
    if index is None or index not in obs:
        raise InvalidInputError(f"{what}: obs is not an anndata dataframe with an index")
    return list(read_zarr_elem(group, f"obs/{index}", what))


def zarr_matrix(group, path: Path, x_path: str, var_path: str, what: str, spec: SourceSpec | None) -> MatrixSource:
    """The count matrix at `x_path` (cells x genes) with the genes of `var_path` and the cells of
    obs, as a genes x cells source: a CSR streamed where `spec` can open it again in another
    process, anything else read whole."""
    var = read_zarr_elem(group, var_path, what)
    obs_names = _obs_names(group, what)
    x = group[x_path]
    if spec is None or not streamed(x):
        return cells_by_genes_source(read_zarr_elem(group, x_path, what), var, obs_names, what, spec=spec,
                                     paths=(str(path),))
    fields = {column: var_field(var, column, what) for column in ("gene_ids", "feature_types")}
    source = ZarrCsrSource(x, path, gene_names=[str(v) for v in var.index], cell_names=obs_names,
                           gene_ids=fields["gene_ids"][0], feature_types=fields["feature_types"][0], spec=spec,
                           description=what)
    source.incomplete = tuple(lacks for _, lacks in fields.values() if lacks)
    return source


def streamed(x) -> bool:
    """Whether a count matrix of a store streams a block of cells at a time (a CSR one) where its
    source can be opened again, rather than being read whole."""
    return text_attr(x, "encoding-type") == "csr_matrix"


def read_zarr(path: Path, layer: str | None = None) -> MatrixSource:
    """An AnnData zarr store's X, a layer, or raw.X ('raw'), read as the module docstring says."""
    what = f"{path}" if layer is None else f"{path} ({'raw' if layer == 'raw' else f'layer {layer}'})"
    group = open_zarr(path)
    with zarr_errors(what):
        if layer == "raw":
            if "raw/X" not in group:
                raise InvalidInputError(f"{path}: has no raw matrix")
            x_path, var_path = "raw/X", "raw/var"
        elif layer is not None:
            names = sorted(group["layers"].keys()) if "layers" in group else []
            if layer not in names:
                raise InvalidInputError(f"{path}: has no layer {layer!r} (layers: {names})")
            x_path, var_path = f"layers/{layer}", "var"
        else:
            if "X" not in group:
                raise InvalidInputError(f"{path}: has no X matrix (use --layer)")
            x_path, var_path = "X", "var"
        return zarr_matrix(group, path, x_path, var_path, what, path_spec(path, layer=layer))


class ZarrCsrSource(RandomAccessSource):
    """Cells as rows of a CSR matrix in a zarr store: a block reads its slices of indptr, indices and
    data, each checked before the next is read."""

    def __init__(self, x, path: Path, *, gene_names: list[str], cell_names: list, gene_ids, feature_types,
                 spec: SourceSpec, description: str) -> None:
        self.path, self.description, self.paths, self._spec = path, description, (str(path),), spec
        shape = x.attrs.get("shape")
        if not isinstance(shape, (list, tuple)) or len(shape) != 2:
            raise InvalidInputError(f"{description}: {x.path} has no (cells, genes) shape attribute")
        self.shape = check_shape((shape[1], shape[0]), description)
        self._data, self._indices, self._indptr = (_array(x, name, kinds, description) for name, kinds in
                                                   (("data", "biuf"), ("indices", "iu"), ("indptr", "iu")))
        if self._indptr.shape[0] != self.shape[1] + 1:
            raise InvalidInputError(f"{description}: {self._indptr.path} holds {self._indptr.shape[0]:,} index "
                                    f"pointers for {self.shape[1]:,} cells")
        if self._indices.shape[0] != self._data.shape[0]:
            raise InvalidInputError(f"{description}: {self._indices.shape[0]:,} indices for "
                                    f"{self._data.shape[0]:,} values")
        self.nnz = int(self._data.shape[0])
        self.gene_names = check_names(gene_names, self.shape[0], f"{description} gene names")
        self.gene_ids = check_names(gene_ids, self.shape[0], f"{description} gene ids")
        self.feature_types = check_names(feature_types, self.shape[0], f"{description} feature types")
        self._cell_names = check_names(cell_names, self.shape[1], f"{description} cell names")

    def spec(self) -> SourceSpec:
        """How to open this source again in another process."""
        return self._spec

    def cell_names(self, start: int, stop: int) -> list[str]:
        """Names of cells start..stop-1."""
        return self._cell_names[start:stop]

    def block(self, start: int, stop: int) -> CellBlock:
        """Cells start..stop-1: their index pointers read and checked, then their entries."""
        self._check_range(start, stop)
        with zarr_errors(self.description):
            ptr = checked_pointers(self._indptr[start: stop + 1], self.nnz, self.shape[0],
                                   f"{self.description} (cells {start:,}..{stop - 1:,})")
            lo, hi = int(ptr[0]), int(ptr[-1])
            return validated_block(start, ptr - lo, self._indices[lo:hi], self._data[lo:hi], self.shape[0],
                                   self.description)


def _array(group, name: str, kinds: str, what: str):
    """group[name] when it is a 1-D zarr array whose dtype kind is one of `kinds`."""
    import zarr

    obj = group.get(name)
    if not isinstance(obj, zarr.Array):
        raise InvalidInputError(f"{what}: has no {name!r} array where the format keeps it")
    if obj.ndim != 1 or obj.dtype.kind not in kinds:
        raise InvalidInputError(f"{what}: {obj.path} is a {obj.ndim}-D {obj.dtype} array, not what the format "
                                "stores there")
    return obj


# ------------------------------------------------------------------------------------ writing

def zarr_kwargs(compression: str) -> dict:
    """zarr's array options for a written store: 'auto' zarr's default codec (format 2: Blosc lz4,
    format 3: zstd), 'gzip' gzip at GZIP_LEVEL, 'none' uncompressed; 'lzf' is an HDF5 filter zarr lacks."""
    import anndata

    if compression not in COMPRESSIONS:
        raise InvalidInputError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
    if compression == "lzf":
        raise InvalidInputError("compression lzf is HDF5's; a zarr output takes auto (zarr's default), gzip or none")
    if compression == "auto":
        return {}
    if compression == "none":
        return {"compressor": None}
    if anndata.settings.zarr_write_format == 2:
        from numcodecs import GZip

        return {"compressor": GZip(GZIP_LEVEL)}
    from zarr.codecs import GzipCodec

    return {"compressor": GzipCodec(level=GZIP_LEVEL)}


def write_zarr_store(path: Path, adata, compression: str) -> None:
    """Write `adata` into the empty folder `path` as AnnData.write_zarr does, every part as it is (its
    string columns not made categorical), compressed as zarr_kwargs says, in shards where anndata's
    auto_shard_zarr_v3 says so (a sharded store reads back as checked as any: checked_store)."""
    import warnings

    import anndata
    from anndata.io import write_zarr

    kwargs = zarr_kwargs(compression)
    with quiet_anndata(), anndata.settings.override(allow_write_nullable_strings=True), \
            warnings.catch_warnings():
        # zarr's notes on its own future defaults and on format 3's consolidated metadata, once per array
        warnings.filterwarnings("ignore", message="(zarr v3 autosharding|Consolidated metadata)", category=UserWarning)
        try:
            write_zarr(path, adata, convert_strings_to_categoricals=False, **kwargs)
        except BaseException:
            _settle_writes()
            raise


def _settle_writes() -> None:
    """Wait for the writes zarr's event loop still runs after one of them failed (a full disk, an
    interrupt): it goes on with the others, whose files then appeared in the store after atomic_path
    had removed it (a temporary folder left behind in about half of the failed decodes), and whose
    errors asyncio printed as tracebacks after the one-line error. Their outcomes are taken here."""
    import asyncio

    try:
        from zarr.core.sync import sync
    except ImportError:  # a zarr without this loop writes in the calling thread
        return

    async def settle() -> None:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)

    with contextlib.suppress(Exception):  # the write's own error is the one to report
        sync(settle(), timeout=60)


def write_zarr_matrix(path: Path, m: CountMatrix, *, compression: str = "auto", dtype=None) -> None:
    """Write a matrix with its names as AnnData.write_zarr does (string columns as categoricals)."""
    adata = to_anndata(m, dtype)
    with quiet_anndata():
        adata.strings_to_categoricals()
    write_zarr_store(path, adata, compression)
