"""Learning-rate schedules with the arguments and sequences of ``torch.optim.lr_scheduler``.

A schedule holds an optimizer (anything with a ``param_groups`` list of dicts: fastopt's
optimizers, torch's, or a plain object) and, between optimizer steps, sets hyper-parameters of
its groups: ``lr`` always; ``momentum`` or beta1 of ``betas`` for the cyclic schedules. It never
touches a parameter or a state array::

    opt = fastopt.SGD(params, lr=0.1, momentum=0.9)
    sched = fastopt.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(100):
        train_one_epoch(opt)
        sched.step()

Conventions, all torch's:

- ``last_epoch`` counts the ``step()`` calls. Construction performs step 0 and sets the learning
  rate that the first optimizer step uses, so after ``n`` calls of ``step()`` the groups hold the
  rate of epoch ``n``. Formulas below write it ``e``; ``γ₀`` is a group's ``initial_lr`` (its
  ``lr`` when the first schedule was attached) and ``γₑ`` the rate a schedule sets at epoch ``e``.
- Most schedules are *chainable*: ``step()`` multiplies the group's current ``lr`` by the ratio
  γₑ / γₑ₋₁ of the formula rather than writing γₑ, so several of them compose
  (:class:`ChainedScheduler`) and changes made to ``lr`` by hand persist. The sequence then
  equals the formula up to rounding (a few ulps after hundreds of steps), exactly as torch's does.
  ``step(epoch)`` jumps to ``epoch`` with the closed form where there is one (torch's deprecated
  form, kept for compatibility).
- Constructing a schedule writes ``initial_lr`` into each group that lacks it. Pass
  ``last_epoch >= 0`` only when resuming, with groups that already carry ``initial_lr``.
- ``state_dict()`` holds everything but the optimizer (functions are saved as their
  ``__dict__``, or ``None`` for plain functions and lambdas); build the schedule with the same
  arguments, load the optimizer's state, then ``load_state_dict()`` to resume exactly.

Where torch raises an unhelpful error or computes nonsense for an argument it accepts, these
schedules refuse the argument up front with ``ValueError``/``TypeError`` naming it (zero or
negative step sizes and periods, decreasing milestones, unknown modes); a ``step()`` that raises
leaves ``last_epoch`` and the groups as they were. :class:`InverseTimeLR` and
:class:`InverseSqrtLR` are not in torch.
"""

from __future__ import annotations

import copy
import math
import numbers
import types
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol, SupportsFloat

__all__ = [
    "LRScheduler",
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ReduceLROnPlateau",
    "CyclicLR",
    "OneCycleLR",
    "SequentialLR",
    "ChainedScheduler",
    "InverseTimeLR",
    "InverseSqrtLR",
]


class HasParamGroups(Protocol):
    """What a schedule needs of an optimizer: groups of hyper-parameters, each with ``lr``."""

    param_groups: list[dict[str, Any]]


# ------------------------------------------------------------------------------------------
# Argument checks
# ------------------------------------------------------------------------------------------


def _check_optimizer(optimizer: Any) -> None:
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(
            "optimizer: expected an optimizer (an object with param_groups), "
            f"got {type(optimizer).__name__}"
        )
    groups = optimizer.param_groups
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TypeError(
            f"optimizer.param_groups: expected a list of dicts, got {type(groups).__name__}"
        )
    for i, group in enumerate(groups):
        if "lr" not in group:
            raise ValueError(f"optimizer.param_groups[{i}]: expected an 'lr' entry, got none")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _real(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """A finite real number in the given interval; returned unchanged (no float() rounding)."""
    if not _is_real(value):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        if low == -math.inf and high == math.inf:
            expected = "a finite number"
        elif high == math.inf:
            expected = f"a finite number {'>' if low_open else '>='} {low:g}"
        elif low == -math.inf:
            expected = f"a finite number {'<' if high_open else '<='} {high:g}"
        else:
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            expected = f"a number in {left}{low:g}, {high:g}{right}"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return value


def _integer(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return value


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _per_group(name: str, value: Any, optimizer: HasParamGroups, **bounds: Any) -> list[Any]:
    """One value per group: a scalar is repeated, a list/tuple must have one per group."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"{name}: expected one value per param group ({n}), got {len(value)} values"
            )
        return [_real(f"{name}[{i}]", v, **bounds) for i, v in enumerate(value)]
    return [_real(name, value, **bounds)] * n


def _functions(name: str, fn: Any, optimizer: HasParamGroups) -> list[Callable[[int], float]]:
    n = len(optimizer.param_groups)
    fns = list(fn) if isinstance(fn, (list, tuple)) else [fn] * n
    if len(fns) != n:
        raise ValueError(f"{name}: expected one function per param group ({n}), got {len(fns)}")
    for i, f in enumerate(fns):
        if not callable(f):
            raise TypeError(f"{name}[{i}]: expected a function, got {type(f).__name__}")
    return fns


def _last_epoch(value: Any) -> int:
    return _integer("last_epoch", value, -1)


def _momentum_key(optimizer: HasParamGroups) -> str:
    """The group entry a cyclic schedule cycles: beta1 of 'betas' (Adam family) or 'momentum'."""
    groups = optimizer.param_groups
    if groups and all("betas" in g for g in groups):
        return "betas"
    if groups and all("momentum" in g for g in groups):
        return "momentum"
    raise ValueError(
        "optimizer must support momentum or beta1 with `cycle_momentum` option enabled: its "
        f"param_groups have neither 'momentum' nor 'betas' ({type(optimizer).__name__}); "
        "pass cycle_momentum=False"
    )


def _set_momentum(group: dict[str, Any], key: str, value: float) -> None:
    if key == "betas":
        group["betas"] = (value, *group["betas"][1:])
    else:
        group["momentum"] = value


# ------------------------------------------------------------------------------------------
# Base class
# ------------------------------------------------------------------------------------------


class LRScheduler:
    """Base class of the schedules.

    A subclass implements :meth:`get_lr`, the learning rates of epoch ``self.last_epoch``
    (usually from the groups' current ``lr``: the chainable form), and may implement
    ``_get_closed_form_lr``, the same rates from ``base_lrs`` alone, which ``step(epoch)``
    uses. During the step made by the constructor ``self._initial`` is true.

    Attributes:
        optimizer: the object whose ``param_groups`` are set.
        base_lrs: each group's ``initial_lr`` (γ₀).
        last_epoch: the number of ``step()`` calls since epoch 0 (the constructor's).
    """

    _callables: tuple[str, ...] = ()  # attributes holding user functions (see state_dict)

    def __init__(self, optimizer: HasParamGroups, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        last_epoch = _last_epoch(last_epoch)
        if last_epoch != -1:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(
                        f"optimizer.param_groups[{i}]: expected an 'initial_lr' entry when "
                        f"resuming with last_epoch={last_epoch}, got none (restore the "
                        "optimizer's state first, or use last_epoch=-1 for a fresh schedule)"
                    )
        else:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.optimizer = optimizer
        self.base_lrs: list[float] = self._initial_base_lrs()
        self.last_epoch = last_epoch
        self._initial = False
        self._initial_step()

    def _initial_base_lrs(self) -> list[float]:
        return [g["initial_lr"] for g in self.optimizer.param_groups]

    def _initial_step(self) -> None:
        self._initial = True
        try:
            self.step()
        finally:
            self._initial = False

    def get_lr(self) -> list[float]:
        """The learning rates of epoch ``last_epoch``, one per group (called by :meth:`step`)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the latest step, one per group."""
        return list(self._last_lr)

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (call it after the optimizer's step), or jump to ``epoch``.

        A jump uses the schedule's closed form where it has one, and otherwise :meth:`get_lr`
        at ``epoch``, as torch's deprecated ``step(epoch)`` does.
        """
        if epoch is None:
            self._advance(self.last_epoch + 1, self.get_lr)
        else:
            self._jump(epoch)

    def _jump(self, epoch: int) -> None:
        compute = getattr(self, "_get_closed_form_lr", None) or self.get_lr
        self._advance(epoch, compute)

    def _advance(self, epoch: int, compute: Callable[[], list[float]]) -> None:
        previous = self.last_epoch
        self.last_epoch = epoch
        try:
            lrs = compute()
        except BaseException:
            self.last_epoch = previous
            raise
        self._set_lrs(lrs)

    def _set_lrs(self, lrs: Sequence[float]) -> None:
        groups = self.optimizer.param_groups
        if len(lrs) != len(groups):
            raise ValueError(
                f"{type(self).__name__}: computed {len(lrs)} learning rates for "
                f"{len(groups)} param groups (groups were added after the schedule was built?)"
            )
        for group, lr in zip(groups, lrs):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in groups]

    # --------------------------------------------------------------------- state
    def _state_items(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "optimizer"}

    def state_dict(self) -> dict[str, Any]:
        """The schedule's state: a fresh dict of copies of every attribute but the optimizer.

        User functions (``lr_lambda``, ``scale_fn``) cannot be saved; for a callable object its
        ``__dict__`` is saved (and restored into the schedule's own object on load), for a plain
        function or lambda ``None``.
        """
        state = {}
        for key, value in self._state_items().items():
            if key in self._callables:
                fns = value if isinstance(value, list) else [value]
                saved = [_function_state(f) for f in fns]
                state[key] = saved if isinstance(value, list) else saved[0]
            else:
                state[key] = copy.deepcopy(value)
        return state

    def _check_state(self, state_dict: Any) -> None:
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        expected = set(self._state_items())
        missing = expected - set(state_dict)
        unexpected = set(state_dict) - expected
        if missing or unexpected:
            raise ValueError(
                f"state_dict: expected the keys of a {type(self).__name__} built with the same "
                f"arguments; missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        for key in self._callables:
            ours, theirs = getattr(self, key), state_dict[key]
            if isinstance(ours, list):
                if not isinstance(theirs, list) or len(theirs) != len(ours):
                    raise ValueError(
                        f"state_dict[{key!r}]: expected a list of {len(ours)} entries"
                    )
            else:
                theirs = [theirs]
            for entry in theirs:
                if entry is not None and not isinstance(entry, dict):
                    raise TypeError(
                        f"state_dict[{key!r}]: expected None or a dict of a function's "
                        f"attributes, got {type(entry).__name__}"
                    )

    def _apply_state(self, state_dict: dict[str, Any]) -> None:
        for key, value in state_dict.items():
            if key in self._callables:
                ours = getattr(self, key)
                fns = ours if isinstance(ours, list) else [ours]
                saved = value if isinstance(ours, list) else [value]
                for f, s in zip(fns, saved):
                    if s is not None:
                        f.__dict__.update(s)
            else:
                setattr(self, key, copy.deepcopy(value))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; a dict of the wrong shape raises and changes nothing."""
        self._check_state(state_dict)
        self._apply_state(state_dict)


def _function_state(fn: Any) -> dict[str, Any] | None:
    attributes = getattr(fn, "__dict__", None)
    if attributes is None or isinstance(fn, types.FunctionType):
        return None
    return dict(attributes)


# ------------------------------------------------------------------------------------------
# Schedules given by a function of the epoch
# ------------------------------------------------------------------------------------------


class _LambdaScheduler(LRScheduler):
    """A schedule given by one function of the epoch for all groups, or one per group."""

    _callables = ("lr_lambdas",)

    def __init__(
        self,
        optimizer: HasParamGroups,
        lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        self.lr_lambdas = _functions("lr_lambda", lr_lambda, optimizer)
        super().__init__(optimizer, last_epoch)


class LambdaLR(_LambdaScheduler):
    """γₑ = γ₀ · f(e), with one function ``f`` for all groups or one per group.

    Not chainable: each step writes the formula's value.
    """

    def get_lr(self) -> list[float]:
        return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_LambdaScheduler):
    """γₑ = γₑ₋₁ · f(e) for e ≥ 1 (γ unchanged at construction); one ``f`` or one per group."""

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self._initial:
            return [g["lr"] for g in groups]
        return [g["lr"] * f(self.last_epoch) for f, g in zip(self.lr_lambdas, groups)]


# ------------------------------------------------------------------------------------------
# Step decays
# ------------------------------------------------------------------------------------------


class StepLR(LRScheduler):
    """γₑ = γ₀ · gamma^⌊e / step_size⌋ (chainable: × gamma when e is a multiple of step_size)."""

    def __init__(
        self,
        optimizer: HasParamGroups,
        step_size: int,
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.step_size = _integer("step_size", step_size, 1)
        self.gamma = _real("gamma", gamma, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """γₑ = γ₀ · gamma^(number of milestones ≤ e) (chainable: × gamma at each milestone).

    ``milestones`` must be non-decreasing integers ≥ 0; a milestone listed k times multiplies by
    gamma^k, as in torch.
    """

    def __init__(
        self,
        optimizer: HasParamGroups,
        milestones: Iterable[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
            raise TypeError(
                f"milestones: expected a list of integers, got {type(milestones).__name__}"
            )
        values = [_integer(f"milestones[{i}]", m, 0) for i, m in enumerate(milestones)]
        if values != sorted(values):
            raise ValueError(f"milestones: expected a non-decreasing list, got {values}")
        self.milestones = Counter(values)
        self.gamma = _real("gamma", gamma, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch not in self.milestones:
            return [g["lr"] for g in groups]
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [g["lr"] * factor for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        passed = bisect_right(sorted(self.milestones.elements()), self.last_epoch)
        return [base * self.gamma**passed for base in self.base_lrs]


class ConstantLR(LRScheduler):
    """γₑ = γ₀ · factor for e < total_iters, γ₀ from then on.

    Chainable: × factor at construction, × 1/factor at e = total_iters. With ``factor = 0``
    (where torch divides by zero) the rate at total_iters is γ₀ itself.
    """

    def __init__(
        self,
        optimizer: HasParamGroups,
        factor: float = 1.0 / 3,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self.factor = _real("factor", factor, low=0.0, high=1.0)
        self.total_iters = _integer("total_iters", total_iters, 1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [g["lr"] * self.factor for g in groups]
        if self.last_epoch != self.total_iters:
            return [g["lr"] for g in groups]
        if self.factor == 0:
            return list(self.base_lrs)
        return [g["lr"] * (1.0 / self.factor) for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        reached = self.last_epoch >= self.total_iters
        return [base * (self.factor + reached * (1 - self.factor)) for base in self.base_lrs]


class LinearLR(LRScheduler):
    """γₑ = γ₀ · (s + (f − s) · min(e, total_iters) / total_iters): a linear warm-up or decay.

    ``s = start_factor`` in (0, 1], ``f = end_factor`` in [0, 1]. Chainable: × s at construction,
    then × γₑ/γₑ₋₁ = 1 + (f − s) / (total_iters · s + (e − 1)(f − s)) up to total_iters.
    """

    def __init__(
        self,
        optimizer: HasParamGroups,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self.start_factor = _real("start_factor", start_factor, low=0.0, high=1.0, low_open=True)
        self.end_factor = _real("end_factor", end_factor, low=0.0, high=1.0)
        self.total_iters = _integer("total_iters", total_iters, 1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        e = self.last_epoch
        if e == 0:
            return [g["lr"] * self.start_factor for g in groups]
        if self._initial or e > self.total_iters:
            return [g["lr"] for g in groups]
        span = self.end_factor - self.start_factor
        ratio = 1.0 + span / (self.total_iters * self.start_factor + (e - 1) * span)
        return [g["lr"] * ratio for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        span = self.end_factor - self.start_factor
        return [base * (self.start_factor + span * progress) for base in self.base_lrs]


# ------------------------------------------------------------------------------------------
# Smooth decays
# ------------------------------------------------------------------------------------------


class ExponentialLR(LRScheduler):
    """γₑ = γ₀ · gammaᵉ (chainable: × gamma per step)."""

    def __init__(self, optimizer: HasParamGroups, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = _real("gamma", gamma, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self._initial:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class PolynomialLR(LRScheduler):
    """γₑ = γ₀ · (1 − min(e, total_iters) / total_iters)^power.

    Chainable: × ((1 − e/T) / (1 − (e − 1)/T))^power per step up to T = total_iters; 0 after T.
    """

    def __init__(
        self,
        optimizer: HasParamGroups,
        total_iters: int = 5,
        power: float = 1.0,
        last_epoch: int = -1,
    ) -> None:
        self.total_iters = _integer("total_iters", total_iters, 1)
        self.power = _real("power", power, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self._initial or self.last_epoch > self.total_iters:
            return [g["lr"] for g in groups]
        e, t = self.last_epoch, self.total_iters
        decay = ((1.0 - e / t) / (1.0 - (e - 1) / t)) ** self.power
        return [g["lr"] * decay for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        remaining = 1.0 - min(self.total_iters, self.last_epoch) / self.total_iters
        return [base * remaining**self.power for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """γₑ = η + (γ₀ − η) · (1 + cos(π e / T_max)) / 2, with η = eta_min.

    Chainable, as torch's: γₑ = η + (γₑ₋₁ − η) · (1 + cos(π e/T)) / (1 + cos(π (e−1)/T)), except
    at e = T + 1 (mod 2T), where that ratio is 0/0 and the step adds (γ₀ − η)(1 − cos(π/T)) / 2.
    Past T_max the rate therefore rises again along the cosine (period 2 T_max) rather than
    staying at η.
    """

    def __init__(
        self,
        optimizer: HasParamGroups,
        T_max: int,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.T_max = _integer("T_max", T_max, 1)
        self.eta_min = _real("eta_min", eta_min, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        e, t, eta = self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return [g["lr"] for g in groups]
        if (e - 1 - t) % (2 * t) == 0:
            return [
                g["lr"] + (base - eta) * (1 - math.cos(math.pi / t)) / 2
                for base, g in zip(self.base_lrs, groups)
            ]
        ratio = (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t))
        return [ratio * (g["lr"] - eta) + eta for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        e, t, eta = self.last_epoch, self.T_max, self.eta_min
        return [eta + (base - eta) * (1 + math.cos(math.pi * e / t)) / 2 for base in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR: γ = η + (γ₀ − η) · (1 + cos(π T_cur / T_i)) / 2, with η = eta_min.

    T_cur counts epochs since the last restart; a restart happens when T_cur reaches T_i, and
    then T_i ← T_i · T_mult (T_0 first). Not chainable. ``step(epoch)`` accepts fractional
    epochs (e.g. ``epoch + batch / batches``), as torch's.
    """

    def __init__(
        self,
        optimizer: HasParamGroups,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.T_0 = _integer("T_0", T_0, 1)
        self.T_i = self.T_0
        self.T_mult = _integer("T_mult", T_mult, 1)
        self.eta_min = _real("eta_min", eta_min, low=0.0)
        self.T_cur: float = _last_epoch(last_epoch)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        eta = self.eta_min
        cosine = 1 + math.cos(math.pi * self.T_cur / self.T_i)
        return [eta + (base - eta) * cosine / 2 for base in self.base_lrs]

    def step(self, epoch: float | None = None) -> None:
        """Advance one epoch, or go to ``epoch`` (a real number ≥ 0)."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            t_cur, t_i = self.T_cur + 1, self.T_i
            if t_cur >= t_i:
                t_cur, t_i = t_cur % t_i, t_i * self.T_mult
        else:
            epoch = _real("epoch", epoch, low=0.0)
            t_cur, t_i = self._position(epoch)
        self.T_cur, self.T_i = t_cur, t_i
        self.last_epoch = math.floor(epoch)
        self._set_lrs(self.get_lr())

    def _position(self, epoch: float) -> tuple[float, int]:
        """(T_cur, T_i) at ``epoch``, counted from epoch 0."""
        if epoch < self.T_0:
            return epoch, self.T_0
        if self.T_mult == 1:
            return epoch % self.T_0, self.T_0
        # Restart n starts at T_0 (T_mult^n − 1) / (T_mult − 1); torch finds n with a float log
        # (the same expression here, so both agree even where rounding decides).
        n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
        t_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
        return t_cur, self.T_0 * self.T_mult**n


# ------------------------------------------------------------------------------------------
# The two schedules that torch lacks
# ------------------------------------------------------------------------------------------


class InverseTimeLR(LRScheduler):
    """Inverse-time decay: γₑ = γ₀ / (1 + k · e), with k = ``decay_rate`` ≥ 0.

    Epochs count from 0: construction leaves γ₀, the n-th ``step()`` sets γ₀ / (1 + k n).
    Chainable, like torch's smooth decays: each step multiplies ``lr`` by
    (1 + k (e − 1)) / (1 + k e), so it composes in :class:`ChainedScheduler`;
    ``step(epoch)`` uses the closed form.
    """

    def __init__(self, optimizer: HasParamGroups, decay_rate: float, last_epoch: int = -1) -> None:
        self.decay_rate = _real("decay_rate", decay_rate, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self._initial:
            return [g["lr"] for g in groups]
        k, e = self.decay_rate, self.last_epoch
        ratio = (1 + k * (e - 1)) / (1 + k * e)
        return [g["lr"] * ratio for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base / (1 + self.decay_rate * self.last_epoch) for base in self.base_lrs]


class InverseSqrtLR(LRScheduler):
    """Inverse-square-root decay: γ = γ₀ · d / √t, with d = ``scale`` > 0.

    t counts optimizer steps from 1: t = last_epoch + 1. So construction (epoch 0) sets
    γ₀ · d / √1 = γ₀ · d, the rate of the first optimizer step, and the n-th ``step()`` sets
    γ₀ · d / √(n + 1); nothing ever divides by √0. Chainable: × d at construction, then
    × √(e / (e + 1)) per step; ``step(epoch)`` uses the closed form.
    """

    def __init__(self, optimizer: HasParamGroups, scale: float = 1.0, last_epoch: int = -1) -> None:
        self.scale = _real("scale", scale, low=0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        e = self.last_epoch
        if e == 0:
            return [g["lr"] * self.scale for g in groups]
        if self._initial:
            return [g["lr"] for g in groups]
        ratio = math.sqrt(e / (e + 1))
        return [g["lr"] * ratio for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        root = math.sqrt(self.last_epoch + 1)
        return [base * self.scale / root for base in self.base_lrs]


# ------------------------------------------------------------------------------------------
# Driven by a metric
# ------------------------------------------------------------------------------------------


class ReduceLROnPlateau(LRScheduler):
    """Multiply each group's lr by ``factor`` when a metric stops improving.

    ``step(metric)``: the metric improves on the best so far when, for mode "min", it is below
    best · (1 − threshold) ("rel") or best − threshold ("abs"); for mode "max", above
    best · (1 + threshold) or best + threshold. After more than ``patience`` epochs without
    improvement, γ ← max(γ · factor, min_lr) (skipped when that changes γ by no more than
    ``eps``), then ``cooldown`` epochs pass during which bad epochs are not counted.
    Like torch's, it does not write ``initial_lr`` into the groups.
    """

    def __init__(
        self,
        optimizer: HasParamGroups,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        _check_optimizer(optimizer)
        self.factor = _real("factor", factor, low=0.0, high=1.0, high_open=True)
        self.mode = _choice("mode", mode, ("min", "max"))
        self.threshold_mode = _choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.threshold = _real("threshold", threshold, low=0.0)
        self.patience = _integer("patience", patience, 0)
        self.cooldown = _integer("cooldown", cooldown, 0)
        self.eps = _real("eps", eps, low=0.0)
        self.min_lrs = _per_group("min_lr", min_lr, optimizer, low=0.0)
        # A scalar min_lr also covers groups added later; a list cannot.
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else min_lr
        self.optimizer = optimizer
        self.last_epoch = 0
        self.mode_worse = math.inf if self.mode == "min" else -math.inf
        self._last_lr = [g["lr"] for g in optimizer.param_groups]
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return a < best * (1.0 - self.threshold)
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(  # type: ignore[override]
        self, metrics: SupportsFloat, epoch: int | None = None
    ) -> None:
        """Record the metric of the epoch just finished; reduce the rates if it has plateaued."""
        current = float(metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"ReduceLROnPlateau: the optimizer has {len(groups)} param groups but "
                    f"min_lr lists {len(self.min_lrs)} (a group was added after the schedule "
                    "was built); set .min_lrs to one value per group"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new


# ------------------------------------------------------------------------------------------
# Cyclic schedules (they also cycle momentum or beta1)
# ------------------------------------------------------------------------------------------


class CyclicLR(LRScheduler):
    """Cyclical learning rate (Smith 2017), stepped once per batch.

    With c = ⌊1 + e / (up + down)⌋ the cycle and x = 1 + e / (up + down) − c ∈ [0, 1) the
    position in it, the height is h = x / r while x ≤ r (rising) and (x − 1) / (r − 1) after
    (falling), r = up / (up + down). Then γ = base_lr + (max_lr − base_lr) · h · s and, with
    ``cycle_momentum``, μ = max_momentum − (max_momentum − base_momentum) · h · s, where the
    scale s is 1 ("triangular"), 1 / 2^(c−1) ("triangular2"), gammaᵉ ("exp_range"), or
    ``scale_fn(c)`` / ``scale_fn(e)`` (``scale_mode`` "cycle" / "iterations"). μ is the groups'
    ``momentum`` (SGD, RMSprop) or beta1 of ``betas`` (Adam family), set from the constructor
    on; optimizers with neither (Adagrad) are refused unless ``cycle_momentum=False``.
    Construction sets ``lr`` to base_lr. Not chainable.
    """

    _callables = ("_scale_fn_custom",)

    def __init__(
        self,
        optimizer: HasParamGroups,
        base_lr: float | Sequence[float],
        max_lr: float | Sequence[float],
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: Literal["cycle", "iterations"] = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float | Sequence[float] = 0.8,
        max_momentum: float | Sequence[float] = 0.9,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        base_lrs = _per_group("base_lr", base_lr, optimizer, low=0.0)
        self.max_lrs = _per_group("max_lr", max_lr, optimizer, low=0.0)
        up = float(_real("step_size_up", step_size_up, low=0.0, low_open=True))
        down = up if step_size_down is None else float(
            _real("step_size_down", step_size_down, low=0.0)
        )
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if scale_fn is None:
            _choice("mode", mode, ("triangular", "triangular2", "exp_range"))
        elif not callable(scale_fn):
            raise TypeError(
                f"scale_fn: expected a function or None, got {type(scale_fn).__name__}"
            )
        self.mode = mode
        self.gamma = _real("gamma", gamma, low=0.0, low_open=True)
        self._scale_fn_custom = scale_fn
        self.scale_mode = _choice("scale_mode", scale_mode, ("cycle", "iterations"))
        if scale_fn is None:
            self.scale_mode = "iterations" if mode == "exp_range" else "cycle"
        self.cycle_momentum = _flag("cycle_momentum", cycle_momentum)
        if self.cycle_momentum:
            key = _momentum_key(optimizer)
            self.use_beta1 = key == "betas"
            self.base_momentums = _per_group("base_momentum", base_momentum, optimizer)
            self.max_momentums = _per_group("max_momentum", max_momentum, optimizer)
        last_epoch = _last_epoch(last_epoch)

        if last_epoch == -1:
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = lr
            if self.cycle_momentum:
                for group, top, bottom in zip(
                    optimizer.param_groups, self.max_momentums, self.base_momentums
                ):
                    _set_momentum(group, key, top)
                    group["max_momentum"] = top
                    group["base_momentum"] = bottom
        self.base_lrs = base_lrs
        super().__init__(optimizer, last_epoch)

    def _initial_base_lrs(self) -> list[float]:
        # torch assigns base_lr only after its construction step, which therefore starts from a
        # stale initial_lr when the groups already had one; using base_lr from epoch 0 on avoids it.
        return list(self.base_lrs)

    def scale_fn(self, x: float) -> float:
        """The amplitude scale s at cycle or iteration ``x``."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma**x

    def get_lr(self) -> list[float]:
        e = self.last_epoch
        cycle = math.floor(1 + e / self.total_size)
        x = 1.0 + e / self.total_size - cycle
        if x <= self.step_ratio:
            height = x / self.step_ratio
        else:
            height = (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else e)
        lrs = [
            base + (top - base) * height * scale for base, top in zip(self.base_lrs, self.max_lrs)
        ]
        if self.cycle_momentum:
            key = "betas" if self.use_beta1 else "momentum"
            for group, bottom, top in zip(
                self.optimizer.param_groups, self.base_momentums, self.max_momentums
            ):
                _set_momentum(group, key, top - (top - bottom) * height * scale)
        return lrs


class OneCycleLR(LRScheduler):
    """1cycle (Smith & Topin 2018), stepped once per batch over ``total_steps`` steps.

    γ rises from max_lr / div_factor at step 0 to max_lr at step pct_start · total_steps − 1,
    then falls to max_lr / (div_factor · final_div_factor) at step total_steps − 1
    (``three_phase``: rises, falls back to the start over as many steps, then to the minimum).
    Each phase interpolates with pct = (e − start) / (end − start) along a cosine,
    end + (start − end)(1 + cos(π pct)) / 2, or a line, start + (end − start) pct. With
    ``cycle_momentum`` the groups' ``momentum`` or beta1 goes the opposite way between
    max_momentum and base_momentum (Adagrad refused, as in :class:`CyclicLR`).

    As in torch, ``step()`` may be called total_steps times after construction (the last one
    extrapolates one step past the schedule); one more raises ``ValueError`` and changes
    nothing. Where torch divides by zero (pct_start · total_steps = 1, or pct_start = 1 at the
    final step) an empty phase is taken as completed (pct = 1). Not chainable.
    """

    def __init__(
        self,
        optimizer: HasParamGroups,
        max_lr: float | Sequence[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | Sequence[float] = 0.85,
        max_momentum: float | Sequence[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        if total_steps is not None:
            self.total_steps = _integer("total_steps", total_steps, 1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = _integer("epochs", epochs, 1) * _integer(
                "steps_per_epoch", steps_per_epoch, 1
            )
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        pct_start = _real("pct_start", pct_start, low=0.0, high=1.0)
        self.anneal_strategy = _choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        max_lrs = _per_group("max_lr", max_lr, optimizer, low=0.0)
        div_factor = _real("div_factor", div_factor, low=0.0, low_open=True)
        final_div_factor = _real("final_div_factor", final_div_factor, low=0.0, low_open=True)
        three_phase = _flag("three_phase", three_phase)
        self.cycle_momentum = _flag("cycle_momentum", cycle_momentum)
        if self.cycle_momentum:
            key = _momentum_key(optimizer)
            self.use_beta1 = key == "betas"
            max_momentums = _per_group("max_momentum", max_momentum, optimizer)
            base_momentums = _per_group("base_momentum", base_momentum, optimizer)
        last_epoch = _last_epoch(last_epoch)
        if last_epoch != -1:
            for i, group in enumerate(optimizer.param_groups):
                for name in ("initial_lr", "max_lr", "min_lr") + (
                    ("max_momentum", "base_momentum") if self.cycle_momentum else ()
                ):
                    if name not in group:
                        raise ValueError(
                            f"optimizer.param_groups[{i}]: expected a {name!r} entry when "
                            f"resuming with last_epoch={last_epoch}, got none"
                        )

        # Each phase: (last step, lr from, lr to, momentum from, momentum to), by group keys.
        warmup_end = float(pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        if three_phase:
            self._phases = [
                (warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr",
                 "base_momentum", "max_momentum"),
                (last, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._phases = [
                (warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (last, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]

        if last_epoch == -1:
            for group, top in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
            if self.cycle_momentum:
                for group, top, bottom in zip(
                    optimizer.param_groups, max_momentums, base_momentums
                ):
                    _set_momentum(group, key, top)
                    group["max_momentum"] = top
                    group["base_momentum"] = bottom
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        e = self.last_epoch
        if e > self.total_steps:
            raise ValueError(
                f"Tried to step {e} times. The specified number of total steps is "
                f"{self.total_steps}"
            )
        start = 0.0
        for i, (end, lr_from, lr_to, mom_from, mom_to) in enumerate(self._phases):
            if e <= end or i == len(self._phases) - 1:
                pct = (e - start) / (end - start) if end != start else 1.0
                break
            start = end
        lrs = []
        for group in self.optimizer.param_groups:
            lrs.append(self._anneal(group[lr_from], group[lr_to], pct))
            if self.cycle_momentum:
                momentum = self._anneal(group[mom_from], group[mom_to], pct)
                _set_momentum(group, "betas" if self.use_beta1 else "momentum", momentum)
        return lrs


# ------------------------------------------------------------------------------------------
# Combinators
# ------------------------------------------------------------------------------------------


def _check_schedulers(
    owner: str, schedulers: Any, optimizer: HasParamGroups
) -> list[LRScheduler]:
    if isinstance(schedulers, (str, bytes)) or not isinstance(schedulers, Iterable):
        raise TypeError(
            f"schedulers: expected a list of schedules, got {type(schedulers).__name__}"
        )
    schedulers = list(schedulers)
    if not schedulers:
        raise ValueError(f"{owner} expects at least one scheduler, but got no scheduler.")
    for i, s in enumerate(schedulers):
        if not hasattr(s, "optimizer"):
            raise TypeError(
                f"schedulers[{i}]: expected a schedule (an object with an optimizer), "
                f"got {type(s).__name__}"
            )
        if isinstance(s, ReduceLROnPlateau):
            raise ValueError(
                f"schedulers[{i}]: {owner} does not support ReduceLROnPlateau, whose step() "
                "needs a metric"
            )
        if s.optimizer is not optimizer:
            raise ValueError(
                f"schedulers[{i}]: {owner} expects all schedulers to belong to the same "
                f"optimizer, but {type(s).__name__} at index {i} holds a different one"
            )
    return schedulers


class _Combinator(LRScheduler):
    """State handling shared by the schedules made of other schedules."""

    _schedulers: list[LRScheduler]

    def _state_items(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("optimizer", "_schedulers")}

    def state_dict(self) -> dict[str, Any]:
        """This schedule's state, with the inner schedules' ``state_dict()`` in ``_schedulers``."""
        state = copy.deepcopy(self._state_items())
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def _check_state(self, state_dict: Any) -> None:
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        inner = state_dict.get("_schedulers")
        if not isinstance(inner, list) or len(inner) != len(self._schedulers):
            raise ValueError(
                f"state_dict['_schedulers']: expected a list of {len(self._schedulers)} states"
            )
        own = {k: v for k, v in state_dict.items() if k != "_schedulers"}
        super()._check_state(own)
        for s, sd in zip(self._schedulers, inner):
            s._check_state(sd)

    def _apply_state(self, state_dict: dict[str, Any]) -> None:
        super()._apply_state({k: v for k, v in state_dict.items() if k != "_schedulers"})
        for s, sd in zip(self._schedulers, state_dict["_schedulers"]):
            s._apply_state(sd)


class SequentialLR(_Combinator):
    """Runs ``schedulers[i]`` from ``milestones[i − 1]`` to ``milestones[i]``.

    Construction resets every group's lr to ``initial_lr``, undoes the construction steps of the
    inner schedules and performs step 0 of the first. At each milestone m the next schedule
    restarts from its epoch 0 (closed form where it has one), i.e. from the groups' initial_lr,
    not from where the previous one stopped. ``milestones``: strictly increasing integers ≥ 1,
    one fewer than the schedules. A SequentialLR or ChainedScheduler may only come first.
    """

    def __init__(
        self,
        optimizer: HasParamGroups,
        schedulers: Sequence[LRScheduler],
        milestones: Sequence[int],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        schedulers = _check_schedulers("SequentialLR", schedulers, optimizer)
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
            raise TypeError(
                f"milestones: expected a list of integers, got {type(milestones).__name__}"
            )
        milestones = [_integer(f"milestones[{i}]", m, 1) for i, m in enumerate(milestones)]
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more than "
                f"the number of milestone points, but got number of schedulers {len(schedulers)} "
                f"and the number of milestones to be equal to {len(milestones)}"
            )
        if any(a >= b for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"milestones: expected a strictly increasing list, got {milestones}")
        for i, s in enumerate(schedulers[1:], start=1):
            if isinstance(s, _Combinator):
                # It would have to restart at its milestone, and a combination has no epoch 0
                # of its own to restart from (torch raises NotImplementedError there).
                raise ValueError(
                    f"schedulers[{i}]: a {type(s).__name__} can only be the first schedule of "
                    "a SequentialLR"
                )
        last_epoch = _last_epoch(last_epoch)
        for i, group in enumerate(optimizer.param_groups):
            if "initial_lr" not in group:
                raise ValueError(f"optimizer.param_groups[{i}]: expected an 'initial_lr' entry")
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self._undo_initial_steps(self)
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    @staticmethod
    def _undo_initial_steps(schedule: LRScheduler) -> None:
        # torch winds every leaf schedule back one epoch (combinators are recursed into, their
        # own counters left alone); doing the same keeps nested combinations in step with it.
        if isinstance(schedule, _Combinator) or hasattr(schedule, "_schedulers"):
            for inner in schedule._schedulers:
                SequentialLR._undo_initial_steps(inner)
        elif hasattr(schedule, "last_epoch"):
            schedule.last_epoch -= 1

    def step(self) -> None:  # type: ignore[override]
        """Advance one epoch: step the current schedule, or restart the next at a milestone."""
        self.last_epoch += 1
        i = bisect_right(self._milestones, self.last_epoch)
        schedule = self._schedulers[i]
        if i > 0 and self._milestones[i - 1] == self.last_epoch:
            schedule._jump(0)
        else:
            schedule.step()
        self._last_lr = schedule.get_last_lr()


class ChainedScheduler(_Combinator):
    """Steps every schedule in ``schedulers``, in order, at each ``step()``.

    Chainable schedules compose multiplicatively: e.g. ``LinearLR`` warm-up times
    ``ExponentialLR`` decay. A non-chainable one (LambdaLR, CyclicLR, ...) overwrites what the
    schedules before it set.
    """

    def __init__(
        self,
        schedulers: Sequence[LRScheduler],
        optimizer: HasParamGroups | None = None,
    ) -> None:
        if isinstance(schedulers, (str, bytes)) or not isinstance(schedulers, Iterable):
            raise TypeError(
                f"schedulers: expected a list of schedules, got {type(schedulers).__name__}"
            )
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError(
                "ChainedScheduler expects at least one scheduler to be chained, but got no "
                "scheduler."
            )
        if optimizer is None:
            if not hasattr(schedulers[0], "optimizer"):
                raise TypeError(
                    "schedulers[0]: expected a schedule (an object with an optimizer), "
                    f"got {type(schedulers[0]).__name__}"
                )
            optimizer = schedulers[0].optimizer
        _check_optimizer(optimizer)
        self._schedulers = _check_schedulers("ChainedScheduler", schedulers, optimizer)
        self.optimizer = optimizer
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def step(self) -> None:  # type: ignore[override]
        """Step each schedule once, in order."""
        for schedule in self._schedulers:
            schedule.step()
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]
