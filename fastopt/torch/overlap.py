"""Stepping in backward: each parameter updated as soon as its gradient is final.

torch's "optimizer in backward": the step of a parameter runs while backward goes on with the
layers before it, reading the gradient while it is still in cache, and (``free_gradients``)
dropping it at once, so that the model's gradients never all exist together::

    fastopt.torch.step_in_backward(opt)               # one process, or FSDP2's fully_shard
    fastopt.torch.step_in_backward(opt, ddp=model)    # under DistributedDataParallel
    for x, y in batches:
        loss_fn(model(x), y).backward()               # steps every parameter: no opt.step()

When a gradient is final depends on who makes it:

- one process: autograd's post-accumulate-grad hook on the parameter, which runs once its
  gradient has been accumulated for this backward pass;
- FSDP2: the same hook on the sharded (DTensor) parameter, which FSDP2 runs after the
  reduce-scatter that made its sharded gradient;
- DDP: a parameter's own gradient is final only once its bucket is all-reduced, so the steps
  hang on a DDP communication hook instead: each bucket is all-reduced as DDP's default hook
  does (divided by the world size, then summed) and its parameters are stepped, with the
  bucket's averaged gradients, when that completes (on the process group's thread).

Each step is the optimizer's :meth:`~fastopt.torch.Optimizer.step_parameters`: the same
kernel over the same elements as a step after backward, so the results are bitwise equal.
What it does not do: gradient accumulation over several backward passes (every backward pass
steps), closures, and clipping by a global norm (no gradient waits for the others).
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from .optimizer import Optimizer


class StepInBackward:
    """What :func:`step_in_backward` registered; :meth:`remove` stops it."""

    def __init__(self, optimizer: Optimizer, ddp: Any = None, free_gradients: bool = True) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a fastopt.torch optimizer, got "
                            f"{type(optimizer).__name__}")
        if not isinstance(free_gradients, bool):
            raise TypeError(f"free_gradients: expected a bool, got {free_gradients!r}")
        self.optimizer, self.ddp, self.free_gradients = optimizer, ddp, free_gradients
        self.active = True
        self._lock = threading.Lock()  # DDP's callbacks may run on several threads at once
        params = [p for group in optimizer.param_groups for p in group["params"]
                  if p.requires_grad]
        self._handles = []
        if ddp is None:
            self._handles = [p.register_post_accumulate_grad_hook(self._hook) for p in params]
            return
        from torch.nn.parallel import DistributedDataParallel

        if not isinstance(ddp, DistributedDataParallel):
            raise TypeError(f"ddp: expected a DistributedDataParallel model, got "
                            f"{type(ddp).__name__}")
        if ddp.find_unused_parameters:
            raise ValueError("ddp: expected find_unused_parameters=False: a bucket's gradients "
                             "do not say which of its parameters were unused, whom torch.optim "
                             "would not step")
        known = set(params)
        missing = [name for name, p in ddp.module.named_parameters()
                   if p.requires_grad and p not in known]
        if missing:
            raise ValueError(f"ddp: expected every parameter DDP reduces to be the optimizer's, "
                             f"got {missing[:3]}{' ...' if len(missing) > 3 else ''} outside it")
        self._group = ddp.process_group
        ddp.register_comm_hook(None, self._ddp_hook)

    def remove(self) -> None:
        """Stop stepping in backward (under DDP, whose hook stays, buckets are then only
        all-reduced)."""
        self.active = False
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, p: torch.Tensor) -> None:
        self.optimizer.step_parameters([p])
        if self.free_gradients:
            p.grad = None

    # No annotations: DDP refuses a hook whose ``bucket`` is annotated other than GradBucket
    # (and these would be strings).
    def _ddp_hook(self, state, bucket):  # type: ignore[no-untyped-def]
        import torch.distributed as dist

        buffer = bucket.buffer()
        buffer.div_(self._group.size())
        future = dist.all_reduce(buffer, group=self._group, async_op=True).get_future()
        params, grads = bucket.parameters(), bucket.gradients()

        def step(done: torch.futures.Future) -> torch.Tensor:
            done.wait()
            if self.active:
                with self._lock:
                    self.optimizer.step_parameters(params, grads)
            return buffer

        return future.then(step)


def step_in_backward(optimizer: Optimizer, *, ddp: Any = None,
                     free_gradients: bool = True) -> StepInBackward:
    """Step every parameter of ``optimizer`` (a fastopt.torch optimizer) as soon as its
    gradient is final in each backward pass, instead of ``optimizer.step()`` after it.

    ``ddp``: the DistributedDataParallel model when there is one (its buckets' all-reduces then
    start the steps). ``free_gradients``: drop each gradient once stepped (not under DDP, which
    keeps its buckets). Returns a handle whose ``remove()`` stops it.
    """
    return StepInBackward(optimizer, ddp, free_gradients and ddp is None)
