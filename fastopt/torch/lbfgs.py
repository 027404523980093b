"""torch.optim.LBFGS run by fastopt's flat-vector L-BFGS (:mod:`fastopt.lbfgs`).

The class derives from torch's (its signature, defaults and construction checks); a step
gathers the gradients into one preallocated flat buffer, viewed by NumPy, and writes each
update into the parameters' own storage in place. ``state`` holds torch's entry under the
first parameter, as tensors viewing fastopt's arrays (never written after a step hands them
over); values loaded or written there are taken in at the next step.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Callable

import numpy as np
import torch

from ..lbfgs import LINE_SEARCHES, FlatParams, Memory, memory_from_entries, step_or_restore
from .tensors import check_dense


def _scalar_value(value: Any, dtype: np.dtype) -> Any:
    """A state scalar as the front end computes with it: 0-d tensors as NumPy scalars of the
    parameters' dtype (torch computes them as 0-d tensors of that dtype)."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return value.detach().cpu().reshape(()).numpy().astype(dtype)[()]
    raise ValueError(f"LBFGS state: expected a number or a 1-element tensor, got {value!r}")


def _as_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return torch.from_numpy(np.asarray(value))  # a 0-d tensor, as torch keeps it
    if isinstance(value, list):
        return [_as_tensor(v) for v in value]
    return value


def _as_array(name: str, value: Any) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"LBFGS state[{name!r}]: expected a tensor, got {type(value).__name__}")
    return value.detach().cpu().numpy()


def _same(entry: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether ``entry`` holds exactly the objects of ``values`` (lists element by element)."""
    if entry.keys() != values.keys():
        return False
    for key, value in values.items():
        now = entry[key]
        if isinstance(value, list):
            if not isinstance(now, list) or len(now) != len(value) or any(
                    a is not b for a, b in zip(now, value)):
                return False
        elif now is not value:
            return False
    return True


class LBFGS(torch.optim.LBFGS):
    __doc__ = (torch.optim.LBFGS.__doc__ or "") + """
    fastopt.torch's L-BFGS: torch's algorithm over one flat NumPy view of the gradients, the
    parameters updated in their own storage. CPU float32 or float64 parameters of one dtype.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for i, p in enumerate(self._params):
            check_dense(f"params[{i}]", p)
            if p.dtype != self._params[0].dtype:
                raise TypeError(f"params[{i}]: expected dtype {self._params[0].dtype} like "
                                f"params[0] (L-BFGS steps one vector), got {p.dtype}")
        self._dtype = np.dtype(str(self._params[0].dtype).removeprefix("torch."))
        self._handed: tuple[dict[str, Any], dict[str, Any], Memory] | None = None

    def _memory(self) -> Memory:
        state = self.state.get(self._params[0])
        if not state:
            return Memory()
        if self._handed is not None:  # the last step's entry, untouched: its memory as it is
            entry, values, memory = self._handed
            if state is entry and _same(state, values):
                return memory
        n = sum(p.numel() for p in self._params)
        return memory_from_entries(dict(state), n, self._dtype, _as_array,
                                   lambda name, v: _scalar_value(v, self._dtype))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Up to ``max_iter`` L-BFGS iterations; returns the closure's first loss. ``closure``
        re-evaluates the model (with gradients enabled) and returns the loss."""
        if len(self.param_groups) != 1:
            raise AssertionError(f"Expected exactly one param_group, but got {len(self.param_groups)}")
        group = self.param_groups[0]
        if group["line_search_fn"] not in LINE_SEARCHES:
            raise RuntimeError("only 'strong_wolfe' is supported")
        if not callable(closure):
            raise TypeError(f"closure: expected a callable, got {type(closure).__name__}")
        memory = self._memory()
        closure = torch.enable_grad()(closure)
        params = self._params
        arrays = [p.detach().numpy() for p in params]
        first: list[Any] = []

        def evaluate(into: np.ndarray) -> float:
            loss = closure()
            if not first:
                first.append(loss)
            for p, piece in zip(params, flat.pieces(into)):
                if p.grad is None:
                    piece[...] = 0
                elif p.grad.is_sparse:
                    piece[...] = p.grad.to_dense().numpy()
                else:
                    piece[...] = p.grad.detach().numpy()
            return float(loss)

        flat = FlatParams(arrays, self._dtype, evaluate)
        lr = group["lr"]
        _, memory = step_or_restore(
            flat, memory, lr=float(lr.item() if isinstance(lr, torch.Tensor) else lr),
            **{k: group[k] for k in ("max_iter", "max_eval", "tolerance_grad",
                                     "tolerance_change", "history_size", "line_search_fn")})
        self._hand_over(memory)
        return first[0]

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, in fresh containers and copies each call."""
        sd = super().state_dict()
        sd["state"] = copy.deepcopy(sd["state"])
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load, after checking the L-BFGS entry whole (a bad one raises and changes
        nothing); the entry is then copied, so later changes to the loaded dict's tensors
        (torch's optimizer updates some in place) do not reach this one."""
        state = state_dict.get("state") if isinstance(state_dict, dict) else None
        memory = None
        if isinstance(state, dict) and state:
            if set(state) != {0}:
                raise ValueError("state_dict['state']: expected L-BFGS's one entry under index 0, "
                                 f"got keys {sorted(state)}")
            n = sum(p.numel() for p in self._params)
            memory = memory_from_entries(dict(state[0]), n, self._dtype,
                                         lambda name, v: _as_array(name, torch.as_tensor(v)),
                                         lambda name, v: _scalar_value(v, self._dtype))
        super().load_state_dict(state_dict)
        self._handed = None
        if memory is not None:
            self._hand_over(memory)

    def _hand_over(self, memory: Memory) -> None:
        """Show ``memory`` in ``state`` as torch's entry, remembering what was shown."""
        entry = {k: _as_tensor(v) for k, v in memory.entries().items()}
        self.state[self._params[0]] = entry
        self._handed = (entry, dict(entry), memory)


# torch's signature (its arguments and defaults, which torch's constructor checks)
LBFGS.__init__.__signature__ = inspect.signature(torch.optim.LBFGS.__init__)  # type: ignore[attr-defined]
