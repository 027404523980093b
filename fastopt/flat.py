"""Flat, aligned buffers: where every parameter's slice of an optimizer buffer lives.

Every piece of optimizer state (one array per role: ``exp_avg``, ``exp_avg_sq``, ...) and the
optional flat gradient buffer is one contiguous allocation over all parameters of the
optimizer, laid out by a :class:`Layout`: parameters one after another in order, each starting
on a 64-byte boundary so that kernels and threads work on whole cache lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALIGNMENT = 64  # bytes: one cache line, and the widest SIMD register


def aligned_zeros(nbytes: int) -> np.ndarray:
    """A zeroed uint8 buffer of ``nbytes`` whose first byte is 64-byte aligned.

    Allocated through NumPy, which asks the kernel for transparent huge pages on large
    arrays, and aligned by over-allocating and slicing.
    """
    raw = np.zeros(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes]


def aligned_offsets(sizes: Sequence[int]) -> tuple[list[int], int]:
    """Byte offsets of blocks of ``sizes`` bytes laid out one after another, each starting on a
    64-byte boundary, and the bytes they span in all."""
    offsets, end = [], 0
    for size in sizes:
        start = -(-end // ALIGNMENT) * ALIGNMENT
        offsets.append(start)
        end = start + size
    return offsets, end


class Layout:
    """Byte offsets of a sequence of arrays packed into one buffer, each 64-byte aligned."""

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self.shapes = [a.shape for a in arrays]
        self.dtypes = [a.dtype for a in arrays]
        self.offsets, self.nbytes = aligned_offsets([a.nbytes for a in arrays])

    def views(self, buffer: np.ndarray) -> list[np.ndarray]:
        """Arrays shaped like the laid-out ones, viewing their slices of ``buffer`` (uint8)."""
        return [
            buffer[start : start + dtype.itemsize * int(np.prod(shape))].view(dtype).reshape(shape)
            for start, shape, dtype in zip(self.offsets, self.shapes, self.dtypes)
        ]

    def zeros(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """A new zeroed buffer for this layout and the views into it."""
        buffer = aligned_zeros(self.nbytes)
        return buffer, self.views(buffer)


def byte_range(a: np.ndarray) -> tuple[int, int]:
    start = a.ctypes.data
    return start, start + a.nbytes


def first_overlap(arrays: Sequence[np.ndarray]) -> tuple[int, int] | None:
    """Indices ``(i, j)`` of two arrays whose memory overlaps, or None if all are disjoint."""
    ranges = sorted((*byte_range(a), i) for i, a in enumerate(arrays) if a.nbytes)
    for (_, end, i), (start, _, j) in zip(ranges, ranges[1:]):
        if start < end:
            return min(i, j), max(i, j)
    return None


def flatten(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Copy ``arrays`` into one new contiguous buffer; return it and a view per array.

    The buffer is 1-D, of the arrays' common dtype, with each view starting on a 64-byte
    boundary (the gaps are zeros). Use the views as the model's parameters and give
    ``[flat]`` to an optimizer: the whole model is then a single segment, updated by one
    kernel call. Gradients flattened the same way have the same layout.
    """
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        raise ValueError("arrays: expected at least one array, got none")
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1:
        raise TypeError(f"arrays: expected one dtype, got {sorted(map(str, dtypes))}")
    layout = Layout(arrays)
    buffer, views = layout.zeros()
    for view, a in zip(views, arrays):
        view[...] = a
    return buffer.view(arrays[0].dtype), views
