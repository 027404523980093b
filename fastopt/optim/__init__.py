"""Optimizer classes: torch.optim's interface over NumPy arrays, updated in place.

One class per rule of :mod:`fastopt.rules` (``SGD``, ``Adam``, ...), made by
:func:`~fastopt.optim.optimizer.optimizer_class` over :class:`Optimizer`; ``LBFGS``
(:mod:`fastopt.optim.lbfgs`), which steps all parameters as one vector with a closure; and
``Adafactor`` (:mod:`fastopt.optim.adafactor`), whose factored state is not shaped like its
parameters.
"""

from ..rules import RULES
from .adafactor import Adafactor
from .lbfgs import LBFGS
from .optimizer import Optimizer, optimizer_class

OPTIMIZERS: dict[str, type[Optimizer]] = {name: optimizer_class(rule) for name, rule in RULES.items()}
globals().update(OPTIMIZERS)

__all__ = ["Optimizer", "OPTIMIZERS", "LBFGS", "Adafactor", *OPTIMIZERS]
