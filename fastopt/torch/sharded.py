"""What a rank cannot step from its part of a tensor alone, refused before anything changes.

FSDP2's and tensor parallelism's DTensor shards and ZeRO-1's slices each hold part of a
parameter. Element-wise rules step such parts exactly as the whole, bitwise, and so do state
kept in float16 or bfloat16 (each element rounded on its own). Three things are not
element-wise:

- a rule's per-tensor norms (LAMB's and LARS's trust ratios): taken over a part they are that
  part's norm, not the tensor's, and the step silently differs from the unsharded one. An
  all-reduce of the partial sums of squares between the kernel's reduction pass and its
  element-wise pass would make them whole; the kernel runs both passes in one call, so this is
  not done yet.
- a rule of matrices (Muon): it orthogonalises each whole matrix, which a part is not.
- 8-bit state: each block of 256 elements shares one scale, counted from the tensor's first
  element, and a part's blocks are not the tensor's, nor laid out as its shards (the scales
  of a shard cannot be resharded by torch.distributed.checkpoint).

Stochastic rounding is keyed by the element's index in its parameter, and so would differ
too; it applies to bfloat16 parameters, which fastopt.torch does not take.
"""

from __future__ import annotations

from typing import Any

from ..rules import Rule
from ..rules.base import Hypers


def state_dtypes(h: Hypers) -> set[str]:
    """The storage types ``h``'s ``state_dtype`` names."""
    value = h.state_dtype
    if value is None:
        return set()
    return {value} if isinstance(value, str) else {name for _, name in value}


def refuse(rule: Rule, h: Hypers, where: str, part: str) -> None:
    """Refuse stepping part of a tensor (``part``: what holds it, in words) with ``rule`` and
    hyper-parameters ``h`` where that is not the unsharded step."""
    if rule.per_tensor_norms:
        raise ValueError(f"{where}: {rule.name} scales each tensor's step by a ratio of whole-"
                         f"tensor norms, and {part} holds part of a tensor: its norms would be "
                         "the part's and the step would differ from the unsharded one (an "
                         "all-reduce of the partial norms is not implemented); use an element-"
                         "wise rule, or keep these parameters unsharded")
    if rule.matrix is not None:
        raise ValueError(f"{where}: {rule.name} orthogonalises each parameter's whole matrix, "
                         f"and {part} holds part of one: the step would differ from the "
                         "unsharded one (gathering the matrix is not implemented); keep these "
                         "parameters unsharded")
    if "8bit" in state_dtypes(h):
        raise ValueError(f"{where}: state_dtype '8bit' quantises blocks of 256 elements of "
                         f"each tensor with one scale each, and {part} holds part of a tensor, "
                         "whose blocks are not the tensor's: the step would differ from the "
                         "unsharded one; keep the state in float32, bfloat16 or float16")


def is_sharded(p: Any) -> bool:
    """Whether DTensor ``p`` is split over more than one rank (a replicated one is whole
    everywhere)."""
    mesh = p.device_mesh
    return any(placement.is_shard() and mesh.size(dim) > 1
               for dim, placement in enumerate(p.placements))
