"""Gradients as the kernels read them: checked against their parameter, and laid out as the
tensor stepped (copies made where they are not, kept alive by the caller)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._kernels import kernels
from . import dtensor, tensors

_FLOAT32, _STRIDED = torch.float32, torch.strided
# Storage type codes of the gradient types the kernels promote as they read them.
_CODES = {dtype: kernels.DTYPE_CODES[tensors.STEPPED[dtype][0]] for dtype in tensors.LOW}


def collect(watched_groups: list[list[tensors.Watched]], rule: Any,
            follow: Callable[[int, int], None]) -> tuple[
                list[list[bool]], list[list[Any]], list[list[int]], list[tensors.Watched],
                list[torch.Tensor]]:
    """Per group and parameter: whether it has a gradient, the address of that gradient's
    elements laid out as the stepped tensor's (or for a rule that takes row-sparse
    gradients, the rows it touches, :class:`fastopt.rows.Rows`), and their storage type
    (copies so laid out, of those that are not, kept alive in the last list); and the
    parameters with a gradient that are stepped through a dense copy. Every gradient is
    checked here, before anything is stepped; a parameter whose memory was replaced is
    followed first (``follow(g, s)`` updates ``watched_groups``). A DTensor's is its local
    shard's, and its gradient's local shard's."""
    active, addresses, kinds, staged, scratch = [], [], [], [], []
    index, sparse = 0, rule.gradient == "rows"
    matrix = rule.matrix is not None
    for g, watched in enumerate(watched_groups):
        marks = [False] * len(watched)
        grads: list[torch.Tensor | None] = [None] * len(watched)
        touched: list[Any] = [None] * len(watched)
        for s, w in enumerate(watched):
            p = w.param
            if (dtensor.local(p) if w.distributed else p).data_ptr() != w.address:
                follow(g, s)
                w = watched[s]
            grad = p.grad
            if grad is None:
                continue
            if matrix and p.is_complex():  # as torch's Muon, at step
                raise RuntimeError(f"{rule.name} does not support complex parameters")
            marks[s] = True
            if w.stepped is not w.shard:
                staged.append(w)
            if sparse:  # row-sparse: the rows it touches (and its values, held alive)
                touched[s] = tensors.sparse_rows(f"params[{index + s}]", grad, w.stepped)
            else:
                grads[s] = grad
        active.append(marks)
        if sparse:
            addresses.append(touched)
            kinds.append([-1] * len(watched))
        else:
            where, kind = gather(watched, grads, index, scratch)
            addresses.append(where)
            kinds.append(kind)
        index += len(watched)
    return active, addresses, kinds, staged, scratch


def gather(watched: list[tensors.Watched], grads: list[torch.Tensor | None], first: int,
           scratch: list[torch.Tensor]) -> tuple[list[int], list[int]]:
    """Check each gradient against its parameter (``params[first + s]``; a DTensor's: its
    local shard, redistributed where it must be) and say where its elements are laid out
    as the stepped tensor's (0: no gradient), with their storage type code where it
    differs from the parameter's (else -1); ``grads`` is updated to what is read.

    One kernel call reads one gradient type: float32 parameters whose gradients come in
    several types read copies promoted to float32 (exact). Copies are kept alive in
    ``scratch``. This runs for every parameter at every step: one pass, few torch calls."""
    where, kinds = [0] * len(watched), [-1] * len(watched)
    float32_grads = None  # the one gradient type of the float32 parameters, or False: several
    for s, (w, grad) in enumerate(zip(watched, grads)):
        if grad is None:
            continue
        if w.distributed:
            grad = dtensor.local_grad(f"params[{first + s}]", w.param, grad)
            scratch.append(grad)
        # torch keeps a .grad of its parameter's dtype (or its grad_dtype) and shape; checked
        # all the same, since a kernel reads exactly that many bytes.
        dtype = grad.dtype
        if not (dtype is w.dtype or (w.dtype is _FLOAT32 and dtype in _CODES)) or (
                grad.shape != w.shape or grad.layout is not _STRIDED or not grad.is_cpu):
            tensors.refuse_grad(f"params[{first + s}]", grad, w.shard)
        if w.dtype is _FLOAT32 and float32_grads is not False and dtype is not float32_grads:
            float32_grads = dtype if float32_grads is None else False
        if grad.stride() != w.strides and not tensors.same_layout(grad, w.stepped):
            grad = _as_stepped(w, grad, scratch)
        grads[s] = grad
        where[s] = grad.data_ptr()
        if dtype is not w.dtype:
            kinds[s] = _CODES[dtype]
    if float32_grads is False:
        for s, (w, grad) in enumerate(zip(watched, grads)):
            if kinds[s] != -1:  # (only a float32 parameter reads another type)
                grad = grad.to(_FLOAT32)  # laid out as it was: as stepped
                scratch.append(grad)
                grads[s] = grad
                where[s], kinds[s] = grad.data_ptr(), -1
    return where, kinds


def _as_stepped(w: tensors.Watched, grad: torch.Tensor, scratch: list[torch.Tensor]) -> torch.Tensor:
    """A copy of ``grad`` laid out as ``w``'s stepped tensor, kept alive in ``scratch``."""
    grad = torch.empty_like(w.stepped, dtype=grad.dtype).copy_(grad)
    scratch.append(grad)
    return grad
