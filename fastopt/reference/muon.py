"""Reference rule of Muon, torch.optim.Muon's: momentum orthogonalised by a Newton–Schulz
iteration in bfloat16. Updates ONE 2-D parameter array in place, with its ``state`` (a dict of
arrays under torch's key names, created on first use); see :mod:`fastopt.reference`."""

from __future__ import annotations

import math

import numpy as np

from .state import State, zeros_on_first_use

__all__ = ["muon"]


def lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """torch's lerp: start + w (end − start) while |w| < 0.5, else end − (end − start)(1 − w),
    with w and 1 − w in the arrays' dtype."""
    w = start.dtype.type(weight)
    if abs(w) < 0.5:
        return start + w * (end - start)
    return end - (end - start) * (1 - w)


def bfloat16(values) -> np.ndarray:
    """``values`` rounded to bfloat16 (from float64 through float32, as torch converts), as
    float32: the float32 bits rounded to their high half, to nearest even (NaN stays a quiet
    NaN). NumPy alone, so that the reference needs no ml_dtypes for Muon."""
    given = np.array(values, np.float32)
    bits = given.reshape(-1).view(np.uint32)  # arrays, not scalars: unsigned sums wrap silently
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) & np.uint32(0xFFFF0000)
    return np.where(nan, (bits & np.uint32(0xFFFF0000)) | np.uint32(0x00400000),
                    rounded).astype(np.uint32).view(np.float32).reshape(given.shape)


def newton_schulz(update: np.ndarray, coefficients, steps: int, eps: float) -> np.ndarray:
    """torch's ``_zeropower_via_newtonschulz`` on the CPU: every value rounded to bfloat16,
    each matrix product summed in float32; ``addmm(C, A, B, beta=β, alpha=α)`` as
    round(fma(β, C, float32(α · A B))), the fused multiply-add taken in float64."""
    a, b, c = (np.float32(k) for k in coefficients)
    x = bfloat16(update)
    transposed = x.shape[0] > x.shape[1]
    if transposed:  # a copy in C order: a BLAS's float32 sums follow its operands' layout
        x = np.ascontiguousarray(x.T)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        x = bfloat16(x / max(bfloat16(np.linalg.norm(x)), bfloat16(eps)))
        for _ in range(steps):
            gram = bfloat16(x @ x.T)
            gram_update = bfloat16(float(b) * gram.astype(np.float64) + c * (gram @ gram))
            x = bfloat16(float(a) * x.astype(np.float64) + gram_update @ x)
    return x.T if transposed else x


def muon(param: np.ndarray, grad: np.ndarray, state: State, *, lr: float, weight_decay: float,
         momentum: float, nesterov: bool, ns_coefficients: tuple[float, float, float],
         eps: float, ns_steps: int, adjust_lr_fn: str | None) -> None:
    """Muon on one matrix (rows × cols).

    ::

        B ← lerp(B, G, 1 − μ)                       (B: momentum_buffer, zeros at first)
        U ← lerp(G, B, μ)  if nesterov,  else  U ← B
        O ← newton_schulz(U)                        (bfloat16, see newton_schulz)
        γ' = γ √max(1, rows / cols)                 (adjust_lr_fn None or "original")
        γ' = 0.2 γ √max(rows, cols)                 ("match_rms_adamw")
        p ← p · (1 − γ λ)
        p ← p + (−γ') O                             (−γ' in the parameter's dtype)

    An empty matrix has no update (weight decay still applies).
    """
    lr, weight_decay, momentum, eps = map(float, (lr, weight_decay, momentum, eps))
    buffer = zeros_on_first_use(state, "momentum_buffer", param)
    buffer[...] = lerp(buffer, grad, 1 - momentum)
    update = lerp(grad, buffer, momentum) if nesterov else buffer
    rows, cols = param.shape
    if adjust_lr_fn == "match_rms_adamw":
        step = lr * (0.2 * math.sqrt(max(rows, cols)))
    else:
        step = lr * math.sqrt(max(1, rows / cols)) if cols else lr
    param *= 1 - lr * weight_decay
    if param.size:
        param += param.dtype.type(-step) * newton_schulz(update, ns_coefficients, ns_steps, eps)
