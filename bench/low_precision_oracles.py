"""fastopt's low-precision AdamW against the other libraries' modes that keep float32 quality,
in one run, on one flat tensor per size:

    python bench/low_precision_oracles.py [--sizes 1e7 3e7] [--rounds 3] [--budget 0.2]

Needs the test extras (torch, torch-optimi, bitsandbytes, torchao, ml_dtypes). Contenders:
float32 torch fused AdamW (the baseline of the ratios), fastopt in float32 and each storage
mode, optimi AdamW(kahan_sum=True) on bfloat16, torchao _AdamW(bf16_stochastic_round=True) on
bfloat16 (torch.compile'd, as torchao runs it), bitsandbytes AdamW8bit and torchao AdamW8bit on
float32 parameters. Also checks that a fastopt step allocates nothing (tracemalloc sees
NumPy's allocations): the peak bytes traced over three steps.
"""

from __future__ import annotations

import argparse
import tracemalloc

import numpy as np

import fastopt
from fastopt.bench.report import align, format_time
from fastopt.bench.timing import medians, ratio, run_rounds


def fastopt_step(size: int, param_dtype, **options):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(size, dtype=np.float32).astype(param_dtype)
    g = [rng.standard_normal(size, dtype=np.float32).astype(param_dtype)]
    opt = fastopt.AdamW([p], **options)
    opt.step(g)
    return lambda: opt.step(g)


def torch_step(size: int, dtype, make):
    import torch

    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(size).to(dtype))
    p.grad = torch.randn(size).to(dtype)
    opt = make([p])
    opt.step()
    return opt.step


def allocated_per_step(step, steps: int = 3) -> int:
    """Peak bytes traced by tracemalloc during ``steps`` steps (NumPy reports its buffers)."""
    step()
    tracemalloc.start()
    for _ in range(steps):
        step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def contenders(size: int) -> dict[str, object]:
    import bitsandbytes as bnb
    import ml_dtypes
    import optimi
    import torch
    import torchao.optim as ao

    bf16 = ml_dtypes.bfloat16
    return {
        "torch fused AdamW f32": torch_step(size, torch.float32,
                                            lambda ps: torch.optim.AdamW(ps, fused=True)),
        "fastopt f32": fastopt_step(size, np.float32),
        "fastopt bf16 stochastic": fastopt_step(size, bf16, state_dtype="bfloat16",
                                                rounding="stochastic"),
        "fastopt bf16 kahan": fastopt_step(size, bf16, state_dtype="bfloat16", rounding="kahan"),
        "fastopt f32 + 8-bit": fastopt_step(size, np.float32, state_dtype="8bit"),
        "fastopt bf16 + 8-bit": fastopt_step(size, bf16, state_dtype="8bit"),
        "optimi kahan bf16": torch_step(size, torch.bfloat16,
                                        lambda ps: optimi.AdamW(ps, lr=1e-3, kahan_sum=True,
                                                                foreach=True)),
        "torchao SR bf16": torch_step(size, torch.bfloat16,
                                      lambda ps: ao._AdamW(ps, bf16_stochastic_round=True)),
        "bitsandbytes AdamW8bit": torch_step(size, torch.float32,
                                             lambda ps: bnb.optim.AdamW8bit(ps)),
        "torchao AdamW8bit": torch_step(size, torch.float32, lambda ps: ao.AdamW8bit(ps)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=lambda s: int(float(s)), default=[10**7])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.2)
    args = parser.parse_args()
    rows = [("contender", "size", "time", "time / torch f32", "fastopt faster by", "traced peak, 3 steps")]
    for size in args.sizes:
        # a whole number of 256-blocks: torchao keeps float32 state for any other size
        size = -(-size // 256) * 256
        steps = contenders(size)
        times = run_rounds(steps, args.rounds, args.budget)
        t = medians(times)
        for name in steps:
            alloc = (f"{allocated_per_step(steps[name])} B" if name.startswith("fastopt")
                     else "-")
            # the other libraries' modes against fastopt's like mode
            like = {"optimi kahan bf16": "fastopt bf16 kahan",
                    "torchao SR bf16": "fastopt bf16 stochastic",
                    "bitsandbytes AdamW8bit": "fastopt f32 + 8-bit",
                    "torchao AdamW8bit": "fastopt f32 + 8-bit"}.get(name)
            rows.append((name, f"{size:.0e}", format_time(t[name]),
                         f"{ratio(times, name, 'torch fused AdamW f32'):.2f}",
                         f"{ratio(times, name, like):.1f}x" if like else "",
                         alloc))
    print(align(rows))


if __name__ == "__main__":
    main()
