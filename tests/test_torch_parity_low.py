"""fastopt.torch against torch.optim on bfloat16 and float16 parameters, rounded to nearest.

torch steps low-precision parameters with its state in the parameter's dtype, so fastopt runs
with ``state_dtype`` the parameter's and ``rounding="nearest"``. Over 120 steps the largest
difference, relative to the largest magnitude of the parameter (``_distance``), stays within:

- torch's fused kernels (fused=True: Adam, AdamW, Adagrad on the CPU): they compute in float32
  and round each stored value to nearest as fastopt does, but in another order (moments as a
  lerp, the update through a fused multiply-add), so single roundings fall apart now and then:
  bfloat16 within 0.03 (measured up to 0.017, AMSGrad), float16 within 0.002 (measured 0.0008).
- torch's for-loop (foreach=False): every tensor operation rounds its result to the
  parameter's dtype, fastopt rounds once per stored value: bfloat16 within 0.25 (measured up
  to 0.17, NAdam); float16 within 0.05 (measured up to 0.026) for the rules where torch's
  float16 run stays finite: its Adam family, RMSprop and NAdam keep their second moments in
  float16, where ``eps`` = 1e-8 and small squared gradients flush to zero, and go to NaN or
  diverge (fastopt's float16 state does not: it computes the denominator in float32).

torch's fused SGD is left out: on bfloat16 parameters in torch 2.13 it leaves most elements
of a tensor of 64 or more unchanged (only a tail is updated).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import fastopt.torch as ft  # noqa: E402

from conftest import TORCH_PER_CLASS, rule_of  # noqa: E402

SHAPES = [(1023,), (7, 13), (64, 33)]
STEPS = 120
FUSED = {"Adam", "AdamW", "Adagrad"}
NAN_IN_TORCH_FLOAT16 = {"Adam", "AdamW", "RMSprop", "NAdam"}
TOLERANCE = {("fused", torch.bfloat16): 0.03, ("fused", torch.float16): 0.002,
             ("for-loop", torch.bfloat16): 0.25, ("for-loop", torch.float16): 0.05}


def _distance(p: torch.Tensor, q: torch.Tensor) -> float:
    return float((p.float() - q.float()).abs().max() / q.float().abs().max())


def _cases():
    for config in TORCH_PER_CLASS:
        if rule_of(config).gradient != "dense":  # SparseAdam: tests/test_oracles_sparse_adam.py
            continue
        if rule_of(config).matrix is not None:  # Muon: docs/semantics.md, "Muon" (below)
            continue
        for dtype in (torch.bfloat16, torch.float16):
            for impl in ("fused", "for-loop"):
                if impl == "fused" and config.name not in FUSED:
                    continue
                if (impl == "for-loop" and dtype is torch.float16
                        and config.name in NAN_IN_TORCH_FLOAT16):
                    continue
                yield pytest.param(config, dtype, impl,
                                   id=f"{config.id}-{str(dtype)[6:]}-{impl}")


@pytest.mark.parametrize("config, dtype, impl", list(_cases()))
def test_low_precision_parameters_track_torch(config, dtype, impl):
    generator = torch.Generator().manual_seed(1)
    initial = [torch.randn(s, generator=generator).to(dtype) for s in SHAPES]
    mine_params = [torch.nn.Parameter(x.clone()) for x in initial]
    theirs_params = [torch.nn.Parameter(x.clone()) for x in initial]
    mine = config.make(ft, mine_params, rounding="nearest", state_dtype=str(dtype)[6:])
    switch = {"fused": True} if impl == "fused" else {"foreach": False}
    theirs = getattr(torch.optim, config.name)(theirs_params, **config.kwargs, **switch)
    for _ in range(STEPS):
        for p, q in zip(mine_params, theirs_params):
            g = (torch.randn(p.shape, generator=generator) * 0.5).to(dtype)
            p.grad, q.grad = g.clone(), g.clone()
        mine.step()
        theirs.step()
    moved = 0.0
    for p, q, x in zip(mine_params, theirs_params, initial):
        assert p.dtype is dtype
        assert torch.isfinite(q.detach().float()).all()
        distance = _distance(p.detach(), q.detach())
        assert distance <= TOLERANCE[impl, dtype], f"{config.id}: {distance:.3g}"
        moved = max(moved, _distance(q.detach(), x))
    assert moved > 0.05  # the runs went far enough for the comparison to mean something
