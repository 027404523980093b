"""The benchmark: fastopt's step against the NumPy reference, torch and the memory roofline.

``fastopt bench [options]``: the per-size cases (:mod:`.cases`), the model-shaped step
(:mod:`.model_shaped`) and, with torch installed, the torch training step
(:mod:`.torch_training`); tables on stdout, progress on stderr, optionally JSON and a plot.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from dataclasses import asdict

import numpy as np

import fastopt

from .cases import run_case
from .model_shaped import run_model
from .optimizers import NAMES, OUTSIDE
from .outside import outside_case
from ..rules import RULES
from .report import format_model_table, format_table, format_torch_table, plot
from .trust import machine_note, others_busy, snapshot

DEFAULT_SIZES = [10**3, 10**4, 10**5, 10**6, 10**7, 3 * 10**7]
QUICK_SIZES = [10**3, 10**5]


def build_parser() -> argparse.ArgumentParser:
    """``fastopt bench``'s arguments; the optimizers are every rule's (:mod:`.optimizers`)."""
    parser = argparse.ArgumentParser(prog="fastopt bench", description=__doc__.split("\n")[0])
    parser.add_argument("--optimizers", nargs="+", default=list(NAMES), choices=list(NAMES))
    parser.add_argument("--sizes", nargs="+", type=lambda s: int(float(s)), default=None,
                        help="element counts (default 1e3 1e4 1e5 1e6 1e7 3e7)")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None, help="fastopt threads (default: all)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case (median taken)")
    parser.add_argument("--budget", type=float, default=0.02, help="seconds per timing sample")
    parser.add_argument("--quick", action="store_true", help="a smoke run: two small sizes, no "
                        "model-shaped step, a 4-layer torch model")
    parser.add_argument("--no-model", dest="model", action="store_false",
                        help="skip the model-shaped step (200 tensors, ~2e6 parameters)")
    parser.add_argument("--no-torch-model", dest="torch_model", action="store_false",
                        help="skip the torch training step (50 Linear layers, ~1e7 parameters; "
                             "with --quick 4 layers, ~1e5), on when torch is installed")
    parser.add_argument("--storage", action="store_true",
                        help="also Adam in each storage mode (bfloat16, 8-bit state, ...) at "
                             "the sizes, each against its own roofline and float32 Adam "
                             "(needs ml_dtypes)")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the results as JSON ('-': stdout)")
    parser.add_argument("--plot", metavar="PNG", help="also plot Gelem/s against size (matplotlib)")
    parser.add_argument("--distributed", action="store_true",
                        help="instead: training on --ranks processes of this host (gloo) under "
                             "DDP, FSDP2 and ZeRO-1 against torch.optim, stepping in backward, "
                             "and ranks sharing the cores (needs torch)")
    parser.add_argument("--ranks", type=int, default=2, help="processes for --distributed")
    return parser


def set_threads(threads: int) -> None:
    """fastopt's threads, and torch's where torch is installed, so that both run alike."""
    fastopt.set_num_threads(threads)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def progress(message: str, start: float) -> None:
    print(f"{message} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 1 where fastopt's deviation from the reference is not finite."""
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        set_threads(args.threads)
    if args.distributed:
        from .multi_rank import run

        if args.optimizers == list(NAMES):  # the default: the two most run
            args.optimizers = ["AdamW", "SGD"]
        return run(args)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    rounds = 2 if args.quick else args.rounds
    cases = [(n, d, s) for n in args.optimizers for d in args.dtypes for s in sizes]
    config = fastopt.config()
    print(f"fastopt {config['fastopt']} bench: {config['threads']} threads, "
          f"openmp={config['openmp']}, numpy {config['numpy']}", file=sys.stderr)
    results = []
    start = time.perf_counter()
    before = snapshot()
    for k, (name, dtype, size) in enumerate(cases, 1):
        progress(f"[{k}/{len(cases)}] {name} {dtype} {size:,}", start)
        case = outside_case if name in OUTSIDE else run_case
        results.append(case(name, np.dtype(dtype), size, rounds, args.budget))
    # The model-shaped and torch training steps are over a model's tensors with dense
    # gradients: a rule of matrices (Muon), one of row-sparse gradients (SparseAdam) and the
    # rules outside the engine sit out.
    of_models = [n for n in args.optimizers
                 if n in RULES and RULES[n].matrix is None and RULES[n].gradient == "dense"]
    models = []
    if args.model and not args.quick:
        for name in of_models:
            progress(f"model-shaped {name}", start)
            models.append(run_model(name, rounds, args.budget))
    trainings = []
    if args.torch_model and importlib.util.find_spec("torch") is not None:
        from ..torch import OPTIMIZERS as TORCH_FRONT_END
        from .torch_training import FULL, QUICK, run_torch_model

        for name in [n for n in of_models if n in TORCH_FRONT_END]:
            progress(f"torch training {name}", start)
            trainings += run_torch_model(name, QUICK if args.quick else FULL, rounds, args.budget)
    storage = []
    if args.storage:
        from .storage_modes import format_modes_table, run_modes

        for size in sizes:
            progress(f"storage modes {size:,}", start)
            storage += run_modes(size, rounds, args.budget)
    after = snapshot()
    machine = {"others_cores": others_busy(before, after), "load_average": after.load,
               "cpus": os.cpu_count() or 1}
    print(format_table(results))
    if storage:
        print()
        print(format_modes_table(storage))
    if models:
        print()
        print(format_model_table(models))
    if trainings:
        print()
        print(format_torch_table(trainings))
    print()
    print(machine_note(machine["others_cores"], machine["load_average"], machine["cpus"]))
    if args.json:
        payload = json.dumps({"config": config, "machine": machine,
                              "results": [asdict(r) for r in results],
                              "model": [asdict(m) for m in models],
                              "torch_model": [asdict(t) for t in trainings],
                              "storage": [asdict(s) for s in storage]}, indent=1)
        if args.json == "-":
            print(payload)
        else:
            with open(args.json, "w") as f:
                f.write(payload)
    if args.plot:
        plot(results, args.plot)
    return 0 if all(r.max_rel_deviation is None or math.isfinite(r.max_rel_deviation)
                    for r in results) else 1
