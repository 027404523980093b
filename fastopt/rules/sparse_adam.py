"""SparseAdam: Adam on the rows a row-sparse gradient touches, as torch.optim.SparseAdam."""

from __future__ import annotations

import math

from .. import validation
from .base import BETAS, FLAG, Hyper, Role, Rule, torch_optim
from .storage import refuse_8bit

POSITIVE = validation.Real(low_open=True)  # torch requires lr > 0 and eps > 0


def _kernel_args(h, t, scalars, fresh):
    beta1, beta2 = h.betas
    return {"step_size": h.lr * math.sqrt(1 - beta2**t) / (1 - beta1**t), "beta1": beta1,
            "beta2": beta2, "eps": h.eps}


SPARSE_ADAM = Rule(
    name="SparseAdam",
    summary="Adam on the rows a sparse gradient touches (embedding tables), the others "
            "and their moments left as they are",
    formula="""\
for the rows the gradient has (its duplicates summed), the others untouched:
m ← m + (g − m)(1 − β₁)
v ← v + (g² − v)(1 − β₂)
p ← p − (γ √(1 − β₂ᵗ) / (1 − β₁ᵗ)) · m / (√v + ε)""",
    hypers=(
        Hyper("lr", 1e-3, POSITIVE),
        Hyper("betas", (0.9, 0.999), BETAS),
        Hyper("eps", 1e-8, POSITIVE),
        Hyper("maximize", False, FLAG),  # not keyword-only: torch's fourth argument
    ),
    roles=(Role("exp_avg"), Role("exp_avg_sq", nonnegative=True)),
    **torch_optim("sparse_adam", "SparseAdam"),
    kernel_args=_kernel_args,
    gradient="rows",
    int_step=True,
    # A step updates rows anywhere in the tensor, and 8-bit state is quantised in fixed
    # blocks of 256 elements: a row's codes would be requantised with a block's scale that
    # rows it did not touch share.
    requires=refuse_8bit("SparseAdam", "a step updates single rows, and 8-bit state is "
                         "quantised in blocks of 256 elements that rows share"),
)

RULES = (SPARSE_ADAM,)
