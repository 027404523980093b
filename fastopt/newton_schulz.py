"""Newton–Schulz orthogonalisation as torch.optim.Muon computes it: in bfloat16.

torch 2.13 casts the matrix to bfloat16 on every device, the CPU included, and runs its quintic
iteration there. On the CPU (torch's MKL build) each matrix product of bfloat16 operands sums
in float32 and is rounded once to bfloat16, and ``addmm(C, A, B, beta=β, alpha=α)`` is
round(fma(β, C, round₃₂(α (A B)))): the product scaled by α and rounded to float32 first, then
β C added in one fused multiply-add, the float32 result rounded to bfloat16 (measured: no
element of 2·10^5 differed from that, where the unfused β C + α A B differed in a few). Here
the same products run through NumPy's float32 BLAS on arrays holding bfloat16 values (each
elementary product is exact in float32), the fused multiply-add in float64 (exact product, one
rounding to float64 and then float32), each result rounded to bfloat16 by fastopt's kernel.
What can still differ from torch is the order of the float32 sums inside a product (NumPy's
OpenBLAS, torch's MKL), which moves a bfloat16 result only when it lies within float32
rounding of a tie (tests/test_muon.py measures how often).
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
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/Inf go on, as in torch
        x = _rounded(x / max(norm, _rounded(np.array([eps], np.float32))[0]))
        for _ in range(steps):
            gram = _rounded(x @ x.T)
            update = _addmm(b, gram, c * (gram @ gram))
            x = _addmm(a, x, update @ x)
    return x.T if transposed else x


def _addmm(beta: np.float32, added: np.ndarray, scaled_product: np.ndarray) -> np.ndarray:
    """torch's bfloat16 ``addmm`` from its float32 parts: fma(β, C, α A B), rounded to float32
    and then to bfloat16 (β C is exact in float64: a float32 times a bfloat16 value)."""
    return _rounded((np.float64(beta) * added + scaled_product).astype(np.float32))
