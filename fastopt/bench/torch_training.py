"""A torch CPU training step with ``fastopt.torch`` against ``torch.optim``'s three CPU paths.

The model is a stack of ``nn.Linear`` layers with biases and leaky ReLUs between them, trained
on one small batch so that the optimizer step is a large share of the step: by default 50 layers
of 448×448 (100 float32 tensors, ~10^7 parameters), batch 16, every optimizer at ``lr=1e-6``
(``LR`` below says why). For each optimizer it times, round by round,

- ``step``: the optimizer step alone (gradients from one backward pass, then ``opt.step()``
  again and again);
- ``training``: a whole training step (``zero_grad``, forward, loss, backward, ``step``);

with ``fastopt.torch.<name>`` and with ``torch.optim.<name>`` on its default for-loop
(``foreach=False``), ``foreach=True`` and ``fused=True`` (torch has a fused CPU kernel for some
optimizers only: ``None`` / '-' for the others). Each contender trains its own copy of the same
model. Ratios are torch time / fastopt time, medians of per-round ratios. Every optimizer of
:mod:`fastopt.torch` is timed; one that ``torch.optim`` lacks (its rule has no ``torch_name``)
has None / '-' for every torch path.

Imported only where torch is installed; fastopt itself never needs torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import fastopt.torch
from fastopt.optim.optimizer import has_modes

from .optimizers import OPTIONS, torch_class
from .timing import measure, medians, ratio
from .trust import spread

# torch.optim's CPU paths, by the name the tables use.
TORCH_PATHS: dict[str, dict[str, bool]] = {
    "default": {"foreach": False},  # torch's CPU default: a Python loop over the tensors
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}
CASES = ("step", "training")
# The learning rate of every contender (the other hyper-parameters are OPTIONS'), small enough
# that no number in the model or the state becomes NaN, infinite or subnormal over thousands of
# timed steps. A step's cost does not depend on lr, but it does on such numbers: at the usual
# rates a step repeated with a fixed gradient walks the weights away and the next forward pass
# overflows (Adam, SGD, RMSprop within a hundred steps), and RMSprop's own training of 50
# layers reaches NaN.
LR = 1e-6
NEGATIVE_SLOPE = 0.01


@dataclass(frozen=True)
class ModelShape:
    layers: int
    width: int
    batch: int

    @property
    def tensors(self) -> int:
        return 2 * self.layers  # a weight and a bias each

    @property
    def parameters(self) -> int:
        return self.layers * (self.width + 1) * self.width


FULL = ModelShape(layers=50, width=448, batch=16)  # 100 tensors, 10,057,600 parameters
QUICK = ModelShape(layers=4, width=160, batch=16)  # 8 tensors, 103,040 parameters


@dataclass
class TorchResult:
    optimizer: str
    case: str                         # "step" or "training" (see the module docstring)
    layers: int
    tensors: int
    parameters: int
    batch: int
    torch_version: str
    torch_threads: int                # torch.get_num_threads(); fastopt's are in the config
    fastopt_s: float
    torch_s: dict[str, float | None]  # per TORCH_PATHS key; None where torch has no such path
    speedup: dict[str, float | None]  # torch time / fastopt time
    spread: float                     # of fastopt's rounds: (max − min) / median
    doubts: str                       # trust.CODES of the optimizer's measurement ('': none)


def build_model(shape: ModelShape, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(shape.layers):
        linear = nn.Linear(shape.width, shape.width)
        # torch's default initialisation shrinks gradients ~6x per layer: 50 layers down they
        # are ~1e-21 and their squares in the optimizers' state are float32 subnormals, whose
        # slow arithmetic would be timed instead of the step. He initialisation keeps every
        # layer's gradients near 0.1. A leaky ReLU rather than a ReLU: a unit dead on the whole
        # batch gives exact zero gradients, and the momentum of those weights decays through
        # subnormals.
        nn.init.kaiming_normal_(linear.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
        layers += [linear, nn.LeakyReLU(NEGATIVE_SLOPE)]
    return nn.Sequential(*layers[:-1])


def batch(shape: ModelShape, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape.batch, shape.width, generator=generator),
            torch.randn(shape.batch, shape.width, generator=generator))


def contender(name: str, impl: str, shape: ModelShape, x: torch.Tensor,
              y: torch.Tensor) -> dict[str, Callable[[], None]] | None:
    """A fresh model and optimizer (``impl``: "fastopt" or a ``TORCH_PATHS`` key) with its
    gradients computed once, as ``{"step": ..., "training": ...}``; None where torch lacks the
    optimizer or refuses the path for it."""
    options = {**OPTIONS[name], "lr": LR}
    if impl == "fastopt":
        cls, path = fastopt.torch.OPTIMIZERS[name], {}
    else:
        cls, path = torch_class(name), TORCH_PATHS[impl]
    if cls is None:
        return None
    model = build_model(shape)
    try:
        opt = cls(model.parameters(), **options, **path)
    except (RuntimeError, TypeError, ValueError):  # torch's, e.g. no fused CPU kernel
        if impl == "fastopt":
            raise  # fastopt refusing its own benchmark options is a bug to show
        return None
    if has_modes(opt):  # schedule-free: steps in train mode
        opt.train()

    def training() -> None:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    # The first step also allocates the optimizer's state, which no timed call should pay.
    training()
    return {"step": opt.step, "training": training}


def run_torch_model(name: str, shape: ModelShape, rounds: int, budget: float) -> list[TorchResult]:
    """Both cases for one optimizer; the cases' contenders run back to back in every round."""
    x, y = batch(shape)
    impls = {impl: contender(name, impl, shape, x, y) for impl in ("fastopt", *TORCH_PATHS)}
    fns = {(case, impl): calls[case] for case in CASES for impl, calls in impls.items() if calls}
    times, _, codes, _ = measure(fns, rounds, budget)
    t = medians(times)
    return [TorchResult(
        optimizer=name, case=case, layers=shape.layers, tensors=shape.tensors,
        parameters=shape.parameters, batch=shape.batch, torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(), fastopt_s=t[case, "fastopt"],
        torch_s={p: t[case, p] if impls[p] else None for p in TORCH_PATHS},
        speedup={p: ratio(times, (case, p), (case, "fastopt")) if impls[p] else None
                 for p in TORCH_PATHS},
        spread=spread(times[case, "fastopt"]), doubts=codes,
    ) for case in CASES]
