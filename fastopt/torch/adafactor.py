"""torch.optim.Adafactor stepped by fastopt's compiled passes (:mod:`fastopt.adafactor`).

The class derives from torch's: its signature, checks, defaults, state creation
(``_init_group``) and state-dict layout are torch's own. A step runs fastopt's rule on NumPy
views of each parameter, gradient and state tensor, in their own memory (a tensor that is not
contiguous is stepped through a contiguous copy, written back).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

from ..adafactor import check_hypers, group_eps1, step_param
from .tensors import check_wide


@contextmanager
def _array(t: torch.Tensor) -> Iterator[np.ndarray]:
    """A C-contiguous NumPy view of ``t``, or of a contiguous copy written back after."""
    t = t.detach()
    if t.is_contiguous():
        yield t.numpy()
        return
    copy = t.contiguous()
    yield copy.numpy()
    t.copy_(copy)


class Adafactor(torch.optim.Adafactor):
    __doc__ = (torch.optim.Adafactor.__doc__ or "") + """
    fastopt.torch's Adafactor: torch's rule and state, its passes over each tensor compiled
    (fastopt.adafactor). CPU float32 or float64 parameters.
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group.get("params")
        tensors = [params] if isinstance(params, torch.Tensor) else list(params or ())
        start = sum(len(g["params"]) for g in getattr(self, "param_groups", ()))
        for i, p in enumerate(tensors):
            # (complex parameters pass: torch's step refuses them, as for torch's class)
            if isinstance(p, torch.Tensor) and not p.is_complex():
                check_wide(f"params[{start + i}]", p)
        super().add_param_group({**param_group, "params": tensors})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adafactor step of every parameter with a gradient; returns the closure's loss."""
        if getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None:
            raise AssertionError("Grad scaling should occur outside of optimizer.step()")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []  # every group's hyper-parameters and tensors, checked before any step
        for group in self.param_groups:
            tensors: tuple[list[Any], ...] = ([], [], [], [], [], [])
            self._init_group(group, *tensors)
            for p, g in zip(tensors[0], tensors[1]):
                if g.dtype != p.dtype:
                    raise TypeError(f"a gradient of dtype {g.dtype} for a {p.dtype} parameter")
            work.append((check_hypers(group), tensors))
        for h, (params, *tensors) in work:
            if not params:
                continue
            eps1 = group_eps1(h, np.dtype(str(params[0].dtype).removeprefix("torch.")))
            for p, g, row_var, col_var, variance, step in zip(params, *tensors):
                with _array(p) as pa, _array(g) as ga:
                    self._step_param(pa, ga, row_var, col_var, variance, step, h, eps1)
        return loss

    @staticmethod
    def _step_param(p: np.ndarray, g: np.ndarray, row_var: Any, col_var: Any, variance: Any,
                    step: torch.Tensor, h: Any, eps1: float) -> None:
        if variance is None:
            with _array(row_var) as r, _array(col_var) as c:
                state = {"step": step.item(), "row_var": r, "col_var": c}
                step_param(p, g, state, h, eps1)
        else:
            with _array(variance) as v:
                state = {"step": step.item(), "variance": v}
                step_param(p, g, state, h, eps1)
        step.add_(1)
