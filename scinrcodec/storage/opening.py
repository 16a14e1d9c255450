"""Opening a byte source: the one place that tells paths, URLs, bytes and file objects apart, above
the local sources (storage.source) and the remote one (storage.remote)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import InvalidInputError
from .source import ByteSource, FileObjectSource, LocalFileSource, MemorySource
from .urls import URL, is_url


def check_storage_options(sources, storage_options: dict | None) -> None:
    """Raise InvalidInputError for storage options given where no source is a URL to take them."""
    if storage_options and not any(isinstance(s, str) and is_url(s) for s in sources):
        raise InvalidInputError("storage options (--storage-option) apply to URLs only, and no input is one")


def open_source(source, storage_options: dict | None = None) -> ByteSource:
    """A ByteSource for a path, a URL (s3://, gs://, http(s)://, any fsspec URL; storage_options
    go to fsspec), a bytes-like object, or a seekable binary file object."""
    if isinstance(source, ByteSource):
        return source
    if storage_options is not None and not (isinstance(storage_options, Mapping)
                                            and all(isinstance(key, str) for key in storage_options)):
        raise InvalidInputError(f"storage_options must be a dict of fsspec's options by name, not "
                                f"{type(storage_options).__name__}"
                                + (f" {storage_options!r}" if isinstance(storage_options, (str, int, float)) else ""))
    if isinstance(source, str) and URL.match(source):  # a scheme is case-insensitive (RFC 3986): HTTP:// too
        scheme, rest = source.split("://", 1)
        source = f"{scheme.lower()}://{rest}"
    if isinstance(source, str) and source.startswith("file://"):
        source = source[len("file://"):]
    elif isinstance(source, str) and is_url(source):
        from .remote import RemoteSource  # asyncio and fsspec load only for URLs

        return RemoteSource(source, storage_options)
    check_storage_options([source], storage_options)
    if isinstance(source, (str, os.PathLike)):
        return LocalFileSource(Path(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return MemorySource(source)
    return FileObjectSource(source)
