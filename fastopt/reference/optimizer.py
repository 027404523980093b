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
from .state import State
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
        params = [param for group in self.param_groups for param in group["params"]]
        grads = list(grads)
        if len(grads) != len(params):
            raise ValueError(f"grads: expected {len(params)} gradients, got {len(grads)}")
        for i, (param, grad) in enumerate(zip(params, grads)):
            # NumPy would broadcast a wrong shape and upcast a wrong dtype without a word.
            low = param.dtype == np.float32 and grad.dtype.name in LOW
            if grad.shape != param.shape or (grad.dtype != param.dtype and not low):
                raise ValueError(
                    f"grads[{i}]: expected shape {param.shape} and dtype {param.dtype}, "
                    f"got shape {grad.shape} and dtype {grad.dtype}")
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
                self._stepped(function, param, grads[i], self.state[i], stored,
                              stream_key(stored.seed, t, g << 32 | j), **step, **hypers)
                i += 1

    def _start(self, state: State, param: np.ndarray, h: Any, stored: Storage) -> None:
        """Roles used for the first time that start from a value other than 0 (Rprop's step
        size), stored before the step reads them, as they are kept."""
        for role in self.rule.roles_used(h):
            value = self.rule.role(role).start(h)
            if role not in state and value != 0:
                _store(state, role, np.full(param.shape, value, compute_dtype(param.dtype)),
                       stored.state(role, param.dtype), self._signed(role))

    def _stepped(self, function: Callable[..., None], param: np.ndarray, grad: np.ndarray,
                 state: State, stored: Storage, key: int, **keywords: Any) -> None:
        """``function`` run on ``param``'s values in its compute dtype, and the results stored
        as ``stored`` says: state rounded to nearest or quantised, the parameter as its
        rounding says (stochastic rounding drawing from the stream ``key``)."""
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
        function(work, grad.astype(compute), values, **keywords)
        for k, v in values.items():
            if isinstance(v, np.ndarray):
                _store(state, k, v, stored.state(k, param.dtype), self._signed(k))
            else:
                state[k] = v
        _round(param, work, state, stored, key)


def _store(state: State, role: str, values: np.ndarray, storage: np.dtype, signed: bool) -> None:
    """``state[role]`` ← ``values`` in ``storage``: rounded to nearest, or quantised (codes,
    and their blocks' scales beside them)."""
    if storage == Q8:
        state[role], state[scale_key(role)] = quantize(values, signed)
    else:
        state[role] = values.astype(storage)


def _round(param: np.ndarray, work: np.ndarray, state: State, stored: Storage, key: int) -> None:
    """``param`` ← ``work`` (its new value, in the compute dtype) as its rounding says."""
    rounding = stored.rounding_of(param.dtype)
    if rounding == "stochastic":
        param[...] = round_stochastic(work, key)
    elif rounding == "kahan":
        comp = state.setdefault(COMPENSATION, np.zeros_like(param))
        store_kahan(param.astype(np.float32), work, param, comp)
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

    return type(rule.name, (ReferenceOptimizer,), {
        "rule": rule, "__init__": __init__,
        "__signature__": signature, "__module__": "fastopt.reference", "__qualname__": rule.name,
        "__doc__": f"Reference {rule.name} (see :func:`fastopt.reference.{rule.reference}`)."})
