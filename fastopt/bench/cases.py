"""One case of the benchmark: an optimizer, a dtype and a size, one flat tensor.

It times, round by round, fastopt's ``opt.step(grads)``, the same step in
:mod:`fastopt.reference`, torch's fastest CPU path where torch has the optimizer, the
roofline probe (:data:`~fastopt.bench.optimizers.ACCESS`) and the rule's plain loop
(:mod:`.plain`); and it checks fastopt against the reference over a few steps. A measurement
in doubt (:func:`.trust.doubts`) is taken again (:func:`.timing.measure`) and the one least in
doubt kept with its codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastopt
from fastopt import reference
from fastopt._kernels import kernels
from fastopt.optim.optimizer import has_modes
from fastopt.rows import every_row
from fastopt.rules import RULES

from .optimizers import ACCESS, OPTIONS, case_shape, torch_class
from .plain import plain_step
from .timing import Times, measure, medians, ratio
from .trust import spread

CHECK_STEPS = 5


@dataclass
class Result:
    optimizer: str
    dtype: str
    size: int
    fastopt_s: float
    numpy_s: float | None         # fastopt.reference's step
    torch_s: float | None
    torch_path: str | None
    roofline_s: float
    plain_s: float | None         # the rule's plain OpenMP loop; None where it has none
    plain_threads: int | None     # its threads: fastopt's or one, whichever was faster
    gelem_per_s: float
    gb_per_s: float
    roofline_fraction: float
    speedup_numpy: float | None
    speedup_torch: float | None
    plain_ratio: float | None     # fastopt's time / the plain loop's (1.1: 10% slower)
    spread: float                 # of fastopt's rounds: (max − min) / median
    others_cores: float | None    # other processes' load while measured, in cores
    doubts: str                   # codes of trust.CODES that still apply ('' : none)
    attempts: int                 # measurements taken (more than one: the first in doubt)
    max_rel_deviation: float | None  # None: no reference to compare with here


def made(module: Any, name: str, params: list[Any]) -> Any:
    """Optimizer ``name`` of ``module`` (fastopt, fastopt.reference) over ``params`` with its
    benchmark options, ready to step: a rule with modes (schedule-free) in train mode."""
    opt = getattr(module, name)(params, **OPTIONS[name])
    if has_modes(opt):
        opt.train()
    return opt


def taken(name: str, grad: np.ndarray) -> Any:
    """A dense gradient of a case's tensor as optimizer ``name`` takes it: as it is, or for a
    rule that takes row-sparse ones (SparseAdam) every row of it, in order."""
    if RULES[name].gradient == "rows":
        return every_row(grad)
    return grad


def torch_step(name: str, param: np.ndarray,
               grad: np.ndarray) -> tuple[Callable[[], Any], str] | None:
    """torch's step over a copy of ``param`` with gradient ``grad``, on its fastest CPU path
    (``fused=True`` where torch has a fused CPU kernel, else ``foreach=True``, else its only
    one: SparseAdam's, with the gradient as a sparse tensor of every row, or Muon's), and
    the path's name; None where torch is not installed or lacks the optimizer."""
    cls = torch_class(name)
    if cls is None:
        return None
    import torch

    p = torch.from_numpy(param.copy()).requires_grad_()
    if name in RULES and RULES[name].gradient == "rows":
        indices = torch.arange(len(grad))[None]
        p.grad = torch.sparse_coo_tensor(indices, torch.from_numpy(grad.copy()), p.shape,
                                         check_invariants=False)  # rows in order, each once
    else:
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
    opt = made(fastopt, name, [mine])
    ref = made(reference, name, [ref_param])
    for g in grads:
        opt.step([taken(name, g)])
        ref.step([taken(name, g)])
    return relative_deviation(mine, ref_param)


def relative_deviation(mine: np.ndarray, theirs: np.ndarray) -> float:
    """max |mine − theirs| / max |theirs| (over 1 where ``theirs`` is all zeros)."""
    scale = float(np.max(np.abs(theirs))) or 1.0
    return float(np.max(np.abs(mine.astype(np.float64) - theirs))) / scale


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
    opt = made(fastopt, name, [mine])
    grads = [taken(name, grad)]
    ref = made(reference, name, [param.copy()])
    torch_run = torch_step(name, param, grad)
    reads, writes = ACCESS[name]
    probe_arrays = [param.copy() for _ in range(reads)]  # parameter, gradient, states

    contenders: dict[Any, Callable[[], Any]] = {
        "fastopt": lambda: opt.step(grads),
        "numpy": lambda: ref.step(grads),
        # A rule with a reduction pass (LAMB's and LARS's trust ratios) reads some arrays
        # twice: the probe runs the same two passes (a read-only pass costs about what a
        # read-write one does, not its share of the bytes: fastopt._kernels' probe.pxi).
        "roofline": lambda: kernels.probe(probe_arrays, RULES[name].norm_reads),
    }
    if torch_run is not None:
        contenders["torch"] = torch_run[0]
    plain_arrays = [param.copy(), grad.copy(), *(np.zeros_like(param) for _ in range(reads - 2))]
    # The plain loop on fastopt's threads and on one: the limit is the faster of the two (on
    # a few thousand elements starting a team costs more than the loop).
    for threads in dict.fromkeys((fastopt.get_num_threads(), 1)):
        plain = plain_step(name, plain_arrays, threads)
        if plain is not None:
            contenders[("plain", threads)] = plain
    times, others, codes, attempts = measure(contenders, rounds, budget,
                                             roofline=("roofline", "fastopt"))
    return summarise(name, np.dtype(dtype), size, times, others, codes, attempts, deviation,
                     torch_run[1] if torch_run else None,
                     reads + writes + RULES[name].norm_reads)


def summarise(name: str, dtype: np.dtype, size: int, times: Times, others: float | None,
              codes: str, attempts: int, deviation: float | None, torch_path: str | None,
              transfers: int, probe_transfers: int | None = None) -> Result:
    """A case's :class:`Result` from its measurement (:func:`.timing.measure`): contenders
    "fastopt" and "roofline", and where they ran "numpy", "torch" and ("plain", threads).
    ``transfers``: the arrays of ``size`` elements a step reads and writes; the probe moved
    ``probe_transfers`` (default: as many), and its time is scaled by the ratio."""
    t = medians(times)
    scale = transfers / (probe_transfers or transfers)
    plain_key = min((k for k in times if isinstance(k, tuple)), key=t.__getitem__, default=None)
    nbytes = transfers * dtype.itemsize * size
    return Result(
        optimizer=name,
        dtype=dtype.name,
        size=size,
        fastopt_s=t["fastopt"],
        numpy_s=t.get("numpy"),
        torch_s=t.get("torch"),
        torch_path=torch_path,
        roofline_s=t["roofline"] * scale,
        gelem_per_s=size / t["fastopt"] / 1e9,
        gb_per_s=nbytes / t["fastopt"] / 1e9,
        roofline_fraction=ratio(times, "roofline", "fastopt") * scale,
        speedup_numpy=ratio(times, "numpy", "fastopt") if "numpy" in times else None,
        speedup_torch=ratio(times, "torch", "fastopt") if "torch" in times else None,
        plain_s=t[plain_key] if plain_key else None,
        plain_threads=plain_key[1] if plain_key else None,
        plain_ratio=ratio(times, "fastopt", plain_key) if plain_key else None,
        spread=spread(times["fastopt"]), others_cores=others, doubts=codes, attempts=attempts,
        max_rel_deviation=deviation,
    )
