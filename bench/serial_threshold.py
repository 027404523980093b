"""Measure where a parallel step starts paying: Adam step time, 1 thread vs all threads.

    python bench/serial_threshold.py

For each size the step runs serially (threshold above the size) and in parallel (threshold 0);
the serial threshold in ``fastopt/_kernels/threads.pxi`` is the size from which the parallel
median is clearly lower. Run also with another process busy on one core, e.g.
``python -c "while True: pass" &``, to see the cost of a team that must wait for a core.

Measured 2026-11-23 on the 2-core AMD EPYC CI machine, float32, medians of 400 steps (idle):
size     serial   parallel
4096      2.9us     5.0us
16384     8.9us     8.6us
32768    16.6us    12.3us
65536    33.3us    21.2us
so parallel wins from about 16K elements; the threshold is set at 32768, where the gain is
clear and stays well above the noise.
"""

from __future__ import annotations

import time

import numpy as np

import fastopt
from fastopt._kernels import kernels


def median_step(opt: fastopt.Optimizer, grads: list[np.ndarray], reps: int) -> float:
    for _ in range(10):
        opt.step(grads)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        opt.step(grads)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    rng = np.random.default_rng(0)
    saved = kernels.get_serial_threshold()
    kernels.set_adaptive(False)  # measure the raw team, not the contention fallback
    print(f"threads: {fastopt.get_num_threads()}\nsize       serial   parallel")
    try:
        for size in [1024, 4096, 8192, 16384, 32768, 65536, 131072, 262144]:
            param = rng.standard_normal(size).astype(np.float32)
            grads = [rng.standard_normal(size).astype(np.float32)]
            opt = fastopt.Adam([param])
            kernels.set_serial_threshold(size + 1)
            serial = median_step(opt, grads, 400)
            kernels.set_serial_threshold(0)
            parallel = median_step(opt, grads, 400)
            print(f"{size:<8} {serial * 1e6:8.1f}us {parallel * 1e6:8.1f}us")
    finally:
        kernels.set_serial_threshold(saved)
        kernels.set_adaptive(True)


if __name__ == "__main__":
    main()
