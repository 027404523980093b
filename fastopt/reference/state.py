"""Per-parameter state of the reference rules: a dict of arrays under torch's key names."""

from __future__ import annotations

from typing import Any

import numpy as np

State = dict[str, Any]  # arrays under torch's key names; NAdam's mu_product is a np.float32


def zeros_on_first_use(state: State, key: str, param: np.ndarray) -> np.ndarray:
    """``state[key]``, created as zeros like ``param`` the first time it is asked for."""
    if key not in state:
        state[key] = np.zeros_like(param)
    return state[key]


def gradient(param: np.ndarray, grad: np.ndarray, *, maximize: bool, weight_decay: float,
             lr: float = 0.0, decoupled: bool = False) -> np.ndarray:
    """g as the rules read it: ``g ← −g`` to maximize, then, when λ ≠ 0, L2 decay
    ``g ← g + λ p``, or decoupled decay ``p ← p · (1 − γ λ)`` (p in place, g unchanged)."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    return grad


def running_average(state: State, key: str, param: np.ndarray, value: np.ndarray,
                    beta: float) -> np.ndarray:
    """``state[key] ← β state[key] + (1 − β) value``, from zeros; returns it."""
    average = zeros_on_first_use(state, key, param)
    average *= beta
    average += (1 - beta) * value
    return average


def running_average_sq(state: State, key: str, param: np.ndarray, value: np.ndarray,
                       beta: float) -> np.ndarray:
    """``state[key] ← β state[key] + ((1 − β) value) value``, from zeros (torch's addcmul
    rounds the product so); returns it."""
    average = zeros_on_first_use(state, key, param)
    average *= beta
    average += (1 - beta) * value * value
    return average


def is_coalesced(indices: np.ndarray) -> bool:
    """Whether row numbers are sorted and distinct, as torch's coalesce leaves them (then
    ``np.unique``, which hashes or sorts, would return them as they are)."""
    return bool(np.all(indices[1:] > indices[:-1]))
