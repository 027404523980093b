"""Low-precision storage in plain NumPy: how a float32 result is stored in bfloat16 or float16
(docs/semantics.md, "Low-precision storage"), written independently of the kernels' C.

Round to nearest even is NumPy's own cast (ml_dtypes' for bfloat16). Stochastic rounding and
the counter-based stream it draws from, the compensated (Kahan) update, and 8-bit block
quantisation (by a search where the kernels look buckets up) are written out here on bit
patterns and arrays, so the reference computes every mode bit for bit.
"""

from __future__ import annotations

import numpy as np

from ..rules.storage import BLOCK, blocks, dynamic_code

_MASK64 = (1 << 64) - 1


def compute_dtype(storage: np.dtype) -> np.dtype:
    """The dtype a rule computes in for a storage dtype: float64 for float64, else float32."""
    return np.dtype(np.float64) if storage == np.float64 else np.dtype(np.float32)


def _mix64(z: int) -> int:
    """SplitMix64's finaliser."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, step: int, parameter: int) -> int:
    """The 32-bit key of a parameter's stream at a step: the same whoever steps it."""
    return _mix64(_mix64(_mix64(seed & _MASK64) ^ step) ^ parameter) & 0xFFFFFFFF


def random_bits(key: int, first: int, n: int) -> np.ndarray:
    """32 random bits for each of elements ``first .. first + n − 1`` of a parameter: a
    MurmurHash3 finaliser of ``key + index · 0x9E3779B9`` (mod 2³²)."""
    index = (np.arange(first, first + n, dtype=np.uint64) & 0xFFFFFFFF).astype(np.uint32)
    h = np.uint32(key) + index * np.uint32(0x9E3779B9)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def bfloat16_bits(high: np.ndarray) -> np.ndarray:
    import ml_dtypes

    return high.astype(np.uint16).view(ml_dtypes.bfloat16)


def round_stochastic(x: np.ndarray, key: int, first: int = 0) -> np.ndarray:
    """float32 ``x`` in bfloat16, rounded up with probability equal to its distance from the
    lower neighbour: the 16 low random bits added to x's bit pattern, the high half kept. NaN
    stays NaN (quiet), ±Inf stays ±Inf."""
    bits = np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint32)
    r = random_bits(key, first, bits.size) & np.uint32(0xFFFF)
    high = (bits + r) >> np.uint32(16)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    high[nan] = (bits[nan] >> np.uint32(16)) | np.uint32(0x40)
    return bfloat16_bits(high).reshape(np.shape(x))


def store_kahan(old: np.ndarray, new: np.ndarray, param: np.ndarray, comp: np.ndarray) -> None:
    """The compensated update of ``param`` (low precision, holding ``old`` exactly) to the
    float32 result ``new``, with compensation ``comp`` of param's dtype, in place::

        c ← c + (new − old);  p ← old + c;  c ← c + (old − p)

    each result, old − p too, rounded to the storage dtype."""
    low = param.dtype
    comp1 = (comp.astype(np.float32) + (new - old)).astype(low)
    p1 = (old + comp1.astype(np.float32)).astype(low)
    back = (old - p1.astype(np.float32)).astype(low)
    param[...] = p1
    comp[...] = (comp1.astype(np.float32) + back.astype(np.float32)).astype(low)


def _code(signed: bool) -> tuple[np.ndarray, np.ndarray]:
    code = dynamic_code(signed)
    return code, ((code[:-1] + code[1:]) * np.float32(0.5)).astype(np.float32)


def quantize(x: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """8-bit codes (x's shape) and block scales (one per 256 elements, in x's order) of
    float32 ``x``: each block's largest magnitude, and for each value the index of the code
    value nearest to value / scale, ties to the lower (found by a search of the code's
    midpoints), but that a positive value takes the unsigned code's smallest positive value
    rather than its 0. A block with NaN or ±Inf has a NaN scale and zero codes, an all-zero block a
    zero scale."""
    code, mid = _code(signed)
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    n = flat.size
    padded = np.zeros(blocks(n) * BLOCK, np.float32)
    padded[:n] = flat
    rows = padded.reshape(-1, BLOCK)
    with np.errstate(invalid="ignore"):
        top = np.abs(rows).max(axis=1) if rows.size else np.zeros(0, np.float32)
        bad = ~np.isfinite(top) | (top == 0)
        y = rows / np.where(bad, np.float32(1), top)[:, None]
    codes = np.searchsorted(mid, y.reshape(-1), side="left").reshape(rows.shape)
    codes[(codes == 0) & (y > 0)] = 1  # a positive value never reads as the unsigned code's 0
    codes = codes.astype(np.uint8)
    zero = np.flatnonzero(code == 0)[0]
    codes[bad] = zero
    scales = np.where(np.isfinite(top), top, np.float32(np.nan)).astype(np.float32)
    return codes.reshape(-1)[:n].reshape(np.shape(x)), scales


def dequantize(codes: np.ndarray, scales: np.ndarray, signed: bool) -> np.ndarray:
    """The float32 values 8-bit ``codes`` and their blocks' ``scales`` stand for."""
    code, _ = _code(signed)
    flat = codes.reshape(-1)
    per_element = np.repeat(scales, BLOCK)[:flat.size]
    return (code[flat] * per_element).astype(np.float32).reshape(codes.shape)
