"""Shared set-up of the pytest-benchmark suites (run: pytest bench --benchmark-only)."""

import numpy as np


def model_shapes(total=2_000_000, count=200, seed=0):
    """``count`` tensors of mixed shapes (matrices, vectors, a few scalars-ish) near ``total``."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.5, count)
    sizes = np.maximum(1, (weights / weights.sum() * total).astype(int))
    shapes = []
    for k, size in enumerate(sizes):
        if k % 3 == 0 and size >= 64:
            rows = int(np.sqrt(size))
            shapes.append((rows, int(size) // rows))
        else:
            shapes.append((int(size),))
    return shapes
