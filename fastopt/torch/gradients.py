"""Gradients as the kernels read them: checked against their parameter, and laid out as the
tensor stepped (copies made where they are not, kept alive by the caller)."""

from __future__ import annotations

import torch

from .._kernels import kernels
from . import dtensor, tensors


def checked(index: int, w: tensors.Watched, grad: torch.Tensor,
            scratch: list[torch.Tensor]) -> torch.Tensor:
    """Parameter ``index``'s gradient ``grad`` checked (a DTensor's: its local shard, a
    redistributed one kept alive in ``scratch``)."""
    if w.distributed:
        grad = dtensor.local_grad(f"params[{index}]", w.param, grad)
        scratch.append(grad)
    # torch keeps a .grad of its parameter's dtype (or its grad_dtype) and shape; checked
    # all the same, since a kernel reads exactly that many bytes.
    if not tensors.grad_accepted(grad, w.shard) or grad.shape != w.shape or (
            grad.layout is not torch.strided) or grad.device.type != "cpu":
        tensors.refuse_grad(f"params[{index}]", grad, w.shard)
    return grad


def laid_out(watched: list[tensors.Watched], grads: list[torch.Tensor | None],
             scratch: list[torch.Tensor]) -> list[int]:
    """Where each gradient's elements are laid out as its stepped tensor's (0: none),
    ``grads`` updated to what is read. One kernel call reads one gradient type: float32
    parameters whose gradients come in several types read copies promoted to float32
    (exact); copies are kept alive in ``scratch``."""
    low = {grad.dtype for w, grad in zip(watched, grads)
           if grad is not None and w.dtype is torch.float32}
    where = [0] * len(watched)
    for s, (w, grad) in enumerate(zip(watched, grads)):
        if grad is None:
            continue
        if len(low) > 1 and grad.dtype is not w.dtype:
            grad = grad.to(w.dtype)
            scratch.append(grad)
        if grad.stride() != w.strides and not tensors.same_layout(grad, w.stepped):
            grad = torch.empty_like(w.stepped, dtype=grad.dtype).copy_(grad)
            scratch.append(grad)  # laid out as stepped
        grads[s] = grad
        where[s] = grad.data_ptr()
    return where


def kinds(watched: list[tensors.Watched], grads: list[torch.Tensor | None]) -> list[int]:
    """Each gradient's storage type code where it differs from its parameter's, else -1."""
    return [-1 if grad is None or grad.dtype is w.dtype
            else kernels.DTYPE_CODES[tensors.STEPPED[grad.dtype][0]]
            for w, grad in zip(watched, grads)]
