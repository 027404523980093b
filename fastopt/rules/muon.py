"""Muon: momentum orthogonalised by a Newton–Schulz iteration, for 2-D parameters."""

from __future__ import annotations

import math

import numpy as np

from .. import validation
from ..newton_schulz import orthogonalize
from .base import FLAG, LR, NON_NEGATIVE, Hyper, MatrixStep, Role, Rule, torch_optim

# Keller Jordan's quintic coefficients, torch's defaults.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
ADJUSTMENTS = ("original", "match_rms_adamw")


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """γ' = γ √max(1, rows / cols) ("original", the default), or 0.2 γ √max(rows, cols)
    ("match_rms_adamw": Moonshot's, an update of AdamW's RMS), as torch's ``_adjust_lr``."""
    rows, cols = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return lr * (0.2 * math.sqrt(max(rows, cols)))
    return lr * math.sqrt(max(1, rows / cols))


def _update(h, work: np.ndarray) -> None:
    """The momentum matrix ``work`` becomes the update to add: −γ' NS(work), the product
    rounded in the parameters' dtype as torch's ``p.add_(update, alpha=-γ')`` rounds it."""
    if work.size == 0:  # nothing to orthogonalise (torch divides by the empty dimension here)
        return
    alpha = work.dtype.type(-adjusted_lr(h.lr, h.adjust_lr_fn, work.shape))
    np.multiply(orthogonalize(work, h.ns_coefficients, h.ns_steps, h.eps), alpha, out=work)


def _decay(h) -> float:
    return 1.0 - h.lr * h.weight_decay


def _kernel_args(h, t, scalars, fresh):
    return {"momentum": h.momentum, "nesterov": h.nesterov}


MUON = Rule(
    name="Muon",
    summary="momentum orthogonalised by a Newton–Schulz iteration in bfloat16 (2-D parameters "
            "only)",
    formula="""\
B ← lerp(B, G, 1 − μ)                 i.e. B ← μ B + (1 − μ) G; B₀ = 0
U ← lerp(G, B, μ)  (nesterov),  U ← B  (otherwise)
X ← U / max(‖U‖_F, ε)  in bfloat16, transposed if U has more rows than columns
X ← a X + (b A + c A²) X,  A = X Xᵀ   ns_steps times, (a, b, c) = ns_coefficients, bfloat16
                                      (each addmm as torch's CPU one: fma(β, C, fl32(α A B)))
γ' = γ √max(1, rows / cols)  ("original"),  0.2 γ √max(rows, cols)  ("match_rms_adamw")
p ← p · (1 − γ λ) − γ' X""",
    hypers=(
        Hyper("lr", 1e-3, LR),
        Hyper("weight_decay", 0.1, NON_NEGATIVE),
        Hyper("momentum", 0.95, NON_NEGATIVE),
        Hyper("nesterov", True, FLAG),
        Hyper("ns_coefficients", NS_COEFFICIENTS,
              validation.Tuple(validation.Real(low=-math.inf), count=3)),
        Hyper("eps", 1e-7, NON_NEGATIVE),
        Hyper("ns_steps", 5, validation.Integer(0, maximum=99)),  # torch: "less than 100"
        Hyper("adjust_lr_fn", None, validation.Optional(validation.Choice(ADJUSTMENTS))),
    ),
    roles=(Role("momentum_buffer"),),
    **torch_optim("muon", "Muon"),
    kernel_args=_kernel_args,
    counts_steps=False,
    uses_step=False,
    matrix=MatrixStep(_update, _decay),
)

RULES = (MUON,)
