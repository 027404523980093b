"""One case of the benchmark: an optimizer, a dtype and a size, one flat tensor.

It times, round by round, fastopt's ``opt.step(grads)``, the same step in
:mod:`fastopt.reference`, torch's fastest CPU path where torch has the optimizer, and the
roofline probe (:data:`~fastopt.bench.optimizers.ACCESS`); and it checks fastopt against the
reference over a few steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastopt
from fastopt import reference
from fastopt._kernels import kernels

from .optimizers import ACCESS, OPTIONS, case_shape, torch_class
from .timing import medians, ratio, run_rounds

CHECK_STEPS = 5


@dataclass
class Result:
    optimizer: str
    dtype: str
    size: int
    fastopt_s: float
    numpy_s: float
    torch_s: float | None
    torch_path: str | None
    roofline_s: float
    gelem_per_s: float
    gb_per_s: float
    roofline_fraction: float
    speedup_numpy: float
    speedup_torch: float | None
    max_rel_deviation: float


def torch_step(name: str, param: np.ndarray,
               grad: np.ndarray) -> tuple[Callable[[], Any], str] | None:
    """torch's step over a copy of ``param`` with gradient ``grad``, on its fastest CPU path
    (``fused=True`` where torch has a fused CPU kernel, else ``foreach=True``, else its only
    one: Muon's), and the path's name; None where torch is not installed or lacks the
    optimizer."""
    cls = torch_class(name)
    if cls is None:
        return None
    import torch

    p = torch.from_numpy(param.copy()).requires_grad_()
    p.grad = torch.from_numpy(grad.copy())
    for path in ("fused", "foreach", "default"):
        try:
            opt = cls([p], **OPTIONS[name], **({} if path == "default" else {path: True}))
            opt.step()
        except (RuntimeError, TypeError, ValueError):
            continue
        return opt.step, path
    return None


def max_rel_deviation(name: str, param: np.ndarray, grads: list[np.ndarray]) -> float:
    """max |fastopt − reference| / max |reference| after ``len(grads)`` steps from ``param``."""
    mine, ref_param = param.copy(), param.copy()
    opt = getattr(fastopt, name)([mine], **OPTIONS[name])
    ref = getattr(reference, name)([ref_param], **OPTIONS[name])
    for g in grads:
        opt.step([g])
        ref.step([g])
    scale = float(np.max(np.abs(ref_param))) or 1.0
    return float(np.max(np.abs(mine.astype(np.float64) - ref_param))) / scale


def run_case(name: str, dtype: np.dtype, size: int, rounds: int, budget: float) -> Result:
    """One optimizer over one tensor of ``size`` elements of ``dtype`` (flat, or a matrix for a
    rule of matrices: :func:`~fastopt.bench.optimizers.case_shape`): ``rounds`` rounds of
    samples lasting ``budget`` seconds each, and the deviation check."""
    rng = np.random.default_rng(0)
    shape = case_shape(name, size)
    param = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
    grad = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
    check_grads = [grad * (0.5 + k) for k in range(CHECK_STEPS)]
    deviation = max_rel_deviation(name, param, check_grads)
    del check_grads

    mine = param.copy()
    opt = getattr(fastopt, name)([mine], **OPTIONS[name])
    grads = [grad]
    ref = getattr(reference, name)([param.copy()], **OPTIONS[name])
    torch_run = torch_step(name, param, grad)
    reads, writes = ACCESS[name]
    probe_arrays = [param.copy() for _ in range(reads)]  # parameter, gradient, states

    contenders: dict[str, Callable[[], Any]] = {
        "fastopt": lambda: opt.step(grads),
        "numpy": lambda: ref.step(grads),
        "roofline": lambda: kernels.probe(probe_arrays),
    }
    if torch_run is not None:
        contenders["torch"] = torch_run[0]
    times = run_rounds(contenders, rounds, budget)
    t = medians(times)
    nbytes = (reads + writes) * np.dtype(dtype).itemsize * size
    return Result(
        optimizer=name,
        dtype=np.dtype(dtype).name,
        size=size,
        fastopt_s=t["fastopt"],
        numpy_s=t["numpy"],
        torch_s=t.get("torch"),
        torch_path=torch_run[1] if torch_run else None,
        roofline_s=t["roofline"],
        gelem_per_s=size / t["fastopt"] / 1e9,
        gb_per_s=nbytes / t["fastopt"] / 1e9,
        roofline_fraction=ratio(times, "roofline", "fastopt"),
        speedup_numpy=ratio(times, "numpy", "fastopt"),
        speedup_torch=ratio(times, "torch", "fastopt") if torch_run else None,
        max_rel_deviation=deviation,
    )
