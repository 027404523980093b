"""DTensor parameters (FSDP2's ``fully_shard``, ``distribute_tensor``) stepped through their
local shards.

A DTensor is a wrapper: its elements are those of its local shard (``_local_tensor``, a plain
tensor; under FSDP2 a view into the parameter's own padded storage), laid out over the ranks
of a device mesh by its placements. Every rule is element-wise, so a rank steps its shard with
its shard of the gradient, where torch keeps both: no gathering, no copies. The state is
shown as DTensors over the engine's buffers with the parameter's mesh and placements, as
torch.optim's ``zeros_like(param)`` makes it, so that ``get_optimizer_state_dict`` and
``torch.distributed.checkpoint`` save and reshard it as torch.optim's.

torch is imported by the caller; ``torch.distributed.tensor`` is looked up only where it has
been imported already (no DTensor can exist otherwise), so plain tensors never pay for it.
"""

from __future__ import annotations

import sys
from typing import Any

import torch


def _module() -> Any:
    return sys.modules.get("torch.distributed.tensor")


def is_dtensor(t: Any) -> bool:
    module = _module()
    return module is not None and isinstance(t, module.DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """The tensor holding ``t``'s elements on this rank: its local shard for a DTensor (the
    shard itself: ``to_local()`` makes a new view through an autograd function at each call),
    else ``t``."""
    return t._local_tensor if is_dtensor(t) else t


def describe(t: Any) -> str:
    return f"placements {tuple(t.placements)} on {t.device_mesh}"


def check_param(name: str, p: Any) -> None:
    """Refuse what cannot be stepped shard by shard, saying why (nothing has changed yet)."""
    for placement in p.placements:
        if placement.is_partial():
            raise ValueError(f"{name}: expected a DTensor parameter sharded or replicated, got "
                             f"{describe(p)}: a Partial parameter is a sum not yet taken, "
                             "which no element-wise update can step shard by shard")


def local_grad(name: str, p: Any, grad: Any) -> torch.Tensor:
    """The local shard of DTensor ``p``'s gradient, laid out over the ranks as ``p`` is.

    A gradient of other placements on the same mesh (a Partial one, from tensor parallelism) is
    redistributed to ``p``'s first, as torch's DTensor arithmetic would do in torch.optim's step
    (a collective, which every rank reaches at the same parameter); a plain tensor or another
    mesh is refused."""
    if not is_dtensor(grad):
        raise RuntimeError(f"{name}: expected the gradient of a DTensor parameter to be a DTensor "
                           f"({describe(p)}), got a {type(grad).__name__}")
    if grad.device_mesh != p.device_mesh:
        raise RuntimeError(f"{name}: expected a gradient on the parameter's device mesh "
                           f"{p.device_mesh}, got one on {grad.device_mesh}")
    if tuple(grad.placements) != tuple(p.placements):
        grad = grad.redistribute(p.device_mesh, p.placements)
    return grad._local_tensor


def state_like(p: Any, shard: torch.Tensor) -> Any:
    """``shard`` (a view of the engine's buffer, shaped as ``p``'s local shard) as a DTensor of
    ``p``'s mesh, placements and global shape, over that same memory.

    Built from ``p``'s own spec, as FSDP2 builds its sharded parameters: ``DTensor.from_local``
    would copy a CPU shard onto a CUDA mesh's device (``CPUOffloadPolicy`` keeps parameters,
    gradients and so the optimizer's state on the CPU under a CUDA mesh)."""
    return _module().DTensor(shard, p._spec, requires_grad=False)


def local_state(name: str, value: Any, p: Any) -> torch.Tensor:
    """A loaded state tensor of DTensor parameter ``p``: a DTensor of ``p``'s mesh and
    placements (as ``state_dict()`` and ``get_optimizer_state_dict`` give them), whose local
    shard is copied in. Anything else is refused: taking a shard of a plain tensor or
    redistributing a DTensor would be a collective some rank might not reach."""
    if not is_dtensor(value):
        raise TypeError(f"{name}: expected a DTensor as its parameter ({describe(p)}), got a "
                        f"{type(value).__name__} (load a sharded state dict, as "
                        "torch.distributed.checkpoint.state_dict.set_optimizer_state_dict makes)")
    if value.device_mesh != p.device_mesh or tuple(value.placements) != tuple(p.placements):
        raise ValueError(f"{name}: expected a DTensor of its parameter's {describe(p)}, got "
                         f"{describe(value)}")
    if value.shape != p.shape:
        raise ValueError(f"{name}: expected shape {tuple(p.shape)} (its parameter's), got "
                         f"{tuple(value.shape)}")
    return value._local_tensor
