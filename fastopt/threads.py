"""fastopt's threads: how many, and whether this build has OpenMP at all.

The count is OpenMP's: by default the number of cores, or ``OMP_NUM_THREADS`` when set;
:func:`set_num_threads` changes it for the calling thread (threadpoolctl can limit it too).
Results are identical whatever the count: every kernel is element-wise, and each element is
computed by the same instructions whichever thread runs it.
"""

from __future__ import annotations

from ._kernels import kernels

OPENMP: bool = kernels.OPENMP


def get_num_threads() -> int:
    """Threads the next parallel step may use (1 in a build without OpenMP)."""
    return kernels.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads (``n >= 1``) for the following steps of this thread."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a whole number >= 1, got {n!r}")
    kernels.set_num_threads(n)
