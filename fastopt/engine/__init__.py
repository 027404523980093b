"""The flat-buffer core under every front end (fastopt.optim, fastopt.functional, fastopt.torch).

- :class:`Engine`: one rule's groups; a step is one kernel call per run of parameters that
  share a dtype and a step status, over a segment table of their own memory.
- :class:`Slot`: a parameter as the engine sees it (an address, a size, a dtype).
- :mod:`.group`: a group's state buffers, laid out over its members, with step counts and
  scalar state per parameter; :mod:`.runs`: a group's parameters of one dtype, the segment
  tables one kernel call steps over them, and that call (:func:`run_rule`); :mod:`.state`:
  what a saved state entry must hold; :mod:`.memo`: hyper-parameters checked at every step,
  remembered while unchanged.
"""

from .engine import Binder, Engine
from .group import Group
from .memo import Checked, HyperMemo
from .runs import Run, Slot, run_rule
from .state import EMPTY, Loaded, check_entry

__all__ = ["Engine", "Binder", "Group", "Run", "Slot", "Checked", "HyperMemo", "Loaded", "EMPTY",
           "check_entry", "run_rule"]
