"""The reference optimizer classes: parameter groups, per-parameter state and step counts
around a reference function, one class per rule of :mod:`fastopt.rules`."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..rules import Rule
from ..rules.storage import COMPENSATION, LOW, Q8, Storage, scale_key, storage_of
from .state import State, is_coalesced
from .storage import (compute_dtype, dequantize, quantize, round_stochastic, store_kahan,
                      stream_key)


class ReferenceOptimizer:
    """Holds parameter groups and per-parameter state around the reference function its rule
    names (looked up in :mod:`fastopt.reference` at every step, so a test may swap it).

    ``param_groups`` is a list of dicts with ``"params"`` (a list of arrays) and every
    hyper-parameter; values are read at each step, so changing them between steps takes
    effect at the next one. ``state[i]`` and ``step_counts[i]`` belong to the i-th
    parameter in group order (group 0's parameters first). It checks only what would
    otherwise give a silently wrong answer (gradient count, shape and dtype); full input
    validation belongs to ``fastopt.optim``.
    """

    rule: Rule

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: list[State] = []
        self.step_counts: list[int] = []
        params = list(params)
        if not params:
            raise ValueError("params: expected a non-empty list of arrays or groups, got []")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def _function(self) -> Callable[..., None]:
        return getattr(sys.modules[__package__], self.rule.reference)

    @functools.cached_property
    def _keywords(self) -> Any:
        """The keywords of the rule's function as the package defines it (a swapped-in one
        takes the same)."""
        return inspect.signature(importlib.import_module(__package__).FUNCTIONS[
            self.rule.reference]).parameters

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, np.ndarray) else list(params)
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        if self.rule.modes is not None:
            self.rule.modes.inherit(param_group, group, self.param_groups)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        self.param_groups.append(group)
        h = self.rule.check_group(group)
        stored = storage_of(h)
        for param in group["params"]:
            # Roles torch creates with the optimizer (Adagrad's sum), from their initial value.
            state: State = {}
            for role in self.rule.roles_at_construction(h):
                _store(state, role, np.full(param.shape, self.rule.role(role).start(h),
                                            compute_dtype(param.dtype)),
                       stored.state(role, param.dtype), self._signed(role))
            self.state.append(state)
            self.step_counts.append(0)

    def _signed(self, role: str) -> bool:
        """Whether the role's 8-bit state takes the signed code."""
        return not self.rule.role(role).nonnegative

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """Apply one update to every parameter; ``grads`` in parameter order."""
        modes = self.rule.modes
        if modes is not None and not all(group[modes.flag] for group in self.param_groups):
            raise RuntimeError(f"{self.rule.name}: step() in eval mode; call train() first")
        params = [param for group in self.param_groups for param in group["params"]]
        grads = list(grads)
        if len(grads) != len(params):
            raise ValueError(f"grads: expected {len(params)} gradients, got {len(grads)}")
        for i, (param, grad) in enumerate(zip(params, grads)):
            # NumPy would broadcast a wrong shape and upcast a wrong dtype without a word.
            if self.rule.gradient == "rows":  # (indices, values): rows of the parameter
                shape, values = (len(grad[0]), *param.shape[1:]), grad[1]
            else:
                shape, values = param.shape, grad
            low = param.dtype == np.float32 and values.dtype.name in LOW
            if values.shape != shape or (values.dtype != param.dtype and not low):
                raise ValueError(
                    f"grads[{i}]: expected shape {shape} and dtype {param.dtype}, "
                    f"got shape {values.shape} and dtype {values.dtype}")
        function, keywords, i = self._function(), self._keywords, 0
        for g, group in enumerate(self.param_groups):
            # The rule's own keywords: Adagrad's takes no initial_accumulator_value, SGD's no step.
            hypers = {name: group[name] for name in self.defaults if name in keywords}
            h = self.rule.check_group(group)
            stored = storage_of(h)
            for j, param in enumerate(group["params"]):
                self.step_counts[i] += 1
                t = self.step_counts[i]
                step = {"step": t} if "step" in keywords else {}
                self._start(self.state[i], param, h, stored)
                grad = _in_dtype(grads[i], compute_dtype(param.dtype))
                # A row-sparse step stores only the rows it touches (their compensation too).
                rows = None
                if isinstance(grad, tuple):
                    indices = np.asarray(grad[0])
                    rows = indices if is_coalesced(indices) else np.unique(indices)
                progress = self._stepped(
                    lambda p, s: function(p, grad, s, **step, **hypers), param,
                    self.state[i], stored, stream_key(stored.seed, t, g << 32 | j), rows)
                i += 1
            if progress is not None:  # the group's own entries the step advanced (its k)
                group.update(progress)

    def _switch(self, train: bool) -> None:
        """Move every stepped parameter into train or eval mode (rules with modes), its values
        and state read and stored as a step's are."""
        modes = self.rule.modes
        function = getattr(sys.modules[__package__], modes.reference)
        keywords = inspect.signature(function).parameters
        i = 0
        for g, group in enumerate(self.param_groups):
            hypers = {name: group[name] for name in self.defaults if name in keywords}
            stored = storage_of(self.rule.check_group(group))
            for j, param in enumerate(group["params"]):
                if group[modes.flag] != train and self.state[i]:
                    # The rounding stream of the parameter's last step (as the kernel's table).
                    key = stream_key(stored.seed, self.step_counts[i], g << 32 | j)
                    self._stepped(lambda p, s: function(p, s, train=train, **hypers), param,
                                  self.state[i], stored, key)
                i += 1
            group[modes.flag] = train

    def _start(self, state: State, param: np.ndarray, h: Any, stored: Storage) -> None:
        """Roles used for the first time that start from a value other than 0 (Rprop's step
        size), stored before the step reads them, as they are kept (a role that starts as
        the parameter, schedule-free's z, its function copies)."""
        for role in self.rule.roles_used(h):
            value = self.rule.role(role).start(h)
            if role not in state and value is not None and value != 0:
                _store(state, role, np.full(param.shape, value, compute_dtype(param.dtype)),
                       stored.state(role, param.dtype), self._signed(role))

    def _stepped(self, function: Callable[[np.ndarray, State], Any], param: np.ndarray,
                 state: State, stored: Storage, key: int, rows: np.ndarray | None = None) -> Any:
        """``function(values, state)`` run on ``param``'s values in its compute dtype, and
        the results stored as ``stored`` says: state rounded to nearest or quantised, the
        parameter as its rounding says (stochastic rounding drawing from the stream ``key``).
        Returns what ``function`` returns."""
        compute = compute_dtype(param.dtype)
        work = param.astype(compute)
        values: State = {}
        for k, v in state.items():
            if k == COMPENSATION or k in {scale_key(role) for role in state}:
                continue
            if isinstance(v, np.ndarray) and v.dtype == Q8:
                values[k] = dequantize(v, state[scale_key(k)], self._signed(k))
            else:
                values[k] = v.astype(compute) if isinstance(v, np.ndarray) else v
        result = function(work, values)
        for k, v in values.items():
            if isinstance(v, np.ndarray):
                _store(state, k, v, stored.state(k, param.dtype), self._signed(k))
            else:
                state[k] = v
        _round(param, work, state, stored, key, rows)
        return result


def _in_dtype(grad: Any, dtype: np.dtype) -> Any:
    """A gradient's values in ``dtype`` (of a row-sparse one, its rows; the indices kept)."""
    if isinstance(grad, tuple):
        return grad[0], grad[1].astype(dtype)
    return grad.astype(dtype)


def _store(state: State, role: str, values: np.ndarray, storage: np.dtype, signed: bool) -> None:
    """``state[role]`` ← ``values`` in ``storage``: rounded to nearest, or quantised (codes,
    and their blocks' scales beside them)."""
    if storage == Q8:
        state[role], state[scale_key(role)] = quantize(values, signed)
    else:
        state[role] = values.astype(storage)


def _round(param: np.ndarray, work: np.ndarray, state: State, stored: Storage, key: int,
           rows: np.ndarray | None = None) -> None:
    """``param`` ← ``work`` (its new value, in the compute dtype) as its rounding says; with
    ``rows``, those rows (first-axis slices) only."""
    rounding = stored.rounding_of(param.dtype)
    if rounding == "stochastic":
        param[...] = round_stochastic(work, key)
    elif rounding == "kahan":
        comp = state.setdefault(COMPENSATION, np.zeros_like(param))
        if rows is None:
            store_kahan(param.astype(np.float32), work, param, comp)
        else:  # the untouched rows keep their value and compensation
            shape = (param.shape[0], int(np.prod(param.shape[1:]))) if param.ndim else (1, 1)
            p2, c2, w2 = param.reshape(shape), comp.reshape(shape), work.reshape(shape)
            p_rows, c_rows = p2[rows], c2[rows]
            store_kahan(p_rows.astype(np.float32), w2[rows], p_rows, c_rows)
            p2[rows], c2[rows] = p_rows, c_rows
    else:
        param[...] = work


def reference_class(rule: Rule) -> type[ReferenceOptimizer]:
    """The reference class of ``rule``: the rule's name, signature and defaults over the
    function it names."""
    signature = rule.signature()

    def __init__(self: ReferenceOptimizer, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs).arguments
        params = bound.pop("params")
        ReferenceOptimizer.__init__(self, params, rule.defaults(**bound))

    modes = {} if rule.modes is None else {
        "train": lambda self: self._switch(True), "eval": lambda self: self._switch(False)}
    return type(rule.name, (ReferenceOptimizer,), {
        "rule": rule, "__init__": __init__, **modes,
        "__signature__": signature, "__module__": "fastopt.reference", "__qualname__": rule.name,
        "__doc__": f"Reference {rule.name} (see :func:`fastopt.reference.{rule.reference}`)."})
