"""torch.optim optimizers stepped by fastopt's kernels, over the memory torch keeps them in.

Needs torch (fastopt itself does not); drop-in for ``torch.optim``::

    import fastopt.torch
    opt = fastopt.torch.Adam(model.parameters(), lr=1e-3)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

One class per rule of :mod:`fastopt.rules` (``SGD``, ``Adam``, ...). Where torch.optim has the
rule, the class derives from torch's (so ``isinstance(opt, torch.optim.Adam)`` holds) and takes
its arguments, checks, defaults and state-dict layout; a step is one kernel call per parameter
group and dtype, over a segment table of the parameters' own storage, reading each gradient
where autograd, DDP or the user put it. Parameters stay in the storage torch gave them.

Where torch leaves a choice, fastopt.torch behaves as follows:

- ``state`` is a live mapping: its tensors are views of the optimizer's state buffers, and
  values written into it (``opt.state[p] = {...}``, ``opt.state[p]["exp_avg"] = t``) are
  checked and taken in before the next step or state dict.
- CPU parameters of dtype float32, float64, bfloat16, float16, complex64 or complex128 (a
  complex parameter is stepped as its real view, as torch computes it, with float32/float64
  state), dense in memory in any dimension order; float32 parameters may have bfloat16 or
  float16 gradients (``p.grad_dtype``). bfloat16 needs the ml_dtypes package. The storage
  options of :mod:`fastopt.rules.storage` (``state_dtype``, ``rounding``, ``seed``) are
  keyword arguments of every class; 8-bit state shows in ``state`` and state dicts as uint8
  codes of the parameter's shape and float32 ``<role>_absmax`` block scales.
  DTensor parameters (FSDP2's ``fully_shard``, tensor parallelism's ``distribute_tensor``)
  are stepped through their local shards, where torch keeps them (no gathering, no copies),
  reading their gradients' local shards; their state is DTensors of the parameter's mesh and
  placements, as torch.optim's, so DCP saves and reshards it. Partial parameters, plain
  gradients of DTensor parameters and state of other placements are refused with a message.
  Other devices and dtypes, sparse tensors and sparse gradients are refused with a message;
  so are two parameters over the same memory. ``capturable=True`` and
  ``differentiable=True`` are refused; ``foreach`` and ``fused`` change nothing.
- ``torch.amp.GradScaler``: the fused-optimizer contract (``grad_scale``, ``found_inf``): a
  step the scaler found an infinite or NaN gradient for is skipped, else gradients are
  unscaled as the kernels read them.
- A parameter listed twice in a group: torch warns and steps it twice per step; fastopt warns
  the same and steps it once.
- A parameter whose memory is replaced after construction (``p.data = ...``, a
  parametrization registered) is stepped where it is now; if its dtype or size changed, the
  next step raises.
- The update changes parameters in place without bumping their autograd version counters:
  step between backward passes, not between a forward pass and its backward.
"""

from __future__ import annotations

try:
    import torch
except ImportError as error:  # fastopt itself does not need torch; this module does
    raise ImportError("fastopt.torch needs PyTorch (pip install torch)") from error

from typing import Any

from ..optim.optimizer import mode_methods
from ..rules import RULES, Rule
from .adafactor import Adafactor
from .lbfgs import LBFGS
from .optimizer import Optimizer
from .overlap import StepInBackward, step_in_backward
from .state_dicts import with_storage


# torch.optim's classes that start state from their constructor's value of a hyper-parameter
# rather than the group's (torch 2.13's Adagrad reads self.defaults, at construction and later).
_STARTS_FROM_DEFAULTS = {"Adagrad": ("initial_accumulator_value",)}


def optimizer_class(rule: Rule) -> type[Optimizer]:
    """fastopt.torch's class for ``rule``: over torch.optim's class of that name where torch
    has one (its signature, checks and defaults), else with the rule's own signature."""
    doc = (f"{rule.name}: {rule.summary} ({rule.source}), stepped by fastopt over the "
           "parameters' own memory::\n\n"
           + "\n".join(f"    {line}" for line in rule.formula.splitlines()) + "\n")
    namespace: dict[str, Any] = {"rule": rule, "__doc__": doc, "__module__": __name__,
                                 "__qualname__": rule.name, **mode_methods(rule)}
    torch_class = getattr(torch.optim, rule.torch_name or "", None)
    if torch_class is not None:
        namespace["starts_from_defaults"] = _STARTS_FROM_DEFAULTS.get(rule.torch_name, ())
        cls = type(rule.name, (Optimizer, torch_class), namespace)
        cls.__signature__ = with_storage(torch_class)
        return cls
    signature = rule.signature()

    def __init__(self: Optimizer, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs).arguments
        params = bound.pop("params")
        Optimizer.__init__(self, params, rule.defaults(**bound))

    namespace.update(__init__=__init__, __signature__=signature)
    return type(rule.name, (Optimizer,), namespace)


OPTIMIZERS: dict[str, type[Optimizer]] = {name: optimizer_class(rule) for name, rule in RULES.items()}
globals().update(OPTIMIZERS)

__all__ = ["Optimizer", "OPTIMIZERS", "LBFGS", "Adafactor", "StepInBackward", "step_in_backward", *OPTIMIZERS]
