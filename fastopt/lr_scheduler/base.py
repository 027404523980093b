"""The base class of the schedules (stepping, jumping to an epoch, state dicts) and
:class:`ChainableLR`, the base of those whose step multiplies ``lr`` by a ratio.

Also what every schedule checks alike: the optimizer it drives, ``last_epoch``, and the
constraints its numbers meet (exact, so that the user's numbers reach torch's arithmetic
unrounded).
"""

from __future__ import annotations

import copy
import math
import types
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .. import validation


class HasParamGroups(Protocol):
    """What a schedule needs of an optimizer: groups of hyper-parameters, each with ``lr``."""

    param_groups: list[dict[str, Any]]


# The schedules' numbers, kept as given (``exact``): a float() of a NumPy scalar or a Fraction
# would change the sequence that torch computes from the same argument.
NON_NEGATIVE = validation.Real(exact=True)
POSITIVE = validation.Real(low_open=True, exact=True)
UNIT = validation.Real(high=1.0, exact=True)  # [0, 1]
FINITE = validation.Real(low=-math.inf, exact=True)
POSITIVE_INTEGER = validation.Integer(1)  # periods and step counts: 0 would divide by 0
NON_NEGATIVE_INTEGER = validation.Integer(0)
LAST_EPOCH = validation.Integer(-1)  # -1: a fresh schedule; >= 0: resuming


def check_optimizer(optimizer: Any) -> None:
    """Refuse anything without a ``param_groups`` list of dicts, each holding an ``lr``."""
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


def current_lrs(optimizer: HasParamGroups) -> list[Any]:
    """Each group's ``lr`` as it is: γₑ₋₁ of a chainable step, and the rates of a step that
    changes nothing."""
    return [g["lr"] for g in optimizer.param_groups]


def per_group(item: Any, optimizer: HasParamGroups) -> validation.PerGroup:
    """The constraint of a value given per param group of ``optimizer``, each meeting ``item``."""
    return validation.PerGroup(item, len(optimizer.param_groups))


def _function_state(fn: Any) -> dict[str, Any] | None:
    """What a state dict keeps of a user function: a callable object's ``__dict__``; ``None``
    for a plain function or lambda, whose code cannot be saved."""
    attributes = getattr(fn, "__dict__", None)
    if attributes is None or isinstance(fn, types.FunctionType):
        return None
    return dict(attributes)


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
        check_optimizer(optimizer)
        last_epoch = LAST_EPOCH("last_epoch", last_epoch)
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
        self._last_lr = current_lrs(self.optimizer)

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


class ChainableLR(LRScheduler):
    """A schedule that steps by multiplying each group's current ``lr`` by the ratio
    γₑ / γₑ₋₁ of its formula (torch's chainable form), so that several compose and changes made
    to ``lr`` by hand persist.

    A subclass implements ``_ratio(e)``: that ratio at epoch e (``last_epoch``), or ``None``
    where the step leaves the rates as they are.
    """

    def get_lr(self) -> list[float]:
        ratio = self._ratio(self.last_epoch)
        if ratio is None:
            return current_lrs(self.optimizer)
        return [g["lr"] * ratio for g in self.optimizer.param_groups]

    def _ratio(self, e: int) -> float | None:
        raise NotImplementedError
