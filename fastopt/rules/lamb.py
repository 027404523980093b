"""LAMB: Adam's direction with each tensor's step scaled by its trust ratio, as
pytorch-optimizer's ``Lamb`` (4.1.0) computes it."""

from __future__ import annotations

import math

from .base import BETAS, FLAG, LR, NON_NEGATIVE, Hyper, Role, Rule, maximize, weight_decay_terms

# pytorch-optimizer clamps ‖p‖ to this (``Lamb.clamp``, a class attribute, not an argument).
MAX_WEIGHT_NORM = 10.0


def _requires(h) -> None:
    # The rectification takes the square root of (ρₜ − 4)(ρₜ − 2) once ρₜ reaches the
    # threshold, and ρₜ climbs from 1 through (2, 4): below 4 a step would raise midway
    # (math.sqrt of a negative number, in the oracle too).
    if h.rectify and h.n_sma_threshold < 4:
        raise ValueError(f"n_sma_threshold: expected a number >= 4 with rectify=True, got "
                         f"{h.n_sma_threshold!r}")


def _step_size(h, t) -> tuple[float, bool]:
    """s = γ r / (1 − β₁ᵗ) and whether the step is adaptive, as pytorch-optimizer's
    get_rectify_step_size and debias compute them (r = 1 without rectify)."""
    beta1, beta2 = h.betas
    rt, adaptive = 1.0, True
    if h.rectify:
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        beta2_t = beta2**t
        rho = rho_inf - 2 * t * beta2_t / (1.0 - beta2_t)
        adaptive = rho >= h.n_sma_threshold
        if adaptive:
            rt = math.sqrt((1.0 - beta2_t) * (rho - 4) / (rho_inf - 4) * (rho - 2) / rho
                           * rho_inf / (rho_inf - 2))
        elif not h.degenerated_to_sgd:
            rt = -1.0
    return h.lr * rt / (1.0 - math.pow(beta1, t)), adaptive


def _kernel_args(h, t, scalars, fresh):
    beta1, beta2 = h.betas
    step_size, adaptive = _step_size(h, t)
    update = not (h.rectify and step_size <= 0)
    # L2 decay goes into u, not g, and the oracle's rectified path drops it.
    l2 = 0.0 if h.weight_decouple or h.rectify else h.weight_decay
    _, decay = weight_decay_terms(1.0 if h.fixed_decay else h.lr, h.weight_decay,
                                  h.weight_decouple)
    return {"step_size": step_size, "beta1": beta1,
            "beta3": 1.0 - beta1 if h.grad_averaging else 1.0, "beta2": beta2, "eps": h.eps,
            "weight_decay": l2, "decay": decay, "max_weight_norm": MAX_WEIGHT_NORM,
            "adaptive": adaptive, "rectified_norm": h.rectify, "trust": update and not h.adam,
            "update": update}


LAMB = Rule(
    name="LAMB",
    summary="Adam's direction, each tensor's step scaled by the trust ratio ‖p‖ / ‖u‖ (LAMB)",
    formula="""\
p ← p · (1 − γ λ)                 (weight_decouple; 1 − λ with fixed_decay)
m ← β₁ m + β₃ g                   (β₃ = 1 − β₁ with grad_averaging, else 1)
v ← β₂ v + (1 − β₂) g²
u = m / (√v + ε);   u ← u + λ p   (L2: weight_decouple=False)
φ = min(‖p‖, 10);   r = φ / (‖u‖ + ε), or 1 if φ = 0 or ‖u‖ = 0 or adam    (per tensor)
p ← p − (γ / (1 − β₁ᵗ)) · r · u
rectify: s = γ rₜ / (1 − β₁ᵗ) with RAdam's rₜ; u = m / (√v + ε) once ρₜ ≥ n_sma_threshold,
  else u = m (degenerated_to_sgd) or no step; no L2; r normed over p − s u, as the oracle""",
    hypers=(
        Hyper("lr", 1e-3, LR),
        Hyper("betas", (0.9, 0.999), BETAS),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        Hyper("weight_decouple", True, FLAG),
        Hyper("fixed_decay", False, FLAG),
        Hyper("rectify", False, FLAG),
        Hyper("degenerated_to_sgd", False, FLAG),
        Hyper("n_sma_threshold", 5, NON_NEGATIVE),
        Hyper("grad_averaging", True, FLAG),
        # Keyword-only from here: the oracle's max_grad_norm and pre_norm, which fastopt
        # spells step(grads, max_norm=...), come between, so positions would not match.
        Hyper("adam", False, FLAG, keyword_only=True),
        Hyper("eps", 1e-6, NON_NEGATIVE, keyword_only=True),
        maximize(),
    ),
    roles=(Role("exp_avg"), Role("exp_avg_sq", nonnegative=True)),
    kernel="lamb",
    kernel_args=_kernel_args,
    reference="lamb",
    source="pytorch_optimizer.Lamb (pytorch-optimizer 4.1.0)",
    requires=_requires,
    norm_reads=4,  # ‖p‖ and ‖u‖: u needs the gradient and both moments
    bench={"weight_decay": 0.01},
)

RULES = (LAMB,)
