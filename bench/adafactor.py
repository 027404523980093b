"""Adafactor's step: fastopt (NumPy and fastopt.torch) against torch.optim.Adafactor's for-loop
and foreach paths, and against the roofline probe, in one run:

    python bench/adafactor.py [--shapes 100x100 1000x1000 3162x3162 10000000] [--rounds 5]

Needs torch. One float32 tensor per shape (a matrix keeps factored moments, a vector a full
one). A fastopt step is three passes: Σp² with the row and column sums of g² (or v's update),
Σu², and the update: 6 transfers of 4 bytes per element (5 reads and a write; a vector's v
adds 4: read in each pass, written in the first). The probe, reading p, g and s and writing p and s (5 transfers), gives the machine's
bandwidth, and "roofline" is the step's bandwidth over the probe's. Figures the benchmark
cannot trust are marked (fastopt.bench.trust's codes).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import fastopt
import fastopt.torch as fot
from fastopt._kernels import kernels
from fastopt.bench.report import align, format_time
from fastopt.bench.timing import measure, medians, ratio
from fastopt.bench.trust import legend


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(float(x)) for x in text.split("x"))


def torch_step(cls, shape, **options):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape))
    p.grad = torch.randn(shape)
    opt = cls([p], **options)
    opt.step()
    return opt.step


def numpy_step(shape):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(shape, dtype=np.float32)
    g = [rng.standard_normal(shape, dtype=np.float32)]
    opt = fastopt.Adafactor([p])
    opt.step(g)
    return lambda: opt.step(g)


def probe(size):
    arrays = [np.ones(size, np.float32) for _ in range(3)]
    return lambda: kernels.probe(arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["100x100", "316x316", "1000x1000",
                                                        "1000000", "3162x3162", "10000000"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per sample")
    args = parser.parse_args()
    rows = [("shape", "fastopt.torch", "fastopt", "torch for-loop", "torch foreach",
             "for-loop/fastopt", "foreach/fastopt", "roofline", "")]
    codes_seen = []
    for text in args.shapes:
        shape = _shape(text)
        size = int(np.prod(shape))
        contenders = {
            "fastopt.torch": torch_step(fot.Adafactor, shape),
            "fastopt": numpy_step(shape),
            "for-loop": torch_step(torch.optim.Adafactor, shape, foreach=False),
            "foreach": torch_step(torch.optim.Adafactor, shape, foreach=True),
            "probe": probe(size),
        }
        times, _, codes, _ = measure(contenders, args.rounds, args.budget)
        m = medians(times)
        transfers = 6 if len(shape) > 1 else 10
        share = (transfers / 5) / ratio(times, "fastopt.torch", "probe")
        codes += "R" if share > 1.10 and "R" not in codes else ""
        codes_seen.append(codes)
        rows.append((text, format_time(m["fastopt.torch"]), format_time(m["fastopt"]),
                     format_time(m["for-loop"]), format_time(m["foreach"]),
                     f"{ratio(times, 'for-loop', 'fastopt.torch'):.2f}x",
                     f"{ratio(times, 'foreach', 'fastopt.torch'):.2f}x", f"{share:.0%}", codes))
    print(f"Adafactor, float32, {fastopt.get_num_threads()} threads, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(align(rows))
    text = legend(codes_seen)
    if text:
        print(text)


if __name__ == "__main__":
    main()
