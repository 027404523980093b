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
