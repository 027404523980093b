"""torch.optim optimizers stepped by fastopt's kernels, zero-copy over one flat buffer per dtype.

Needs torch (fastopt itself does not); drop-in for ``torch.optim``::

    import fastopt.torch
    opt = fastopt.torch.Adam(model.parameters(), lr=1e-3)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

On construction the trainable CPU float32/float64 parameters are copied, once, into one flat
buffer per dtype, and each parameter's ``.data`` and ``.grad`` become views of flat parameter and
gradient buffers (same shape and strides). Backward then accumulates straight into the flat
gradient buffer, and a step is one kernel call per parameter group and dtype over memory that
torch and the kernels share: no copy, no per-tensor loop. The optimizer state is one flat buffer
per role (``exp_avg``, ...) with the same layout.

Where torch leaves a choice, fastopt.torch behaves as follows:

- ``zero_grad()`` zeroes the flat gradient buffer in place and keeps the views. With
  ``set_to_none=True`` (torch's default) a parameter then counts as having no gradient until
  backward writes one, exactly as if its ``.grad`` were None: torch.optim skips such parameters,
  and so does fastopt.torch. Gradients assigned by hand (``p.grad = t``), or made anew because
  ``model.zero_grad()`` set them to None, are copied into the flat buffer at the next step.
- Each parameter keeps its own step count, as in torch; parameters whose counts agree (the
  usual case) are stepped together.
- Parameters with ``requires_grad=False`` stay where they are until they get a gradient; they
  are then packed in (the buffers are laid out again, once).
- CUDA or other devices, sparse or non-strided tensors, dtypes other than float32/float64,
  and parameters that do not own their storage (views into a larger tensor, or two
  parameters sharing one) raise at construction. ``differentiable=True`` and
  ``capturable=True`` are refused; ``foreach`` and ``fused`` are accepted and change nothing.
- If a parameter's ``.data`` is replaced after construction (``model.to(...)``,
  ``share_memory()``, another fastopt optimizer over the same parameters), ``step()`` raises
  instead of updating memory the model no longer uses.
- ``state`` and ``state_dict()`` are torch's format; their tensors are views of the flat state
  buffers, as torch.optim's are its live state (deep-copy a state dict to keep a snapshot).
  State dicts load across fastopt.torch and torch.optim both ways.
- The update changes parameters in place without bumping their autograd version counters:
  step between backward passes, not between a forward pass and its backward.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np

try:
    import torch
except ImportError as error:  # fastopt itself does not need torch; this module does
    raise ImportError("fastopt.torch needs PyTorch (pip install torch)") from error

from . import _checks, optim
from ._kernels import kernels
from .flat import ALIGNMENT, aligned_zeros
from .optim.optimizer import _NOTHING, HyperMemo

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}

# Storages of flat parameter buffers, by address: parameters that live in one of them were
# packed by a fastopt.torch optimizer and may be packed again by another.
_FLAT_STORAGES: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()


def _scalar_dtype() -> torch.dtype:
    """The dtype torch.optim keeps ``step`` in."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _is_dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill ``numel`` consecutive slots, in any dimension order
    (contiguous, channels_last, ...)."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda d: d[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _check_param(name: str, p: torch.Tensor) -> None:
    """Refuse what cannot be packed into a flat buffer (before anything is changed)."""
    if p.device.type != "cpu":
        raise ValueError(f"{name}: expected a CPU tensor, got one on {p.device} "
                         "(fastopt steps CPU parameters)")
    if p.layout != torch.strided:
        raise ValueError(f"{name}: expected a strided (dense) tensor, got layout {p.layout}")
    if p.dtype not in _NUMPY_DTYPES:
        raise TypeError(f"{name}: expected dtype torch.float32 or torch.float64, got {p.dtype}")
    if not _is_dense(p):
        raise ValueError(f"{name}: expected a tensor whose elements are dense in memory, got "
                         f"shape {tuple(p.shape)} with strides {p.stride()}")
    storage = p.untyped_storage()
    if storage.data_ptr() not in _FLAT_STORAGES and (
        p.storage_offset() != 0 or storage.nbytes() != p.numel() * p.element_size()
    ):
        raise ValueError(
            f"{name}: expected a tensor that owns its storage, got a view of {p.numel()} "
            f"elements at offset {p.storage_offset()} into a storage of {storage.nbytes()} bytes "
            "(moving it into a flat buffer would break what it shares)")
    if p.grad is not None and p.grad.layout != torch.strided:
        raise ValueError(f"{name}: sparse gradients are not supported, got a {p.grad.layout} .grad")


def _place(chosen: list[list[tuple[int, torch.Tensor]]]) -> tuple[list, list, dict]:
    """The layout: each group's parameters of one dtype consecutive (one segment), each such
    run starting on a cache line. Returns (group, index, parameter, start) per parameter,
    (group, dtype, start, stop) per run, and each dtype's buffer size, in elements."""
    sizes: dict[torch.dtype, int] = {}
    places, spans = [], []
    for g, members in enumerate(chosen):
        for dtype in dict.fromkeys(p.dtype for _, p in members):
            align = ALIGNMENT // np.dtype(_NUMPY_DTYPES[dtype]).itemsize
            start = stop = -(-sizes.get(dtype, 0) // align) * align
            for i, p in members:
                if p.dtype == dtype:
                    places.append((g, i, p, stop))
                    stop += p.numel()
            spans.append((g, dtype, start, stop))
            sizes[dtype] = stop
    return places, spans, sizes


def _view(flat: torch.Tensor, p: torch.Tensor, start: int) -> torch.Tensor:
    """``p``'s place in ``flat``: its shape and strides, from element ``start`` on."""
    return flat.as_strided(p.shape, p.stride(), start)


class _Flat:
    """One dtype's flat buffers: parameters, gradients and one per state role, alike laid out."""

    def __init__(self, dtype: torch.dtype, size: int) -> None:
        self.dtype = dtype
        self.size = size
        self.params_np, self.params = self._zeros()
        self.grads_np, self.grads = self._zeros()
        self.state_np: dict[str, np.ndarray] = {}
        self.state: dict[str, torch.Tensor] = {}

    def _zeros(self) -> tuple[np.ndarray, torch.Tensor]:
        itemsize = np.dtype(_NUMPY_DTYPES[self.dtype]).itemsize
        array = aligned_zeros(self.size * itemsize).view(_NUMPY_DTYPES[self.dtype])
        return array, torch.from_numpy(array)

    def add_role(self, role: str) -> None:
        self.state_np[role], self.state[role] = self._zeros()


class _Slot:
    """A packed parameter: where it lives in its dtype's flat buffers, and its own state."""

    __slots__ = ("param", "index", "group", "flat", "start", "stop", "grad", "address",
                 "received", "active", "status", "handle")

    def __init__(self, param: torch.Tensor, status: tuple) -> None:
        self.param = param
        self.grad = None  # the view of the flat gradient buffer, once packed
        self.received = False  # torch's .grad would not be None: a gradient arrived
        self.status = status  # (step count, scalar state values, roles that hold state)
        self.handle = param.register_post_accumulate_grad_hook(self._mark)

    def _mark(self, _: torch.Tensor) -> None:
        self.received = True

    def view(self, flat: torch.Tensor) -> torch.Tensor:
        """This parameter's slice of ``flat``, shaped and strided like the parameter."""
        return _view(flat, self.param, self.start)

    def segment(self, flat: np.ndarray) -> np.ndarray:
        return flat[self.start : self.stop]


class _Run:
    """A group's parameters of one dtype: consecutive in the flat buffers, one segment."""

    def __init__(self, group: int, flat: _Flat, slots: list[_Slot], start: int, stop: int) -> None:
        self.group, self.flat, self.slots = group, flat, slots
        self.start, self.stop = start, stop
        self.table = kernels.SegmentTable([flat.params_np[start:stop]])
        self.grads = [flat.grads_np[start:stop]]
        self.subsets: dict[tuple[int, ...], Any] = {}  # tables over parts of the run

    def point_state(self, rule: type[optim.Optimizer]) -> None:
        """Point the run's tables at the flat's state buffers (after one is allocated)."""
        for role, buffer in self.flat.state_np.items():
            self.table.set_state(rule.roles.index(role), [buffer[self.start : self.stop]])
        self.subsets.clear()

    def subset(self, slots: list[_Slot], rule: type[optim.Optimizer]) -> tuple[Any, list]:
        """A table over some of the run's parameters, and their gradient segments."""
        key = tuple(slot.index for slot in slots)
        table = self.subsets.get(key)
        if table is None:
            if len(self.subsets) >= 32:  # patterns of missing gradients rarely repeat widely
                self.subsets.clear()
            table = kernels.SegmentTable([s.segment(self.flat.params_np) for s in slots])
            for role, buffer in self.flat.state_np.items():
                table.set_state(rule.roles.index(role), [s.segment(buffer) for s in slots])
            self.subsets[key] = table
        return table, [s.segment(self.flat.grads_np) for s in slots]


class Optimizer(torch.optim.Optimizer):
    """Base class: a torch.optim.Optimizer whose step is a fastopt kernel over flat buffers.

    A subclass names the fastopt rule (``rule``) and the torch.optim class whose arguments it
    takes (``torch_class``).
    """

    rule: ClassVar[type[optim.Optimizer]]
    torch_class: ClassVar[type[torch.optim.Optimizer]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = inspect.signature(cls.torch_class)  # what help() and IDEs show

    def __init__(self, params: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        defaults = self._defaults(args, kwargs)
        self._hyper = HyperMemo(self.rule, tuple(defaults))
        # torch's own set-up of hooks and step profiling, without its per-group packing
        torch.optim.Optimizer.__setstate__(self, {"defaults": defaults, "param_groups": []})
        self._slots: list[_Slot] = []
        self._runs: list[_Run] = []
        self._flats: dict[torch.dtype, _Flat] = {}
        self._frozen: list[torch.Tensor] = []  # parameters left unpacked (no gradient yet)
        self._finalizer = weakref.finalize(self, _remove_hooks, self._slots)
        if isinstance(params, torch.Tensor):
            raise TypeError("params: expected an iterable of tensors or of parameter-group "
                            f"dicts, got {torch.typename(params)}")
        groups = list(params)
        if not groups:
            raise ValueError("params: expected at least one parameter, got an empty list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self._add_group(group)
        self._pack()

    @classmethod
    def _defaults(cls, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        """torch's arguments bound as torch binds them; the rule's hyper-parameters resolved
        and validated by the NumPy optimizer's constructor (over a stand-in parameter)."""
        bound = cls.__signature__.bind(None, *args, **kwargs).arguments
        bound.pop("params")
        bound.pop("foreach", None)  # how torch computes, not what: fastopt has one way
        bound.pop("fused", None)
        for switch in ("capturable", "differentiable"):
            if bound.pop(switch, False):
                raise ValueError(f"{switch}: fastopt.torch supports only {switch}=False")
        return cls.rule([np.zeros(1)], **bound).defaults
    # ----------------------------------------------------------------- groups and packing
    def _add_group(self, group: dict[str, Any]) -> None:
        """torch's checks and defaults for a new group, then the rule's: the group is appended
        to ``param_groups``, or nothing changes."""
        super().add_param_group(group)
        try:
            self.rule.normalise(group, self.rule.check_group(group))
        except BaseException:
            self.param_groups.pop()
            raise

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group with its own hyper-parameters, as torch's; the flat buffers are laid
        out again to take its parameters (values, gradients and state carried over)."""
        self._add_group(param_group)
        try:
            self._pack()
        except BaseException:
            self.param_groups.pop()
            raise

    def _pack(self, extra: frozenset[int] = frozenset()) -> None:
        """Lay the parameters out in new flat buffers and re-point them there, carrying over
        values, gradients and state.

        Packs every parameter already packed, every one that requires grad or has a
        gradient, and those whose ids are in ``extra``. Everything is checked, and the new
        buffers filled, before any parameter or slot changes.
        """
        slots = {id(slot.param): slot for slot in self._slots}
        chosen, frozen = self._choose(slots, extra)
        hyper = [self.rule.check_group(group) for group in self.param_groups]
        places, spans, sizes = _place(chosen)
        flats = {dtype: _Flat(dtype, size) for dtype, size in sizes.items()}
        for dtype, flat in flats.items():
            for role in getattr(self._flats.get(dtype), "state", ()):
                flat.add_role(role)
        with torch.no_grad():
            for _, _, p, start in places:
                flat, old = flats[p.dtype], slots.get(id(p))
                _view(flat.params, p, start).copy_(p)
                if p.grad is not None:
                    _view(flat.grads, p, start).copy_(p.grad)
                for role, buffer in flat.state.items():
                    if old is not None:
                        _view(buffer, p, start).copy_(old.view(old.flat.state[role]))

        # Nothing above changed the optimizer or a parameter; from here on nothing can fail.
        initial = self._initial_status()
        with torch.no_grad():
            for g, i, p, start in places:
                slot = slots.get(id(p)) or _Slot(p, initial)
                flat = flats[p.dtype]
                slot.index, slot.group, slot.flat = i, g, flat
                slot.start, slot.stop = start, start + p.numel()
                if p.grad is not slot.grad:  # None, or a tensor now copied in
                    slot.received = p.grad is not None
                p.data = _view(flat.params, p, start)
                slot.grad = p.grad = _view(flat.grads, p, start)
                slot.address = p.data_ptr()
                slots[id(p)] = slot
        for flat in flats.values():
            _FLAT_STORAGES[flat.params.untyped_storage().data_ptr()] = flat.params
        self._slots[:] = [slots[id(p)] for _, _, p, _ in places]  # the list the finaliser holds
        self._flats, self._frozen, self._runs = flats, frozen, []
        for g, dtype, start, stop in spans:
            members = [s for s in self._slots if s.group == g and s.flat is flats[dtype]]
            run = _Run(g, flats[dtype], members, start, stop)
            run.point_state(self.rule)
            self._runs.append(run)
        self._refresh_guard()
        for run in self._runs:  # state that torch creates with the optimizer (Adagrad's)
            new = [s for s in run.slots if s.status is initial]
            roles = self.rule.roles_at_construction(hyper[run.group])
            if new and roles:
                status = (0, initial[1], self._ensure(run, new, roles))
                for slot in new:
                    slot.status = status
            run.uniform = len({s.status for s in run.slots}) == 1

    def _initial_status(self) -> tuple:
        """A parameter's status before its first step: no steps, scalars at their start, no
        state."""
        return 0, tuple(self.rule.initial_scalars().values()), _NOTHING

    def _choose(self, slots: dict[int, _Slot], extra: frozenset[int]) -> tuple[list, list]:
        """The parameters to pack, checked, as (index, parameter) per group; those left out."""
        chosen: list[list[tuple[int, torch.Tensor]]] = [[] for _ in self.param_groups]
        frozen: list[torch.Tensor] = []
        seen: dict[int, int] = {}
        owners: dict[int, int] = {}  # storage address -> index of the parameter owning it
        index = 0
        for g, group in enumerate(self.param_groups):
            for p in group["params"]:
                name = f"params[{index}]"
                if id(p) in seen:
                    raise ValueError(f"{name}: expected each parameter once, got params[{seen[id(p)]}] again")
                seen[id(p)] = index
                if id(p) in slots or p.requires_grad or p.grad is not None or id(p) in extra:
                    _check_param(name, p)
                    address = p.untyped_storage().data_ptr()
                    if p.numel() and address not in _FLAT_STORAGES:
                        if address in owners:
                            raise ValueError(f"{name}: expected a tensor that owns its storage, "
                                             f"got one sharing params[{owners[address]}]'s")
                        owners[address] = index
                    chosen[g].append((index, p))
                else:
                    frozen.append(p)
                index += 1
        return chosen, frozen

    def _refresh_guard(self) -> None:
        """The memory a gradient must not share: parameters and state."""
        self._guard = kernels.MemoryGuard(
            [f.params_np for f in self._flats.values()]
            + [a for f in self._flats.values() for a in f.state_np.values()])

    def _ensure(self, run: _Run, slots: list[_Slot], roles: Iterable[str]) -> frozenset[str]:
        """Give ``slots`` (of one status) the state roles in ``roles`` they do not hold yet,
        initialised as the rule says; return those roles."""
        fresh = frozenset(roles) - slots[0].status[2]
        if not fresh:
            return _NOTHING
        flat, group = run.flat, self.param_groups[run.group]
        for role in fresh:
            if role not in flat.state_np:
                flat.add_role(role)
                for other in self._runs:
                    if other.flat is flat:
                        other.point_state(self.rule)
                self._refresh_guard()
            value = self.rule.initial_value(role, group)
            if len(slots) == len(run.slots):
                flat.state_np[role][run.start : run.stop] = value
            else:
                for slot in slots:
                    slot.segment(flat.state_np[role])[...] = value
        return fresh

    def flat_params(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The 1-D buffer holding every packed parameter of ``dtype`` (default: the only
        dtype): the parameters are views of it."""
        return self._flat(dtype).params

    def flat_grads(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The 1-D buffer holding the gradients of :meth:`flat_params`, laid out alike (the
        gaps between groups are zeros, so norms over it are the gradients' norms)."""
        return self._flat(dtype).grads

    def _flat(self, dtype: torch.dtype | None) -> _Flat:
        if dtype is None and len(self._flats) == 1:
            return next(iter(self._flats.values()))
        if dtype not in self._flats:
            raise ValueError(f"dtype: expected one of {list(self._flats)}, got {dtype}")
        return self._flats[dtype]

    # ----------------------------------------------------------------- stepping
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero every gradient in place, keeping it a view of the flat gradient buffer.

        With ``set_to_none`` (torch's default) a parameter then counts as having no gradient
        until backward writes one, as if its ``.grad`` were None: the next step leaves it alone,
        as torch.optim does. With ``set_to_none=False`` a parameter that had a gradient counts
        as having a zero one, and is stepped with it, as in torch.
        """
        for flat in self._flats.values():
            flat.grads.zero_()
        for slot in self._slots:
            if slot.param.grad is not slot.grad:
                slot.param.grad = slot.grad
            slot.received &= not set_to_none
        for p in self._frozen:
            if p.grad is not None:
                p.grad = None if set_to_none else torch.zeros_like(p.grad)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; return ``closure()`` if given (called
        first, with gradients enabled, as torch does)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if any(p.grad is not None for p in self._frozen):
            self._pack()
        checked = [self._hyper(g, group) for g, group in enumerate(self.param_groups)]
        replaced = []
        for slot in self._slots:
            p = slot.param
            if p.data_ptr() != slot.address:
                raise RuntimeError(
                    f"params[{slot.index}]: its .data no longer lives in this optimizer's flat "
                    "buffer (replaced by model.to(), share_memory(), another fastopt optimizer, "
                    "...): create the optimizer again")
            grad = p.grad
            if grad is slot.grad:
                slot.active = slot.received
            elif grad is None:
                slot.active = False
            else:
                if grad.layout != torch.strided:
                    raise ValueError(f"params[{slot.index}]: sparse gradients are not supported, "
                                     f"got a {grad.layout} .grad")
                replaced.append(slot)
                slot.active = True
        with torch.no_grad():
            for slot in replaced:  # made anew by backward or assigned: copied in, once
                slot.grad.copy_(slot.param.grad)
                slot.param.grad = slot.grad
                slot.received = True
        for run in self._runs:
            self._step_run(run, *checked[run.group])
        return loss

    def _step_run(self, run: _Run, hyper: tuple, roles: tuple[str, ...]) -> None:
        """One kernel call per set of the run's parameters that have a gradient and share a
        status (step count, scalar state, roles held): usually the whole run."""
        active = [slot for slot in run.slots if slot.active]
        if not active:
            return
        whole = len(active) == len(run.slots)
        if whole and run.uniform:
            batches = [active]
        else:
            by_status: dict[tuple, list[_Slot]] = {}
            for slot in active:
                by_status.setdefault(slot.status, []).append(slot)
            batches = list(by_status.values())
        rule = self.rule
        for batch in batches:
            fresh = self._ensure(run, batch, roles)
            if len(batch) == len(run.slots):
                table, grads = run.table, run.grads
            else:
                table, grads = run.subset(batch, rule)
            step, values, live = batch[0].status
            step += 1
            scalars = rule.advance(hyper, step, dict(zip(rule.scalars, values)))
            table.bind_grads(grads, 0, self._guard)
            rule.apply(table, hyper, step, fresh, scalars)
            status = (step if rule.counts_steps else 0, tuple(scalars.values()), live | fresh)
            for slot in batch:
                slot.status = status
        run.uniform = len(batches) == 1 and whole or len({s.status for s in run.slots}) == 1

    # ----------------------------------------------------------------- state
    @property
    def state(self) -> dict[torch.Tensor, dict[str, Any]]:  # type: ignore[override]
        """Per-parameter state in torch's form: ``step`` as a 0-d tensor, scalar state
        likewise, and each state array as a view of its flat buffer (it changes with every
        step). A new dict each time: assigning into it changes nothing."""
        rule, state = self.rule, {}
        for slot in self._slots:
            step, values, live = slot.status
            if not live and not (rule.counts_steps and step):
                continue  # no state yet, as in torch before a parameter's first step
            entry: dict[str, Any] = {}
            if rule.counts_steps:
                entry["step"] = torch.tensor(float(step), dtype=_scalar_dtype())
            for name, value in zip(rule.scalars, values):
                entry[name] = torch.tensor(float(value), dtype=_scalar_dtype())
            for role in rule.roles:
                if role in live:
                    entry[role] = slot.view(slot.flat.state[role])
            state[slot.param] = entry
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict saved by this class or by the matching torch.optim class.

        Everything is validated first: a bad dict raises ``ValueError``/``TypeError`` naming
        what is wrong and leaves the optimizer as it was. Saved hyper-parameters replace the
        groups' (as in torch); state arrays are copied into the flat buffers, cast to their
        parameter's dtype as torch casts them.
        """
        state_dict = dict(state_dict)
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        groups, entries = self._check_state_dict(state_dict)
        unpacked = frozenset(entries) - {id(slot.param) for slot in self._slots}
        if unpacked:  # state for a parameter that was frozen: it is trained after all
            self._pack(extra=unpacked)
        for group, current in zip(groups, self.param_groups):
            group["params"] = current["params"]
        self.param_groups[:] = groups
        initial = self._initial_status()
        with torch.no_grad():
            for slot in self._slots:
                entry = entries.get(id(slot.param))
                if entry is None:
                    slot.status = initial
                    continue
                step, values, arrays = entry
                for role, value in arrays.items():
                    if role not in slot.flat.state:
                        run = next(r for r in self._runs if slot in r.slots)
                        self._ensure(run, [slot], [role])
                    slot.view(slot.flat.state[role]).copy_(value)
                slot.status = (step, values, frozenset(arrays))
        for run in self._runs:
            run.uniform = len({s.status for s in run.slots}) == 1
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    def _check_state_dict(self, sd: Any) -> tuple[list[dict[str, Any]], dict[int, tuple]]:
        """The new groups, and (step, scalar values, role -> tensor) by parameter id."""
        if not isinstance(sd, dict) or not {"state", "param_groups"} <= set(sd):
            raise ValueError("state_dict: expected a dict with keys 'state' and 'param_groups', got "
                             + (f"keys {sorted(sd, key=str)}" if isinstance(sd, dict) else type(sd).__name__))
        saved_groups, state = sd["param_groups"], sd["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(state, dict):
            raise TypeError("state_dict: expected 'param_groups' to be a list and 'state' a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict['param_groups']: expected {len(self.param_groups)} "
                             f"groups, got {len(saved_groups)}")
        groups, entries, claimed = [], {}, set()
        for g, (saved, current) in enumerate(zip(saved_groups, self.param_groups)):
            where = f"state_dict['param_groups'][{g}]"
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
                raise ValueError(f"{where}: expected a dict with a list 'params'")
            if len(saved["params"]) != len(current["params"]):
                raise ValueError(f"{where}['params']: expected {len(current['params'])} "
                                 f"parameters, got {len(saved['params'])}")
            group = {**self.defaults, **saved}  # keys torch.optim lacks take the defaults
            hyper = self.rule.check_group(group)
            self.rule.normalise(group, hyper)
            for index, p in zip(saved["params"], current["params"]):
                claimed.add(index)
                entry = state.get(index)
                if entry:
                    entries[id(p)] = self._check_entry(f"state_dict['state'][{index!r}]", entry, p,
                                                       self.rule.roles_used(hyper))
            groups.append(group)
        unknown = set(state) - claimed
        if unknown:
            raise ValueError(f"state_dict['state']: entries {sorted(unknown, key=str)} belong to no parameter")
        return groups, entries

    def _check_entry(self, where: str, entry: Any, p: torch.Tensor, needed: tuple[str, ...]) -> tuple:
        rule = self.rule
        if not isinstance(entry, dict):
            raise TypeError(f"{where}: expected a dict, got {type(entry).__name__}")
        allowed = {*rule.roles, *rule.scalars, *(("step",) if rule.counts_steps else ())}
        if not set(entry) <= allowed:
            raise ValueError(f"{where}: unknown entries {sorted(set(entry) - allowed, key=str)}; "
                             f"expected some of {sorted(allowed)}")
        step = 0
        if rule.counts_steps:
            if "step" not in entry:
                raise ValueError(f"{where}: expected a 'step' entry")
            step = _checks.step_count(f"{where}['step']", _number(f"{where}['step']", entry["step"]))
        values = []
        for name, spec in rule.scalars.items():
            if name in entry:
                values.append(spec.check(f"{where}['{name}']", _number(f"{where}['{name}']", entry[name])))
            elif step:
                raise ValueError(f"{where}: expected a '{name}' entry")
            else:
                values.append(spec.start())
        arrays = {}
        for role in rule.roles:
            value = entry.get(role)
            if value is None:
                continue
            t = torch.as_tensor(value)
            if not t.is_floating_point() or t.layout != torch.strided:
                raise TypeError(f"{where}['{role}']: expected a dense floating-point tensor, "
                                f"got {t.dtype} ({t.layout})")
            if t.shape != p.shape:
                raise ValueError(f"{where}['{role}']: expected shape {tuple(p.shape)} (its "
                                 f"parameter's), got {tuple(t.shape)}")
            arrays[role] = t.to(device="cpu", dtype=p.dtype, copy=True)
        missing = set(needed) - set(arrays) if step else set()
        if missing:
            raise ValueError(f"{where}: state entries {sorted(missing)} are missing")
        return step, tuple(values), arrays

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} cannot be pickled or copied (its parameters are "
                        "views of its buffers): save state_dict() and load it into a new one")


def _number(name: str, value: Any) -> Any:
    """A 0-d (or one-element) tensor's value; anything else as it is."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name}: expected a number, got a tensor of shape {tuple(value.shape)}")
        return value.item()
    return value


def _remove_hooks(slots: list[_Slot]) -> None:
    for slot in slots:
        slot.handle.remove()


def _adapt(rule: type[optim.Optimizer], torch_class: type[torch.optim.Optimizer]) -> type[Optimizer]:
    name = rule.__name__
    doc = (f"torch.optim.{name}'s arguments and rule (see :class:`fastopt.{name}`), stepped by "
           "fastopt over flat buffers.")
    return type(name, (Optimizer,), {"rule": rule, "torch_class": torch_class, "__doc__": doc,
                                     "__module__": __name__, "__qualname__": name})


SGD = _adapt(optim.SGD, torch.optim.SGD)
Adagrad = _adapt(optim.Adagrad, torch.optim.Adagrad)
RMSprop = _adapt(optim.RMSprop, torch.optim.RMSprop)
Adam = _adapt(optim.Adam, torch.optim.Adam)
AdamW = _adapt(optim.AdamW, torch.optim.AdamW)
Adadelta = _adapt(optim.Adadelta, torch.optim.Adadelta)
Adamax = _adapt(optim.Adamax, torch.optim.Adamax)
NAdam = _adapt(optim.NAdam, torch.optim.NAdam)

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adadelta", "Adamax", "NAdam"]
