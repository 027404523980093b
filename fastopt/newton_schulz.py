"""Newton–Schulz orthogonalisation as torch.optim.Muon computes it: in bfloat16.

torch 2.13 casts the matrix to bfloat16 on every device, the CPU included, and runs its quintic
iteration there. Each of its matrix products accumulates in float32 and is rounded once to
bfloat16, ``addmm``'s scaling and sum included: torch's CPU ``addmm(C, A, B, beta=β,
alpha=α)`` on bfloat16 is round(β C + α (A B)) with A B in float32 (measured against this
module's arithmetic: no element differed up to 96 columns, one in 10^4 at 300). Here the
same products run through NumPy's float32 BLAS on arrays holding bfloat16 values (their
products are exact in float32), each result rounded to bfloat16 by fastopt's kernel. What
can differ from torch is the order of the float32 sums inside a product, which moves a
bfloat16 result only when it lies within float32 rounding of a tie.
"""

from __future__ import annotations

import numpy as np

from ._kernels import kernels


def _rounded(values: np.ndarray) -> np.ndarray:
    """``values`` (float32) as a C-contiguous array of bfloat16 values: rounded in place
    (a copy first, if it is laid out otherwise)."""
    values = np.ascontiguousarray(values)
    kernels.round_to_bfloat16(values.reshape(-1))
    return values


def orthogonalize(matrix: np.ndarray, coefficients: tuple[float, float, float], steps: int,
                  eps: float) -> np.ndarray:
    """The iteration's approximation of U Vᵀ, where ``matrix`` = U S Vᵀ (its SVD)::

        X ← M / max(‖M‖_F, ε),  transposed if M has more rows than columns
        X ← a X + (b A + c A²) X,   A = X Xᵀ          (``steps`` times; (a, b, c) = coefficients)

    every value rounded to bfloat16 as torch rounds it: M (via float32, as torch's
    ``.bfloat16()`` converts float64), the norm, the quotient and each ``@``/``addmm``.
    Returns a float32 array of bfloat16 values, shaped as ``matrix`` (a transposed view of
    the iterate when it was transposed).
    """
    a, b, c = (np.float32(k) for k in coefficients)
    transposed = matrix.shape[0] > matrix.shape[1]
    x = _rounded(np.array(matrix.T if transposed else matrix, dtype=np.float32, order="C"))
    flat = x.reshape(-1)
    norm = _rounded(np.sqrt(np.dot(flat, flat)).reshape(1))[0]
    x = _rounded(x / max(norm, _rounded(np.array([eps], np.float32))[0]))
    for _ in range(steps):
        gram = _rounded(x @ x.T)
        update = _rounded(b * gram + c * (gram @ gram))
        x = _rounded(a * x + update @ x)
    return x.T if transposed else x
