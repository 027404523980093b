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
  rate of epoch ``n``. The schedules' formulas write it ``e``; ``γ₀`` is a group's
  ``initial_lr`` (its ``lr`` when the first schedule was attached) and ``γₑ`` the rate a schedule
  sets at epoch ``e``.
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

The modules: ``base`` (:class:`LRScheduler`, stepping and state dicts, and the checks every
schedule shares), ``lambda_lr`` (the user's functions), ``decay`` (step, warm-up and smooth
decays), ``cosine`` (cosine annealing and warm restarts), ``inverse`` (inverse time and inverse
square root), ``plateau`` (:class:`ReduceLROnPlateau`), ``cyclic`` (:class:`CyclicLR`,
:class:`OneCycleLR`) and ``combinators`` (:class:`SequentialLR`, :class:`ChainedScheduler`).
Arguments are checked through :mod:`fastopt.validation`.
"""

from .base import HasParamGroups, LRScheduler  # HasParamGroups: for users' type hints
from .combinators import ChainedScheduler, SequentialLR
from .cosine import CosineAnnealingLR, CosineAnnealingWarmRestarts
from .cyclic import CyclicLR, OneCycleLR
from .decay import ConstantLR, ExponentialLR, LinearLR, MultiStepLR, PolynomialLR, StepLR
from .inverse import InverseSqrtLR, InverseTimeLR
from .lambda_lr import LambdaLR, MultiplicativeLR
from .plateau import ReduceLROnPlateau

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
