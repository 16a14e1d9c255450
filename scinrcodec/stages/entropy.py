"""Thin wrappers over constriction's stack ANS coder, shared by the bitmap and value stages.

Encoding pushes symbol arrays in the reverse of the order the decoder reads them; every model is
built from exactly representable numbers so encoder and decoder quantise probabilities alike.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import constriction
import numpy as np

from ..errors import CorruptFileError

AnsCoder = constriction.stream.stack.AnsCoder
UNIFORM_FAMILY = constriction.stream.model.Uniform()


@functools.lru_cache(maxsize=4096)
def uniform_model(size: int):
    return constriction.stream.model.Uniform(size)


@functools.lru_cache(maxsize=4096)
def halving_model(n_symbols: int):
    """P(q) proportional to 2**-(q+1) on {0..n_symbols-1}: the unary part of a Golomb code."""
    return categorical_model(np.ldexp(1.0, -np.arange(1, n_symbols + 1)))


def categorical_model(weights: np.ndarray):
    return constriction.stream.model.Categorical(np.asarray(weights, dtype=np.float64), perfect=False)


def new_decoders(words: np.ndarray, starts: list[int], ends: list[int]) -> list[AnsCoder]:
    """Decoders over slices of one contiguous uint32 array (one per block of a read)."""
    with decoding_errors():  # e.g. a stream ending in a zero word
        return [AnsCoder(words[start:end]) for start, end in zip(starts, ends)]


@contextlib.contextmanager
def decoding_errors() -> Iterator[None]:
    """Turn constriction's errors on damaged streams (ValueError, or a Rust panic) into ours."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit, CorruptFileError):
        raise
    except BaseException as exc:
        raise CorruptFileError(f"coded block is corrupt ({type(exc).__name__})") from exc
