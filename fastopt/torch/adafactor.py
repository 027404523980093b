"""torch.optim.Adafactor stepped by fastopt's compiled passes (:mod:`fastopt.adafactor`).

The class derives from torch's: its signature, checks, defaults, state creation
(``_init_group``) and state-dict layout are torch's own, with fastopt's storage options
(``state_dtype``, ``rounding``, ``seed``: :mod:`fastopt.rules.storage`) beside them. A step
runs fastopt's rule on NumPy views of each parameter, gradient and state tensor, in their own
memory (a tensor that is not contiguous is stepped through a contiguous copy, written back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from torch.optim.optimizer import _get_scalar_dtype

from .._kernels import kernels
from ..adafactor import (ARRAYS, STORAGE_DEFAULTS, check_hypers, check_laid_out,
                         check_storage, group_eps1, group_storage, state_dtypes, state_shapes,
                         step_stored)
from ..rules import storage
from ..rules.storage import COMPENSATION, Storage
from . import entries
from .state_dicts import with_storage
from .tensors import REAL, check_dense, grad_accepted, refuse_grad, storage_dtype, torch_dtypes

_FACTORED = ("row_var", "col_var")  # of their own shapes; the other state is the parameter's


@contextmanager
def _array(t: torch.Tensor) -> Iterator[np.ndarray]:
    """A C-contiguous NumPy view of ``t`` (bfloat16: ml_dtypes'), or of a contiguous copy
    written back after."""
    t = t.detach()
    copy = t if t.is_contiguous() else t.contiguous()
    if copy.dtype is torch.bfloat16:
        yield copy.view(torch.int16).numpy().view(storage.dtype("bfloat16"))
    else:
        yield copy.numpy()
    if copy is not t:
        t.copy_(copy)


class Adafactor(torch.optim.Adafactor):
    __doc__ = (torch.optim.Adafactor.__doc__ or "") + """
    fastopt.torch's Adafactor: torch's rule and state, its passes over each tensor compiled
    (fastopt.adafactor). CPU float32, float64, bfloat16 or float16 parameters; a float32 one
    may have a bfloat16 or float16 gradient. ``state_dtype``, ``rounding`` and ``seed`` are
    every fastopt rule's storage options (8-bit state excepted): the state is float32 unless
    ``state_dtype`` says otherwise (torch's follows the gradient's dtype), a bfloat16 or
    float16 parameter is stepped in float32 and stored rounded as ``rounding`` says
    (stochastically by default for bfloat16, compensated for float16: ``kahan_comp``).
    """

    def __init__(self, params: Iterable[Any], *args: Any, state_dtype: Any = None,
                 rounding: str | None = None, seed: int = 0, **kwargs: Any) -> None:
        # in the groups where they are not the defaults, so that the groups are torch's own
        # otherwise (as every fastopt.torch optimizer's)
        given = {"state_dtype": state_dtype, "rounding": rounding, "seed": seed}
        self._storage = {k: v for k, v in given.items() if v != STORAGE_DEFAULTS[k]}
        super().__init__(params, *args, **kwargs)
        self.defaults.update(self._storage)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # (an unpickled or copied optimizer: from its defaults)
        self._storage = {k: self.defaults[k] for k in STORAGE_DEFAULTS if k in self.defaults}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group.get("params")
        tensors = [params] if isinstance(params, torch.Tensor) else list(params or ())
        start = sum(len(g["params"]) for g in getattr(self, "param_groups", ()))
        for i, p in enumerate(tensors):
            # (complex parameters pass: torch's step refuses them, as for torch's class)
            if isinstance(p, torch.Tensor) and not p.is_complex():
                check_dense(f"params[{start + i}]", p, REAL)
        group = {**self._storage, **param_group, "params": tensors}
        stepped = [p for p in tensors if isinstance(p, torch.Tensor) and not p.is_complex()]
        check_storage(group_storage(group), [storage_dtype(p) for p in stepped])
        super().add_param_group(group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, then the state in its storage dtypes again (torch casts
        it to the parameters' dtype: the saved tensors are taken where that only cast them)
        and a missing compensation as zeros; storage options other than the optimizer's are
        refused with nothing changed."""
        before = {key: self.__dict__[key] for key in ("param_groups", "state")}
        given = {}
        if isinstance(state_dict, dict) and isinstance(state_dict.get("state"), dict):
            saved = [i for group in state_dict.get("param_groups", ()) if isinstance(group, dict)
                     for i in group.get("params", ())]
            current = [p for group in self.param_groups for p in group["params"]]
            given = {p: state_dict["state"][i] for i, p in zip(saved, current)
                     if isinstance(state_dict["state"].get(i), dict)}
        super().load_state_dict(state_dict)
        try:
            entries.uncast(self.state, given)
            for g, (group, old) in enumerate(zip(self.param_groups, before["param_groups"])):
                for key, value in self._storage.items():  # a torch.optim dict lacks them
                    group.setdefault(key, value)
                h = check_hypers(group)
                check_hypers(old).storage.check_same(f"state_dict['param_groups'][{g}]",
                                                     h.storage)
                for p in group["params"]:
                    if self.state.get(p) and not p.is_complex():
                        _restore(self.state[p], p, h.storage)
        except BaseException:
            self.__dict__.update(before)
            raise

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adafactor step of every parameter with a gradient; returns the closure's loss."""
        if (getattr(self, "grad_scale", None) is not None
                or getattr(self, "found_inf", None) is not None):
            raise AssertionError("Grad scaling should occur outside of optimizer.step()")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        hypers = []  # every group's hyper-parameters and gradients, checked before any step
        for g, group in enumerate(self.param_groups):
            h = check_hypers(group)
            check_storage(h.storage, [storage_dtype(p) for p in group["params"]
                                      if not p.is_complex()])
            for j, p in enumerate(group["params"]):
                if self.state.get(p) and not p.is_complex():
                    check_laid_out(f"param_groups[{g}]['params'][{j}]",
                                   {k: storage_dtype(v) for k, v in self.state[p].items()
                                    if k in ARRAYS}, storage_dtype(p), h.storage)
                grad = p.grad
                if grad is not None and not (p.is_complex() or grad.is_sparse) and not (
                        grad_accepted(grad, p) and grad.shape == p.shape):
                    refuse_grad(f"param_groups[{g}]['params'][{j}].grad", grad, p)
            hypers.append(h)
        work = []
        for group, h in zip(self.param_groups, hypers):
            for p in group["params"]:  # state in its storage dtypes, before torch makes its own
                if p.grad is not None and not (p.is_complex() or p.grad.is_sparse or self.state[p]):
                    self.state[p] = _new_state(p, h.storage)
            tensors: tuple[list[Any], ...] = ([], [], [], [], [], [])
            self._init_group(group, *tensors)
            work.append(tensors)
        for g, (group, h, (params, *tensors)) in enumerate(zip(self.param_groups, hypers, work)):
            if not params:
                continue
            eps1 = group_eps1(h, storage_dtype(params[0]))
            index = {p: j for j, p in enumerate(group["params"])}
            for p, grad, step in zip(params, tensors[0], tensors[4]):
                key = kernels.stream_key(h.storage.seed, int(step.item()) + 1, g << 32 | index[p])
                self._step_param(p, grad, self.state[p], h, eps1, key)
        return loss

    @staticmethod
    def _step_param(p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], h: Any,
                    eps1: float, key: int) -> None:
        step = state["step"]
        with _array(p) as pa, _array(grad) as ga, _arrays(state) as arrays:
            step_stored(pa, ga, {"step": step.item(), **arrays}, h, eps1, key)
        step.add_(1)


Adafactor.__signature__ = with_storage(torch.optim.Adafactor)  # type: ignore[attr-defined]


@contextmanager
def _arrays(state: dict[str, Any]) -> Iterator[dict[str, np.ndarray]]:
    """NumPy views of a parameter's state tensors, by name (not ``step``, nor what else a
    user keeps in the entry)."""
    with ExitStack() as stack:
        yield {k: stack.enter_context(_array(state[k])) for k in ARRAYS if k in state}


def _dtypes(p: torch.Tensor, stored: Storage) -> dict[str, torch.dtype]:
    """The torch dtype of each state tensor of ``p`` (:func:`fastopt.adafactor.state_dtypes`)."""
    shapes = state_shapes(tuple(p.shape))
    return {key: torch_dtypes((dtype,))[0]
            for key, dtype in state_dtypes(storage_dtype(p), stored).items()
            if key in shapes or key == COMPENSATION}


def _new_state(p: torch.Tensor, stored: Storage) -> dict[str, Any]:
    """torch's state before a first step (zeros, a ``step`` of torch's scalar dtype), in the
    storage dtypes; the state of the parameter's shape laid out as the parameter is."""
    shapes = state_shapes(tuple(p.shape))
    state: dict[str, Any] = {"step": torch.tensor(0.0, dtype=_get_scalar_dtype())}
    for key, dtype in _dtypes(p, stored).items():
        state[key] = (torch.zeros(shapes[key], dtype=dtype) if key in _FACTORED
                      else torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format))
    return state


def _restore(state: dict[str, Any], p: torch.Tensor, stored: Storage) -> None:
    """A loaded entry's state tensors in their storage dtypes; a missing compensation zeros."""
    for key, dtype in _dtypes(p, stored).items():
        if key == COMPENSATION and key not in state:
            state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif isinstance(state.get(key), torch.Tensor) and state[key].dtype is not dtype:
            state[key] = state[key].to(dtype)
