"""What an update rule is: hyper-parameters, state roles, scalar state, and per-step scalars.

A :class:`Rule` is data. Everything that depends on a rule is derived from it: the NumPy
optimizer classes and their signatures, the functional API, the torch classes, the reference
classes' constructors, the benchmark's byte counts, the docs' tables and the engine's state
handling. Its arithmetic lives in two places only, written independently: its kernel
(``fastopt/_kernels/rules/<kernel>.pxi``) and its reference function (``fastopt.reference``).
"""

from __future__ import annotations

import inspect
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from .. import validation
from . import storage

Hypers = tuple  # a group's checked hyper-parameters: a named tuple per rule (``h.lr``)
Args = dict[str, Any]  # a kernel call's arguments by the names of its C struct's fields


def _always(h: Hypers) -> bool:
    return True


@dataclass(frozen=True)
class Hyper:
    """A hyper-parameter: its name, its default and the constraint every value must meet."""

    name: str
    default: Any
    check: Callable[[str, Any], Any]
    keyword_only: bool = False  # after the ``*`` of the signature, as torch has maximize
    initial_only: bool = False  # sets initial state only (Adagrad's initial_accumulator_value)
    argument: bool = True  # False: in every group, but fixed by the class (AdamW's decoupling)
    optional: bool = False  # a group may lack it, meaning the default (fastopt.torch's groups
    #                         hold the storage options only where they are not the default)


@dataclass(frozen=True)
class Role:
    """An array of optimizer state, one element per parameter element.

    ``used(h)`` says whether steps with hyper-parameters ``h`` read and write it; ``initial``
    is the value it starts from (a number, or a function of the checked hyper-parameters; or
    None: the parameter itself, which the kernel copies in at the role's first step, told by
    ``fresh``: schedule-free's z);
    ``at_construction`` creates it with the optimizer, before any step, as torch's Adagrad
    does; a ``nonnegative`` role (a second moment) is quantised on the unsigned code, of
    twice the resolution, when it is kept in 8 bits. The kernel receives the used roles in
    the rule's order as ``state[0..]``.
    """

    name: str
    used: Callable[[Hypers], bool] = _always
    initial: float | Callable[[Hypers], float] | None = 0.0
    at_construction: bool = False
    when: str = ""  # ``used`` in words, for the docs ("amsgrad", "momentum ≠ 0")
    nonnegative: bool = False  # never below 0 (second moments): 8-bit state's unsigned code

    def start(self, h: Hypers) -> float | None:
        """The initial value, or None where it is the parameter's (set by the kernel)."""
        if self.initial is None:
            return None
        return float(self.initial(h) if callable(self.initial) else self.initial)

    @property
    def optional(self) -> bool:
        """Whether some hyper-parameters leave it unused."""
        return self.used is not _always


@dataclass(frozen=True)
class Scalar:
    """Scalar state a rule keeps per parameter besides its arrays (NAdam's ``mu_product``):
    its initial value, the precision it is kept in, its valid range, and how a step advances
    it (``advance(h, t, value)``, for step ``t``)."""

    name: str
    initial: float
    dtype: type[np.floating]
    low: float
    high: float
    advance: Callable[[Hypers, int, np.floating], np.floating]

    def start(self) -> np.floating:
        return self.dtype(self.initial)

    def check(self, name: str, value: Any) -> np.floating:
        return validation.representable(name, value, self.dtype, self.low, self.high)


@dataclass(frozen=True)
class Modes:
    """Train and eval modes (schedule-free): the parameters hold one point while training and
    another while evaluating, and ``train()``/``eval()`` move them from one to the other, a
    pass over each parameter that has state ``needs`` (one that was never stepped is where it
    was). ``flag`` is the group entry that says a group is in train mode; ``switch(h, train)``
    the kernel's arguments for the pass into train (True) or eval mode, over the parameter and
    its state as a step sees them (with no gradient); ``reference`` the function of
    :mod:`fastopt.reference` that moves a parameter so. Steps are refused in eval mode."""

    flag: str
    needs: str
    switch: Callable[[Hypers, bool], Args]
    reference: str

    def inherit(self, given: Mapping[str, Any], group: dict[str, Any],
                groups: list[dict[str, Any]]) -> None:
        """A group added without a flag of its own (``given``) is in the mode of the groups
        there are: its parameters, never stepped, are at both points."""
        if self.flag not in given and groups:
            group[self.flag] = groups[0][self.flag]


@dataclass(frozen=True)
class MatrixStep:
    """What a rule of matrices (2-D parameters) does to each parameter's whole matrix between
    two element-wise passes: Muon's orthogonalisation, matrix products that belong to a BLAS.

    A step of such a rule (:mod:`fastopt.engine.matrix`): the rule's kernel updates its state
    and writes each parameter's matrix input into a work buffer of the compute dtype, not into
    the parameter; ``transform(h, work)`` rewrites each parameter's work matrix (shaped as the
    parameter), in place, into the update to add; the ``axpy`` kernel adds it,
    ``p ← decay(h) · p + update``, storing the parameter as its storage options say.
    """

    transform: Callable[[Hypers, np.ndarray], None]
    decay: Callable[[Hypers], float]

    def check(self, rule: str, name: str, shape: tuple[int, ...]) -> None:
        """Refuse a parameter that is no matrix, in torch's words (its tests match them)."""
        if len(shape) != 2:
            raise ValueError(f"{name}: {rule} only supports 2D parameters whereas we found a "
                             f"parameter with size: {tuple(shape)}")


@dataclass(frozen=True)
class Rule:
    """One update rule. See the module docstring; the fields:

    - ``hypers``: its hyper-parameters, in signature order (those a variant fixes, as AdamW
      fixes ``decoupled_weight_decay=True``, are in every group but no argument);
    - ``requires``: checks that involve several hyper-parameters (Nesterov needs momentum);
    - ``roles``, ``scalars``: its state; ``counts_steps``: whether its state holds ``step``;
    - ``kernel``: the name of its kernel, and ``kernel_args(h, t, scalars, fresh)`` the
      kernel's arguments for step ``t`` (``fresh``: the roles initialised for this step), all
      but ``grad_scale``, which the engine adds (negated where ``h.maximize``);
    - ``uses_step``: whether those arguments depend on ``t`` (the functional API takes it);
    - ``norm_reads``: for a rule whose step reads norms of whole tensors (its kernel's
      reduction pass: LAMB's and LARS's trust ratios), the arrays that pass reads per element,
      before the update pass reads them again; such a rule has ``per_tensor_norms``: a rank
      holding part of a tensor cannot step it alone;
    - ``reference``: the name of its function in :mod:`fastopt.reference`;
    - ``source``: where the rule is defined (``torch.optim.Adam``); ``torch_name``: its class
      in ``torch.optim``, if torch has it;
    - ``bench``: hyper-parameters the benchmark runs it with (otherwise the defaults);
    - ``progress(h)``: for a rule that keeps its step count in the parameter group rather than
      per parameter (schedule-free, as the schedulefree package does), the group entries a
      step advances, from the group's values before it; those entries are hyper-parameters
      that are no arguments (``Hyper(argument=False)``), and the front ends write the new
      values into the group after every step, whether or not its parameters had gradients;
    - ``modes``: train and eval modes (:class:`Modes`), for rules that have them;
    - ``gradient``: what a step takes, ``"dense"`` gradients shaped like their parameters, or
      ``"rows"``: row-sparse ones, the indices of the rows they touch and a block of those
      rows (SparseAdam; :mod:`fastopt.rows`), the only rows the step updates;
    - ``int_step``: torch keeps the rule's ``step`` as a Python int (SparseAdam), not a
      tensor, and fastopt.torch shows it so.
    - ``matrix``: for a rule of matrices, what it does to each whole matrix between its kernel
      and the update (:class:`MatrixStep`); None for an element-wise rule.
    """

    name: str
    summary: str
    formula: str
    hypers: tuple[Hyper, ...]
    roles: tuple[Role, ...]
    kernel: str
    kernel_args: Callable[[Hypers, int, Mapping[str, np.floating], frozenset[str]], Args]
    reference: str
    source: str
    torch_name: str | None = None
    scalars: tuple[Scalar, ...] = ()
    counts_steps: bool = True
    uses_step: bool = True
    norm_reads: int = 0
    requires: Callable[[Hypers], None] | None = None
    bench: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    progress: Callable[[Hypers], dict[str, Any]] | None = None
    modes: Modes | None = None
    gradient: str = "dense"
    int_step: bool = False
    matrix: MatrixStep | None = None

    def __post_init__(self) -> None:
        if not any(h.name == "state_dtype" for h in self.hypers):  # every rule takes them
            object.__setattr__(self, "hypers", (*self.hypers, *storage.hypers()))
        names = [h.name for h in self.hypers]
        object.__setattr__(self, "_type", namedtuple(f"{self.name}Hypers", names))
        object.__setattr__(self, "_hyper", {h.name: h for h in self.hypers})
        object.__setattr__(self, "_role_index", {r.name: i for i, r in enumerate(self.roles)})

    # ------------------------------------------------------------------ hyper-parameters
    @property
    def per_tensor_norms(self) -> bool:
        return self.norm_reads > 0

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles)

    @property
    def arguments(self) -> tuple[Hyper, ...]:
        """The hyper-parameters a constructor takes, in signature order."""
        return tuple(sorted((h for h in self.hypers if h.argument), key=lambda h: h.keyword_only))

    def defaults(self, **values: Any) -> dict[str, Any]:
        """Every hyper-parameter with its default, overridden by ``values``: the keys of a
        parameter group."""
        unknown = set(values) - {h.name for h in self.arguments}
        if unknown:
            raise TypeError(f"{self.name}: unexpected arguments {sorted(unknown)}")
        return {h.name: values.get(h.name, h.default) for h in self.hypers}

    def signature(self, first: str = "params") -> inspect.Signature:
        """``(params, <hyper-parameters with defaults>, *, <keyword-only ones>)``."""
        kinds = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
        return inspect.Signature(
            [inspect.Parameter(first, kinds[0])]
            + [inspect.Parameter(h.name, kinds[h.keyword_only], default=h.default)
               for h in self.arguments])

    def check_group(self, group: Mapping[str, Any]) -> Hypers:
        """The group's hyper-parameters checked, as a named tuple (``h.lr``, ``h.betas``)."""
        h = self._type(*[hyper.check(hyper.name, group.get(hyper.name, hyper.default)
                                     if hyper.optional else group[hyper.name])
                         for hyper in self.hypers])
        if self.requires is not None:
            self.requires(h)
        return h

    def recheck(self, h: Hypers, group: Mapping[str, Any], names: list[str]) -> Hypers:
        """``h`` (checked) with the hyper-parameters ``names`` checked again from ``group``,
        the others as they were: what a step needs where a schedule changed ``lr`` (or a
        rule its ``progress``) since the last."""
        hypers = self._hyper
        h = h._replace(**{name: hypers[name].check(name, group.get(name, hypers[name].default)
                                                   if hypers[name].optional else group[name])
                          for name in names})
        if self.requires is not None:
            self.requires(h)
        return h

    def canonical(self, group: dict[str, Any], h: Hypers) -> None:
        """Store checked pairs in their canonical form: ``betas`` as a tuple of floats, as torch
        stores it, whatever sequence was given."""
        for hyper in self.hypers:
            if isinstance(hyper.check, validation.Pair):
                group[hyper.name] = getattr(h, hyper.name)

    @property
    def row_major(self) -> bool:
        """Whether its kernel finds elements by their place in their tensor's row-major (C)
        order: rows of a row-sparse gradient. Such a rule steps a tensor laid out otherwise
        through a C-ordered copy (fastopt.torch)."""
        return self.gradient == "rows"

    # ------------------------------------------------------------------ state
    def roles_used(self, h: Hypers) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles if r.used(h))

    def roles_at_construction(self, h: Hypers) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles if r.at_construction and r.used(h))

    def role_mask(self, roles: tuple[str, ...]) -> int:
        """The kernel's bit mask of the state slots ``roles`` occupy."""
        return sum(1 << self.slot(name) for name in roles)

    def role(self, name: str) -> Role:
        return self.roles[self._role_index[name]]

    def slot(self, name: str) -> int:
        """The kernel's state slot of role ``name``: its place in :attr:`roles`."""
        return self._role_index[name]

    def initial_scalars(self) -> dict[str, np.floating]:
        return {s.name: s.start() for s in self.scalars}

    def advance(self, h: Hypers, t: int, scalars: Mapping[str, np.floating]) -> dict[str, np.floating]:
        """The scalar state after step ``t`` from its value before it."""
        advanced = {}
        for s in self.scalars:
            advanced[s.name] = s.advance(h, t, scalars[s.name])
        return advanced

    def args(self, h: Hypers, t: int, scalars: Mapping[str, np.floating], fresh: frozenset[str],
             grad_scale: float = 1.0) -> Args:
        """The kernel's arguments for step ``t``, reading ``grad_scale · g`` as the gradient
        (−grad_scale to maximize)."""
        args = self.kernel_args(h, t, scalars, fresh)
        args["grad_scale"] = self.sign(h) * grad_scale
        return args

    def sign(self, h: Hypers) -> float:
        """The gradient's sign in the kernel: −1 to maximize."""
        return -1.0 if getattr(h, "maximize", False) else 1.0

    def access(self, h: Hypers) -> tuple[int, int]:
        """Arrays a step's update pass reads and writes per element: the parameter, the
        gradient (read only) and each state role in use (a reduction pass reads
        ``norm_reads`` more)."""
        roles = len(self.roles_used(h))
        return 2 + roles, 1 + roles

    def variant(self, name: str, *, summary: str, source: str, torch_name: str | None,
                defaults: Mapping[str, Any] = MappingProxyType({}),
                fixed: Mapping[str, Any] = MappingProxyType({})) -> Rule:
        """The same rule under another name, with other defaults and some hyper-parameters
        fixed (AdamW is Adam with decoupled weight decay and λ = 1e-2)."""
        hypers = tuple(
            replace(h, default=fixed[h.name], argument=False) if h.name in fixed
            else replace(h, default=defaults.get(h.name, h.default)) for h in self.hypers)
        return replace(self, name=name, summary=summary, source=source, torch_name=torch_name,
                       hypers=hypers)


# ---------------------------------------------------------------------- shared pieces
LR = validation.Real()
NON_NEGATIVE = validation.Real()
UNIT = validation.Real(high=1.0)  # [0, 1]
BETAS = validation.Pair(validation.Real(high=1.0, high_open=True))  # each in [0, 1)
FLAG = validation.Flag()


def maximize() -> Hyper:
    return Hyper("maximize", False, FLAG, keyword_only=True)


def torch_optim(kernel: str, torch_name: str) -> dict[str, str]:
    """The fields of a rule that ``torch.optim.<torch_name>`` defines, whose kernel and
    reference function are both named ``kernel``: ``Rule(..., **torch_optim("sgd", "SGD"))``."""
    return {"kernel": kernel, "reference": kernel, "source": f"torch.optim.{torch_name}",
            "torch_name": torch_name}


def weight_decay_terms(lr: float, weight_decay: float, decoupled: bool) -> tuple[float, float]:
    """The kernels' L2 coefficient and factor on p: (λ, 1), or (0, 1 − γ λ) when decoupled."""
    return (0.0, 1.0 - lr * weight_decay) if decoupled else (weight_decay, 1.0)
