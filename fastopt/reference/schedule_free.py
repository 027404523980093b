"""Reference Schedule-Free AdamW and SGD, as the schedulefree package (1.4.1) computes them
(``AdamWScheduleFree``, ``SGDScheduleFree``, their per-tensor loop). Each step function updates
ONE parameter (y, in train mode) in place with its ``state`` (``z``, and ``exp_avg_sq`` for
AdamW), and returns the entries of its parameter group that the step advances (the package
keeps its step count ``k`` and its averaging weights there); see :mod:`fastopt.reference`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .state import State, gradient, running_average_sq, zeros_on_first_use

__all__ = ["adamw_schedule_free", "sgd_schedule_free", "schedule_free_switch"]


def lerp(a: np.ndarray, b: np.ndarray, weight: float) -> None:
    """a ← torch.lerp(a, b, w), in a's dtype: a + w (b − a) if |w| < 0.5, else
    b − (b − a)(1 − w), with w rounded to the dtype first (as torch rounds its scalar)."""
    w = a.dtype.type(weight)
    if abs(w) < 0.5:
        a += w * (b - a)
    else:
        a[...] = b - (b - a) * (a.dtype.type(1) - w)


def _averaging(lr: float, k: int, warmup_steps: int, r: float, weight_lr_power: float,
               weight_sum: float, lr_max: float) -> tuple[float, float, dict[str, Any]]:
    """(γₖ, c, the group's entries after the step) for step k of the group."""
    sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
    lr = float(lr) * sched
    lr_max = max(lr, float(lr_max))
    weight = ((k + 1) ** r) * (lr_max ** weight_lr_power)
    weight_sum = float(weight_sum) + weight
    try:
        ckp1 = weight / weight_sum
    except ZeroDivisionError:
        ckp1 = 0.0
    return lr, ckp1, {"k": k + 1, "weight_sum": weight_sum, "lr_max": lr_max, "scheduled_lr": lr}


def _step(param: np.ndarray, u: np.ndarray, z: np.ndarray, lr: float, beta1: float,
          ckp1: float, weight_decay: float) -> None:
    """u ← u + λ y;  y ← lerp(y, z, c) + γ (β₁ (1 − c) − 1) u;  z ← z − γ u."""
    if weight_decay != 0:
        u = u + float(weight_decay) * param
    lerp(param, z, ckp1)
    param += (lr * (beta1 * (1 - ckp1) - 1)) * u
    z -= lr * u


def _z(state: State, param: np.ndarray) -> np.ndarray:
    """z, a copy of the parameter (y) before its first step."""
    if "z" not in state:
        state["z"] = param.copy()
    return state["z"]


def adamw_schedule_free(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float,
                        betas: tuple[float, float], eps: float, weight_decay: float,
                        warmup_steps: int, r: float, weight_lr_power: float, maximize: bool,
                        k: int, weight_sum: float, lr_max: float) -> dict[str, Any]:
    """Schedule-Free AdamW, step k (from 0) of the group.

    ::

        γₖ = γ · min(1, (k + 1) / warmup_steps);  γmax ← max(γmax, γₖ)
        wₖ = (k + 1)^r · γmax^weight_lr_power;  W ← W + wₖ;  c = wₖ / W      (double)
        g ← −g                                   if maximize
        v ← β₂ v + (1 − β₂) g²
        u = g / (√(v / (1 − β₂ᵏ⁺¹)) + ε);  u ← u + λ y
        y ← lerp(y, z, c) + γₖ (β₁ (1 − c) − 1) u
        z ← z − γₖ u

    State: ``"z"`` (a copy of y before the first step) and ``"exp_avg_sq"`` (v, zeros).
    """
    beta1, beta2 = map(float, betas)
    lr, ckp1, progress = _averaging(lr, k, warmup_steps, r, weight_lr_power, weight_sum, lr_max)
    grad = gradient(param, grad, maximize=maximize, weight_decay=0.0)
    z = _z(state, param)
    exp_avg_sq = running_average_sq(state, "exp_avg_sq", param, grad, beta2)
    denom = np.sqrt(exp_avg_sq / (1 - beta2 ** (k + 1)))
    denom += float(eps)
    _step(param, grad / denom, z, lr, beta1, ckp1, weight_decay)
    return progress


def sgd_schedule_free(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float,
                      momentum: float, weight_decay: float, warmup_steps: int, r: float,
                      weight_lr_power: float, maximize: bool, k: int, weight_sum: float,
                      lr_max: float) -> dict[str, Any]:
    """Schedule-Free SGD, step k (from 0) of the group: as :func:`adamw_schedule_free` with
    u = g (+ λ y) and β₁ = momentum. State: ``"z"`` (a copy of y before the first step)."""
    lr, ckp1, progress = _averaging(lr, k, warmup_steps, r, weight_lr_power, weight_sum, lr_max)
    grad = gradient(param, grad, maximize=maximize, weight_decay=0.0)
    _step(param, grad, _z(state, param), lr, float(momentum), ckp1, weight_decay)
    return progress


def schedule_free_switch(param: np.ndarray, state: State, *, train: bool,
                         betas: tuple[float, float] | None = None,
                         momentum: float | None = None) -> None:
    """Move a stepped parameter into train mode, p ← lerp(p, z, 1 − β₁) (x to y), or into
    eval mode, p ← lerp(p, z, 1 − 1/β₁) (y to x); β₁ = momentum for SGD."""
    beta1 = float(betas[0] if betas is not None else momentum)
    if "z" in state:
        lerp(param, state["z"], 1 - beta1 if train else 1 - 1 / beta1)
