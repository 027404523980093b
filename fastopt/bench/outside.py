"""The benchmark's cases of the two rules outside the engine (:data:`.optimizers.OUTSIDE`), in
the per-size table beside the others (:mod:`.cases`).

**Adafactor** steps one matrix of the case's elements (the most nearly square one:
:func:`matrix_shape`), so that its second moment is factored, against
:func:`fastopt.reference.adafactor` and torch's fastest path. Its three passes read p and g
(Σp², the row and column sums of g²), g (‖U‖), then p and g, writing p: 6 transfers of an
element.

**L-BFGS** minimises the quadratic ½ Σ aᵢxᵢ² (a in [1, 2)) from a point with a full history
(its ``history_size`` m pairs), and every timed step starts again from that point and memory:
the point is copied back, then ``step(closure)`` runs one iteration. torch's step is timed
alike (its state's lists and ``prev_flat_grad``, which it overwrites, are put back too). A
step moves at least 8m + 16 transfers of an element: each of the two-loop recursion's m
rounds reads sᵢ and yᵢ and reads and writes its vector (4 a round, with each dot product fused
into the previous round's update); the closure reads x and a and writes g, and its loss reads
x and g (5); the new pair, from g, the last gradient and d, with the last gradient kept (6);
x += t·d (3); the copy back (2). :func:`fastopt.reference.lbfgs` is stepped alike from the
same point and memory; the check is against torch's (:func:`lbfgs_deviation`; '-' without
torch).

The probe moves three arrays (5 transfers); its time is scaled to each step's transfers.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from typing import Any

import numpy as np

import fastopt
from fastopt._kernels import kernels
from fastopt.adafactor import STORAGE_DEFAULTS
from fastopt.reference import adafactor as reference_adafactor
from fastopt.reference import lbfgs as reference_lbfgs

from .cases import CHECK_STEPS, Result, relative_deviation, summarise, torch_step
from .optimizers import OPTIONS
from .timing import measure

PROBE_ARRAYS = 3
PROBE_TRANSFERS = 2 * PROBE_ARRAYS - 1  # reads all, writes all but the "gradient"
ADAFACTOR_TRANSFERS = 6
Contenders = dict[Any, Callable[[], Any]]


def lbfgs_transfers(history: int) -> int:
    """The transfers of an element that an L-BFGS step of the benchmark moves at least."""
    return 8 * history + 16


def matrix_shape(size: int) -> tuple[int, int]:
    """rows × cols = ``size`` with rows the largest divisor of ``size`` up to √size."""
    rows = max(k for k in range(1, math.isqrt(size) + 1) if size % k == 0)
    return rows, size // rows


def outside_case(name: str, dtype: np.dtype, size: int, rounds: int, budget: float) -> Result:
    """The case of ``size`` elements of ``dtype`` for rule ``name`` of :data:`OUTSIDE`:
    ``rounds`` rounds of samples lasting ``budget`` seconds each, and its check."""
    contenders, transfers, torch_path, deviation = (
        adafactor_contenders if name == "Adafactor" else lbfgs_contenders)(np.dtype(dtype), size)
    probe_arrays = [np.ones(size, dtype) for _ in range(PROBE_ARRAYS)]
    contenders["roofline"] = lambda: kernels.probe(probe_arrays)
    times, others, codes, attempts = measure(contenders, rounds, budget,
                                             roofline=("roofline", "fastopt"),
                                             scale=transfers / PROBE_TRANSFERS)
    return summarise(name, np.dtype(dtype), size, times, others, codes, attempts, deviation,
                     torch_path, transfers, PROBE_TRANSFERS)


def adafactor_contenders(dtype: np.dtype, size: int) -> tuple[Contenders, int, str | None, float]:
    """Adafactor's contenders on a matrix of ``size`` elements, its transfers, torch's path
    and its deviation from the reference."""
    rng = np.random.default_rng(0)
    shape = matrix_shape(size)
    param = rng.standard_normal(shape).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    opt = fastopt.Adafactor([param.copy()], **OPTIONS["Adafactor"])
    h = {k: v for k, v in opt.defaults.items() if k not in STORAGE_DEFAULTS}  # the rule's
    if h["eps"][0] is None:  # the parameter's machine epsilon, as torch takes it
        h["eps"] = (float(np.finfo(dtype).eps), h["eps"][1])

    def reference_over(p: np.ndarray) -> Callable[[], None]:
        state: dict[str, Any] = {}
        return lambda: reference_adafactor(p, grad, state, **h)

    # The check: fastopt against the reference over a few steps from the same point.
    mine, theirs = param.copy(), param.copy()
    checked = fastopt.Adafactor([mine], **OPTIONS["Adafactor"])
    reference_step = reference_over(theirs)
    for _ in range(CHECK_STEPS):
        checked.step([grad])
        reference_step()
    deviation = relative_deviation(mine, theirs)

    grads = [grad]
    contenders: Contenders = {"fastopt": lambda: opt.step(grads),
                              "numpy": reference_over(param.copy())}
    torch_run = torch_step("Adafactor", param, grad)
    if torch_run is not None:
        contenders["torch"] = torch_run[0]
    return contenders, ADAFACTOR_TRANSFERS, torch_run[1] if torch_run else None, deviation


def _numpy_quadratic(start: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, Callable[[], Any]]:
    """The point x (from ``start``) and fastopt.LBFGS's closure of ½ Σ aᵢxᵢ² at it."""
    x, g = start.copy(), np.empty_like(start)

    def closure() -> tuple[float, list[np.ndarray]]:
        np.multiply(a, x, out=g)
        return 0.5 * float(np.dot(x, g)), [g]
    return x, closure


def _torch_quadratic(start: np.ndarray, a: np.ndarray) -> tuple[Any, Callable[[], Any]]:
    """The same for torch.optim.LBFGS: the parameter and its closure (the gradient written
    into ``.grad`` in place, as fastopt's closure writes its array)."""
    import torch

    p = torch.from_numpy(start.copy()).requires_grad_()
    p.grad = torch.zeros_like(p)
    coefficients = torch.from_numpy(a)

    def closure() -> Any:
        torch.mul(coefficients, p.detach(), out=p.grad)
        return 0.5 * torch.dot(p.detach(), p.grad)
    return p, closure


def lbfgs_contenders(dtype: np.dtype,
                     size: int) -> tuple[Contenders, int, str | None, float | None]:
    """L-BFGS's contenders (each returns the point its step reached), its transfers, torch's
    path and the deviation from torch (None without torch)."""
    options = OPTIONS["LBFGS"]
    history = options["history_size"]
    rng = np.random.default_rng(0)
    start = rng.standard_normal(size).astype(dtype)
    a = rng.uniform(1.0, 2.0, size).astype(dtype)
    x, closure = _numpy_quadratic(start, a)
    opt = fastopt.LBFGS([x], **options)
    # Until the history is full: the first step keeps no pair, and its tiny step's pair can be
    # lost to float32 rounding (y·s too small to keep).
    warm = 0
    while len(opt.memory.old_dirs) < history and warm < 3 * history:
        opt.step(closure)
        warm += 1
    if len(opt.memory.old_dirs) != history:
        raise RuntimeError(f"LBFGS bench: expected a full history of {history} pairs after "
                           f"{warm} steps, got {len(opt.memory.old_dirs)}")
    point, memory = x.copy(), opt.memory  # a step never writes the memory it starts from

    def fastopt_step() -> np.ndarray:
        """The timed step: from the point and memory saved; returns the point reached."""
        x[...] = point
        opt.memory = memory
        opt.step(closure)
        return x

    contenders: Contenders = {"fastopt": fastopt_step,
                              "numpy": _reference_lbfgs(start, a, point, memory.entries(),
                                                         {k: v for k, v in opt.defaults.items()
                                                          if k not in STORAGE_DEFAULTS})}
    if importlib.util.find_spec("torch") is None:
        return contenders, lbfgs_transfers(history), None, None
    contenders["torch"] = _torch_lbfgs(start, a, warm)
    return contenders, lbfgs_transfers(history), "default", lbfgs_deviation(start, a)


def _reference_lbfgs(start: np.ndarray, a: np.ndarray, point: np.ndarray,
                     entries: dict[str, Any], hypers: dict[str, Any]) -> Callable[[], Any]:
    """:func:`fastopt.reference.lbfgs`'s step (``hypers``: fastopt's, checked) from ``point``
    and the state ``entries`` (which it never writes in place; its ``al`` list and counts are
    put back), timed as :func:`lbfgs_contenders` times fastopt's."""
    y, closure = _numpy_quadratic(start, a)
    state: dict[str, Any] = {}

    def flat_closure() -> tuple[float, np.ndarray]:
        loss, (g,) = closure()
        return loss, g

    def step() -> np.ndarray:
        y[...] = point
        state.clear()
        state.update(entries, al=list(entries["al"]))
        reference_lbfgs(y, flat_closure, state, **hypers)
        return y
    return step


def _torch_lbfgs(start: np.ndarray, a: np.ndarray, warm: int) -> Callable[[], Any]:
    """torch.optim.LBFGS's step on the same quadratic, ``warm`` steps in, timed as
    :func:`lbfgs_contenders` times fastopt's."""
    import torch

    p, closure = _torch_quadratic(start, a)
    opt = torch.optim.LBFGS([p], **OPTIONS["LBFGS"])
    for _ in range(warm):
        opt.step(closure)
    point = p.detach().clone()
    saved = dict(opt.state[p])
    last_grad = saved["prev_flat_grad"].clone()  # which torch's step overwrites in place

    def step() -> Any:
        with torch.no_grad():
            p.copy_(point)
        state = opt.state[p]
        state.update({k: list(v) if isinstance(v, list) else v for k, v in saved.items()})
        state["prev_flat_grad"].copy_(last_grad)
        opt.step(closure)
        return p
    return step


def lbfgs_deviation(start: np.ndarray, a: np.ndarray) -> float:
    """max |fastopt − torch| / max |torch| after :data:`CHECK_STEPS` L-BFGS steps on the
    benchmark's quadratic from ``start`` (needs torch)."""
    import torch

    x, closure = _numpy_quadratic(start, a)
    p, torch_closure = _torch_quadratic(start, a)
    mine = fastopt.LBFGS([x], **OPTIONS["LBFGS"])
    theirs = torch.optim.LBFGS([p], **OPTIONS["LBFGS"])
    for _ in range(CHECK_STEPS):
        mine.step(closure)
        theirs.step(torch_closure)
    return relative_deviation(x, p.detach().numpy())
