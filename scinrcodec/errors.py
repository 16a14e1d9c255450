"""Typed exceptions: library code raises these, only the CLI prints them."""


def printable(text: str) -> str:
    """A name for messages and the native core's (UTF-8) strings: a path's bytes that are not UTF-8
    (surrogates in Python's str) shown as \\xNN escapes, not failing the call that carries them."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class SinrError(Exception):
    """Base class of every error scinrcodec raises on purpose."""


class InvalidInputError(SinrError):
    """The input matrix or file cannot be encoded as asked (bad values, unknown format)."""


class NotIterableError(InvalidInputError, TypeError):
    """An open matrix was iterated: a TypeError too, as Python's protocols expect of what is not iterable."""


class OutputExistsError(SinrError):
    """The output path exists and overwriting was not requested."""


class FormatError(SinrError):
    """The file is not a .sinr file, or is malformed."""


class CorruptFileError(FormatError):
    """A checksum, length or internal consistency check failed: the file is damaged."""


class UnsupportedVersionError(FormatError):
    """The file was written by a format version this reader does not understand."""


class SinrIndexError(SinrError, IndexError):
    """An index that does not index the matrix: outside it, of a type no axis takes (a float, a
    bool), or a key of the wrong shape (too many indices, two Ellipses)."""


class SinrKeyError(SinrError, KeyError):
    """A gene or cell name the file does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OutputError(SinrError):
    """An output could not be written (disk full, file too large, permissions)."""


class FileChangedError(SinrError):
    """Another process rewrote or truncated the file while it was open: open it again."""


class ResultTooLargeError(SinrError, MemoryError):
    """A result or working memory (a read's, an encode's) cannot be allocated, or exceeds the memory
    free to this process (the machine's, or less under a memory cgroup); the message says how large it is."""


class ClusterError(SinrError):
    """The Dask cluster an encode ran on failed, or could not be reached (a closed client, no workers,
    a connection lost)."""


class RemoteError(SinrError):
    """A remote file (s3://, gs://, http(s)://, any fsspec URL) could not be read as asked."""


class RemoteNotFoundError(RemoteError):
    """The URL names no object."""


class RemoteAccessError(RemoteError):
    """The server refused the request (credentials, permissions)."""


class RangeNotSupportedError(RemoteError):
    """The server answers byte-range requests with something other than the range asked for."""


class RemoteConnectionError(RemoteError):
    """The connection failed or dropped, and retrying did not help."""


class RemoteChangedError(RemoteError, FileChangedError):
    """The object was replaced while open (its size or ETag changed): reading on would mix two files."""
