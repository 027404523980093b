"""The model-shaped step: 200 float32 tensors of mixed shapes, ~2·10^6 elements, as in a
network. fastopt's step over the separate tensors against the same parameters packed into one
segment, against the step with fused global-norm clipping, and against torch's fused step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastopt

from .cases import made
from .optimizers import OPTIONS, torch_class
from .timing import measure, medians, ratio


def model_shapes(total: int = 2_000_000, count: int = 200, seed: int = 0) -> list[tuple[int, ...]]:
    """``count`` tensors of mixed shapes near ``total`` elements: a few large matrices, many
    small vectors, as in a network."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.5, count)
    sizes = np.maximum(1, (weights / weights.sum() * total).astype(int))
    shapes: list[tuple[int, ...]] = []
    for k, size in enumerate(sizes):
        rows = int(np.sqrt(size))
        shapes.append((rows, int(size) // rows) if k % 3 == 0 and size >= 64 else (int(size),))
    return shapes


@dataclass
class ModelResult:
    optimizer: str
    tensors: int
    elements: int
    fastopt_s: float          # opt.step(grads) over the separate tensors
    flat_s: float             # the same parameters packed into one segment
    clipped_s: float          # opt.step(grads, max_norm=1.0): fused global-norm clipping
    torch_s: float | None     # torch's fused step on the same tensors
    flat_ratio: float         # fastopt_s / flat_s
    speedup_torch: float | None
    doubts: str               # trust.CODES of its measurement ('': none)


def _torch_fused_step(name: str, params: list[np.ndarray],
                      grads: list[np.ndarray]) -> Callable[[], Any] | None:
    """torch's fused step over copies of ``params``; None where torch has no fused CPU kernel
    for the optimizer, or no such optimizer."""
    cls = torch_class(name)
    if cls is None:
        return None
    import torch

    tensors = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g)
    try:
        return cls(tensors, **OPTIONS[name], fused=True).step
    except (RuntimeError, TypeError, ValueError):
        return None


def run_model(name: str, rounds: int, budget: float) -> ModelResult:
    """The model-shaped step of one optimizer, over :func:`model_shapes` in float32."""
    shapes = model_shapes()
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    opt = made(fastopt, name, [p.copy() for p in params])
    clipped = made(fastopt, name, [p.copy() for p in params])
    flat, _ = fastopt.flatten(params)
    flat_grad, _ = fastopt.flatten(grads)
    flat_opt = made(fastopt, name, [flat])
    flat_grads = [flat_grad]
    contenders: dict[str, Callable[[], Any]] = {
        "fastopt": lambda: opt.step(grads),
        "flat": lambda: flat_opt.step(flat_grads),
        "clipped": lambda: clipped.step(grads, max_norm=1.0),
    }
    torch_fused = _torch_fused_step(name, params, grads)
    if torch_fused is not None:
        contenders["torch"] = torch_fused
    times, _, codes, _ = measure(contenders, rounds, budget)
    t = medians(times)
    return ModelResult(
        optimizer=name, tensors=len(shapes), elements=sum(int(np.prod(s)) for s in shapes),
        fastopt_s=t["fastopt"], flat_s=t["flat"], clipped_s=t["clipped"], torch_s=t.get("torch"),
        flat_ratio=1 / ratio(times, "flat", "fastopt"),
        speedup_torch=ratio(times, "torch", "fastopt") if torch_fused else None,
        doubts=codes,
    )
