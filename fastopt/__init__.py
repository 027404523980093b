"""fastopt: fast CPU optimizers over NumPy arrays.

Update kernels in typed Cython with OpenMP over flat buffers, under torch.optim's interface::

    import numpy as np, fastopt
    w = np.zeros((256, 128), np.float32)
    opt = fastopt.Adam([w], lr=1e-3)
    opt.step([grad_w])          # w changes in place
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from . import functional, lr_scheduler, reference
from ._version import __version__
from .clip import clip_grad_norm_, clip_grad_value_, grad_norm
from .flat import flatten
from .optim import LBFGS, OPTIMIZERS, Adafactor, Optimizer
from . import threads
from .threads import OPENMP, get_num_threads, set_num_threads

globals().update(OPTIMIZERS)


def config() -> dict[str, Any]:
    """What this installation is: version, where it lives, OpenMP or serial, threads, platform."""
    import numpy

    from ._kernels import built_variants, kernels

    return {
        "fastopt": __version__,
        "location": os.path.dirname(os.path.abspath(__file__)),
        "compiler": kernels.COMPILER,
        "simd": kernels.VARIANT,
        "simd_built": ", ".join(built_variants()),
        "simd_cpu": ", ".join(kernels.cpu_variants()),
        "openmp": OPENMP,
        "threading": "OpenMP" if OPENMP else "serial (built without OpenMP)",
        "threads": get_num_threads(),
        "threads_from": threads.policy(),
        "serial_threshold": kernels.get_serial_threshold(),
        "contention_fallback": kernels.get_adaptive(),
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def show_config() -> None:
    """Print :func:`config`, one ``key: value`` per line."""
    for key, value in config().items():
        print(f"{key}: {value}")


__all__ = [
    "__version__", "Optimizer", *OPTIMIZERS, "LBFGS", "Adafactor", "flatten", "functional", "reference",
    "lr_scheduler", "clip_grad_norm_", "clip_grad_value_", "grad_norm", "get_num_threads",
    "set_num_threads", "config", "show_config", "OPENMP",
]
