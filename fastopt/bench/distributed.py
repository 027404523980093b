"""``fastopt bench --distributed``: training on several ranks of one host (gloo), fastopt
against torch.optim, and ranks sharing the machine's cores.

Each table comes from one launch of :func:`.ranks.launch` per case, the contenders timed
round by round as in the rest of the benchmark (every rank runs the same calls, and a sample's
time is the slowest rank's):

- :func:`training`, for each optimizer and engine, the model of :mod:`.torch_training` (its
  batch per rank): the optimizer step alone and the whole training step, fastopt.torch against
  ``torch.optim`` (its default for-loop and ``fused=True`` where torch has a fused CPU
  kernel); engines: DDP, FSDP2 (``fully_shard`` per layer and the root), and ZeRO-1
  (fastopt's :class:`~fastopt.torch.distributed.ZeroOptimizer` against torch's
  ``ZeroRedundancyOptimizer`` over DDP, and against fastopt unsharded over DDP: what
  sharding costs or saves); under DDP and FSDP2 also fastopt stepping in backward
  (:func:`~fastopt.torch.step_in_backward`).
- :func:`in_backward` (one process): the same model's training step, fastopt stepping after
  backward against stepping in backward.
- :func:`shared_cores`: every rank steps Adam over one large tensor at the same time, with the
  thread count fastopt chooses by default (each rank its share of the cores) and with a full
  team per rank (``OMP_NUM_THREADS`` = the cores), with and without the contention fallback.

Bytes per rank per step (:func:`collective_bytes`) are those the collectives of a ring (gloo's
and NCCL's algorithms for large messages) send and receive, and those the optimizer step reads
and writes (:data:`.optimizers.ACCESS`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .optimizers import ACCESS, OPTIONS
from .timing import medians, ratio, run_rounds

ENGINES = ("ddp", "fsdp2", "zero")
# Per engine: its collectives per step, and how many times the parameters' bytes each moves
# per rank as a fraction (world - 1) / world (a ring's reduce-scatter or all-gather moves
# that much, an all-reduce twice that).
COLLECTIVES = {
    "ddp": ("all-reduce of the gradients", 2),
    "fsdp2": ("all-gather in forward, again in backward, reduce-scatter of the gradients", 3),
    # On gloo fastopt's ZeroOptimizer reduces by an all-reduce and gathers by a broadcast per
    # rank (gloo's reduce-scatter and all-gather are slower), as torch's ZeroRedundancyOptimizer
    # does after DDP's all-reduce: 3 for both (2 by reduce-scatter and all-gather).
    "zero": ("all-reduce of the gradients (fastopt's in step, torch's in backward under DDP), "
             "then a broadcast per rank of its parameters", 3),
}


def collective_bytes(engine: str, parameter_bytes: int, world_size: int) -> float:
    """Bytes a rank sends (and as many receives) per step in ``engine``'s collectives."""
    return COLLECTIVES[engine][1] * parameter_bytes * (world_size - 1) / world_size


def step_bytes(name: str, elements: int, itemsize: int = 4) -> int:
    """Bytes one step of optimizer ``name`` reads and writes over ``elements``."""
    reads, writes = ACCESS[name]
    return (reads + writes) * itemsize * elements


# ------------------------------------------------------------------------------- timing


def slowest(seconds: float) -> float:
    """The largest of every rank's ``seconds`` (a collective: :func:`.timing.sample`'s
    ``agree`` for calls that hold collectives)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([seconds], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


# ------------------------------------------------------------------------------- training


def _model(engine: str, impl: str, name: str, shape: Any, fused: bool) -> tuple[Any, Any]:
    """A fresh model under ``engine`` and its optimizer: (the module to call, optimizer)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    import fastopt.torch

    from .optimizers import torch_class
    from .torch_training import LR, build_model

    options = {**OPTIONS[name], "lr": LR}
    model = build_model(shape)
    cls = fastopt.torch.OPTIMIZERS[name] if impl.startswith("fastopt") else torch_class(name)
    extra = {"fused": True} if fused else ({} if impl.startswith("fastopt") else {"foreach": False})
    if engine == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        opt = cls(model.parameters(), **options, **extra)
        if impl == "fastopt in backward":
            fastopt.torch.step_in_backward(opt)
        return model, opt
    if engine == "zero" and impl == "fastopt":
        from fastopt.torch.distributed import ZeroOptimizer

        return model, ZeroOptimizer(model.parameters(), cls, **options)
    ddp = DDP(model)
    if engine == "zero" and impl.startswith("torch"):
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return ddp, ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=cls, **options,
                                            **extra)
    opt = cls(ddp.parameters(), **options, **extra)
    if impl == "fastopt in backward":
        fastopt.torch.step_in_backward(opt, ddp=ddp)
    return ddp, opt


def training(engines: list[str], optimizers: list[str], layers: int, width: int, batch: int,
             rounds: int, budget: float) -> list[dict[str, Any]]:
    """Per engine and optimizer: seconds of the step alone and of the training step, per
    contender, and torch's time over fastopt's."""
    import torch
    import torch.distributed as dist
    from torch import nn

    from .optimizers import torch_class
    from .torch_training import ModelShape
    from .torch_training import batch as make_batch

    shape = ModelShape(layers, width, batch)
    x, y = make_batch(shape, seed=1 + dist.get_rank())
    world = dist.get_world_size()
    out = []
    for engine in engines:
        for name in optimizers:
            gc.collect()  # the last case's models (DDP and FSDP2 keep reference cycles)
            # ZeRO-1 is also timed against its own baseline: the same optimizer unsharded over
            # DDP, every rank stepping the whole model.
            impls = ["fastopt", "fastopt unsharded" if engine == "zero" else "fastopt in backward",
                     "torch", "torch fused"]
            fns: dict[tuple[str, str], Callable[[], None]] = {}
            for impl in impls:
                if impl.startswith("torch") and torch_class(name) is None:
                    continue
                model, opt = _model(engine, impl, name, shape, impl == "torch fused")

                def step(model=model, opt=opt, impl=impl) -> None:
                    opt.zero_grad()
                    nn.functional.mse_loss(model(x), y).backward()
                    if impl != "fastopt in backward":
                        opt.step()

                try:
                    step()  # the state is made here, untimed
                except (RuntimeError, NotImplementedError):
                    # torch's, on every rank alike: no fused CPU kernel, or none for DTensors
                    # (fused SGD under FSDP2)
                    if impl.startswith("fastopt"):
                        raise
                    continue
                fns["training", impl] = step
                if impl != "fastopt in backward":
                    fns["step", impl] = opt.step
            times = run_rounds(fns, rounds, budget, agree=slowest)
            seconds = medians(times)
            parameters = shape.parameters
            per_rank = parameters if engine == "ddp" else parameters // world
            out.append({
                "engine": engine, "optimizer": name, "world_size": world,
                "parameters": parameters, "torch_threads": torch.get_num_threads(),
                "seconds": {f"{case}, {impl}": s for (case, impl), s in seconds.items()},
                "speedup": {f"{case}, {impl}": ratio(times, (case, impl), (case, "fastopt"))
                            for (case, impl) in times if impl != "fastopt"},
                "collective_bytes": collective_bytes(engine, 4 * parameters, world),
                "step_bytes": step_bytes(name, per_rank),
            })
    return out


def in_backward(optimizers: list[str], layers: int, width: int, batch: int, rounds: int,
                budget: float) -> list[dict[str, Any]]:
    """One process: the training step with fastopt stepping after backward and in backward."""
    import torch
    from torch import nn

    import fastopt.torch

    from .torch_training import LR, ModelShape, build_model
    from .torch_training import batch as make_batch

    shape = ModelShape(layers, width, batch)
    x, y = make_batch(shape)
    out = []
    for name in optimizers:
        fns = {}
        for mode in ("after backward", "in backward"):
            model = build_model(shape)
            opt = fastopt.torch.OPTIMIZERS[name](model.parameters(), **{**OPTIONS[name], "lr": LR})
            if mode == "in backward":
                fastopt.torch.step_in_backward(opt)

            def step(model=model, opt=opt, mode=mode) -> None:
                if mode == "after backward":
                    opt.zero_grad()
                nn.functional.mse_loss(model(x), y).backward()
                if mode == "after backward":
                    opt.step()

            step()
            fns[mode] = step
        times = run_rounds(fns, rounds, budget)
        out.append({"optimizer": name, "parameters": shape.parameters,
                    "threads": torch.get_num_threads(), "seconds": medians(times),
                    "speedup": ratio(times, "after backward", "in backward")})
    return out


def shared_cores(size: int, steps: int, adaptive: bool = True) -> dict[str, Any]:
    """Every rank steps Adam over ``size`` float32 elements, all at once: the median step of
    the slowest rank, and the threads each used (``adaptive``: the contention fallback)."""
    import torch
    import torch.distributed as dist

    import fastopt
    from fastopt._kernels import kernels

    kernels.set_adaptive(adaptive)
    rng = np.random.default_rng(dist.get_rank())
    p = rng.standard_normal(size).astype(np.float32)
    g = [rng.standard_normal(size).astype(np.float32) * 1e-3]
    opt = fastopt.Adam([p], lr=1e-6)
    for _ in range(5):
        opt.step(g)
    dist.barrier()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        opt.step(g)
        times.append(time.perf_counter() - start)
    t = torch.tensor([float(np.median(times)), float(np.percentile(times, 90))],
                     dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return {"threads": fastopt.get_num_threads(), "team": kernels.get_last_team_size(),
            "median_s": float(t[0]), "p90_s": float(t[1]),
            "policy": fastopt.config()["threads_from"]}
