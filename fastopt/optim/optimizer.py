"""The NumPy front end: torch.optim's interface over NumPy arrays, updated in place.

An optimizer class per rule (:func:`optimizer_class`) over this base, which maps arrays and
parameter groups onto the engine and keeps what is NumPy's: array checks, the flat gradient
buffer of :attr:`Optimizer.grads`, and state dicts of copies.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any, ClassVar

import numpy as np

from .. import clip, rows, validation
from .._kernels import kernels
from ..engine import Engine, Run, Slot, check_entry
from ..flat import Layout, first_overlap
from ..rules import Rule
from ..rules.storage import storage_of

_LOSS_SCALE = validation.Real(low_open=True)  # a loss scale: finite and > 0


class Optimizer:
    """Base class of fastopt's optimizers (torch.optim's interface over NumPy arrays).

    Parameters are the caller's arrays, updated in place. Each state role is one zeroed,
    64-byte-aligned buffer per group; a step is one kernel call per group whatever the number
    of arrays.
    """

    rule: ClassVar[Rule]

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self._engine = Engine(self.rule)
        self._grad_views: list[np.ndarray] | None = None
        self._guard: tuple[int, Any] = (-1, None)
        self._add_groups(validation.param_groups(params))

    # ----------------------------------------------------------------- groups
    @property
    def _params(self) -> list[np.ndarray]:
        return [p for group in self.param_groups for p in group["params"]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (as torch's)."""
        self._add_groups([param_group])

    def _add_groups(self, new_groups: list[Any]) -> None:
        """Validate ``new_groups`` completely, then add them (a failure changes nothing)."""
        groups, checked = [], []
        params = self._params
        for g, raw in enumerate(new_groups, start=len(self.param_groups)):
            if not isinstance(raw, dict):
                raise TypeError(f"param_groups[{g}]: expected a dict, got {type(raw).__name__}")
            if "params" not in raw:
                raise ValueError(f"param_groups[{g}]: expected a 'params' entry, got keys {sorted(raw)}")
            group = dict(raw)
            arrays = group["params"]
            if isinstance(arrays, dict):
                raise TypeError(f"param_groups[{g}]['params']: expected a list of arrays, got dict")
            arrays = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
            if not arrays:
                raise ValueError(f"param_groups[{g}]['params']: expected at least one array, got none")
            first = len(params)
            for a in arrays:
                validation.array(f"params[{len(params)}]", a)
                if a.dtype != arrays[0].dtype:
                    raise TypeError(
                        f"params[{len(params)}]: expected dtype {arrays[0].dtype} like the other "
                        f"parameters of its group, got {a.dtype} (put each dtype in a group of its own)")
                params.append(a)
            if self.rule.matrix is not None:
                for i, a in enumerate(arrays, start=first):
                    self.rule.matrix.check(self.rule.name, f"params[{i}]", a.shape)
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            if self.rule.modes is not None:
                self.rule.modes.inherit(raw, group, self.param_groups)
            group["params"] = arrays
            h = self.rule.check_group(group)
            self.rule.canonical(group, h)
            groups.append(group)
            checked.append(h)
        overlap = first_overlap(params)
        if overlap is not None:
            i, j = overlap
            raise ValueError(f"params[{j}]: expected memory of its own, got an array sharing "
                             f"memory with params[{i}] (a parameter may appear once only)")
        old_grads = self._grad_views
        for group, h in zip(groups, checked):
            self._engine.add_group([Slot.of(a) for a in group["params"]], h)
            self.param_groups.append(group)
        sizes = [len(group["params"]) for group in self.param_groups]
        self._starts = [0, *accumulate(sizes)][:-1]
        self._nparams = sum(sizes)
        if old_grads is not None:  # the flat gradient buffer laid out again, values kept
            self._grad_views = None
            for new, old in zip(self.grads, old_grads):
                new[...] = old

    # ----------------------------------------------------------------- stepping
    @property
    def grads(self) -> list[np.ndarray]:
        """Gradient arrays, one per parameter: views into one flat buffer owned by the
        optimizer. Write gradients into them in place; ``step()`` then reads them."""
        if self._grad_views is None:
            self._grad_views = Layout(self._params).zeros()[1]
        return list(self._grad_views)

    def zero_grad(self) -> None:
        """Set every array of :attr:`grads` to zero, in place."""
        for view in self.grads:
            view.fill(0)

    def _memory_guard(self) -> Any:
        """Byte ranges no gradient may overlap: every parameter and state buffer."""
        version = self._engine.version
        if self._guard[0] != version:
            buffers = [b for group in self._engine.groups for b in group.buffers.values()]
            self._guard = (version, kernels.MemoryGuard(self._params + buffers))
        return self._guard[1]

    def step(self, grads: Sequence[np.ndarray] | None = None, *, max_norm: float | None = None,
             norm_type: float = 2.0, grad_scale: float | None = None) -> float | None:
        """Update every parameter in place from ``grads`` (default: :attr:`grads`).

        ``grads`` lists one gradient per parameter in parameter order (group 0's first), each
        of its parameter's shape and dtype, C-contiguous and sharing no memory with any
        parameter or state (for a rule that takes row-sparse gradients, SparseAdam, each a
        pair ``(indices, values)``: :mod:`fastopt.rows`). Everything is validated before
        anything is modified.

        With ``max_norm``, the gradients are clipped first as by
        :func:`fastopt.clip_grad_norm_` (their joint ``norm_type``-norm over all groups) and
        the norm before clipping is returned; the gradient arrays themselves are not changed:
        the update reads them scaled.

        With ``grad_scale`` (a loss scale, as mixed-precision training multiplies the loss
        by), the gradients are unscaled as the kernels read them (times ``1 / grad_scale``)
        and checked first: one deterministic pass takes their joint norm (the clipping norm,
        ``norm_type``, or the 2-norm), which is returned, of the unscaled gradients. If it is
        infinite or NaN (some gradient element is), the step is skipped: parameters, state and
        step counts stay exactly as they were, and the caller lowers its scale
        (``not math.isfinite(opt.step(grads, grad_scale=s))`` tells a skipped step).
        """
        kind = 0
        if max_norm is not None:
            max_norm = validation.real("max_norm", max_norm)
        if max_norm is not None or grad_scale is not None:
            kind = clip.norm_kind(norm_type)
        inverse = 1.0
        if grad_scale is not None:
            inverse = 1.0 / _LOSS_SCALE("grad_scale", grad_scale)
        if grads is None:
            grads = self.grads
        elif type(grads) is not list and not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads: expected a list of arrays, got {type(grads).__name__}")
        if len(grads) != self._nparams:
            raise ValueError(
                f"grads: expected {self._nparams} arrays (one per parameter), got {len(grads)}")
        grads = tuple(grads)  # hold the arrays for the whole step
        checked = self._engine.check(self.param_groups)
        guard = self._memory_guard()
        starts = self._starts

        if self.rule.gradient == "rows":
            params, held = self._params, []  # held: the checked rows, alive for the step

            def bind(g: int, run: Run, table: Any, slots: list[int]) -> None:
                first = starts[g]
                given = [rows.check(f"grads[{first + s}]", grads[first + s], params[first + s],
                                    guard) for s in slots]
                held.append(given)
                rows.bind(table, given)
        else:
            def bind(g: int, run: Run, table: Any, slots: list[int]) -> None:
                first = starts[g]
                if table is run.table:  # the whole group: its gradients are consecutive
                    table.bind_grads(grads, first + slots[0], guard)
                else:  # some parameters of it, whose step counts differ from the others'
                    run.table.bind_grads(grads, first + run.slots[0], guard)
                    table.bind_grad_addresses([grads[first + s].ctypes.data for s in slots])

        norm = self._engine.step(checked, bind, max_norm=max_norm, norm_kind=kind,
                                 grad_scale=inverse, check_finite=grad_scale is not None)
        if grad_scale is None or math.isfinite(norm):  # (not a step skipped)
            self._engine.advance(self.param_groups, checked)
        return norm

    def _switch(self, train: bool) -> None:
        """Move the parameters into train or eval mode (rules with modes: schedule-free)."""
        checked = self._engine.check(self.param_groups)  # every group checked, then moved
        self._engine.switch(checked, train)
        for group in self.param_groups:
            group[self.rule.modes.flag] = train

    # ----------------------------------------------------------------- state dicts
    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [...]}]}``.

        Fresh containers and copies of every array, each call.
        """
        state: dict[int, dict[str, Any]] = {}
        for group, engine_group, start in zip(self.param_groups, self._engine.groups, self._starts):
            for k, p in enumerate(group["params"]):
                if not engine_group.has_state(k):
                    continue  # no state yet (torch has no entry either)
                step, scalars, arrays = engine_group.entry(k)
                entry: dict[str, Any] = {"step": step} if engine_group.counts_steps else {}
                entry.update(scalars)  # NumPy scalars: immutable, no copy needed
                # Arrays of the parameter's size take its shape (8-bit scales are per block).
                entry.update({key: (a.reshape(p.shape) if key in engine_group.roles else a).copy()
                              for key, a in arrays.items()})
                state[start + k] = entry
        return {"state": state, "param_groups": validation.numbered_groups(self.param_groups)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Validates everything first: a bad dict raises
        ``ValueError``/``TypeError`` and leaves the optimizer exactly as it was."""
        groups, entries = self._check_state_dict(state_dict)
        for group, current in zip(groups, self.param_groups):
            group["params"] = current["params"]
        self.param_groups = groups
        self._engine.memo.forget()
        for engine_group, group_entries in zip(self._engine.groups, entries):
            for k, loaded in enumerate(group_entries):
                engine_group.load(k, loaded.step, loaded.scalars,
                                  [key for key in loaded.arrays if key in engine_group.roles])
                engine_group.put_loaded(k, loaded.arrays)
            engine_group.settle()

    def _check_state_dict(self, sd: Any) -> tuple[list[dict[str, Any]], list[list[Any]]]:
        if not isinstance(sd, dict) or set(sd) != {"state", "param_groups"}:
            raise ValueError(
                "state_dict: expected a dict with keys 'state' and 'param_groups', got "
                + (f"keys {sorted(sd, key=str)}" if isinstance(sd, dict) else type(sd).__name__))
        saved_groups, state = sd["param_groups"], sd["state"]
        if not isinstance(saved_groups, list) or not isinstance(state, dict):
            raise TypeError("state_dict: expected 'param_groups' to be a list and 'state' a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict['param_groups']: expected {len(self.param_groups)} "
                             f"groups, got {len(saved_groups)}")
        groups, entries, seen = [], [], set()
        for g, (saved, current) in enumerate(zip(saved_groups, self.param_groups)):
            where = f"state_dict['param_groups'][{g}]"
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), list):
                raise ValueError(f"{where}: expected a dict with a list 'params'")
            if len(saved["params"]) != len(current["params"]):
                raise ValueError(f"{where}['params']: expected {len(current['params'])} "
                                 f"parameters, got {len(saved['params'])}")
            missing = set(self.defaults) - set(saved)
            if missing:
                raise ValueError(f"{where}: missing hyper-parameters {sorted(missing)}")
            group = dict(saved)
            h = self.rule.check_group(group)
            self.rule.canonical(group, h)
            engine_group = self._engine.groups[g]
            engine_group.storage.check_same(where, storage_of(h))
            group_entries = []
            for k, (index, param) in enumerate(zip(saved["params"], current["params"])):
                if index in seen:
                    raise ValueError(f"{where}['params'][{k}]: parameter index {index!r} appears twice")
                seen.add(index)

                def array(name: str, key: str, value: Any, param: np.ndarray = param,
                          k: int = k) -> np.ndarray:
                    dtypes, shape = engine_group.accepts(k, key)
                    value = validation.array(name, value, writable=False, dtypes=dtypes)
                    expected = param.shape if shape is None else shape
                    if value.shape != expected:
                        raise ValueError(f"{name}: expected shape {expected}, got {value.shape}")
                    return value

                where = f"state_dict['state'][{index!r}]"
                loaded = check_entry(self.rule, where, state.get(index, {}), h, _plain, array,
                                     counts_steps=engine_group.counts_steps)
                engine_group.check_loaded(k, where, loaded.arrays, [
                    key for key, a in loaded.arrays.items() if a.dtype == np.uint8])
                group_entries.append(loaded)
            groups.append(group)
            entries.append(group_entries)
        unknown = set(state) - seen
        if unknown:
            raise ValueError(f"state_dict['state']: entries {sorted(unknown, key=str)} belong to no parameter")
        return groups, entries

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for g, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {g}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


def _plain(name: str, value: Any) -> Any:
    return value


def has_modes(opt: Any) -> bool:
    """Whether ``opt`` (an optimizer of either front end) has train and eval modes
    (:func:`mode_methods`): a schedule-free rule, whose steps run in train mode only."""
    rule = getattr(opt, "rule", None)
    return rule is not None and rule.modes is not None


def mode_methods(rule: Rule) -> dict[str, Any]:
    """``train()`` and ``eval()`` for a rule with modes (schedule-free), as its package has
    them; none for the others. The class defines ``_switch(train)``."""
    if rule.modes is None:
        return {}

    def train(self: Any) -> None:
        """Put the parameters in train mode (they hold y, where gradients are taken): call it
        before training steps."""
        self._switch(True)

    def eval(self: Any) -> None:
        """Put the parameters in eval mode (they hold x, the average): call it before
        evaluating or saving the model."""
        self._switch(False)

    return {"train": train, "eval": eval}


def optimizer_class(rule: Rule) -> type[Optimizer]:
    """The NumPy optimizer class of ``rule``: its name, its signature and defaults, and a
    docstring with its formula."""
    signature = rule.signature()

    def __init__(self: Optimizer, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs).arguments
        params = bound.pop("params")
        Optimizer.__init__(self, params, rule.defaults(**bound))

    doc = (f"{rule.name}: {rule.summary}, {rule.source}'s rule and arguments::\n\n"
           + "\n".join(f"    {line}" for line in rule.formula.splitlines()) + "\n")
    cls = type(rule.name, (Optimizer,), {
        "rule": rule, "__init__": __init__, "__doc__": doc, "__module__": "fastopt.optim",
        "__qualname__": rule.name, "__signature__": signature, **mode_methods(rule)})
    __init__.__qualname__ = f"{rule.name}.__init__"
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         *signature.parameters.values()])
    return cls
