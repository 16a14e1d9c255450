"""A hint for a common mistake: encoding (or appending) the X of an AnnData that holds normalised
values (or no X) as one count matrix, when a layer or raw.X holds the counts. The error then names
that matrix and how to encode it: from the CLI, write_sinr, and the package's own encode and append
(defined here, the encoder's with the hint: the encoder cannot import this layer)."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..encoder import append as _append
from ..encoder import driver as _driver
from ..errors import InvalidInputError, SinrError
from .parts import parts_of


@contextmanager
def hinting(source, layer: str | None, command: str = "encode") -> Iterator[None]:
    """Raise counts_hint's error for an InvalidInputError of the block, which reads `source` as one
    count matrix for `command` (values are checked as they stream: a normalised X fails there)."""
    try:
        yield
    except InvalidInputError as exc:
        hinted = counts_hint(source, layer, exc, command)
        if hinted is exc:
            raise
        raise hinted from exc


def counts_hint(source, layer: str | None, error: SinrError, command: str = "encode") -> SinrError:
    """The error of a single-matrix encoding (or append, `command`) whose X is not counts (or is
    missing), naming the layer or raw matrix that holds counts when there is one; otherwise `error`
    itself. Only an encode may store the whole AnnData instead."""
    text = str(error)
    missing = "has no X matrix" in text
    if layer is not None or not isinstance(error, InvalidInputError) or "holds integer counts" in text or not (
            missing or any(w in text for w in ("non-integer", "negative", "NaN", "not counts", "above"))):
        return error
    try:
        with parts_of(source) as parts:
            if parts is None:
                return error
            candidates = [f"layers/{k}" for k in parts.keys("layers")] + (["raw/X"] if parts.has("raw") else [])
            candidates.sort(key=lambda p: p not in ("layers/counts", "layers/raw_counts", "raw/X"))
            found = next((p for p in candidates if parts.format(p) is not None), None)
            what = parts.what
    except (SinrError, OSError, KeyError, ValueError):
        return error
    if found is None:
        return error
    name = "raw" if found == "raw/X" else found[len("layers/"):]
    place = "its .raw" if name == "raw" else f"its layer {name!r}"
    problem = f"{what}: has no X matrix" if missing else f"{text}; X is not counts (normalised data?)"
    whole = (", or encode the whole AnnData, X as it is (sinr encode without --matrix-only; "
             "scinrcodec.encode_whole)") if command == "encode" else ""
    return InvalidInputError(f"{problem}, but {place} holds integer counts: {command} that with --layer {name} "
                             f"(layer={name!r}){whole}")


def _with_hint(function: Callable, command: str, source_at: int) -> Callable:
    """`function` (whose argument `source_at`, or `source`, is what it reads) raising counts_hint's
    error; of this module, where a process pool's task is looked up by its name, since
    functools.wraps gives it the module of `function`, whose name is another object."""
    @functools.wraps(function)
    def hinted(*args, **kwargs):
        source = args[source_at] if len(args) > source_at else kwargs.get("source")
        with hinting(source, kwargs.get("layer"), command):
            return function(*args, **kwargs)
    hinted.__module__ = __name__
    return hinted


encode = _with_hint(_driver.encode, "encode", 0)
append = _with_hint(_append.append, "append", 1)
