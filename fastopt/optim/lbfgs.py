"""L-BFGS over NumPy arrays: torch.optim.LBFGS's algorithm, arguments and state dict."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .. import validation
from ..flat import first_overlap
from ..lbfgs import (STORAGE_DEFAULTS, FlatParams, Memory, compute_dtype, group_storage,
                     loaded_compensation, memory_from_entries, new_compensation,
                     step_or_restore)
from ..rules.storage import COMPENSATION

Closure = Callable[[], tuple[Any, Sequence[np.ndarray]]]

_HYPERS = {
    "lr": validation.Real(), "max_iter": validation.Integer(1),
    "max_eval": validation.Integer(1), "tolerance_grad": validation.Real(),
    "tolerance_change": validation.Real(), "history_size": validation.Integer(1),
    "line_search_fn": validation.Optional(validation.Choice(("strong_wolfe",))),
}


def check_hypers(group: dict[str, Any]) -> dict[str, Any]:
    """The hyper-parameters of ``group``, checked (``max_eval=None`` is ``max_iter * 5 // 4``)."""
    group = dict(group)
    if group.get("max_eval") is None:
        group["max_eval"] = validation.Integer(1)("max_iter", group["max_iter"]) * 5 // 4
    return {key: check(key, group[key]) for key, check in _HYPERS.items()}


def as_scalar(dtype: np.dtype, name: str, value: Any) -> Any:
    """A saved scalar in the dtype it is computed in (a Python number stays one)."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    a = validation.as_array(value)
    if a.shape != () or a.dtype.kind not in "fi":
        raise ValueError(f"state_dict['state'][0][{name!r}]: expected a number, got {value!r}")
    return a.astype(dtype)[()] if a.dtype.kind == "f" else a[()]


class LBFGS:
    """L-BFGS with torch.optim.LBFGS's arguments, defaults and state-dict layout, over
    float32, float64, bfloat16 or float16 arrays (one dtype), updated in place.

    ``step(closure)`` calls ``closure()`` as often as the search needs (up to ``max_eval``
    times); it evaluates the model at the arrays' current values and returns
    ``(loss, grads)``: the loss (a number) and one gradient per parameter, of its shape and
    dtype. ``step`` returns the first call's loss. All parameters form one vector, as in torch:
    one parameter group only.

    ``rounding`` and ``seed`` are every fastopt rule's storage options
    (:mod:`fastopt.rules.storage`): bfloat16 and float16 parameters are stepped in float32
    (the memory too) and stored rounded (stochastically by default for bfloat16, compensated
    for float16: ``kahan_comp``, a flat vector in the state). ``state_dtype`` takes only the
    dtype the step computes in (float32; float64 for float64 parameters).
    """

    def __init__(self, params: Iterable[np.ndarray], lr: float = 1, max_iter: int = 20,
                 max_eval: int | None = None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None, *, state_dtype: Any = None,
                 rounding: str | None = None, seed: int = 0) -> None:
        if isinstance(params, (np.ndarray, dict)):
            raise TypeError(f"params: expected a list of arrays, got {type(params).__name__}")
        arrays = list(params)
        if arrays and isinstance(arrays[0], dict):
            if len(arrays) != 1:
                raise ValueError("params: L-BFGS takes one parameter group only "
                                 f"(its parameters form one vector), got {len(arrays)}")
            arrays = list(arrays[0]["params"])
        if not arrays:
            raise ValueError("params: expected at least one array, got none")
        for i, a in enumerate(arrays):
            validation.array(f"params[{i}]", a)
            if a.dtype != arrays[0].dtype:
                raise TypeError(f"params[{i}]: expected dtype {arrays[0].dtype} like params[0] "
                                f"(L-BFGS steps one vector), got {a.dtype}")
        overlap = first_overlap(arrays)
        if overlap is not None:
            raise ValueError(f"params[{overlap[1]}]: expected memory of its own, got an array "
                             f"sharing memory with params[{overlap[0]}]")
        hypers = check_hypers({"lr": lr, "max_iter": max_iter, "max_eval": max_eval,
                               "tolerance_grad": tolerance_grad,
                               "tolerance_change": tolerance_change,
                               "history_size": history_size, "line_search_fn": line_search_fn})
        given = {"state_dtype": state_dtype, "rounding": rounding, "seed": seed}
        param = arrays[0].dtype
        self._storage = group_storage(given, param)
        self.defaults = {**hypers, **given}
        self.param_groups = [{**self.defaults, "params": arrays}]
        self.dtype = compute_dtype(param)  # of the step's arithmetic and its memory
        n = sum(a.size for a in arrays)
        self._flat = FlatParams(arrays, self.dtype, self._gather,
                                self._storage.rounding_of(param), self._storage.seed,
                                new_compensation(self._storage, param, n))
        self._closure: Closure | None = None
        self.memory = Memory()

    def _gather(self, into: np.ndarray) -> float:
        assert self._closure is not None
        loss, grads = self._closure()
        params = self._flat.arrays
        if isinstance(grads, np.ndarray) or len(grads) != len(params):
            raise ValueError(f"closure: expected a list of {len(params)} gradients, one per "
                             f"parameter, got {type(grads).__name__}"
                             + ("" if isinstance(grads, np.ndarray) else f" of {len(grads)}"))
        checked = [validation.like(f"grads[{i}]", g, p, f"params[{i}]", writable=False)
                   for i, (g, p) in enumerate(zip(grads, params))]
        for piece, g in zip(self._flat.pieces(into), checked):
            piece[...] = g
        return float(loss)

    def step(self, closure: Closure) -> Any:
        """Up to ``max_iter`` L-BFGS iterations; returns the first evaluation's loss.

        A closure that raises (or returns bad gradients) leaves the parameters at the point
        the step started from and the optimizer's state as it was."""
        if not callable(closure):
            raise TypeError(f"closure: expected a callable returning (loss, grads), got "
                            f"{type(closure).__name__}")
        hypers = check_hypers(self.param_groups[0])
        stored = self._checked_storage(self.param_groups[0])
        self._storage.check_same("param_groups[0]", stored)  # the compensation is laid out
        self._flat.seed = stored.seed
        self._closure = closure
        try:
            loss, self.memory = step_or_restore(self._flat, self.memory, **hypers)
        finally:
            self._closure = None
        return loss

    @property
    def state(self) -> dict[int, dict[str, Any]]:
        """torch's state layout: L-BFGS's one entry, under the first parameter (index 0)."""
        if not self.memory.func_evals:
            return {}
        comp = self._flat.comp
        return {0: {**self.memory.entries(), **({} if comp is None else {COMPENSATION: comp})}}

    def _checked_storage(self, group: dict[str, Any]) -> Any:
        return group_storage(group, self._flat.arrays[0].dtype)

    def state_dict(self) -> dict[str, Any]:
        """torch's layout (``{"state": {0: {...}}, "param_groups": [...]}``), copies throughout."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self._flat.arrays)))
        return {"state": copy.deepcopy(self.state), "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state dict of this class's or of torch.optim.LBFGS's layout (arrays or
        anything ``numpy.asarray`` takes). Checked whole first: a bad one raises
        ``ValueError``/``TypeError`` and changes nothing."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("state_dict: expected a dict with keys 'state' and 'param_groups'")
        groups, state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or len(groups) != 1:
            raise ValueError("state_dict['param_groups']: expected one group")
        group = dict(groups[0])
        if list(group.get("params", ())) != list(range(len(self._flat.arrays))):
            raise ValueError(f"state_dict['param_groups'][0]['params']: expected "
                             f"{list(range(len(self._flat.arrays)))}, got {group.get('params')!r}")
        hypers = check_hypers({**self.defaults, **group})
        for key, value in self._storage_given().items():  # a torch.optim dict lacks them
            group.setdefault(key, value)
        self._storage.check_same("state_dict['param_groups'][0]", self._checked_storage(group))
        if not isinstance(state, dict) or set(state) - {0}:
            raise ValueError("state_dict['state']: expected L-BFGS's one entry under index 0, "
                             f"got keys {sorted(state) if isinstance(state, dict) else state!r}")
        memory, entry = Memory(), {}
        if 0 in state:
            entry = state[0]
            if not isinstance(entry, dict):
                raise TypeError(f"state_dict['state'][0]: expected a dict, got "
                                f"{type(entry).__name__}")
            memory = memory_from_entries({k: v for k, v in entry.items() if k != COMPENSATION},
                                         self._flat.n, self.dtype,
                                         lambda name, v: validation.as_array(v),
                                         functools.partial(as_scalar, self.dtype))
        comp = loaded_compensation(entry, self._flat.comp, lambda name, v: validation.as_array(v))
        self.param_groups = [{**group, **hypers, "params": self._flat.arrays}]
        self.memory = memory
        if comp is not None:
            self._flat.comp[...] = comp

    def _storage_given(self) -> dict[str, Any]:
        return {k: self.defaults[k] for k in STORAGE_DEFAULTS}

    def __repr__(self) -> str:
        hypers = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return f"LBFGS({', '.join(f'{k}={v!r}' for k, v in hypers.items())})"
