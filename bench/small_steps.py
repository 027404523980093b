"""Microsecond steps: Adam over many small tensors, where Python around the kernel sets the pace.

    python bench/small_steps.py [--tensors 100] [--rounds 5]

Needs torch. Two cases, each timed in interleaved rounds (fastopt.bench.timing) with figures
the benchmark cannot trust marked (fastopt.bench.trust's codes):
- ``--tensors`` float32 tensors of 10 to 100 elements stepped by fastopt.torch.Adam and by
  torch.optim.Adam on its fused, foreach and for-loop paths;
- one NumPy array of 10^3 elements stepped by fastopt.Adam.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import fastopt
import fastopt.torch as fot
from fastopt.bench.report import align, format_time
from fastopt.bench.timing import measure, medians, ratio
from fastopt.bench.trust import legend


def torch_step(cls, count: int, **options):
    torch.manual_seed(0)
    sizes = torch.randint(10, 101, (count,)).tolist()
    params = [torch.nn.Parameter(torch.randn(n)) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = cls(params, lr=1e-6, **options)
    opt.step()
    return opt.step


def numpy_step(size: int):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(size, dtype=np.float32)
    g = [rng.standard_normal(size, dtype=np.float32)]
    opt = fastopt.Adam([p], lr=1e-6)
    opt.step(g)
    return lambda: opt.step(g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per sample")
    args = parser.parse_args()
    contenders = {
        "fastopt.torch": torch_step(fot.Adam, args.tensors),
        "fused": torch_step(torch.optim.Adam, args.tensors, fused=True),
        "foreach": torch_step(torch.optim.Adam, args.tensors, foreach=True),
        "for-loop": torch_step(torch.optim.Adam, args.tensors, foreach=False),
        "fastopt 1e3": numpy_step(1000),
    }
    times, _, codes, _ = measure(contenders, args.rounds, args.budget)
    m = medians(times)
    rows = [("case", "time", "per tensor", "against fastopt.torch", codes and "doubt")]
    for key in ("fastopt.torch", "fused", "foreach", "for-loop"):
        rows.append((f"{key}, {args.tensors} tensors", format_time(m[key]),
                     format_time(m[key] / args.tensors),
                     f"{ratio(times, key, 'fastopt.torch'):.2f}x", codes))
    rows.append(("fastopt.Adam, NumPy, 10^3", format_time(m["fastopt 1e3"]), "", "", codes))
    print(f"Adam, float32, {fastopt.get_num_threads()} threads, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(align(rows))
    text = legend([codes])
    if text:
        print(text)


if __name__ == "__main__":
    main()
