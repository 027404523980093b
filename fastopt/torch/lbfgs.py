"""torch.optim.LBFGS run by fastopt's flat-vector L-BFGS (:mod:`fastopt.lbfgs`).

The class derives from torch's (its signature, defaults and construction checks); a step
gathers the gradients into one preallocated flat buffer, viewed by NumPy, and writes each
update into the parameters' own storage in place. ``state`` holds torch's entry under the
first parameter, as tensors viewing fastopt's arrays (never written after a step hands them
over); values loaded or written there are taken in at the next step.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch

from ..lbfgs import (LINE_SEARCHES, STORAGE_DEFAULTS, FlatParams, Memory, compute_dtype,
                     group_storage, loaded_compensation, memory_from_entries,
                     new_compensation, step_or_restore)
from ..rules.storage import COMPENSATION, Storage
from .state_dicts import with_storage
from .tensors import REAL, check_dense, storage_dtype


def _scalar_value(value: Any, dtype: np.dtype) -> Any:
    """A state scalar as the front end computes with it: 0-d tensors as NumPy scalars of the
    parameters' dtype (torch computes them as 0-d tensors of that dtype)."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return _numpy(value.detach().cpu().reshape(())).astype(dtype)[()]
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
    return _numpy(value.detach().cpu())


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of the CPU tensor ``t`` (bfloat16: ml_dtypes')."""
    if t.dtype is torch.bfloat16:
        return t.view(torch.int16).numpy().view(storage_dtype(t))
    return t.numpy()


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
    parameters updated in their own storage. CPU float32, float64, bfloat16 or float16
    parameters of one dtype. ``rounding`` and ``seed`` are every fastopt rule's storage
    options: bfloat16 and float16 parameters are stepped in float32 (the state too) and
    stored rounded (stochastically by default for bfloat16, compensated for float16:
    ``kahan_comp``, a flat tensor in the state); ``state_dtype`` takes only the dtype the step
    computes in (float32; float64 for float64 parameters).
    """

    def __init__(self, params: Any, *args: Any, state_dtype: Any = None,
                 rounding: str | None = None, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        for i, p in enumerate(self._params):
            check_dense(f"params[{i}]", p, REAL)
            if p.dtype != self._params[0].dtype:
                raise TypeError(f"params[{i}]: expected dtype {self._params[0].dtype} like "
                                f"params[0] (L-BFGS steps one vector), got {p.dtype}")
        given = {"state_dtype": state_dtype, "rounding": rounding, "seed": seed}
        self._param_dtype = storage_dtype(self._params[0])
        self._storage = group_storage(given, self._param_dtype)
        # in the group where they are not the defaults, so that it is torch's own otherwise
        shown = {k: v for k, v in given.items() if v != STORAGE_DEFAULTS[k]}
        self.defaults.update(shown)
        self.param_groups[0].update(shown)
        self._dtype = compute_dtype(self._param_dtype)
        self._handed: tuple[dict[str, Any], dict[str, Any], Memory] | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # an unpickled or copied optimizer: torch's three entries
        self._params = self.param_groups[0]["params"]
        self._param_dtype = storage_dtype(self._params[0])
        self._storage = group_storage(self.defaults, self._param_dtype)
        self._dtype = compute_dtype(self._param_dtype)
        self._handed = None

    def _stored(self) -> Storage:
        """The group's storage options, which may change only in their seed (the compensation
        is laid out for the optimizer's)."""
        stored = group_storage(self.param_groups[0], self._param_dtype)
        self._storage.check_same("param_groups[0]", stored)
        return stored

    def _memory(self) -> Memory:
        state = self.state.get(self._params[0])
        if not state:
            return Memory()
        if self._handed is not None:  # the last step's entry, untouched: its memory as it is
            entry, values, memory = self._handed
            if state is entry and _same(state, values):
                return memory
        n = sum(p.numel() for p in self._params)
        return memory_from_entries(_without_comp(state), n, self._dtype, _as_array,
                                   lambda name, v: _scalar_value(v, self._dtype))

    def _comp(self) -> np.ndarray | None:
        """The flat Kahan compensation the state holds (its own memory, stepped in place),
        zeros where it holds none."""
        n = sum(p.numel() for p in self._params)
        comp = new_compensation(self._storage, self._param_dtype, n)
        entry = self.state.get(self._params[0]) or {}
        held = entry.get(COMPENSATION)
        if (comp is not None and isinstance(held, torch.Tensor) and held.shape == (n,)
                and held.dtype is self._params[0].dtype and held.is_contiguous()
                and held.device.type == "cpu"):
            return _numpy(held)
        loaded = loaded_compensation(entry, comp, lambda name, v: _as_array(name, v))
        return loaded if loaded is None else np.ascontiguousarray(loaded)

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
        stored = self._stored()
        memory = self._memory()
        comp = self._comp()
        closure = torch.enable_grad()(closure)
        params = self._params
        arrays = [_numpy(p.detach()) for p in params]
        first: list[Any] = []

        def evaluate(into: np.ndarray) -> float:
            loss = closure()
            if not first:
                first.append(loss)
            for p, piece in zip(params, flat.pieces(into)):
                if p.grad is None:
                    piece[...] = 0
                elif p.grad.is_sparse:
                    piece[...] = _numpy(p.grad.to_dense())
                else:
                    piece[...] = _numpy(p.grad.detach())
            return float(loss)

        flat = FlatParams(arrays, self._dtype, evaluate,
                          stored.rounding_of(self._param_dtype), stored.seed, comp)
        lr = group["lr"]
        _, memory = step_or_restore(
            flat, memory, lr=float(lr.item() if isinstance(lr, torch.Tensor) else lr),
            **{k: group[k] for k in ("max_iter", "max_eval", "tolerance_grad",
                                     "tolerance_change", "history_size", "line_search_fn")})
        self._hand_over(memory, comp)
        return first[0]

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, in fresh containers and copies each call."""
        sd = super().state_dict()
        sd["state"] = copy.deepcopy(sd["state"])
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load, after checking the L-BFGS entry whole (a bad one raises and changes
        nothing); the entry is then copied, so later changes to the loaded dict's tensors
        (torch's optimizer updates some in place) do not reach this one. A dict saved by
        torch.optim.LBFGS lacks the compensation: it starts at zeros."""
        state = state_dict.get("state") if isinstance(state_dict, dict) else None
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if isinstance(groups, (list, tuple)) and len(groups) == 1 and isinstance(groups[0], dict):
            group = {**{k: self.defaults.get(k, v) for k, v in STORAGE_DEFAULTS.items()},
                     **groups[0]}
            self._storage.check_same("state_dict['param_groups'][0]",
                                     group_storage(group, self._param_dtype))
        memory = comp = None
        if isinstance(state, dict) and state:
            if set(state) != {0}:
                raise ValueError("state_dict['state']: expected L-BFGS's one entry under index 0, "
                                 f"got keys {sorted(state)}")
            n = sum(p.numel() for p in self._params)
            entry = state[0]
            if not isinstance(entry, dict):
                raise TypeError(f"state_dict['state'][0]: expected a dict, got "
                                f"{type(entry).__name__}")
            memory = memory_from_entries(_without_comp(entry), n, self._dtype,
                                         lambda name, v: _as_array(name, torch.as_tensor(v)),
                                         lambda name, v: _scalar_value(v, self._dtype))
            comp = loaded_compensation(
                entry, new_compensation(self._storage, self._param_dtype, n),
                lambda name, v: _as_array(name, torch.as_tensor(v)))
        super().load_state_dict(state_dict)
        for key, value in self.defaults.items():  # a torch.optim dict lacks fastopt's options
            if key in STORAGE_DEFAULTS:
                self.param_groups[0].setdefault(key, value)
        self._handed = None
        if memory is not None:
            self._hand_over(memory, comp)

    def _hand_over(self, memory: Memory, comp: np.ndarray | None) -> None:
        """Show ``memory`` (and the compensation) in ``state`` as torch's entry, remembering
        what was shown."""
        entry = {k: _as_tensor(v) for k, v in memory.entries().items()}
        if comp is not None:
            entry[COMPENSATION] = _comp_tensor(comp, self._params[0].dtype)
        self.state[self._params[0]] = entry
        self._handed = (entry, dict(entry), memory)


def _without_comp(entry: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(entry).items() if k != COMPENSATION}


def _comp_tensor(comp: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """The compensation as a tensor of the parameters' dtype, on its memory."""
    if dtype is torch.bfloat16:
        return torch.from_numpy(comp.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(comp)


# torch's signature (its arguments and defaults, which torch's constructor checks), then the
# storage options
LBFGS.__signature__ = with_storage(torch.optim.LBFGS)  # type: ignore[attr-defined]
