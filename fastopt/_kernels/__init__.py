"""The compiled kernels, in the widest SIMD variant this CPU runs.

Each variant is the same Cython source compiled with its own ``-march`` (``baseline``;
``avx2``: x86-64-v3; ``avx512``: x86-64-v4) and gives bitwise the same results: no FMA
contraction, the same operations in the same order. ``FASTOPT_SIMD=baseline|avx2|avx512``
chooses one (for testing); a variant the CPU cannot run, or that this build lacks, is refused
with ImportError rather than left to die on an illegal instruction.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import numpy as np

try:
    from . import baseline
except ImportError as error:  # a source tree without built kernels, most often
    raise ImportError(
        f"fastopt's compiled kernels could not be imported from {__path__[0]} ({error}). In a "
        "source checkout that has not been built, install fastopt (pip install .) and run from "
        "outside the checkout, or build in place (python setup.py build_ext --inplace)."
    ) from error


def built_variants() -> tuple[str, ...]:
    """The variants this installation contains."""
    return tuple(
        name for name in baseline.LEVELS if importlib.util.find_spec(f"{__name__}.{name}")
    )


def _select() -> ModuleType:
    runnable = [name for name in baseline.cpu_variants() if name in built_variants()]
    requested = os.environ.get("FASTOPT_SIMD", "").strip().lower()
    if not requested or requested == "auto":
        return importlib.import_module(f"{__name__}.{runnable[-1]}")
    if requested not in runnable:
        raise ImportError(
            f"FASTOPT_SIMD={requested!r}: this CPU and build can run {', '.join(runnable)}"
        )
    return importlib.import_module(f"{__name__}.{requested}")


kernels = _select()

try:  # NumPy has no bfloat16; ml_dtypes' (an optional dependency) is the ecosystem's
    import ml_dtypes
except ImportError:
    pass
else:
    kernels.register_bfloat16(np.dtype(ml_dtypes.bfloat16).num)

from ..rules.storage import dynamic_code  # noqa: E402  (after the kernels: it needs none)

kernels.set_codes(dynamic_code(True).tolist(), dynamic_code(False).tolist())
