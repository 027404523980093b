"""The benchmark, ``fastopt bench``: fastopt's step against the NumPy reference, torch and the
memory roofline.

For each optimizer, dtype and size it times, in one run and round by round
(:mod:`.cases`):

- fastopt's ``opt.step(grads)`` over one flat tensor;
- the same step in ``fastopt.reference`` (plain NumPy);
- torch's fastest CPU path, ``fused=True`` where torch has a fused CPU kernel, else
  ``foreach=True`` (when torch is installed and has the optimizer);
- the roofline probe: a kernel compiled with fastopt's, run like a step (same pieces, same
  parallel region), that reads and writes exactly the arrays the step must
  (:data:`.optimizers.ACCESS`, from each rule's state roles) with one addition per array and
  element, after a read-only pass over the arrays a rule's reduction pass reads (LAMB's and
  LARS's norms). No step can move its bytes faster on this machine, so
  ``probe time / step time`` is the fraction of the roofline reached.

It also times a model-shaped step, 200 tensors of mixed shapes (:mod:`.model_shaped`), and,
with torch installed, a torch CPU training step, the optimizer step alone and the whole step,
with ``fastopt.torch`` against ``torch.optim``'s three CPU paths (:mod:`.torch_training`).

Ratios are medians of per-round ratios (the contenders run back to back in each round:
:mod:`.timing`), so a machine that slows down for a while slows all of them alike. A
correctness column gives the largest deviation of fastopt from the reference after a few
steps, relative to the largest reference value (0 means bitwise equal). Every optimizer, its
hyper-parameters and its torch counterpart come from :mod:`fastopt.rules`
(:mod:`.optimizers`), but for the two rules outside the engine, Adafactor and L-BFGS, whose
cases :mod:`.outside` builds; the tables and the plot are :mod:`.report`'s, the command line
:mod:`.cli`'s.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
