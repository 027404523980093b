"""Adafactor over NumPy arrays: torch.optim.Adafactor's rule (:mod:`fastopt.adafactor`),
arguments, defaults and state-dict layout."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import validation
from .._kernels import kernels
from ..adafactor import (ARRAYS, DEFAULTS, STORAGE_DEFAULTS, check_hypers,
                         check_laid_out, check_storage, group_eps1, new_state, state_dtypes,
                         state_shapes, step_stored)
from ..rules.storage import COMPENSATION, LOW, Storage
from ..flat import first_overlap


class Adafactor:
    """Adafactor with torch.optim.Adafactor's arguments, defaults and state dict, over
    float32, float64, bfloat16 or float16 arrays updated in place: a matrix (or a stack of
    them, the last two dimensions) keeps a row and a column vector of second moments, any
    other array a full one. ``state_dtype``, ``rounding`` and ``seed`` are every fastopt
    rule's storage options (:mod:`fastopt.rules.storage`; 8-bit state excepted): a bfloat16
    or float16 parameter is stepped in float32 on a copy of its values and stored rounded.

    ``step(grads)`` takes one gradient per parameter, in parameter order (group 0's first),
    each of its parameter's shape and dtype (or bfloat16 or float16 for a float32 one);
    ``None`` leaves that parameter (and its step count) as it is, as torch skips a parameter
    without a gradient. Everything is checked before anything is modified.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, beta2_decay: float = -0.8,
                 eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, maximize: bool = False,
                 state_dtype: Any = None, rounding: str | None = None, seed: int = 0) -> None:
        self.defaults = {"lr": lr, "beta2_decay": beta2_decay, "eps": eps, "d": d,
                         "weight_decay": weight_decay, "maximize": maximize,
                         "state_dtype": state_dtype, "rounding": rounding, "seed": seed}
        check_hypers(self.defaults)
        self.defaults["eps"] = tuple(eps)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        for group in validation.param_groups(params):
            self.add_param_group(group)

    @property
    def _params(self) -> list[np.ndarray]:
        return [p for group in self.param_groups for p in group["params"]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of arrays with its own hyper-parameters (the defaults for the rest)."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError("param_group: expected a dict with a 'params' list")
        unknown = set(param_group) - set(DEFAULTS) - {"params"}
        if unknown:
            raise ValueError(f"param_group: unknown hyper-parameters {sorted(unknown)}")
        arrays = param_group["params"]
        arrays = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
        start = len(self._params)
        for i, a in enumerate(arrays):
            validation.array(f"params[{start + i}]", a)
        overlap = first_overlap(self._params + arrays)
        if overlap is not None:
            raise ValueError(f"params[{overlap[1]}]: expected memory of its own, got an array "
                             f"sharing memory with params[{overlap[0]}]")
        group = {**self.defaults, **param_group, "params": arrays}
        check_storage(check_hypers(group).storage, [a.dtype for a in arrays])
        group["eps"] = tuple(group["eps"])
        self.param_groups.append(group)

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        """One Adafactor step of every parameter that has a gradient (see the class)."""
        params = self._params
        if not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads: expected a list of arrays, got {type(grads).__name__}")
        if len(grads) != len(params):
            raise ValueError(f"grads: expected {len(params)} arrays (one per parameter), "
                             f"got {len(grads)}")
        for i, (g, p) in enumerate(zip(grads, params)):
            if g is not None:
                _check_grad(f"grads[{i}]", g, p, f"params[{i}]")
                if any(np.shares_memory(g, a) for a in self._arrays()):
                    raise ValueError(f"grads[{i}]: expected memory of its own, got an array "
                                     "sharing memory with a parameter or the state")
        hypers = [check_hypers(group) for group in self.param_groups]
        start = 0
        for group, h in zip(self.param_groups, hypers):
            check_storage(h.storage, [p.dtype for p in group["params"]])
            for i, p in enumerate(group["params"], start):
                if i in self.state:
                    check_laid_out(f"params[{i}]", {k: v.dtype for k, v in self.state[i].items()
                                                    if k in ARRAYS}, p.dtype, h.storage)
            start += len(group["params"])
        start = 0
        for g, (group, h) in enumerate(zip(self.param_groups, hypers)):
            stepped = [(k, start + k, p) for k, p in enumerate(group["params"])
                       if grads[start + k] is not None]
            start += len(group["params"])
            if stepped:
                eps1 = group_eps1(h, stepped[0][2].dtype)
            for k, i, p in stepped:
                state = self.state.setdefault(i, new_state(p, h.storage))
                key = kernels.stream_key(h.storage.seed, int(state["step"]) + 1, g << 32 | k)
                step_stored(p, grads[i], state, h, eps1, key)

    def _arrays(self) -> list[np.ndarray]:
        return self._params + [a for entry in self.state.values() for a in entry.values()
                               if isinstance(a, np.ndarray)]

    def state_dict(self) -> dict[str, Any]:
        """torch's layout (``{"state": {index: {...}}, "param_groups": [...]}``), copies."""
        return {"state": copy.deepcopy(self.state),
                "param_groups": validation.numbered_groups(self.param_groups)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state dict of this class's or of torch.optim.Adafactor's layout (arrays,
        or tensors). Checked whole first: a bad one raises and changes nothing."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("state_dict: expected a dict with keys 'state' and 'param_groups'")
        saved, state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved, list) or len(saved) != len(self.param_groups):
            raise ValueError(f"state_dict['param_groups']: expected a list of "
                             f"{len(self.param_groups)} groups")
        if not isinstance(state, dict):
            raise TypeError("state_dict['state']: expected a dict")
        params, groups = self._params, []
        numbered = validation.numbered_groups(self.param_groups)
        for g, (group, current, indices) in enumerate(zip(saved, self.param_groups, numbered)):
            if not isinstance(group, dict) or list(group.get("params", ())) != indices["params"]:
                raise ValueError(f"state_dict['param_groups'][{g}]['params']: expected "
                                 f"{indices['params']}")
            # (a torch.optim.Adafactor state dict has no storage options: the defaults)
            merged = {**STORAGE_DEFAULTS, **{k: v for k, v in group.items() if k in DEFAULTS},
                      "params": current["params"]}
            if set(DEFAULTS) - set(merged):
                raise ValueError(f"state_dict['param_groups'][{g}]: missing hyper-parameters "
                                 f"{sorted(set(DEFAULTS) - set(merged))}")
            h = check_hypers(merged)
            check_storage(h.storage, [p.dtype for p in current["params"]])
            check_hypers(current).storage.check_same(f"state_dict['param_groups'][{g}]",
                                                     h.storage)
            merged["eps"] = tuple(merged["eps"])
            groups.append((merged, h))
        owner = [h for merged, h in groups for _ in merged["params"]]
        entries = {}
        for index, entry in state.items():
            if not isinstance(index, int) or not 0 <= index < len(params):
                raise ValueError(f"state_dict['state']: entry {index!r} belongs to no parameter")
            entries[index] = _entry(f"state_dict['state'][{index}]", entry, params[index],
                                    owner[index].storage)
        groups = [merged for merged, _ in groups]
        self.param_groups, self.state = groups, entries

    def __repr__(self) -> str:
        lines = ["Adafactor ("]
        for g, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {g}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


def _check_grad(name: str, g: Any, p: np.ndarray, p_name: str) -> None:
    """A gradient of its parameter's shape and dtype, or bfloat16 or float16 for a float32
    parameter (as every rule's)."""
    validation.array(name, g, writable=False)
    if g.dtype != p.dtype and not (p.dtype == np.float32 and g.dtype.name in LOW):
        raise TypeError(f"{name}: expected dtype {p.dtype} ({p_name}'s"
                        + (", or bfloat16 or float16" if p.dtype == np.float32 else "")
                        + f"), got {g.dtype}")
    if g.shape != p.shape:
        raise ValueError(f"{name}: expected shape {p.shape} ({p_name}'s), got {g.shape}")


def _entry(where: str, entry: Any, param: np.ndarray, stored: Storage) -> dict[str, Any]:
    """A saved state entry, checked and copied: ``step`` and the arrays of the parameter's
    shape (:func:`fastopt.adafactor.state_shapes`; the compensation of a Kahan-rounded one,
    zeros if the entry has none), in their storage dtypes."""
    dtypes = state_dtypes(param.dtype, stored)
    shapes = state_shapes(param.shape)
    if COMPENSATION in dtypes and isinstance(entry, dict) and COMPENSATION not in entry:
        entry = {**entry, COMPENSATION: np.zeros(param.shape, param.dtype)}
    if COMPENSATION in dtypes:
        shapes[COMPENSATION] = param.shape
    if not isinstance(entry, dict) or set(entry) != {"step", *shapes}:
        raise ValueError(f"{where}: expected keys {sorted(['step', *shapes])}, got "
                         f"{sorted(entry) if isinstance(entry, dict) else type(entry).__name__}")
    step = validation.as_array(entry["step"])
    if step.shape != () or step.dtype.kind not in "fiu" or not step >= 0:
        raise ValueError(f"{where}['step']: expected a count >= 0, got {entry['step']!r}")
    loaded: dict[str, Any] = {"step": float(step)}
    for key, shape in shapes.items():
        value = validation.as_array(entry[key])
        if value.shape != shape or not (value.dtype.kind == "f" or value.dtype.name in LOW):
            raise ValueError(f"{where}[{key!r}]: expected a float array of shape {shape}, got "
                             f"{value.dtype} of shape {value.shape}")
        loaded[key] = np.array(value, dtype=dtypes[key], order="C")
    return loaded
