"""The kernels on caller-owned arrays: one in-place update of one parameter per call.

For code that manages its own buffers. There is one function per rule, ``<name>_`` in lower
case (``adam_``, ``sgd_``, ...), made from the rule's definition (and ``adafactor_``, whose
state is not shaped like its parameter, and ``lbfgs_``, which steps with a closure: see their
docstrings)::

    <name>_(param, grad, <state arrays, in the rule's order>, <scalar state>, *, step,
            <hyper-parameters with the class's defaults>)

State arrays that only some options use (``max_exp_avg_sq`` for AMSGrad) default to None;
``step`` (the count of this update, from 1) is taken by rules whose update depends on it (for
SGD it says whether the momentum buffer starts as the gradient). Each function validates its
arrays (same shape and dtype as ``param``, C-contiguous, writable where written, no two sharing
memory) and its hyper-parameters exactly as the optimizer classes do, then runs the same
kernel. Scalar state (NAdam's ``mu_product``) is a caller-owned 0-d array of the dtype the rule
keeps it in, updated in place like the arrays. The arrays are float32 or float64: storage in
other types (bfloat16, float16, 8-bit state, and how they round) belongs to the optimizer
classes, which keep what it needs (compensation buffers, the rounding stream's step). A row-sparse gradient (SparseAdam's) is a pair
``(indices, values)`` (:mod:`fastopt.rows`). A state array that starts as the parameter
(schedule-free's ``z``) is the caller's copy of it. A rule that keeps its step count in its
parameter group (schedule-free: ``k``, ``weight_sum``, ``lr_max``, ``scheduled_lr``) takes
those entries as keyword arguments and returns them advanced, for the next call::

    entries = {}
    for grad in grads:
        entries = sgdschedulefree_(param, grad, z, lr=0.5, **entries)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from . import adafactor, lbfgs, rows, validation
from ._kernels import kernels
from .engine import Slot, run_rule
from .flat import first_overlap
from .optim import lbfgs as optim_lbfgs
from .rules import RULES, Rule
from .rules.base import Scalar
from .rules.storage import hypers as storage_hypers

STORAGE = {h.name for h in storage_hypers()}  # options of the classes' storage, not of arrays

_P = inspect.Parameter


def _scalar_state(name: str, a: Any, spec: Scalar) -> np.floating:
    """The value of a writable 0-d array of the scalar's dtype, checked like a loaded one."""
    validation.array(name, a)
    if a.dtype != spec.dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(spec.dtype).name}, got {a.dtype}")
    if a.shape != ():
        raise ValueError(f"{name}: expected a 0-d array, got shape {a.shape}")
    return spec.check(name, a[()])


def _step(step: Any) -> int:
    step = validation.step_count("step", step)
    if step < 1:
        raise ValueError(f"step: expected a whole number >= 1 (updates count from 1), got {step}")
    return step


def _update(rule: Rule, param: np.ndarray, grad: np.ndarray, states: dict[str, Any],
            scalars: dict[str, np.ndarray], step: int, hypers: dict[str, Any],
            progress: dict[str, Any]) -> dict[str, Any] | None:
    validation.array("param", param)
    if param.dtype not in (np.float32, np.float64):
        raise TypeError(f"param: expected a float32 or float64 array, got {param.dtype} (the "
                        "optimizer classes step other storage types)")
    if rule.gradient == "rows":  # (indices, values): its values are what the kernel reads
        sparse = rows.check("grad", grad, param)
        grad = sparse.values
    else:
        validation.like("grad", grad, param, "param", writable=False)
    if rule.matrix is not None:
        rule.matrix.check(rule.name, "param", param.shape)
    h = rule.check_group({**rule.defaults(**hypers), **progress})
    used = rule.roles_used(h)
    for role in used:
        if states[role] is None:
            raise ValueError(f"{role}: expected an array with these options, got None")
        validation.like(role, states[role], param, "param")
    values = {spec.name: _scalar_state(spec.name, scalars[spec.name], spec)
              for spec in rule.scalars}
    named = {"param": param, "grad": grad, **{role: states[role] for role in used}, **scalars}
    overlap = first_overlap(list(named.values()))
    if overlap is not None:
        first, second = (list(named)[i] for i in overlap)
        raise ValueError(f"{second}: expected memory of its own, got an array sharing memory with {first}")
    table = kernels.SegmentTable.of_arrays([param])
    for role in used:
        table.set_state(rule.slot(role), [states[role].ctypes.data])
    if rule.gradient == "rows":
        rows.bind(table, [sparse])
    else:
        table.bind_grads((grad,), 0, kernels.MemoryGuard([param, *(states[role] for role in used)]))
    # A rule without a step count (RMSprop, schedule-free) has no first step to tell: the
    # caller's arrays are its state from the start.
    fresh = frozenset(rule.role_names) if rule.uses_step and step == 1 else frozenset()
    advanced = run_rule(rule, kernels.KERNELS.index(rule.kernel), table, h, step, values, fresh,
                        rule.role_mask(used), rule.sign(h), [Slot.of(param)])
    for name, value in advanced.items():
        scalars[name][...] = value
    return None if rule.progress is None else rule.progress(h)


def _progress_entries(rule: Rule) -> dict[str, Any]:
    """The group entries a step of ``rule`` advances (schedule-free's ``k``, ...), with their
    initial values; none for a rule that counts steps per parameter."""
    if rule.progress is None:
        return {}
    defaults = {h.name: h.default for h in rule.hypers}
    return {name: defaults[name] for name in rule.progress(rule.check_group(defaults))}


def function(rule: Rule) -> Callable[..., Any]:
    """The functional form of ``rule`` (see the module docstring)."""
    always = [role.name for role in rule.roles if not role.optional]
    optional = [role.name for role in rule.roles if role.optional]
    if rule.role_names != (*always, *optional):
        raise ValueError(f"{rule.name}: roles that every step uses must come first")
    hypers = [h for h in rule.arguments if not h.initial_only and h.name not in STORAGE]
    progress = _progress_entries(rule)
    parameters = [_P("param", _P.POSITIONAL_OR_KEYWORD), _P("grad", _P.POSITIONAL_OR_KEYWORD),
                  *(_P(name, _P.POSITIONAL_OR_KEYWORD) for name in always),
                  *(_P(name, _P.POSITIONAL_OR_KEYWORD, default=None) for name in optional),
                  *(_P(s.name, _P.POSITIONAL_OR_KEYWORD) for s in rule.scalars if not optional),
                  *(_P(s.name, _P.KEYWORD_ONLY) for s in rule.scalars if optional),
                  *([_P("step", _P.KEYWORD_ONLY)] if rule.uses_step else []),
                  *(_P(h.name, _P.KEYWORD_ONLY, default=h.default) for h in hypers),
                  *(_P(name, _P.KEYWORD_ONLY, default=value) for name, value in progress.items())]
    signature = inspect.Signature(parameters)
    names = {s.name for s in rule.scalars}

    def update(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        param, grad = values.pop("param"), values.pop("grad")
        step = _step(values.pop("step")) if rule.uses_step else 1
        states = {role: values.pop(role) for role in rule.role_names}
        scalars = {name: values.pop(name) for name in names}
        entries = {name: values.pop(name) for name in progress}
        return _update(rule, param, grad, states, scalars, step, values, entries)

    name = f"{rule.name.lower()}_"
    update.__name__ = update.__qualname__ = name
    update.__signature__ = signature
    update.__doc__ = (f"One {rule.name} update of ``param`` in place (see :class:`fastopt."
                      f"{rule.name}`), its state in the arrays given."
                      + (f" Takes the group entries {', '.join(progress)} and returns them "
                         "advanced." if progress else ""))
    return update


def adafactor_(param: np.ndarray, grad: np.ndarray, row_var: np.ndarray | None = None,
               col_var: np.ndarray | None = None, variance: np.ndarray | None = None, *,
               step: int, lr: float = 1e-2, beta2_decay: float = -0.8,
               eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
               weight_decay: float = 0.0, maximize: bool = False) -> None:
    """One Adafactor update of ``param`` in place (see :class:`fastopt.Adafactor`), its state
    in ``row_var`` and ``col_var`` (a parameter of 2 or more dimensions: shapes
    ``[..., rows, 1]`` and ``[..., 1, cols]``) or ``variance`` (fewer: the parameter's shape),
    of its dtype; ``step`` counts this update from 1; ``eps[0]`` None is the machine epsilon of
    its dtype. Not a rule of the engine (its state is not shaped like its parameter), so its
    own function rather than one made from a rule."""
    validation.array("param", param, dtypes=validation.FLOAT_DTYPES)
    validation.like("grad", grad, param, "param", writable=False)
    shapes = adafactor.state_shapes(param.shape)
    state: dict[str, Any] = {"step": float(_step(step) - 1)}
    for key, value in {"row_var": row_var, "col_var": col_var, "variance": variance}.items():
        if key not in shapes:
            if value is not None:
                raise ValueError(f"{key}: expected None for a parameter of shape {param.shape}, "
                                 "got an array")
            continue
        validation.array(key, value, dtypes=(param.dtype,))
        if value.shape != shapes[key]:
            raise ValueError(f"{key}: expected shape {shapes[key]}, got {value.shape}")
        state[key] = value
    named = {"param": param, "grad": grad, **{k: v for k, v in state.items() if k != "step"}}
    overlap = first_overlap(list(named.values()))
    if overlap is not None:
        first, second = (list(named)[i] for i in overlap)
        raise ValueError(f"{second}: expected memory of its own, got an array sharing memory with {first}")
    h = adafactor.check_hypers({"lr": lr, "beta2_decay": beta2_decay, "eps": eps, "d": d,
                                "weight_decay": weight_decay, "maximize": maximize})
    adafactor.step_param(param, grad, state, h, adafactor.group_eps1(h, param.dtype))


def lbfgs_(param: np.ndarray, closure: Callable[[], tuple[Any, np.ndarray]],
           state: dict[str, Any], *, lr: float = 1, max_iter: int = 20,
           max_eval: int | None = None, tolerance_grad: float = 1e-7,
           tolerance_change: float = 1e-9, history_size: int = 100,
           line_search_fn: str | None = None) -> Any:
    """One L-BFGS ``step(closure)`` of ``param`` in place (see :class:`fastopt.LBFGS`):
    ``closure()`` evaluates at ``param``'s current values and returns ``(loss, grad)``,
    ``grad`` of its shape and dtype; ``state`` is the caller's dict of L-BFGS's state entry in
    torch's layout (``{}`` at first), replaced by the new entry after the step. Returns the
    first evaluation's loss. The state's vectors are read where they are (the step writes new
    ones), so they may not share memory with ``param``. A closure that raises (or returns a bad
    gradient) leaves ``param`` and ``state`` as they were. Not a rule of the engine (it steps
    with a closure and a history), so its own function rather than one made from a rule."""
    validation.array("param", param, dtypes=validation.FLOAT_DTYPES)
    if not callable(closure):
        raise TypeError(f"closure: expected a callable returning (loss, grad), got "
                        f"{type(closure).__name__}")
    if not isinstance(state, dict):
        raise TypeError(f"state: expected a dict, got {type(state).__name__}")
    hypers = optim_lbfgs.check_hypers({
        "lr": lr, "max_iter": max_iter, "max_eval": max_eval, "tolerance_grad": tolerance_grad,
        "tolerance_change": tolerance_change, "history_size": history_size,
        "line_search_fn": line_search_fn})
    memory = lbfgs.memory_from_entries(state, param.size, param.dtype,
                                       lambda name, v: validation.as_array(v),
                                       functools.partial(optim_lbfgs.as_scalar, param.dtype),
                                       copy=False)
    for key in ("d", "prev_flat_grad", "old_dirs", "old_stps"):
        value = getattr(memory, key)
        for v in value if isinstance(value, list) else [value]:
            if v is not None and np.may_share_memory(v, param):
                raise ValueError(f"state[{key!r}]: expected memory of its own, got an array "
                                 "sharing memory with param")

    def evaluate(into: np.ndarray) -> float:
        loss, grad = closure()
        into[...] = validation.like("grad", grad, param, "param", writable=False).reshape(-1)
        return float(loss)

    loss, memory = lbfgs.step_or_restore(lbfgs.FlatParams([param], param.dtype, evaluate),
                                         memory, **hypers)
    state.clear()
    state.update(memory.entries())
    return loss


FUNCTIONS: dict[str, Callable[..., Any]] = {
    f"{name.lower()}_": function(rule) for name, rule in RULES.items()}
FUNCTIONS["adafactor_"] = adafactor_
FUNCTIONS["lbfgs_"] = lbfgs_
globals().update(FUNCTIONS)

__all__ = list(FUNCTIONS)
