"""LARS: SGD with each tensor's gradient scaled by its trust ratio, then momentum, as
pytorch-optimizer's ``LARS`` (4.1.0) computes it."""

from __future__ import annotations

from .. import validation
from .base import FLAG, LR, NON_NEGATIVE, Hyper, Role, Rule, maximize

BELOW_ONE = validation.Real(high=1.0, high_open=True)  # [0, 1), as the oracle checks


def _kernel_args(h, t, scalars, fresh):
    return {"lr": h.lr, "momentum": h.momentum, "dampening": h.dampening,
            "weight_decay": h.weight_decay, "trust_coefficient": h.trust_coefficient,
            "nesterov": h.nesterov, "adapt": h.adapt}


LARS = Rule(
    name="LARS",
    summary="SGD with each tensor's gradient scaled by the trust ratio η ‖p‖ / (‖g‖ + λ ‖p‖), "
            "then momentum (LARS)",
    formula="""\
r = η ‖p‖ / (‖g‖ + λ ‖p‖), or 1 if ‖p‖ = 0 or the denominator is 0 or not adapt   (per tensor)
g ← (g + λ p) · r
b ← μ b + (1 − τ) g  (b from zeros);  g ← g + μ b (nesterov), g ← b (otherwise)   if μ ≠ 0
p ← p − γ g""",
    hypers=(
        Hyper("lr", 1e-3, LR),
        Hyper("weight_decay", 0.0, NON_NEGATIVE),
        Hyper("momentum", 0.9, BELOW_ONE),
        Hyper("dampening", 0.0, BELOW_ONE),
        Hyper("trust_coefficient", 1e-3, NON_NEGATIVE),
        Hyper("nesterov", False, FLAG),
        maximize(),
        # fastopt's own: the oracle adapts only tensors of two or more dimensions, which a
        # segment of memory cannot tell; a group of 0-d and 1-D tensors with adapt=False and
        # weight_decay=0 steps them as the oracle does.
        Hyper("adapt", True, FLAG, keyword_only=True),
    ),
    roles=(Role("momentum_buffer", used=lambda h: h.momentum != 0, when="momentum ≠ 0"),),
    kernel="lars",
    kernel_args=_kernel_args,
    reference="lars",
    source="pytorch_optimizer.LARS (pytorch-optimizer 4.1.0)",
    counts_steps=False,
    norm_reads=2,  # ‖p‖ and ‖g‖
    uses_step=False,
    bench={"weight_decay": 1e-4},
)

RULES = (LARS,)
