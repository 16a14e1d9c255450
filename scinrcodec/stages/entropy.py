"""Thin wrappers over constriction's stack ANS coder, shared by the bitmap and value stages.

Encoding pushes symbol arrays in the reverse of the order the decoder reads them; every model is
built from exactly representable numbers so encoder and decoder quantise probabilities alike.
"""
from __future__ import annotations

import functools

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


def new_decoder(words: np.ndarray) -> AnsCoder:
    try:
        return AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # e.g. a stream ending in a zero word
        raise CorruptFileError(f"coded block is corrupt ({type(exc).__name__})") from exc


def checked_decode(coder: AnsCoder, model, count: int) -> np.ndarray:
    """Decode `count` symbols, turning constriction's errors on damaged input into ours."""
    if count == 0:
        return np.zeros(0, dtype=np.int32)
    try:
        return np.asarray(coder.decode(model, count), dtype=np.int64)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # constriction raises ValueError, or a Rust panic, on damaged streams
        raise CorruptFileError(f"coded block is corrupt ({type(exc).__name__})") from exc


def checked_decode_family(coder: AnsCoder, family, params: np.ndarray) -> np.ndarray:
    if params.size == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        return np.asarray(coder.decode(family, params), dtype=np.int64)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise CorruptFileError(f"coded block is corrupt ({type(exc).__name__})") from exc
