"""The fastopt update rules in plain NumPy: the executable form of SEMANTICS.md.

This module is the correctness oracle for the compiled kernels and the speed baseline
for the benchmarks. It favours being obviously correct over being fast, and imports
nothing but NumPy and the standard library so that it works without the compiled part
of fastopt.

Each rule is one function that updates ONE parameter array in place, together with that
parameter's ``state`` (a dict of arrays under torch's key names, created on first use).
Arithmetic happens in the parameter's dtype: hyper-parameters are turned into Python
floats, which NumPy 2 treats as "weak" scalars, so a float32 parameter is updated with
float32 array arithmetic and a float64 one in float64. Scalars that depend only on the
step count and the hyper-parameters (bias corrections, the decayed learning rate) are
computed once per call in Python double precision, as the kernels do.

Operations follow SEMANTICS.md in its order; where the sheet leaves the association of a
product open, it is read left to right (``a · b / c`` is ``(a · b) / c``), which is also
how torch's ``addcmul``/``addcdiv`` evaluate.

The classes (``SGD``, ``Adagrad``, ``RMSprop``, ``Adam``, ``AdamW``, ``Adadelta``, ``Adamax``,
``NAdam``) have the constructor
signatures of the public API, ``param_groups`` whose hyper-parameters are read at every
step, and ``step(grads)`` taking one list of gradients in parameter order over all groups.
They check only what would otherwise give a silently wrong answer (gradient count, shape
and dtype); full input validation belongs to ``fastopt.optim``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "sgd",
    "adagrad",
    "rmsprop",
    "adam",
    "adadelta",
    "adamax",
    "nadam",
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adam",
    "AdamW",
    "Adadelta",
    "Adamax",
    "NAdam",
]

State = dict[str, Any]  # arrays under torch's key names; NAdam's mu_product is a np.float32


# --------------------------------------------------------------------------------------
# Update rules: one parameter array, in place.
# --------------------------------------------------------------------------------------


def sgd(
    param: np.ndarray,
    grad: np.ndarray,
    state: State,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """SGD with optional momentum (heavy ball) and Nesterov momentum.

    ::

        g ← −g                       if maximize
        g ← g + λ p                  if λ ≠ 0
        if μ ≠ 0:
            b ← g                    on the first step with μ ≠ 0
            b ← μ b + (1 − τ) g      afterwards          (τ: dampening)
            g ← g + μ b   if nesterov, else   g ← b
        p ← p − γ g

    ``state["momentum_buffer"]`` (b) is created, as a copy of g, the first time the rule
    runs with μ ≠ 0.
    """
    lr, momentum, dampening, weight_decay = map(float, (lr, momentum, dampening, weight_decay))
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param
    if momentum != 0:
        momentum_buffer = state.get("momentum_buffer")
        if momentum_buffer is None:
            # A copy: g may still be the caller's gradient array.
            state["momentum_buffer"] = momentum_buffer = np.array(grad, dtype=param.dtype)
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * grad
        if nesterov:
            grad = grad + momentum * momentum_buffer
        else:
            grad = momentum_buffer
    param -= lr * grad


def adagrad(
    param: np.ndarray,
    grad: np.ndarray,
    state: State,
    *,
    step: int,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """Adagrad.

    ::

        γₜ = γ / (1 + (t − 1) η)         (η: lr_decay; in double precision)
        g ← −g                           if maximize
        g ← g + λ p                      if λ ≠ 0
        s ← s + g²
        p ← p − γₜ g / (√s + ε)

    ``state["sum"]`` (s) must exist: the optimizer creates it, filled with
    ``initial_accumulator_value``, when the parameter is added. ``step`` is t, the
    1-based count of this update.
    """
    lr, lr_decay, weight_decay, eps = map(float, (lr, lr_decay, weight_decay, eps))
    decayed_lr = lr / (1 + (step - 1) * lr_decay)
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param
    state_sum = state["sum"]
    state_sum += grad * grad
    std = np.sqrt(state_sum)
    std += eps
    param -= decayed_lr * grad / std


def rmsprop(
    param: np.ndarray,
    grad: np.ndarray,
    state: State,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """RMSprop, optionally centred and with momentum.

    ::

        g ← −g                                   if maximize
        g ← g + λ p                              if λ ≠ 0
        v ← α v + (1 − α) g²
        if centered:  ḡ ← α ḡ + (1 − α) g;   d = √(v − ḡ²) + ε
        else:         d = √v + ε
        if μ > 0:     b ← μ b + g / d;   p ← p − γ b
        else:         p ← p − γ g / d

    State: ``"square_avg"`` (v), ``"grad_avg"`` (ḡ, when centered) and
    ``"momentum_buffer"`` (b, when μ > 0), each created as zeros when first needed.
    """
    lr, alpha, eps, weight_decay, momentum = map(float, (lr, alpha, eps, weight_decay, momentum))
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param

    square_avg = _zeros_on_first_use(state, "square_avg", param)
    square_avg *= alpha
    square_avg += (1 - alpha) * grad * grad

    if centered:
        grad_avg = _zeros_on_first_use(state, "grad_avg", param)
        grad_avg *= alpha
        grad_avg += (1 - alpha) * grad
        denom = np.sqrt(square_avg - grad_avg * grad_avg)
    else:
        denom = np.sqrt(square_avg)
    denom += eps

    if momentum > 0:
        momentum_buffer = _zeros_on_first_use(state, "momentum_buffer", param)
        momentum_buffer *= momentum
        momentum_buffer += grad / denom
        param -= lr * momentum_buffer
    else:
        param -= lr * grad / denom


def adam(
    param: np.ndarray,
    grad: np.ndarray,
    state: State,
    *,
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    """Adam, AMSGrad and AdamW (``decoupled_weight_decay=True``).

    ::

        g ← −g                                   if maximize
        if λ ≠ 0:
            Adam:  g ← g + λ p                   AdamW:  p ← p · (1 − γ λ)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        if amsgrad:  v̂ ← max(v̂, v), and v̂ is used below in place of v
        p ← p − (γ / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

    Bias correction is always on and ε is added after the bias-corrected root. ``step``
    is t, the 1-based count of this update; both corrections use the current betas.
    State: ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v) and ``"max_exp_avg_sq"`` (v̂, when
    amsgrad), each created as zeros when first needed.
    """
    lr, eps, weight_decay = map(float, (lr, eps, weight_decay))
    beta1, beta2 = map(float, betas)
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)

    if maximize:
        grad = -grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param

    exp_avg = _zeros_on_first_use(state, "exp_avg", param)
    exp_avg_sq = _zeros_on_first_use(state, "exp_avg_sq", param)
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad

    if amsgrad:
        second_moment = _zeros_on_first_use(state, "max_exp_avg_sq", param)
        np.maximum(second_moment, exp_avg_sq, out=second_moment)
    else:
        second_moment = exp_avg_sq
    denom = np.sqrt(second_moment)
    denom /= bias_correction2_sqrt
    denom += eps
    param -= step_size * exp_avg / denom


def adadelta(
    param: np.ndarray,
    grad: np.ndarray,
    state: State,
    *,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Adadelta.

    ::

        g ← −g                                   if maximize
        g ← g + λ p                              if λ ≠ 0
        v ← ρ v + (1 − ρ) g²
        Δ = √(u + ε) / √(v + ε) · g
        u ← ρ u + (1 − ρ) Δ²
        p ← p − γ Δ

    State: ``"square_avg"`` (v) and ``"acc_delta"`` (u), created as zeros when first needed.
    """
    lr, rho, eps, weight_decay = map(float, (lr, rho, eps, weight_decay))
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param

    square_avg = _zeros_on_first_use(state, "square_avg", param)
    acc_delta = _zeros_on_first_use(state, "acc_delta", param)
    square_avg *= rho
    square_avg += (1 - rho) * grad * grad
    delta = np.sqrt(acc_delta + eps)
    delta /= np.sqrt(square_avg + eps)
    delta *= grad
    acc_delta *= rho
    acc_delta += (1 - rho) * delta * delta
    param -= lr * delta


def adamax(
    param: np.ndarray,
    grad: np.ndarray,
    state: State,
    *,
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Adamax.

    ::

        g ← −g                                   if maximize
        g ← g + λ p                              if λ ≠ 0
        m ← β₁ m + (1 − β₁) g
        u ← max(β₂ u, |g| + ε)                   (NaN if either is NaN)
        p ← p − (γ / (1 − β₁ᵗ)) · m / u

    ``step`` is t, the 1-based count of this update; the correction uses the current β₁.
    State: ``"exp_avg"`` (m) and ``"exp_inf"`` (u), created as zeros when first needed.
    """
    lr, eps, weight_decay = map(float, (lr, eps, weight_decay))
    beta1, beta2 = map(float, betas)
    step_size = lr / (1 - beta1**step)
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param

    exp_avg = _zeros_on_first_use(state, "exp_avg", param)
    exp_inf = _zeros_on_first_use(state, "exp_inf", param)
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_inf *= beta2
    np.maximum(exp_inf, np.abs(grad) + eps, out=exp_inf)  # propagates NaN, as torch.maximum
    param -= step_size * exp_avg / exp_inf


def nadam(
    param: np.ndarray,
    grad: np.ndarray,
    state: State,
    *,
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    """NAdam (ψ: momentum_decay).

    ::

        μₜ = β₁ (1 − ½ · 0.96^(t ψ)),  μₜ₊₁ = β₁ (1 − ½ · 0.96^((t + 1) ψ))   (double)
        Πₜ = fl32(Πₜ₋₁ · fl32(μₜ)),  Π₀ = 1                        (float32, as torch)
        g ← −g                                   if maximize
        if λ ≠ 0:
            g ← g + λ p    or, decoupled,    p ← p · (1 − γ λ)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        d = √(v / (1 − β₂ᵗ)) + ε
        p ← p − γ (1 − μₜ) / (1 − Πₜ) · g / d
        p ← p − γ μₜ₊₁ / (1 − Πₜ μₜ₊₁) · m / d

    The two coefficients are computed in double from the float32 Πₜ. ``step`` is t, the
    1-based count of this update. State: ``"mu_product"`` (Π, a np.float32, 1 before the first
    update), ``"exp_avg"`` (m) and ``"exp_avg_sq"`` (v), created when first needed.
    """
    lr, eps, weight_decay, momentum_decay = map(float, (lr, eps, weight_decay, momentum_decay))
    beta1, beta2 = map(float, betas)
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    mu_product = state.get("mu_product", np.float32(1.0)) * np.float32(mu)
    state["mu_product"] = mu_product
    grad_coef = lr * (1.0 - mu) / (1.0 - float(mu_product))
    avg_coef = lr * mu_next / (1.0 - float(mu_product) * mu_next)
    bias_correction2 = 1 - beta2**step

    if maximize:
        grad = -grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param

    exp_avg = _zeros_on_first_use(state, "exp_avg", param)
    exp_avg_sq = _zeros_on_first_use(state, "exp_avg_sq", param)
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    denom = np.sqrt(exp_avg_sq / bias_correction2)
    denom += eps
    param -= grad_coef * grad / denom
    param -= avg_coef * exp_avg / denom


def _zeros_on_first_use(state: State, key: str, param: np.ndarray) -> np.ndarray:
    if key not in state:
        state[key] = np.zeros_like(param)
    return state[key]


# --------------------------------------------------------------------------------------
# Optimizer classes: parameter groups, per-parameter state and step counts.
# --------------------------------------------------------------------------------------


class _ReferenceOptimizer:
    """Holds parameter groups and per-parameter state; subclasses supply the rule.

    ``param_groups`` is a list of dicts with ``"params"`` (a list of arrays) and every
    hyper-parameter; values are read at each step, so changing them between steps takes
    effect at the next one. ``state[i]`` and ``step_counts[i]`` belong to the i-th
    parameter in group order (group 0's parameters first).
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: list[State] = []
        self.step_counts: list[int] = []
        params = list(params)
        if not params:
            raise ValueError("params: expected a non-empty list of arrays or groups, got []")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, np.ndarray) else list(params)
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        self.param_groups.append(group)
        for param in group["params"]:
            self.state.append(self._initial_state(param, group))
            self.step_counts.append(0)

    def _initial_state(self, param: np.ndarray, group: dict[str, Any]) -> State:
        return {}

    def _update(
        self, param: np.ndarray, grad: np.ndarray, state: State, step: int, group: dict[str, Any]
    ) -> None:
        raise NotImplementedError

    def _hyper(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's value of each of this optimizer's hyper-parameters (its defaults' keys,
        which are its rule's keyword arguments), leaving out anything else a group holds."""
        return {name: group[name] for name in self.defaults}

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """Apply one update to every parameter; ``grads`` in parameter order."""
        params = [param for group in self.param_groups for param in group["params"]]
        grads = list(grads)
        if len(grads) != len(params):
            raise ValueError(f"grads: expected {len(params)} gradients, got {len(grads)}")
        for i, (param, grad) in enumerate(zip(params, grads)):
            # NumPy would broadcast a wrong shape and upcast a wrong dtype without a word.
            if grad.shape != param.shape or grad.dtype != param.dtype:
                raise ValueError(
                    f"grads[{i}]: expected shape {param.shape} and dtype {param.dtype}, "
                    f"got shape {grad.shape} and dtype {grad.dtype}"
                )
        i = 0
        for group in self.param_groups:
            for param in group["params"]:
                self.step_counts[i] += 1
                self._update(param, grads[i], self.state[i], self.step_counts[i], group)
                i += 1


class SGD(_ReferenceOptimizer):
    """Reference SGD (see :func:`sgd`)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, param, grad, state, step, group):
        sgd(param, grad, state, **self._hyper(group))


class Adagrad(_ReferenceOptimizer):
    """Reference Adagrad (see :func:`adagrad`)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _initial_state(self, param, group):
        return {"sum": np.full_like(param, float(group["initial_accumulator_value"]))}

    def _update(self, param, grad, state, step, group):
        adagrad(
            param,
            grad,
            state,
            step=step,
            lr=group["lr"],
            lr_decay=group["lr_decay"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )


class RMSprop(_ReferenceOptimizer):
    """Reference RMSprop (see :func:`rmsprop`)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, param, grad, state, step, group):
        rmsprop(param, grad, state, **self._hyper(group))


class Adam(_ReferenceOptimizer):
    """Reference Adam / AMSGrad / AdamW (see :func:`adam`)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def _update(self, param, grad, state, step, group):
        adam(param, grad, state, step=step, **self._hyper(group))


class AdamW(Adam):
    """Reference AdamW: :class:`Adam` with decoupled weight decay, λ = 1e-2 by default."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )


class Adadelta(_ReferenceOptimizer):
    """Reference Adadelta (see :func:`adadelta`)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, param, grad, state, step, group):
        adadelta(param, grad, state, **self._hyper(group))


class Adamax(_ReferenceOptimizer):
    """Reference Adamax (see :func:`adamax`)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize
        )
        super().__init__(params, defaults)

    def _update(self, param, grad, state, step, group):
        adamax(param, grad, state, step=step, **self._hyper(group))


class NAdam(_ReferenceOptimizer):
    """Reference NAdam (see :func:`nadam`)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, param, grad, state, step, group):
        nadam(param, grad, state, step=step, **self._hyper(group))
