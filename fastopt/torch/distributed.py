"""fastopt.torch beyond one process: the optimizer state sharded over ranks (ZeRO-1), and the
step overlapped with backward (under DDP, FSDP2, or in one process).

- :class:`ZeroOptimizer` (:mod:`.zero`): each rank keeps the state of one aligned slice of
  the flat parameter space; a step is one reduce-scatter of the gradients, one step of the
  rank's slice and one all-gather of the parameters, per dtype, laid out by :class:`Layout`
  (:mod:`.flat_shards`).
- :func:`step_in_backward` (:mod:`.overlap`): each parameter stepped as soon as its gradient
  is final.

fastopt.torch's optimizers themselves work under DDP, ZeroRedundancyOptimizer and FSDP2
(DTensor parameters, :mod:`.dtensor`) as torch.optim's do.
"""

from __future__ import annotations

from .flat_shards import Layout
from .overlap import StepInBackward, step_in_backward
from .zero import ZeroOptimizer

__all__ = ["Layout", "StepInBackward", "ZeroOptimizer", "step_in_backward"]
