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
from .._kernels import kernels
from ..rules.storage import COMPENSATION, Q8, scale_key
from ..rules.storage import hypers as storage_hypers
from . import dtensor, sharded, tensors
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
        # torch's constructor wrote initial state (Adagrad's) in the parameters' dtype: where
        # the engine's storage is another, its own initial values are kept instead.
        # TODO: with default storage torch's values are still taken in (optim_db's per-group
        # initial_accumulator_value differs otherwise; not yet understood).
        if self._dirty and (self._storage or any(p.dtype in tensors.LOW
                                                 for ps in self._params for p in ps)):
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
            self._engine.add_group([w.slot() for w in watched], h,
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
        active, addresses, kinds, scratch = self._gradients()
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

        staged = [w for watched, marks in zip(self._watched, active)
                  for w, on in zip(watched, marks) if on and w.stepped is not w.shard]
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
            mine = given.setdefault(g, [None] * len(self._watched[g]))
            if mine[s] is not None:
                raise ValueError(f"params[{n}]: expected each parameter once, got it twice")
            index = sum(len(group) for group in self._params[:g]) + s
            mine[s] = self._checked_grad(index, w, grad, scratch)
            chosen.setdefault(g, []).append(s)
            if w.stepped is not w.shard:
                staged.append(w)
        addresses = {g: self._laid_out(self._watched[g], mine, scratch)
                     for g, mine in given.items()}
        kinds = {g: self._kinds(self._watched[g], mine) for g, mine in given.items()}
        checked = self._engine.check(self.param_groups)

        def bind(g: int, run: Run, table: Any, slots: list[int]) -> None:
            table.bind_grad_addresses([addresses[g][s] for s in slots], kinds[g][slots[0]])

        self._staged(staged, lambda: self._engine.step_slots(checked, bind, chosen))

    def _gradients(self) -> tuple[list[list[bool]], list[list[Any]], list[list[int]],
                                  list[torch.Tensor]]:
        """Per group and parameter: whether it has a gradient, the address of that gradient's
        elements laid out as the stepped tensor's (or for a rule that takes row-sparse
        gradients, the rows it touches, :class:`fastopt.rows.Rows`), and their storage type
        (copies so laid out, of those that are not, kept alive in the last list). Every
        gradient is checked here, before anything is stepped; a parameter whose memory was
        replaced is followed first. A DTensor's is its local shard's, and its gradient's local
        shard's."""
        active, addresses, kinds, scratch = [], [], [], []
        index, sparse = 0, self.rule.gradient == "rows"
        for g, watched in enumerate(self._watched):
            marks = [False] * len(watched)
            grads: list[torch.Tensor | None] = [None] * len(watched)
            touched: list[Any] = [None] * len(watched)
            for s, w in enumerate(watched):
                p = w.param
                if (dtensor.local(p) if w.distributed else p).data_ptr() != w.address:
                    self._follow(g, s)
                if p.grad is None:
                    continue
                if p.is_complex() and self.rule.matrix is not None:  # as torch's Muon, at step
                    raise RuntimeError(f"{self.rule.name} does not support complex parameters")
                marks[s] = True
                if sparse:  # row-sparse: the rows it touches (and its values, held alive)
                    touched[s] = tensors.sparse_rows(f"params[{index + s}]", p.grad,
                                                     watched[s].stepped)
                else:
                    grads[s] = self._checked_grad(index + s, watched[s], p.grad, scratch)
            active.append(marks)
            addresses.append(touched if sparse else self._laid_out(watched, grads, scratch))
            kinds.append(self._kinds(watched, grads))
            index += len(watched)
        return active, addresses, kinds, scratch

    @staticmethod
    def _checked_grad(index: int, w: tensors.Watched, grad: torch.Tensor,
                      scratch: list[torch.Tensor]) -> torch.Tensor:
        """Parameter ``index``'s gradient ``grad`` checked (a DTensor's: its local shard, a
        redistributed one kept alive in ``scratch``)."""
        if w.distributed:
            grad = dtensor.local_grad(f"params[{index}]", w.param, grad)
            scratch.append(grad)
        # torch keeps a .grad of its parameter's dtype (or its grad_dtype) and shape; checked
        # all the same, since a kernel reads exactly that many bytes.
        if not tensors.grad_accepted(grad, w.shard) or grad.shape != w.shape or (
                grad.layout is not torch.strided) or grad.device.type != "cpu":
            tensors.refuse_grad(f"params[{index}]", grad, w.shard)
        return grad

    @staticmethod
    def _laid_out(watched: list[tensors.Watched], grads: list[torch.Tensor | None],
                  scratch: list[torch.Tensor]) -> list[int]:
        """Where each gradient's elements are laid out as its stepped tensor's (0: none),
        ``grads`` updated to what is read. One kernel call reads one gradient type: float32
        parameters whose gradients come in several types read copies promoted to float32
        (exact); copies are kept alive in ``scratch``."""
        low = {grad.dtype for w, grad in zip(watched, grads)
               if grad is not None and w.dtype is torch.float32}
        where = [0] * len(watched)
        for s, (w, grad) in enumerate(zip(watched, grads)):
            if grad is None:
                continue
            if len(low) > 1 and grad.dtype is not w.dtype:
                grad = grad.to(w.dtype)
                scratch.append(grad)
            if grad.stride() != w.strides and not tensors.same_layout(grad, w.stepped):
                grad = torch.empty_like(w.stepped, dtype=grad.dtype).copy_(grad)
                scratch.append(grad)  # laid out as stepped
            grads[s] = grad
            where[s] = grad.data_ptr()
        return where

    @staticmethod
    def _kinds(watched: list[tensors.Watched], grads: list[torch.Tensor | None]) -> list[int]:
        """Each gradient's storage type code where it differs from its parameter's, else -1."""
        return [-1 if grad is None or grad.dtype is w.dtype
                else kernels.DTYPE_CODES[tensors.STEPPED[grad.dtype][0]]
                for w, grad in zip(watched, grads)]

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
            for role in group.live[s]:  # the state follows the elements into their new order
                if group.dtype_of(s, role) == Q8:  # blocks are of memory order: quantised anew
                    values = np.empty(group.slots[s].size, np.float32)
                    kernels.dequantize(group.view(s, role), group.scales(s, role), values,
                                       group.signed(role))
                    before = tensors.state_view(values, new.stepped, old.strides).clone()
                    tensors.state_view(values, new.stepped).copy_(before)
                    group.put(s, role, values)
                    continue
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
                if self.rule.int_step:  # a plain int, not a view: copied at every step
                    for s, p in enumerate(params):
                        if "step" in views[s]:
                            views[s]["step"] = int(group.steps[s])
                            dict.__setitem__(live[p], "step", views[s]["step"])
                continue
            for s, p in enumerate(params):
                new = self._views_of(group, s, self._watched[g][s])
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

    def _views_of(self, group: Group, s: int, w: tensors.Watched) -> dict[str, torch.Tensor]:
        if not group.has_state(s):
            return {}
        views: dict[str, torch.Tensor] = {}
        if group.counts_steps:
            views["step"] = (int(group.steps[s]) if self.rule.int_step
                             else tensors.scalar_view(group.steps, s))
        for name, values in group.scalars.items():
            views[name] = tensors.scalar_view(values, s)
        for role in group.roles:
            if role in group.live[s]:
                for key, array in group.views(s, role).items():  # 8-bit: codes and scales
                    views[key] = w.state(array) if key == role else tensors.as_tensor(array)
        return views

    def _in_sync(self, entry: Any, views: dict[str, torch.Tensor]) -> bool:
        """Whether ``entry`` holds exactly the engine's views (besides keys of its own)."""
        if not isinstance(entry, dict):
            return False
        known = {"step", COMPENSATION, *self.rule.role_names, *map(scale_key, self.rule.role_names),
                 *(s.name for s in self.rule.scalars)}
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
            self._put(group, s, loaded.arrays)
            self._versions[g] = -1
        for group in self._engine.groups:
            group.settle()
        self._dirty = False
        self._sync_views()

    def _put(self, group: Group, s: int, arrays: dict[str, torch.Tensor]) -> None:
        """Copy a checked entry's tensors into parameter ``s``'s state: values rounded to
        nearest into low-precision state, or quantised into 8-bit state; 8-bit codes and
        their scales as they are."""
        stepped = self._watched[group.index][s].stepped
        for key, value in arrays.items():
            if key not in group.roles:  # an 8-bit role's scales
                role = next(r for r in group.roles if scale_key(r) == key)
                torch.from_numpy(group.scales(s, role)).copy_(value)
            elif group.dtype_of(s, key) == Q8 and value.dtype is not torch.uint8:
                values = np.empty(group.slots[s].size, np.float32)
                tensors.state_view(values, stepped).copy_(value)
                group.put(s, key, values)
            else:
                tensors.state_view(group.view(s, key), stepped).copy_(value)

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
        # torch casts every floating state tensor to its parameter's dtype as it loads; the
        # engine's storage may be another (float32 moments of bfloat16 parameters, 8-bit codes
        # and their float32 scales), so the tensors given are taken back where torch cast them.
        saved = [i for group in state_dict["param_groups"] if isinstance(group, dict)
                 for i in group.get("params", ())]
        current = [p for group in self.param_groups for p in group["params"]]
        self._given = {p: state_dict["state"][i] for i, p in zip(saved, current)
                       if isinstance(state_dict["state"].get(i), dict)}
        try:
            super().load_state_dict(state_dict)
        finally:
            del self._given

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
        _uncast(loaded, self.__dict__.get("_given", {}))
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


def _uncast(state: Any, given: dict[torch.Tensor, dict[Any, Any]]) -> None:
    """Put back, into ``state`` as torch's ``load_state_dict`` made it, the tensors ``given``
    where torch only cast them to their parameter's dtype."""
    for p, entry in dict(state).items():
        original = given.get(p)
        if original is None or not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            before = original.get(key)
            if (key != "step" and isinstance(value, torch.Tensor)
                    and isinstance(before, torch.Tensor) and before.dtype != value.dtype
                    and before.shape == value.shape and before.device == value.device
                    and torch.equal(before.to(value.dtype), value)):
                entry[key] = before
