"""The strong-Wolfe line search of torch.optim.LBFGS (torch 2.13), over flat NumPy vectors.

Scalars keep the dtype NumPy gives them (a float32 dot product is a ``numpy.float32``), so
the comparisons and interpolations round as torch's 0-d tensors do: NumPy 2's promotion of
Python scalars (NEP 50) is torch's.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .clip import abs_max

# obj(t) evaluates the objective at x + t d and returns (loss, a fresh copy of its gradient).
Objective = Callable[[Any], tuple[float, np.ndarray]]


def cubic_minimum(x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any,
                  bounds: tuple[Any, Any] | None = None) -> Any:
    """The minimiser of the cubic through (x1, f1, f1'=g1) and (x2, f2, g2), clamped to
    ``bounds`` (default: the interval between x1 and x2); the midpoint when the cubic has no
    real minimiser."""
    if bounds is None:
        bounds = (x1, x2) if x1 <= x2 else (x2, x1)
    low, high = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    disc = d1 ** 2 - g1 * g2
    if not disc >= 0:
        return (low + high) / 2.0
    d2 = np.sqrt(disc)
    # Measured from the farther point, as the closed form is stated. A zero denominator
    # gives an infinite root, clamped below: torch's 0-d tensors divide so without a warning.
    with np.errstate(divide="ignore", invalid="ignore"):
        if x1 <= x2:
            root = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            root = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(root, low), high)


def strong_wolfe(obj: Objective, t: Any, d: np.ndarray, f: float, g: np.ndarray, gtd: Any,
                 c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9,
                 max_ls: int = 25) -> tuple[float, np.ndarray, Any, int]:
    """A step length t along ``d`` meeting the strong Wolfe conditions (or the best point
    found within ``max_ls`` evaluations): returns (loss, gradient, t, evaluations)."""
    d_norm = abs_max(d)
    g = g.copy()
    f_new, g_new = obj(t)
    evals = 1
    gtd_new = np.dot(g_new, d)

    # Bracketing: grow t until an interval is known to hold an acceptable point.
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    it = 0
    bracket: list[Any] = []
    bracket_f: list[Any] = []
    bracket_g: list[np.ndarray] = []
    bracket_gtd: list[Any] = []
    while it < max_ls:
        if f_new > (f + c1 * t * gtd) or (it > 1 and f_new >= f_prev):
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        t_next = cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                               bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = t_next
        f_new, g_new = obj(t)
        evals += 1
        gtd_new = np.dot(g_new, d)
        it += 1
    if it == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # Zoom: shrink the bracket by cubic interpolation until a point meets the conditions.
    stuck = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and it < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_minimum(bracket[0], bracket_f[0], bracket_gtd[0],
                          bracket[1], bracket_f[1], bracket_gtd[1])
        # A trial too near an end twice running (or outside) is moved a tenth inside.
        top, bottom = max(bracket), min(bracket)
        eps = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < eps:
            if stuck or t >= top or t <= bottom:
                t = top - eps if abs(t - top) < abs(t - bottom) else bottom + eps
                stuck = False
            else:
                stuck = True
        else:
            stuck = False
        f_new, g_new = obj(t)
        evals += 1
        gtd_new = np.dot(g_new, d)
        it += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high], bracket_g[high] = t, f_new, g_new
            bracket_gtd[high] = gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low] = t, f_new, g_new
            bracket_gtd[low] = gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evals
