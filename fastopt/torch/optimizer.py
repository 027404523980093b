"""The base of fastopt.torch's optimizers: torch.optim.Optimizer, stepped by the engine.

What is torch's stays torch's: parameter groups, hooks, ``zero_grad``, state-dict packing
and loading (with its casts and defaults) are torch.optim.Optimizer's own code, and each class
takes its torch.optim class's arguments, checks and defaults by subclassing it. What this
module adds: the parameters' memory handed to the engine, gradients read where autograd, DDP or
the user put them, and ``state`` kept in the engine's buffers (see :mod:`.state`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .. import rows
from ..engine import EMPTY, Engine, Group, Loaded, Run, check_entry
from ..rules import Rule
from ..rules.storage import scale_key
from . import dtensor, entries, gradients, sharded, tensors
from .state import Entry, LiveState
from .state_dicts import STORAGE_HYPERS, StateDicts

_IMPLEMENTATION = ("capturable", "differentiable")  # switches fastopt cannot honour


class Optimizer(StateDicts, torch.optim.Optimizer):
    """A torch.optim.Optimizer whose step is one fastopt kernel call per group (and dtype).

    A subclass names its rule (``rule``) and, where torch has the rule, derives from the
    torch.optim class too, whose constructor checks and binds the arguments.
    """

    rule: ClassVar[Rule]
    # what every group's initial state takes from self.defaults, not the group (torch's Adagrad)
    starts_from_defaults: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        # The storage options every fastopt rule takes (fastopt.rules.storage), which torch's
        # constructors do not: in the groups where they are not the default (so that the
        # groups are torch's own otherwise).
        storage = {}
        for h in STORAGE_HYPERS:
            value = kwargs.pop(h.name, h.default)
            if value != h.default:
                storage[h.name] = value
        self._setup(storage)
        super().__init__(params, *args, **kwargs)
        # torch's constructor wrote initial state (Adagrad's) in the parameters' dtype: the
        # engine's own, the same values in its storage, is kept instead.
        if self._dirty:
            self.__dict__["state"] = LiveState(self._touch)
            self._views = [[{} for _ in params] for params in self._params]
            self._versions = [-1] * len(self._versions)
            self._dirty = False
            self._sync_views()
        self.defaults.update(storage)
        # torch.amp.GradScaler's contract with fused optimizers: it sets ``grad_scale`` and
        # ``found_inf`` on the optimizer around ``step`` instead of unscaling the gradients.
        self._step_supports_amp_scaling = True

    def _setup(self, storage: dict[str, Any]) -> None:
        self._storage = storage
        step_dtype = np.float64 if torch.get_default_dtype() == torch.float64 else np.float32
        self._engine = Engine(self.rule, step_dtype)  # as torch keeps "step"
        self._params: list[list[torch.Tensor]] = []  # per group: its distinct parameters
        self._place: dict[torch.Tensor, tuple[int, int]] = {}  # parameter -> (group, index)
        self._watched: list[list[tensors.Watched]] = []  # per group: how each one is stepped
        self._views: list[list[dict[str, torch.Tensor]]] = []  # per group: each one's state
        self._versions: list[int] = []  # per group: the engine's version the views show
        self._dirty = False
        self.__dict__["state"] = LiveState(self._touch)

    # ------------------------------------------------------------------ state mapping
    @property  # type: ignore[override]
    def state(self) -> LiveState:
        return self.__dict__["state"]

    @state.setter
    def state(self, value: Any) -> None:
        live = LiveState(self._touch)
        for key, entry in dict(value).items():
            live[key] = entry
        self.__dict__["state"] = live
        self._dirty = True

    def _touch(self) -> None:
        self._dirty = True

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group as torch does (its checks and defaults), then the rule's checks and
        the parameters' memory: the group is added, or nothing changes."""
        given = dict(param_group) if isinstance(param_group, dict) else {}
        super().add_param_group(param_group)  # which sets the defaults in param_group itself
        try:
            group = self.param_groups[-1]
            for key, value in self._storage.items():
                group.setdefault(key, value)
            if self.rule.modes is not None:
                self.rule.modes.inherit(given, group, self.param_groups[:-1])
            h = self._check_group(len(self.param_groups) - 1, group)
            params = list(dict.fromkeys(group["params"]))  # torch warned about duplicates
            start = sum(len(g) for g in self._params)
            for i, p in enumerate(params):
                tensors.check_param(f"params[{start + i}]", p)
                if dtensor.is_dtensor(p) and sharded.is_sharded(p):
                    sharded.refuse(self.rule, h, f"params[{start + i}]",
                                   f"its local shard ({dtensor.describe(p)})")
                if p.is_complex() and (h.state_dtype is not None
                                       or h.rounding not in (None, "nearest")):
                    raise ValueError(
                        f"params[{start + i}]: a complex parameter keeps its state as its "
                        "dtype's real parts (float32 or float64, rounded to nearest); got "
                        f"state_dtype={h.state_dtype!r}, rounding={h.rounding!r}")
                if self.rule.matrix is not None:
                    self.rule.matrix.check(self.rule.name, f"params[{start + i}]", tuple(p.shape))
            self._refuse_shared_memory(params)
            watched = [tensors.Watched(p, self.rule.row_major) for p in params]
            # (the storage options checked against the parameters' dtypes, last)
            starts = {name: getattr(self.rule.check_group({**group, name: self.defaults[name]}),
                                    name) for name in self.starts_from_defaults}
            self._engine.add_group([w.slot() for w in watched], h, starts=starts,
                                   members=[i for i, p in enumerate(params) if p.requires_grad])
        except BaseException:
            self.param_groups.pop()
            raise
        self._place.update((p, (len(self._params), s)) for s, p in enumerate(params))
        self._params.append(params)
        self._watched.append(watched)
        self._views.append([{} for _ in params])
        self._versions.append(-1)
        self._sync_views()

    def _check_group(self, g: int, group: dict[str, Any]) -> Any:
        missing = {h.name for h in self.rule.hypers if not h.optional} - set(group)
        if missing:
            raise ValueError(f"param_groups[{g}]: missing hyper-parameters {sorted(missing)}")
        for switch in _IMPLEMENTATION:
            if group.get(switch):
                raise ValueError(f"{switch}: fastopt.torch supports only {switch}=False")
        h = self.rule.check_group(group)
        self._engine.fixed(g, h)
        return h

    def _refuse_shared_memory(self, new: list[torch.Tensor]) -> None:
        """Two parameters over the same memory would be stepped twice at once."""
        every = [p for group in self._params for p in group] + new
        spans = sorted((start, end, k) for k, (start, end) in
                       enumerate(map(tensors.byte_range, every)) if end > start)
        for (_, end, i), (start, _, j) in zip(spans, spans[1:]):
            if start < end:
                raise ValueError(f"params[{max(i, j)}]: expected memory of its own, got a "
                                 f"tensor sharing memory with params[{min(i, j)}]")

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; return ``closure()`` if given (called
        first, with gradients enabled, as torch does).

        Under ``torch.amp.GradScaler`` (``scaler.step(opt)``), as torch's fused optimizers:
        the scaler sets ``grad_scale`` (the loss scale) and ``found_inf`` on the optimizer;
        if ``found_inf`` is nonzero the step is skipped (parameters, state and step counts
        unchanged), else the kernels read each gradient times ``1 / grad_scale``. The
        gradients themselves are left as they are (torch's fused kernels write the
        unscaled values back into them)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)
        if found_inf is not None and float(found_inf) != 0:
            return loss
        scale = getattr(self, "grad_scale", None)
        inverse = 1.0 if scale is None else 1.0 / float(scale)
        if self._dirty:
            self._take_state_in()
        active, addresses, kinds, staged, scratch = gradients.collect(
            self._watched, self.rule, self._follow)
        checked = self._engine.check(self.param_groups)

        def bind(g: int, run: Run, table: Any, slots: list[int]) -> None:
            where = addresses[g]
            if self.rule.gradient == "rows":
                rows.bind(table, [where[s] for s in slots])
            else:
                table.bind_grad_addresses([where[s] for s in slots], kinds[g][slots[0]])

        def step() -> None:
            self._engine.step(checked, bind, active=active, grad_scale=inverse)
            self._engine.advance(self.param_groups, checked)

        self._staged(staged, step)
        return loss

    def _staged(self, staged: list[tensors.Watched], step: Callable[[], Any]) -> None:
        """``step()`` with the dense copies of strided parameters (``staged``) copied in
        before and out after; then the state shown anew."""
        for w in staged:
            w.stepped.copy_(w.shard)
        try:
            step()
        finally:
            for w in staged:  # a step that raised changed nothing: copying back is harmless
                w.shard.copy_(w.stepped)
        self._sync_views()

    @torch.no_grad()
    def _switch(self, train: bool) -> None:
        """Move the parameters into train or eval mode (rules with modes: schedule-free),
        where their memory is now."""
        if self._dirty:
            self._take_state_in()
        for g, watched in enumerate(self._watched):
            for s, w in enumerate(watched):
                if (dtensor.local(w.param) if w.distributed else w.param).data_ptr() != w.address:
                    self._follow(g, s)
        checked = self._engine.check(self.param_groups)
        staged = [w for watched in self._watched for w in watched if w.stepped is not w.shard]
        self._staged(staged, lambda: self._engine.switch(checked, train))
        for group in self.param_groups:
            group[self.rule.modes.flag] = train

    @torch.no_grad()
    def step_parameters(self, params: Sequence[torch.Tensor],
                        grads: Sequence[torch.Tensor | None] | None = None) -> None:
        """Update ``params`` only (parameters of this optimizer), each as :meth:`step` would
        update it, with ``grads`` (default: each one's ``.grad``; None: not stepped): for
        stepping parameters as their gradients become final, in backward
        (:func:`fastopt.torch.step_in_backward`). The others are not visited. Every gradient
        is checked before anything is stepped."""
        if self._dirty:
            self._take_state_in()
        chosen: dict[int, list[int]] = {}
        given: dict[int, list[torch.Tensor | None]] = {}
        scratch: list[torch.Tensor] = []
        staged = []
        for n, p in enumerate(params):
            place = self._place.get(p) if isinstance(p, torch.Tensor) else None
            if place is None:
                raise ValueError(f"params[{n}]: expected a parameter of this optimizer, got "
                                 + (f"a tensor of shape {tuple(p.shape)}" if isinstance(
                                     p, torch.Tensor) else type(p).__name__))
            g, s = place
            w = self._watched[g][s]
            if (dtensor.local(p) if w.distributed else p).data_ptr() != w.address:
                self._follow(g, s)
                w = self._watched[g][s]
            grad = p.grad if grads is None else grads[n]
            if grad is None:
                continue
            if not isinstance(grad, torch.Tensor):
                raise TypeError(f"grads[{n}]: expected a tensor or None, got {type(grad).__name__}")
            mine = given.setdefault(g, [None] * len(self._watched[g]))
            if mine[s] is not None:
                raise ValueError(f"params[{n}]: expected each parameter once, got it twice")
            mine[s] = grad
            chosen.setdefault(g, []).append(s)
            if w.stepped is not w.shard:
                staged.append(w)
        laid = {g: gradients.gather(self._watched[g], mine,
                                    sum(len(group) for group in self._params[:g]), scratch)
                for g, mine in given.items()}
        checked = self._engine.check(self.param_groups)

        def bind(g: int, run: Run, table: Any, slots: list[int]) -> None:
            where, kinds = laid[g]
            table.bind_grad_addresses([where[s] for s in slots], kinds[slots[0]])

        self._staged(staged, lambda: self._engine.step_slots(checked, bind, chosen))

    def _follow(self, g: int, s: int) -> None:
        """Step parameter ``s`` of group ``g`` where its memory is now (``p.data = ...``, a
        parametrization registered, ``channels_last``), its state reordered as its elements
        were; if its dtype or size changed it cannot keep its state, and says so."""
        group, old = self._engine.groups[g], self._watched[g][s]
        p = old.param
        tensors.check_param(f"params[{s}]", p)
        new = tensors.Watched(p, self.rule.row_major)
        slot = new.slot()
        if (slot.size, slot.dtype) != (group.slots[s].size, group.slots[s].dtype):
            raise RuntimeError(
                f"params[{s}] of group {g}: it now holds {new.shard.numel()} {p.dtype} elements "
                f"where its state was made for {group.slots[s].size} {group.slots[s].dtype}: create "
                "the optimizer again (or load a state dict into a new one)")
        if s in group.placed and new.strides != old.strides:
            entries.reorder(group, s, new, old)
        group.slots[s] = slot
        self._watched[g][s] = new
        group.rebuild()
        self._versions[g] = -1

    # ------------------------------------------------------------------ state
    def _sync_views(self) -> None:
        """Show each group's state in ``state`` as views of the engine's buffers, after the
        engine laid it out anew or a parameter gained or lost state. Entries keep their
        identity and whatever else was stored in them."""
        live = self.state
        for g, (group, params, views) in enumerate(zip(self._engine.groups, self._params,
                                                       self._views)):
            if group.version == self._versions[g]:
                if self.rule.int_step:  # a plain int, not a view: copied at every step
                    for s, p in enumerate(params):
                        if "step" in views[s]:
                            views[s]["step"] = int(group.steps[s])
                            dict.__setitem__(live[p], "step", views[s]["step"])
                continue
            for s, p in enumerate(params):
                new = entries.views_of(self.rule, group, s, self._watched[g][s])
                entry = dict.get(live, p)
                if entry is None and new:
                    entry = Entry(self._touch)
                    live.put(p, entry)
                if entry is not None:
                    for key in views[s].keys() - new.keys():
                        dict.pop(entry, key, None)
                    dict.update(entry, new)
                views[s] = new
            self._versions[g] = group.version

    def _take_state_in(self) -> None:
        """Take what was written into ``state`` into the engine: every changed entry is
        checked first (a bad one raises and changes nothing), then copied in."""
        plans: list[tuple[int, int, Loaded]] = []
        index = 0
        for g, (group, params) in enumerate(zip(self.param_groups, self._params)):
            h = self._check_group(g, group)
            engine_group = self._engine.groups[g]
            for s, p in enumerate(params):
                entry, views = dict.get(self.state, p), self._views[g][s]
                where = f"state[params[{index}]]"
                index += 1
                if entry is not None and entries.in_sync(self.rule, entry, views):
                    continue  # what the engine holds (and perhaps a tool's own keys)
                def array(name: str, key: str, value: Any, p: torch.Tensor = p, s: int = s,
                          engine_group: Group = engine_group) -> torch.Tensor:
                    dtypes, shape = engine_group.accepts(s, key)
                    return tensors.state_tensor(name, value, p, tensors.torch_dtypes(dtypes),
                                                shape)

                loaded = EMPTY if entry is None else check_entry(
                    self.rule, where, entry, h, tensors.number, array,
                    strict=False, counts_steps=engine_group.counts_steps)
                if loaded is EMPTY and not engine_group.has_state(s):
                    continue
                for role in engine_group.roles:  # values written over 8-bit codes: quantised,
                    key = scale_key(role)         # not read with the old codes' scales
                    if (role in loaded.arrays and loaded.arrays[role].dtype is not torch.uint8
                            and key in loaded.arrays and entry[key] is views.get(key)):
                        del loaded.arrays[key]
                engine_group.check_loaded(s, where, loaded.arrays, [
                    key for key, t in loaded.arrays.items() if t.dtype is torch.uint8])
                plans.append((g, s, loaded))  # EMPTY: state removed, it starts afresh as in torch
        for g, s, loaded in plans:
            group = self._engine.groups[g]
            group.load(s, loaded.step, loaded.scalars,
                       [key for key in loaded.arrays if key in group.roles])
            entries.put(group, s, self._watched[g][s].stepped, loaded.arrays)
            self._versions[g] = -1
        for group in self._engine.groups:
            group.settle()
        self._dirty = False
        self._sync_views()
