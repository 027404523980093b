"""Reference Adafactor (torch.optim.Adafactor): updates ONE parameter array in place, with its
``state`` (torch's keys, created on first use); see :mod:`fastopt.reference`. fastopt's own
Adafactor (:mod:`fastopt.adafactor`) is checked against it."""

from __future__ import annotations

import math

import numpy as np

from .state import State

__all__ = ["adafactor"]


def _lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """torch's lerp: start + w (end − start) for |w| < 0.5, else end − (end − start)(1 − w)."""
    w = start.dtype.type(weight)
    if abs(w) < 0.5:
        return start + w * (end - start)
    return end - (end - start) * (1 - w)


def adafactor(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float,
              beta2_decay: float, eps: tuple[float | None, float], d: float,
              weight_decay: float, maximize: bool) -> None:
    """Adafactor (torch.optim.Adafactor), one parameter.

    ::

        t ← t + 1;  β̂ = t^beta2_decay;  ρ = min(γ, 1/√t);  α = ρ · max(ε₂, ‖p‖/√n)
        p ← p · (1 − γλ)
        ndim ≥ 2, over the last two dimensions (rows × cols):
            R ← lerp(R, mean_cols(g²), β̂);  C ← lerp(C, mean_rows(g²), β̂)
            V = R C / max(mean_rows(R), ε₁)
        else:  V ← lerp(V, g², β̂)
        U = g / √max(V, ε₁²)
        p ← p − α / max(1, ‖U‖/(√n d)) · U

    ``eps[0]`` None is the machine epsilon of ``param``'s dtype (torch takes the group's first
    parameter's). An empty parameter counts the step and is left as it is.
    """
    g = -grad if maximize else grad
    eps1 = float(np.finfo(param.dtype).eps) if eps[0] is None else float(eps[0])
    factored = param.ndim > 1
    if "step" not in state:
        state["step"] = 0.0
        if factored:
            state["row_var"] = np.zeros((*param.shape[:-1], 1), param.dtype)
            state["col_var"] = np.zeros((*param.shape[:-2], 1, param.shape[-1]), param.dtype)
        else:
            state["variance"] = np.zeros_like(param)
    t = state["step"] = state["step"] + 1.0
    if param.size == 0:
        return
    weight = t ** beta2_decay
    rho = min(lr, 1 / math.sqrt(t))
    alpha = max(eps[1], math.sqrt(np.sum(param.astype(np.float64) ** 2)) / math.sqrt(param.size)) * rho
    if weight_decay != 0:
        param *= param.dtype.type(1 - lr * weight_decay)
    square = g * g
    if factored:
        row = state["row_var"] = _lerp(state["row_var"], np.mean(square, axis=-1, keepdims=True), weight)
        col = state["col_var"] = _lerp(state["col_var"], np.mean(square, axis=-2, keepdims=True), weight)
        variance = row * col / np.maximum(np.mean(row, axis=-2, keepdims=True), param.dtype.type(eps1))
    else:
        variance = state["variance"] = _lerp(state["variance"], square, weight)
    update = g * (1 / np.sqrt(np.maximum(variance, param.dtype.type(eps1 * eps1))))
    norm = math.sqrt(np.sum(update.astype(np.float64) ** 2))
    denom = max(1.0, norm / (math.sqrt(param.size) * d))
    param += param.dtype.type(-alpha / denom) * update
