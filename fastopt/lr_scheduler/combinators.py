"""Schedules made of other schedules: SequentialLR (one after another) and ChainedScheduler
(all at once)."""

from __future__ import annotations

import copy
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import validation
from .base import LAST_EPOCH, HasParamGroups, LRScheduler, check_optimizer, current_lrs
from .plateau import ReduceLROnPlateau


@dataclass(frozen=True)
class _Schedule:
    """The constraint on an inner schedule of ``owner``: an object with an optimizer whose
    ``step()`` needs nothing (ReduceLROnPlateau's needs a metric)."""

    owner: str

    def __call__(self, name: str, value: Any) -> LRScheduler:
        if not hasattr(value, "optimizer"):
            raise TypeError(f"{name}: expected {self.describe()}, got {type(value).__name__}")
        if isinstance(value, ReduceLROnPlateau):
            raise ValueError(
                f"{name}: {self.owner} does not support ReduceLROnPlateau, whose step() "
                "needs a metric"
            )
        return value

    def describe(self) -> str:
        return "a schedule (an object with an optimizer)"


_SEQUENCE = validation.ListOf(_Schedule("SequentialLR"))
_CHAIN = validation.ListOf(_Schedule("ChainedScheduler"))
_MILESTONES = validation.ListOf(validation.Integer(1))


def _check_same_optimizer(owner: str, schedulers: list[LRScheduler],
                          optimizer: HasParamGroups) -> list[LRScheduler]:
    """``schedulers`` if each drives ``optimizer`` itself: a combination steps one set of groups."""
    for i, s in enumerate(schedulers):
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

    def __init__(self, optimizer: HasParamGroups, schedulers: Sequence[LRScheduler],
                 milestones: Sequence[int], last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        schedulers = _SEQUENCE("schedulers", schedulers)
        if not schedulers:
            raise ValueError("SequentialLR expects at least one scheduler, but got no scheduler.")
        _check_same_optimizer("SequentialLR", schedulers, optimizer)
        milestones = _MILESTONES("milestones", milestones)
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
        last_epoch = LAST_EPOCH("last_epoch", last_epoch)
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

    def __init__(self, schedulers: Sequence[LRScheduler],
                 optimizer: HasParamGroups | None = None) -> None:
        schedulers = _CHAIN("schedulers", schedulers)
        if not schedulers:
            raise ValueError(
                "ChainedScheduler expects at least one scheduler to be chained, but got no "
                "scheduler."
            )
        if optimizer is None:
            optimizer = schedulers[0].optimizer
        check_optimizer(optimizer)
        self._schedulers = _check_same_optimizer("ChainedScheduler", schedulers, optimizer)
        self.optimizer = optimizer
        self._last_lr = current_lrs(optimizer)

    def step(self) -> None:  # type: ignore[override]
        """Step each schedule once, in order."""
        for schedule in self._schedulers:
            schedule.step()
        self._last_lr = current_lrs(self.optimizer)
