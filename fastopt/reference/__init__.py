"""The fastopt update rules in plain NumPy: the executable form of SEMANTICS.md.

This package is the correctness oracle for the compiled kernels and the speed baseline
for the benchmarks. It favours being obviously correct over being fast, and is written
independently of the kernels: it shares the rules' signatures and defaults
(:mod:`fastopt.rules`), never their arithmetic.

Each rule is one function that updates ONE parameter array in place, together with that
parameter's ``state`` (a dict of arrays under torch's key names, created on first use).
Arithmetic happens in the parameter's dtype: hyper-parameters are turned into Python
floats, which NumPy 2 treats as "weak" scalars, so a float32 parameter is updated with
float32 array arithmetic and a float64 one in float64. Scalars that depend only on the
step count and the hyper-parameters (bias corrections, the decayed learning rate) are
computed once per call in Python double precision, as the kernels do.

Operations follow SEMANTICS.md in its order; where the sheet leaves the association of a
product open, it is read left to right (``a · b / c`` is ``(a · b) / c``), which is also
how torch's ``addcmul``/``addcdiv`` evaluate.

The functions live in the package's modules, each listing its own in ``__all__``
(:mod:`.momentum`: SGD, Adagrad, RMSprop, Adadelta; :mod:`.adam`: the Adam family; ...). The classes, one per rule (``SGD``, ``Adam``, ...), have the constructor
signatures of the public API, ``param_groups`` whose hyper-parameters are read at every
step, and ``step(grads)`` taking one list of gradients in parameter order over all groups
(:mod:`.optimizer`); each calls the function its rule names.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..rules import RULES
from .optimizer import ReferenceOptimizer, reference_class
from .state import State, zeros_on_first_use

# Every module of this package but these holds rules' functions, named in its __all__.
_MODULES = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
            if m.name not in ("optimizer", "state", "storage")]
FUNCTIONS = {name: getattr(module, name) for module in _MODULES for name in module.__all__}
globals().update(FUNCTIONS)
CLASSES = {name: reference_class(rule) for name, rule in RULES.items()}
globals().update(CLASSES)

__all__ = [*FUNCTIONS, *CLASSES, "ReferenceOptimizer", "State", "zeros_on_first_use"]
