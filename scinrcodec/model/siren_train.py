"""Fitting SIRENs with torch (encoder only; the decoder never imports this module).

Many patches are trained at once: each layer's weights carry a leading patch dimension and a
step multiplies a minibatch from every patch with torch.bmm, on the GPU when torch sees one.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..storage.source import fork_safe_lock
from .siren import W0


@dataclass
class TrainedSiren:
    """Float weights in training form: weights[l] is (in, out); sine layers use sin(w0 (x W + b))."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]


class TrainingStopped(Exception):
    """A fit ended early because the encode it works for is stopping (interrupted, or failed)."""


_task = threading.local()  # the stop event of the encode whose task this thread runs, if any
_fitting_lock = fork_safe_lock()
_fitting = {"threads": 0, "saved": 1}  # CPU fits running now, and torch's thread count before the first


def _forget_fits() -> None:
    """In a forked child: the parent's fits have no threads here, so its first fit is the first (it
    had counted them, never ended as the last and left torch on one thread)."""
    _fitting["threads"] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_fits)


PATCHES_PER_STEP = 16  # band SIRENs trained at once, stacked as one batched network


def run_stoppable(stop: threading.Event, function: Callable, *args):
    """function(*args) in this thread such that every SIREN fit in it ends, raising
    TrainingStopped, at its next step once `stop` is set: an interrupted encode does not wait for
    its worker threads to finish fitting."""
    _task.stop = stop
    try:
        return function(*args)
    finally:
        _task.stop = None


def _check_stop() -> None:
    stop = getattr(_task, "stop", None)
    if stop is not None and stop.is_set():
        raise TrainingStopped("the encode is stopping")


def pick_device(requested: str | None = None) -> str:
    """The torch device to train on: the one asked for, else cuda when there is one, else cpu."""
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def fit_sirens(coords: list[np.ndarray], targets: list[np.ndarray], *, width: int, hidden_layers: int,
               steps: int, batch: int, learning_rate: float, seed: int, device: str | None = None
               ) -> list[TrainedSiren]:
    """Fit one SIREN per patch to (coords in [-1, 1], targets) with MSE, PATCHES_PER_STEP patches
    trained together as one batched network (the grouping is part of what decides the weights).

    On the CPU a fit runs on its thread alone: the encoder fits in each of its `jobs` chunk workers
    at once, and torch's own threads beside them spun against each other (visium's one screened band:
    300 steps 16.8 s on 2 threads of a busy 2-core VM, 0.67 s on one); the weights no longer depend on
    the machine's CPUs. torch's thread count is partly process-wide (the default of threads that start
    using torch, MKL's), so the first of fits that overlap saves it and the last one gives it back."""
    import torch

    device = pick_device(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    fitted: list[TrainedSiren] = []
    alone = device == "cpu"
    if alone:
        with _fitting_lock:
            if not _fitting["threads"]:
                _fitting["saved"] = torch.get_num_threads()
            _fitting["threads"] += 1
        torch.set_num_threads(1)
    try:
        for start in range(0, len(coords), PATCHES_PER_STEP):
            chunk = slice(start, start + PATCHES_PER_STEP)
            fitted.extend(_fit_chunk(coords[chunk], targets[chunk], width, hidden_layers, steps, batch,
                                     learning_rate, generator, device))
    finally:
        if alone:
            with _fitting_lock:
                _fitting["threads"] -= 1
                if not _fitting["threads"]:
                    torch.set_num_threads(_fitting["saved"])
    return fitted


def _init_layers(n_patches: int, width: int, hidden_layers: int, generator, device):
    import torch

    sizes = [2] + [width] * (hidden_layers + 1) + [1]
    params = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = index == len(sizes) - 2
        bound = 1.0 / fan_in if index == 0 else math.sqrt(6.0 / fan_in) / (1.0 if last else W0)
        w = (torch.rand(n_patches, fan_in, fan_out, generator=generator) * 2 - 1) * bound
        b = (torch.rand(n_patches, 1, fan_out, generator=generator) * 2 - 1) / math.sqrt(fan_in)
        params += [w.to(device).requires_grad_(), b.to(device).requires_grad_()]
    return params


def _forward(params, x):
    import torch

    h = x
    n_layers = len(params) // 2
    for index in range(n_layers):
        w, b = params[2 * index], params[2 * index + 1]
        h = torch.baddbmm(b, h, w)
        if index < n_layers - 1:
            h = torch.sin(W0 * h)
    return h.squeeze(-1)


def _fit_chunk(coords, targets, width, hidden_layers, steps, batch, learning_rate, generator, device):
    import torch

    n_patches = len(coords)
    longest = max(c.shape[0] for c in coords)
    x_all = torch.zeros(n_patches, longest, 2)
    y_all = torch.zeros(n_patches, longest)
    counts = torch.tensor([c.shape[0] for c in coords], dtype=torch.float64)
    for i, (c, t) in enumerate(zip(coords, targets)):
        x_all[i, : c.shape[0]] = torch.from_numpy(c.astype(np.float32))
        y_all[i, : t.shape[0]] = torch.from_numpy(t.astype(np.float32))
    x_all, y_all = x_all.to(device), y_all.to(device)
    params = _init_layers(n_patches, width, hidden_layers, generator, device)
    optimiser = torch.optim.Adam(params, lr=learning_rate)
    rows = torch.arange(n_patches, device=device).unsqueeze(1)
    for _ in range(steps):
        _check_stop()
        pick = (torch.rand(n_patches, batch, generator=generator, dtype=torch.float64) * counts[:, None]).long()
        pick = pick.to(device)
        x, y = x_all[rows, pick], y_all[rows, pick]
        loss = ((_forward(params, x) - y) ** 2).mean(dim=1).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    weights = [p.detach().cpu().numpy().astype(np.float64) for p in params]
    layers = range(len(weights) // 2)
    return [TrainedSiren([weights[2 * k][i] for k in layers], [weights[2 * k + 1][i, 0] for k in layers])
            for i in range(n_patches)]
