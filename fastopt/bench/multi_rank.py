"""``fastopt bench --distributed``: the cases of :mod:`.distributed`, each launched on its
ranks (:mod:`.ranks`), and their tables."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import fastopt

from .distributed import COLLECTIVES, ENGINES
from .ranks import launch
from .torch_training import FULL, QUICK

SHARED_SIZES = (10**6, 10**7)


def _cell(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} us"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_training(rows: list[dict[str, Any]]) -> str:
    first = rows[0]
    lines = [f"{first['world_size']} ranks (gloo, 127.0.0.1), {first['parameters']:,} float32 "
             f"parameters, {first['torch_threads']} torch thread per rank; "
             "the contender's time / fastopt's in brackets "
             "(zero: fastopt is ZeroOptimizer, unsharded is fastopt over DDP)",
             f"{'engine':<6} {'optimizer':<9} {'case':<8} {'fastopt':>9} {'in backward':>16} "
             f"{'unsharded':>16} {'torch':>17} {'torch fused':>17} {'collectives MB':>14} "
             f"{'step MB':>8}"]
    for row in rows:
        s, r = row["seconds"], row["speedup"]
        for case in ("step", "training"):
            def cell(impl: str) -> str:
                key = f"{case}, {impl}"
                return "-" if key not in s else f"{_cell(s[key])} ({_times(r.get(key))})"
            lines.append(f"{row['engine']:<6} {row['optimizer']:<9} {case:<8} "
                         f"{_cell(s.get(f'{case}, fastopt')):>9} {cell('fastopt in backward'):>16} "
                         f"{cell('fastopt unsharded'):>16} "
                         f"{cell('torch'):>17} {cell('torch fused'):>17} "
                         f"{row['collective_bytes'] / 1e6:>14.1f} {row['step_bytes'] / 1e6:>8.1f}")
    lines.append("collectives per step: " + "; ".join(f"{e}: {c[0]}" for e, c in COLLECTIVES.items()))
    return "\n".join(lines)


def format_in_backward(rows: list[dict[str, Any]]) -> str:
    lines = [f"one process, {rows[0]['parameters']:,} parameters, {rows[0]['threads']} torch "
             "and fastopt threads: the training step, fastopt stepping after backward and in "
             "backward",
             f"{'optimizer':<9} {'after':>10} {'in backward':>12} {'after / in':>10}"]
    for row in rows:
        s = row["seconds"]
        lines.append(f"{row['optimizer']:<9} {_cell(s['after backward']):>10} "
                     f"{_cell(s['in backward']):>12} {_times(row['speedup']):>10}")
    return "\n".join(lines)


def format_shared(rows: list[tuple[str, int, dict[str, Any]]], ranks: int) -> str:
    cores = fastopt.threads.usable_cores()
    lines = [f"{ranks} ranks on {cores} cores, each an Adam step (float32) at the same time: "
             "the slowest rank",
             f"{'threads per rank':<44} {'size':>5} {'team':>4} {'median':>10} {'p90':>10} "
             f"{'vs default':>10}"]
    base = {size: out["median_s"] for label, size, out in rows if label.startswith("default")}
    for label, size, out in rows:
        lines.append(f"{label:<44} {size:>5.0e} {out['team']:>4} {_cell(out['median_s']):>10} "
                     f"{_cell(out['p90_s']):>10} {_times(out['median_s'] / base[size]):>10}")
    return "\n".join(lines)


def run(args: Any) -> int:
    """The distributed benchmark, with the CLI's ``args`` (``ranks``, ``optimizers``,
    ``quick``, ``rounds``, ``budget``, ``json``)."""
    shape = QUICK if args.quick else FULL
    rounds = 2 if args.quick else args.rounds
    ranks = args.ranks
    names = args.optimizers
    start = time.perf_counter()

    def progress(message: str) -> None:
        print(f"{message} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    one_thread = {"OMP_NUM_THREADS": "1"}  # as torchrun sets it: ranks share the cores
    model = {"layers": shape.layers, "width": shape.width, "batch": shape.batch,
             "rounds": rounds, "budget": args.budget}
    progress(f"training on {ranks} ranks: {', '.join(ENGINES)}")
    training = launch(ranks, "training", {"engines": list(ENGINES), "optimizers": names, **model},
                      env=one_thread)
    progress("one process: stepping in backward")
    from .distributed import in_backward

    backward = in_backward(names, **model)
    cores = str(fastopt.threads.usable_cores())
    shared = []
    for size in (SHARED_SIZES[:1] if args.quick else SHARED_SIZES):
        steps = 20 if args.quick else 200
        for label, env, adaptive in (
                ("default (share of the cores)", {}, True),
                (f"full team (OMP_NUM_THREADS={cores})", {"OMP_NUM_THREADS": cores}, True),
                (f"full team, no contention fallback", {"OMP_NUM_THREADS": cores}, False)):
            progress(f"{ranks} ranks sharing the cores: {label}, {size:.0e}")
            shared.append((label, size, launch(ranks, "shared_cores",
                                               {"size": size, "steps": steps,
                                                "adaptive": adaptive}, env=env)))
    print(format_training(training))
    print()
    print(format_in_backward(backward))
    print()
    print(format_shared(shared, ranks))
    if args.json:
        payload = json.dumps({"config": fastopt.config(), "training": training,
                              "in_backward": backward,
                              "shared_cores": [{"threads": label, "size": size, **out}
                                               for label, size, out in shared]}, indent=1)
        if args.json == "-":
            print(payload)
        else:
            with open(args.json, "w") as f:
                f.write(payload)
    return 0
