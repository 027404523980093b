"""The base of fastopt.torch's optimizers: torch.optim.Optimizer, stepped by the engine.

What is torch's stays torch's: parameter groups, hooks, ``zero_grad``, state-dict packing
and loading (with its casts and defaults) are torch.optim.Optimizer's own code, and each class
takes its torch.optim class's arguments, checks and defaults by subclassing it. What this
module adds: the parameters' memory handed to the engine, gradients read where autograd, DDP or
the user put them, and ``state`` kept in the engine's buffers (see :mod:`.state`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import torch

from ..engine import EMPTY, Engine, Group, Loaded, Run, check_entry
from ..rules import Rule
from ..rules.storage import COMPENSATION
from ..rules.storage import hypers as storage_hypers
from . import tensors
from .state import Entry, LiveState

_IMPLEMENTATION = ("capturable", "differentiable")  # switches fastopt cannot honour
STORAGE_HYPERS = storage_hypers()


class Optimizer(torch.optim.Optimizer):
    """A torch.optim.Optimizer whose step is one fastopt kernel call per group (and dtype).

    A subclass names its rule (``rule``) and, where torch has the rule, derives from the
    torch.optim class too, whose constructor checks and binds the arguments.
    """

    rule: ClassVar[Rule]

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
        self.defaults.update(storage)
        self._step_supports_amp_scaling = False  # the grad-scaling contract is not kept yet

    def _setup(self, storage: dict[str, Any]) -> None:
        self._storage = storage
        step_dtype = np.float64 if torch.get_default_dtype() == torch.float64 else np.float32
        self._engine = Engine(self.rule, step_dtype)  # as torch keeps "step"
        self._params: list[list[torch.Tensor]] = []  # per group: its distinct parameters
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
        super().add_param_group(param_group)
        try:
            group = self.param_groups[-1]
            for key, value in self._storage.items():
                group.setdefault(key, value)
            h = self._check_group(len(self.param_groups) - 1, group)
            params = list(dict.fromkeys(group["params"]))  # torch warned about duplicates
            start = sum(len(g) for g in self._params)
            for i, p in enumerate(params):
                tensors.check_param(f"params[{start + i}]", p)
                if self.rule.matrix is not None:
                    self.rule.matrix.check(self.rule.name, f"params[{start + i}]", tuple(p.shape))
            self._refuse_shared_memory(params)
        except BaseException:
            self.param_groups.pop()
            raise
        watched = [tensors.Watched(p) for p in params]
        self._engine.add_group([w.slot() for w in watched], h,
                               members=[i for i, p in enumerate(params) if p.requires_grad])
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
        spans = sorted((*tensors.byte_range(p), k) for k, p in enumerate(every) if p.numel())
        for (_, end, i), (start, _, j) in zip(spans, spans[1:]):
            if start < end:
                raise ValueError(f"params[{max(i, j)}]: expected memory of its own, got a "
                                 f"tensor sharing memory with params[{min(i, j)}]")

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; return ``closure()`` if given (called
        first, with gradients enabled, as torch does)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._dirty:
            self._take_state_in()
        active, addresses, scratch = self._gradients()
        checked = self._engine.check(self.param_groups)

        def bind(g: int, run: Run, table: Any, slots: list[int]) -> None:
            where = addresses[g]
            table.bind_grad_addresses([where[s] for s in slots])

        staged = [w for watched, marks in zip(self._watched, active)
                  for w, on in zip(watched, marks) if on and w.stepped is not w.param]
        for w in staged:
            w.stepped.copy_(w.param)
        try:
            self._engine.step(checked, bind, active=active)
        finally:
            for w in staged:  # a step that raised changed nothing: copying back is harmless
                w.param.copy_(w.stepped)
        self._sync_views()
        return loss

    def _gradients(self) -> tuple[list[list[bool]], list[list[int]], list[torch.Tensor]]:
        """Per group and parameter: whether it has a gradient, and the address of that
        gradient's elements laid out as the stepped tensor's (copies so laid out, of those
        that are not, kept alive in the last list). Every gradient is checked here, before
        anything is stepped; a parameter whose memory was replaced is followed first."""
        active, addresses, scratch = [], [], []
        index = 0
        for g, watched in enumerate(self._watched):
            marks, where = [False] * len(watched), [0] * len(watched)
            for s, w in enumerate(watched):
                p = w.param
                if p.data_ptr() != w.address:
                    self._follow(g, s)
                grad = p.grad
                if grad is None:
                    continue
                if p.is_complex() and self.rule.matrix is not None:  # as torch's Muon, at step
                    raise RuntimeError(f"{self.rule.name} does not support complex parameters")
                marks[s] = True
                # torch keeps a .grad of its parameter's dtype and shape; checked all the same,
                # since a kernel reads exactly that many bytes.
                if grad.dtype is not w.dtype or grad.shape != w.shape or (
                        grad.layout is not torch.strided):
                    tensors.refuse_grad(f"params[{index + s}]", grad, p)
                if grad.stride() != w.strides and not tensors.same_layout(grad, w.stepped):
                    grad = torch.empty_like(w.stepped).copy_(grad)  # laid out as stepped
                    scratch.append(grad)
                where[s] = grad.data_ptr()
            active.append(marks)
            addresses.append(where)
            index += len(watched)
        return active, addresses, scratch

    def _follow(self, g: int, s: int) -> None:
        """Step parameter ``s`` of group ``g`` where its memory is now (``p.data = ...``, a
        parametrization registered, ``channels_last``), its state reordered as its elements
        were; if its dtype or size changed it cannot keep its state, and says so."""
        group, old = self._engine.groups[g], self._watched[g][s]
        p = old.param
        tensors.check_param(f"params[{s}]", p)
        new = tensors.Watched(p)
        slot = new.slot()
        if (slot.size, slot.dtype) != (group.slots[s].size, group.slots[s].dtype):
            raise RuntimeError(
                f"params[{s}] of group {g}: it now holds {p.numel()} {p.dtype} elements where "
                f"its state was made for {group.slots[s].size} {group.slots[s].dtype}: create "
                "the optimizer again (or load a state dict into a new one)")
        if s in group.placed and new.strides != old.strides:
            for role in group.live[s]:  # the state follows the elements into their new order
                before = tensors.state_view(group.view(s, role), new.stepped, old.strides)
                tensors.state_view(group.view(s, role), new.stepped).copy_(before.clone())
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
                continue
            for s, p in enumerate(params):
                new = self._views_of(group, s, self._watched[g][s].stepped)
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

    def _views_of(self, group: Group, s: int, t: torch.Tensor) -> dict[str, torch.Tensor]:
        if not group.has_state(s):
            return {}
        views: dict[str, torch.Tensor] = {}
        if group.counts_steps:
            views["step"] = tensors.scalar_view(group.steps, s)
        for name, values in group.scalars.items():
            views[name] = tensors.scalar_view(values, s)
        for role in group.roles:
            if role in group.live[s]:
                views[role] = tensors.state_view(group.view(s, role), t)
        return views

    def _in_sync(self, entry: Any, views: dict[str, torch.Tensor]) -> bool:
        """Whether ``entry`` holds exactly the engine's views (besides keys of its own)."""
        if not isinstance(entry, dict):
            return False
        known = {"step", COMPENSATION, *self.rule.role_names, *(s.name for s in self.rule.scalars)}
        return (known & entry.keys()) == views.keys() and all(
            entry[k] is v for k, v in views.items())

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
                if entry is not None and self._in_sync(entry, views):
                    continue  # what the engine holds (and perhaps a tool's own keys)
                loaded = EMPTY if entry is None else check_entry(
                    self.rule, where, entry, h, tensors.number,
                    lambda name, role, value, p=p: tensors.state_tensor(name, value, p),
                    strict=False, counts_steps=engine_group.counts_steps)
                if loaded is EMPTY and not engine_group.has_state(s):
                    continue
                plans.append((g, s, loaded))  # EMPTY: state removed, it starts afresh as in torch
        for g, s, loaded in plans:
            group = self._engine.groups[g]
            group.load(s, loaded.step, loaded.scalars, loaded.arrays)
            for role, value in loaded.arrays.items():
                tensors.state_view(group.view(s, role), self._watched[g][s].stepped).copy_(value)
            self._versions[g] = -1
        for group in self._engine.groups:
            group.settle()
        self._dirty = False
        self._sync_views()

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict (torch's own packing and hooks): state tensors are views of the
        engine's buffers, live as torch.optim's are; each entry a plain dict (so that
        ``torch.load(weights_only=True)`` reads a saved one)."""
        if self._dirty:
            self._take_state_in()
        sd = super().state_dict()
        if isinstance(sd, dict) and isinstance(sd.get("state"), dict):  # a hook may replace it
            sd["state"] = {k: dict(v) if isinstance(v, Entry) else v
                           for k, v in sd["state"].items()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict`` (its hooks, checks, casts and defaults), refusing first,
        with ValueError or TypeError, what is no state dict at all; every group and entry is
        checked before anything changes."""
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(
                "state_dict: expected a dict with keys 'state' and 'param_groups', got "
                + (f"keys {sorted(state_dict, key=str)}" if isinstance(state_dict, dict)
                   else type(state_dict).__name__))
        if not isinstance(state_dict["param_groups"], (list, tuple)) or not isinstance(
                state_dict["state"], dict):
            raise TypeError("state_dict: expected 'param_groups' to be a list and 'state' a dict")
        super().load_state_dict(state_dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Where ``load_state_dict`` lands (after torch's checks and casts), and where a copy
        or an unpickled optimizer is made: torch's class fills in the groups' defaults; the
        groups and the state are checked, and taken in, or everything is put back as it was."""
        if "_engine" not in self.__dict__:  # a deep copy or an unpickled optimizer: build it
            self._setup({h.name: state["defaults"][h.name] for h in STORAGE_HYPERS
                         if h.name in state["defaults"]})
            torch.optim.Optimizer.__setstate__(self, {"defaults": state["defaults"],
                                                      "param_groups": []})
            for group in state["param_groups"]:
                self.add_param_group(dict(group))
        before = {key: self.__dict__[key] for key in ("param_groups", "defaults", "state")}
        super().__setstate__(state)
        loaded = self.__dict__["state"]
        try:
            for g, group in enumerate(self.param_groups):
                for key, value in self._storage.items():  # a torch.optim dict lacks them
                    group.setdefault(key, value)
                self._check_group(g, group)  # torch's class filled in what older versions lacked
            self.state = loaded
            self._views = [[{} for _ in params] for params in self._params]
            self._versions = [-1] * len(self._versions)
            self._take_state_in()
        except BaseException:
            self.__dict__.update(before)
            self._views = [[{} for _ in params] for params in self._params]
            self._versions = [-1] * len(self._versions)
            self._dirty = False
            self._sync_views()
            raise
        self._engine.memo.forget()

    def __getstate__(self) -> dict[str, Any]:
        if self._dirty:
            self._take_state_in()
        return super().__getstate__()
