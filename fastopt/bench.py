"""The benchmark: fastopt's step against the NumPy reference, torch and the memory roofline.

For each optimizer, dtype and size it times, in one run and round by round:

- fastopt's ``opt.step(grads)`` over one flat tensor;
- the same step in ``fastopt.reference`` (plain NumPy);
- torch's fastest CPU path, ``fused=True`` where torch has a fused CPU kernel, else
  ``foreach=True`` (when torch is installed);
- the roofline probe: a kernel compiled with fastopt's, run like a step (same pieces, same
  parallel region), that reads and writes exactly the arrays the step must (``ACCESS``
  below) with one addition per array and element. No step can move its
  bytes faster on this machine, so ``probe time / step time`` is the fraction of the
  roofline reached.

With torch installed it also times a torch CPU training step, the optimizer step alone and the
whole step, with ``fastopt.torch`` against ``torch.optim``'s three CPU paths
(``fastopt.bench_torch``).

Ratios are medians of per-round ratios (the contenders run back to back in each round), so a
machine that slows down for a while slows all of them alike. A correctness column gives the
largest deviation of fastopt from the reference after a few steps, relative to the largest
reference value (0 means bitwise equal).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import fastopt
from fastopt import reference
from fastopt._kernels import kernels

# Arrays a step reads and writes, per element: (reads, writes). Every optimizer reads the
# parameter and the gradient and writes the parameter; the rest is state.
ACCESS = {
    "SGD": (3, 2),        # p, g, momentum_buffer (momentum 0.9)
    "Adagrad": (3, 2),    # p, g, sum
    "RMSprop": (3, 2),    # p, g, square_avg
    "Adam": (4, 3),       # p, g, exp_avg, exp_avg_sq
    "AdamW": (4, 3),      # p, g, exp_avg, exp_avg_sq
    "Adadelta": (4, 3),   # p, g, square_avg, acc_delta
    "Adamax": (4, 3),     # p, g, exp_avg, exp_inf
    "NAdam": (4, 3),      # p, g, exp_avg, exp_avg_sq
}
# Hyper-parameters benchmarked (otherwise the defaults): the configurations people run.
OPTIONS: dict[str, dict[str, Any]] = {"SGD": {"lr": 0.01, "momentum": 0.9}}
DEFAULT_SIZES = [10**3, 10**4, 10**5, 10**6, 10**7, 3 * 10**7]
QUICK_SIZES = [10**3, 10**5]
CHECK_STEPS = 5


@dataclass
class Result:
    optimizer: str
    dtype: str
    size: int
    fastopt_s: float
    numpy_s: float
    torch_s: float | None
    torch_path: str | None
    roofline_s: float
    gelem_per_s: float
    gb_per_s: float
    roofline_fraction: float
    speedup_numpy: float
    speedup_torch: float | None
    max_rel_deviation: float


def _sample(fn: Callable[[], Any], budget: float) -> float:
    """Seconds per call of ``fn``, calling it often enough that one sample lasts ``budget``."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    calls = max(1, int(budget / max(once, 1e-7)))
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def _rounds(contenders: dict[Any, Callable[[], Any]], rounds: int,
            budget: float) -> dict[Any, list[float]]:
    """Seconds per call of each contender, one sample per round. The contenders run back to
    back in every round, so a machine that slows down for a while slows all of them alike."""
    times: dict[Any, list[float]] = {key: [] for key in contenders}
    for _ in range(rounds):
        for key, fn in contenders.items():
            times[key].append(_sample(fn, budget))
    return times


def _ratio(times: dict[Any, list[float]], key: Any, base: Any) -> float:
    """Median over rounds of ``key``'s time / ``base``'s time in the same round."""
    return float(np.median(np.array(times[key]) / np.array(times[base])))


def _torch_step(name: str, param: np.ndarray, grad: np.ndarray) -> tuple[Callable[[], Any], str] | None:
    try:
        import torch
    except ImportError:
        return None
    p = torch.from_numpy(param.copy()).requires_grad_()
    p.grad = torch.from_numpy(grad.copy())
    cls = getattr(torch.optim, name)
    for path in ("fused", "foreach"):
        try:
            opt = cls([p], **OPTIONS.get(name, {}), **{path: True})
            opt.step()
        except (RuntimeError, TypeError, ValueError):
            continue
        return opt.step, path
    return None


def max_rel_deviation(name: str, param: np.ndarray, grads: list[np.ndarray]) -> float:
    """max |fastopt − reference| / max |reference| after ``len(grads)`` steps from ``param``."""
    mine, ref_param = param.copy(), param.copy()
    opt = getattr(fastopt, name)([mine], **OPTIONS.get(name, {}))
    ref = getattr(reference, name)([ref_param], **OPTIONS.get(name, {}))
    for g in grads:
        opt.step([g])
        ref.step([g])
    scale = float(np.max(np.abs(ref_param))) or 1.0
    return float(np.max(np.abs(mine.astype(np.float64) - ref_param))) / scale


def run_case(name: str, dtype: np.dtype, size: int, rounds: int, budget: float) -> Result:
    rng = np.random.default_rng(0)
    param = rng.standard_normal(size, dtype=np.float64).astype(dtype)
    grad = rng.standard_normal(size, dtype=np.float64).astype(dtype)
    check_grads = [grad * (0.5 + k) for k in range(CHECK_STEPS)]
    deviation = max_rel_deviation(name, param, check_grads)
    del check_grads

    mine = param.copy()
    opt = getattr(fastopt, name)([mine], **OPTIONS.get(name, {}))
    grads = [grad]
    ref = getattr(reference, name)([param.copy()], **OPTIONS.get(name, {}))
    torch_step = _torch_step(name, param, grad)
    reads, writes = ACCESS[name]
    probe_arrays = [param.copy() for _ in range(reads)]  # parameter, gradient, states

    contenders: dict[str, Callable[[], Any]] = {
        "fastopt": lambda: opt.step(grads),
        "numpy": lambda: ref.step(grads),
        "roofline": lambda: kernels.probe(probe_arrays),
    }
    if torch_step is not None:
        contenders["torch"] = torch_step[0]
    times = _rounds(contenders, rounds, budget)

    def ratio(key: str) -> float:
        return _ratio(times, key, "fastopt")

    t = {key: float(np.median(v)) for key, v in times.items()}
    nbytes = (reads + writes) * np.dtype(dtype).itemsize * size
    return Result(
        optimizer=name,
        dtype=np.dtype(dtype).name,
        size=size,
        fastopt_s=t["fastopt"],
        numpy_s=t["numpy"],
        torch_s=t.get("torch"),
        torch_path=torch_step[1] if torch_step else None,
        roofline_s=t["roofline"],
        gelem_per_s=size / t["fastopt"] / 1e9,
        gb_per_s=nbytes / t["fastopt"] / 1e9,
        roofline_fraction=ratio("roofline"),
        speedup_numpy=ratio("numpy"),
        speedup_torch=ratio("torch") if torch_step else None,
        max_rel_deviation=deviation,
    )


def model_shapes(total: int = 2_000_000, count: int = 200, seed: int = 0) -> list[tuple[int, ...]]:
    """``count`` tensors of mixed shapes near ``total`` elements: a few large matrices, many
    small vectors, as in a network."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.5, count)
    sizes = np.maximum(1, (weights / weights.sum() * total).astype(int))
    shapes: list[tuple[int, ...]] = []
    for k, size in enumerate(sizes):
        rows = int(np.sqrt(size))
        shapes.append((rows, int(size) // rows) if k % 3 == 0 and size >= 64 else (int(size),))
    return shapes


@dataclass
class ModelResult:
    optimizer: str
    tensors: int
    elements: int
    fastopt_s: float          # opt.step(grads) over the separate tensors
    flat_s: float             # the same parameters packed into one segment
    clipped_s: float          # opt.step(grads, max_norm=1.0): fused global-norm clipping
    torch_s: float | None     # torch's fused step on the same tensors
    flat_ratio: float         # fastopt_s / flat_s
    speedup_torch: float | None


def run_model(name: str, rounds: int, budget: float) -> ModelResult:
    """A model-shaped step: 200 float32 tensors of mixed shapes, ~2·10^6 elements."""
    shapes = model_shapes()
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    options = OPTIONS.get(name, {})
    opt = getattr(fastopt, name)([p.copy() for p in params], **options)
    clipped = getattr(fastopt, name)([p.copy() for p in params], **options)
    flat, _ = fastopt.flatten(params)
    flat_grad, _ = fastopt.flatten(grads)
    flat_opt = getattr(fastopt, name)([flat], **options)
    flat_grads = [flat_grad]
    contenders: dict[str, Callable[[], Any]] = {
        "fastopt": lambda: opt.step(grads),
        "flat": lambda: flat_opt.step(flat_grads),
        "clipped": lambda: clipped.step(grads, max_norm=1.0),
    }
    try:
        import torch

        tensors = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g)
        contenders["torch"] = getattr(torch.optim, name)(tensors, **options, fused=True).step
    except (ImportError, RuntimeError, TypeError, ValueError):
        pass
    times = _rounds(contenders, rounds, budget)
    ratio = {key: _ratio(times, key, "fastopt") for key in times}
    t = {key: float(np.median(v)) for key, v in times.items()}
    return ModelResult(
        optimizer=name, tensors=len(shapes), elements=sum(int(np.prod(s)) for s in shapes),
        fastopt_s=t["fastopt"], flat_s=t["flat"], clipped_s=t["clipped"], torch_s=t.get("torch"),
        flat_ratio=1 / ratio["flat"], speedup_torch=ratio.get("torch"),
    )


def format_model_table(results: list[ModelResult]) -> str:
    lines = [f"model-shaped step: {results[0].tensors} float32 tensors, "
             f"{results[0].elements:,} elements" if results else "",
             "optimizer   200 tensors  one segment  ratio  +clipping   torch fused  vs torch"]
    for r in results:
        torch_cells = (f"{_time(r.torch_s):>11}  {r.speedup_torch:7.1f}x" if r.torch_s
                       else f"{'-':>11}  {'-':>8}")
        lines.append(f"{r.optimizer:9s}  {_time(r.fastopt_s):>11}  {_time(r.flat_s):>11}  "
                     f"{r.flat_ratio:5.2f}  {_time(r.clipped_s):>9}  {torch_cells}")
    return "\n".join(lines)


def _time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_table(results: list[Result]) -> str:
    head = ("optimizer", "dtype", "size", "fastopt", "Gelem/s", "GB/s", "roofline", "vs numpy",
            "vs torch", "torch path", "max rel dev")
    rows = [head]
    for r in results:
        rows.append((
            r.optimizer, r.dtype, f"{r.size:.0e}".replace("e+0", "e"), _time(r.fastopt_s),
            f"{r.gelem_per_s:.2f}", f"{r.gb_per_s:.1f}", f"{100 * r.roofline_fraction:.0f}%",
            f"{r.speedup_numpy:.1f}x",
            f"{r.speedup_torch:.1f}x" if r.speedup_torch is not None else "-",
            r.torch_path or "-", f"{r.max_rel_deviation:.1e}",
        ))
    return _align(rows)


def _align(rows: list[tuple[str, ...]]) -> str:
    """Right-aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(results: list[Result], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("fastopt bench: --plot needs matplotlib (pip install matplotlib)") from None
    names = list(dict.fromkeys(r.optimizer for r in results))
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False,
                             sharey=True)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        rows = [r for r in results if r.optimizer == name]
        for dtype in dict.fromkeys(r.dtype for r in rows):
            sel = [r for r in rows if r.dtype == dtype]
            sizes = [r.size for r in sel]
            ax.plot(sizes, [r.size / r.fastopt_s / 1e9 for r in sel], "o-", label=f"fastopt {dtype}")
            ax.plot(sizes, [r.size / r.numpy_s / 1e9 for r in sel], "s--", label=f"NumPy {dtype}")
            if all(r.torch_s for r in sel):
                ax.plot(sizes, [r.size / r.torch_s / 1e9 for r in sel], "^:", label=f"torch {dtype}")
            ax.plot(sizes, [r.size / r.roofline_s / 1e9 for r in sel], "k-", lw=0.8,
                    label=f"roofline {dtype}")
        ax.set(xscale="log", yscale="log", title=name, xlabel="elements")
    for row in axes:
        row[0].set_ylabel("Gelem/s (higher is better)")
    axes.flat[len(names) - 1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastopt bench", description=__doc__.split("\n")[0])
    parser.add_argument("--optimizers", nargs="+", default=list(ACCESS), choices=list(ACCESS))
    parser.add_argument("--sizes", nargs="+", type=lambda s: int(float(s)), default=None,
                        help="element counts (default 1e3 1e4 1e5 1e6 1e7 3e7)")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None, help="fastopt threads (default: all)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case (median taken)")
    parser.add_argument("--budget", type=float, default=0.02, help="seconds per timing sample")
    parser.add_argument("--quick", action="store_true", help="a smoke run: two small sizes, no model-shaped "
                        "step, a 4-layer torch model")
    parser.add_argument("--no-model", dest="model", action="store_false",
                        help="skip the model-shaped step (200 tensors, ~2e6 parameters)")
    parser.add_argument("--no-torch-model", dest="torch_model", action="store_false",
                        help="skip the torch training step (50 Linear layers, ~1e7 parameters; "
                             "with --quick 4 layers, ~1e5), on when torch is installed")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-': stdout)")
    parser.add_argument("--plot", metavar="PNG", help="also plot Gelem/s against size (matplotlib)")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    rounds = 2 if args.quick else args.rounds
    if args.threads is not None:
        fastopt.set_num_threads(args.threads)
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    cases = [(n, d, s) for n in args.optimizers for d in args.dtypes for s in sizes]
    config = fastopt.config()
    print(f"fastopt {config['fastopt']} bench: {config['threads']} threads, "
          f"openmp={config['openmp']}, numpy {config['numpy']}", file=sys.stderr)
    results = []
    start = time.perf_counter()
    for k, (name, dtype, size) in enumerate(cases, 1):
        print(f"[{k}/{len(cases)}] {name} {dtype} {size:,} ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr, flush=True)
        results.append(run_case(name, np.dtype(dtype), size, rounds, args.budget))
    models = []
    if args.model and not args.quick:
        for name in args.optimizers:
            print(f"model-shaped {name} ({time.perf_counter() - start:.0f} s)", file=sys.stderr,
                  flush=True)
            models.append(run_model(name, rounds, args.budget))
    trainings = []
    if args.torch_model and importlib.util.find_spec("torch") is not None:
        from . import bench_torch

        shape = bench_torch.QUICK if args.quick else bench_torch.FULL
        for name in args.optimizers:
            print(f"torch training {name} ({time.perf_counter() - start:.0f} s)", file=sys.stderr,
                  flush=True)
            trainings += bench_torch.run_torch_model(name, shape, rounds, args.budget)
    print(format_table(results))
    if models:
        print()
        print(format_model_table(models))
    if trainings:
        print()
        print(bench_torch.format_torch_table(trainings))
    if args.json:
        payload = json.dumps({"config": config, "results": [asdict(r) for r in results],
                              "model": [asdict(m) for m in models],
                              "torch_model": [asdict(t) for t in trainings]}, indent=1)
        if args.json == "-":
            print(payload)
        else:
            with open(args.json, "w") as f:
                f.write(payload)
    if args.plot:
        plot(results, args.plot)
    return 0 if all(math.isfinite(r.max_rel_deviation) for r in results) else 1
