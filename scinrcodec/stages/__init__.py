"""The stages of the .sinr pipeline, one module each, registered by codec id (numcodecs style).

reorder -> tiling (patches and blocks) -> bitmap (positions) -> predictor (SIREN or baseline)
-> quantise (weights, values) -> values (entropy coding given the prediction).
"""
from .registry import Stage, get_stage, register_stage

__all__ = ["Stage", "get_stage", "register_stage"]
