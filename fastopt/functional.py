"""The kernels on caller-owned arrays: one in-place update of one parameter per call.

For code that manages its own buffers. Each function validates its arrays (same shape and
dtype as ``param``, C-contiguous, writable where written, no two sharing memory) and its
hyper-parameters exactly as the optimizer classes do, then runs the same kernel. ``step``
counts updates from 1. Scalar state (NAdam's ``mu_product``) is a caller-owned 0-d array of
the dtype the rule keeps it in, updated in place like the arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks
from ._kernels import kernels
from .flat import first_overlap
from .optim import SGD, Adadelta, Adagrad, Adam, Adamax, NAdam, RMSprop
from .optim.optimizer import GroupScalar, Hyper, Optimizer


def _scalar_state(name: str, a: Any, spec: GroupScalar) -> np.floating:
    """The value of a writable 0-d array of the scalar's dtype, checked like a loaded one."""
    _checks.array(name, a)
    if a.dtype != spec.dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(spec.dtype).name}, got {a.dtype}")
    if a.shape != ():
        raise ValueError(f"{name}: expected a 0-d array, got shape {a.shape}")
    return spec.check(name, a[()])


def _update(
    rule: type[Optimizer],
    hyper: Hyper,
    param: np.ndarray,
    grad: np.ndarray,
    states: dict[str, np.ndarray | None],
    step: int,
    fresh: frozenset[str] = frozenset(),
    scalars: dict[str, np.ndarray] | None = None,
) -> None:
    _checks.array("param", param)
    _checks.like("grad", grad, param, "param", writable=False)
    used = rule.roles_used(hyper)
    for role in used:
        if states[role] is None:
            raise ValueError(f"{role}: expected an array with these options, got None")
        _checks.like(role, states[role], param, "param")
    scalars = scalars or {}
    values = {name: _scalar_state(name, scalars[name], spec)
              for name, spec in rule.scalars.items()}
    named = {"param": param, "grad": grad, **{role: states[role] for role in used}, **scalars}
    overlap = first_overlap(list(named.values()))
    if overlap is not None:
        first, second = (list(named)[i] for i in overlap)
        raise ValueError(f"{second}: expected memory of its own, got an array sharing memory with {first}")
    table = kernels.SegmentTable([param])
    for role in used:
        table.set_state(rule.roles.index(role), [states[role]])
    table.bind_grads((grad,), 0, kernels.MemoryGuard([param, *(states[role] for role in used)]))
    values = rule.advance(hyper, step, values)
    rule.apply(table, hyper, step, fresh, values)
    for name, value in values.items():
        scalars[name][...] = value


def _step(step: Any) -> int:
    step = _checks.step_count("step", step)
    if step < 1:
        raise ValueError(f"step: expected a whole number >= 1 (updates count from 1), got {step}")
    return step


def sgd_(param: np.ndarray, grad: np.ndarray, momentum_buffer: np.ndarray | None = None, *,
         step: int, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
         weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False) -> None:
    """One SGD update (see :class:`fastopt.SGD`); at ``step == 1`` the momentum buffer is set
    to the gradient, afterwards it accumulates."""
    hyper = SGD.check_group(dict(lr=lr, momentum=momentum, dampening=dampening,
                                 weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))
    step = _step(step)
    fresh = frozenset(SGD.roles) if step == 1 else frozenset()
    _update(SGD, hyper, param, grad, {"momentum_buffer": momentum_buffer}, step, fresh)


def adagrad_(param: np.ndarray, grad: np.ndarray, sum: np.ndarray, *, step: int,
             lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
             eps: float = 1e-10, maximize: bool = False) -> None:
    """One Adagrad update (see :class:`fastopt.Adagrad`); ``sum`` starts at the initial
    accumulator value."""
    hyper = Adagrad.check_group(dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                     initial_accumulator_value=0.0, eps=eps, maximize=maximize))
    _update(Adagrad, hyper, param, grad, {"sum": sum}, _step(step))


def rmsprop_(param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray,
             momentum_buffer: np.ndarray | None = None, grad_avg: np.ndarray | None = None, *,
             lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
             momentum: float = 0.0, centered: bool = False, maximize: bool = False) -> None:
    """One RMSprop update (see :class:`fastopt.RMSprop`); ``momentum_buffer`` is required when
    ``momentum > 0`` and ``grad_avg`` when ``centered``."""
    hyper = RMSprop.check_group(dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                     momentum=momentum, centered=centered, maximize=maximize))
    states = {"square_avg": square_avg, "momentum_buffer": momentum_buffer, "grad_avg": grad_avg}
    _update(RMSprop, hyper, param, grad, states, 1)


def adam_(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
          max_exp_avg_sq: np.ndarray | None = None, *, step: int, lr: float = 1e-3,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
          decoupled_weight_decay: bool = False) -> None:
    """One Adam/AMSGrad/AdamW update (see :class:`fastopt.Adam`); ``max_exp_avg_sq`` is
    required when ``amsgrad``."""
    hyper = Adam.check_group(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                  amsgrad=amsgrad, maximize=maximize,
                                  decoupled_weight_decay=decoupled_weight_decay))
    states = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq, "max_exp_avg_sq": max_exp_avg_sq}
    _update(Adam, hyper, param, grad, states, _step(step))


def adadelta_(param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray,
              acc_delta: np.ndarray, *, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
              weight_decay: float = 0.0, maximize: bool = False) -> None:
    """One Adadelta update (see :class:`fastopt.Adadelta`)."""
    hyper = Adadelta.check_group(dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))
    _update(Adadelta, hyper, param, grad, {"square_avg": square_avg, "acc_delta": acc_delta}, 1)


def adamax_(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_inf: np.ndarray, *,
            step: int, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
            eps: float = 1e-8, weight_decay: float = 0.0, maximize: bool = False) -> None:
    """One Adamax update (see :class:`fastopt.Adamax`)."""
    hyper = Adamax.check_group(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                    maximize=maximize))
    _update(Adamax, hyper, param, grad, {"exp_avg": exp_avg, "exp_inf": exp_inf}, _step(step))


def nadam_(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
           mu_product: np.ndarray, *, step: int, lr: float = 2e-3,
           betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
           weight_decay: float = 0.0, momentum_decay: float = 4e-3,
           decoupled_weight_decay: bool = False, maximize: bool = False) -> None:
    """One NAdam update (see :class:`fastopt.NAdam`). ``mu_product`` is a 0-d float32 array
    holding the product of momentum coefficients so far (1 before the first update), updated
    in place."""
    hyper = NAdam.check_group(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                   momentum_decay=momentum_decay,
                                   decoupled_weight_decay=decoupled_weight_decay,
                                   maximize=maximize))
    _update(NAdam, hyper, param, grad, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq},
            _step(step), scalars={"mu_product": mu_product})


__all__ = ["sgd_", "adagrad_", "rmsprop_", "adam_", "adadelta_", "adamax_", "nadam_"]
