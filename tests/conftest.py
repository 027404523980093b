"""Shared fixtures and helpers for the fastopt test suite.

What lives here:
- ``CONFIGS``: every option of every optimizer that the suite exercises (one row per
  configuration, with a readable id), used by the reference, torch, state-dict, threading and
  functional tests alike;
- ``Model``: deterministic parameter sets (several shapes: 0-d, one element, size 0, odd sizes,
  one tensor above 300_000 elements so the parallel path is crossed) in float32/float64, laid
  out as one group or as several groups with their own hyper-parameters;
- ``GradStream``: deterministic random gradients per step (fresh arrays every call);
- comparison helpers (bitwise state-dict equality, scale-aware closeness).
- ``checkpoints``, ``at_2``: fixtures of the modules that run over several ranks.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import numpy as np
import pytest

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]


# --------------------------------------------------------------------------------------------
# Optimizer configurations
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config:
    id: str
    name: str  # class name in fastopt / fastopt.reference / torch.optim
    kwargs: dict

    def __repr__(self) -> str:  # shows up in assertion messages
        return f"{self.name}({self.kwargs})"

    def make(self, module, params, **overrides):
        """The optimizer of ``module`` (fastopt, fastopt.reference, fastopt.torch, ...) ready
        to train: a rule with train and eval modes (schedule-free) is put in train mode."""
        kwargs = dict(self.kwargs)
        kwargs.update(overrides)
        return training(getattr(module, self.name)(params, **kwargs))


def _c(id_, name, **kwargs):
    return Config(id_, name, kwargs)


# Learning rates are chosen so that 100+ steps move the parameters a lot (the trajectories are
# not trivially close to the initial values) without diverging.
CONFIGS = [
    # SGD: momentum 0 / 0.9, dampening, nesterov, weight_decay, maximize
    _c("sgd", "SGD", lr=0.05),
    _c("sgd-wd", "SGD", lr=0.05, weight_decay=0.01),
    _c("sgd-maximize", "SGD", lr=0.05, maximize=True),
    _c("sgd-momentum", "SGD", lr=0.02, momentum=0.9),
    _c("sgd-momentum-dampening", "SGD", lr=0.02, momentum=0.9, dampening=0.3),
    _c("sgd-momentum-wd-maximize", "SGD", lr=0.02, momentum=0.9, weight_decay=0.02, maximize=True),
    _c("sgd-nesterov", "SGD", lr=0.02, momentum=0.9, nesterov=True),
    _c("sgd-nesterov-wd-maximize", "SGD", lr=0.02, momentum=0.5, nesterov=True,
       weight_decay=0.01, maximize=True),
    # Adagrad: lr_decay, initial_accumulator_value, weight_decay, eps, maximize
    _c("adagrad", "Adagrad", lr=0.05),
    _c("adagrad-lr_decay", "Adagrad", lr=0.05, lr_decay=0.01),
    _c("adagrad-init_acc", "Adagrad", lr=0.05, initial_accumulator_value=0.1),
    _c("adagrad-wd", "Adagrad", lr=0.05, weight_decay=0.01),
    _c("adagrad-eps", "Adagrad", lr=0.05, eps=1e-3),
    _c("adagrad-maximize", "Adagrad", lr=0.05, maximize=True),
    _c("adagrad-all", "Adagrad", lr=0.1, lr_decay=0.05, initial_accumulator_value=0.5,
       weight_decay=0.02, eps=1e-6, maximize=True),
    # RMSprop: alpha, centered, momentum, weight_decay, maximize
    _c("rmsprop", "RMSprop", lr=0.01),
    _c("rmsprop-alpha", "RMSprop", lr=0.01, alpha=0.9),
    _c("rmsprop-centered", "RMSprop", lr=0.01, centered=True),
    _c("rmsprop-momentum", "RMSprop", lr=0.005, momentum=0.9),
    _c("rmsprop-centered-momentum", "RMSprop", lr=0.005, centered=True, momentum=0.5),
    _c("rmsprop-wd", "RMSprop", lr=0.01, weight_decay=0.01),
    _c("rmsprop-maximize", "RMSprop", lr=0.01, maximize=True),
    _c("rmsprop-all", "RMSprop", lr=0.005, alpha=0.95, eps=1e-6, weight_decay=0.02, momentum=0.7,
       centered=True, maximize=True),
    # Adam: amsgrad, weight_decay, maximize, decoupled_weight_decay (+ betas/eps)
    _c("adam", "Adam", lr=0.01),
    _c("adam-betas-eps", "Adam", lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    _c("adam-amsgrad", "Adam", lr=0.01, amsgrad=True),
    _c("adam-wd", "Adam", lr=0.01, weight_decay=0.05),
    _c("adam-maximize", "Adam", lr=0.01, maximize=True),
    _c("adam-decoupled", "Adam", lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    _c("adam-all", "Adam", lr=0.01, betas=(0.85, 0.995), weight_decay=0.05, amsgrad=True,
       maximize=True),
    _c("adam-decoupled-amsgrad-maximize", "Adam", lr=0.01, weight_decay=0.1, amsgrad=True,
       maximize=True, decoupled_weight_decay=True),
    # AdamW: amsgrad, weight_decay (+ maximize)
    _c("adamw", "AdamW", lr=0.01),
    _c("adamw-wd", "AdamW", lr=0.01, weight_decay=0.2),
    _c("adamw-amsgrad", "AdamW", lr=0.01, amsgrad=True),
    _c("adamw-amsgrad-wd-maximize", "AdamW", lr=0.01, weight_decay=0.1, amsgrad=True,
       maximize=True),
    # Adadelta: rho, eps, weight_decay, maximize (lr = 1 by default scales nothing: "all" sets it)
    _c("adadelta", "Adadelta"),
    _c("adadelta-rho-eps", "Adadelta", rho=0.8, eps=1e-4),
    _c("adadelta-all", "Adadelta", lr=0.5, rho=0.95, eps=1e-5, weight_decay=0.05, maximize=True),
    # Adamax: betas, eps, weight_decay, maximize
    _c("adamax", "Adamax", lr=0.01),
    _c("adamax-betas-eps", "Adamax", lr=0.01, betas=(0.8, 0.99), eps=1e-3),
    _c("adamax-all", "Adamax", lr=0.01, betas=(0.85, 0.995), eps=1e-6, weight_decay=0.05,
       maximize=True),
    # NAdam: betas, eps, momentum_decay, weight_decay (L2 or decoupled), maximize
    _c("nadam", "NAdam", lr=0.01),
    _c("nadam-betas-eps-momentum_decay", "NAdam", lr=0.01, betas=(0.8, 0.99), eps=1e-6,
       momentum_decay=0.01),
    _c("nadam-wd", "NAdam", lr=0.01, weight_decay=0.05),
    _c("nadam-all", "NAdam", lr=0.01, betas=(0.85, 0.995), eps=1e-6, weight_decay=0.1,
       momentum_decay=0.05, decoupled_weight_decay=True, maximize=True),
    _c("radam", "RAdam", lr=0.01, betas=(0.85, 0.995), eps=1e-6, weight_decay=0.05, maximize=True),
    # LAMB: decoupled (fixed) or L2 decay, rectify (degenerated_to_sgd, n_sma_threshold),
    # grad_averaging, adam, betas/eps, maximize
    _c("lamb", "LAMB", lr=0.01, weight_decay=0.1),
    _c("lamb-l2-betas-eps", "LAMB", lr=0.01, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.05,
       weight_decouple=False),
    _c("lamb-rectify-fixed_decay", "LAMB", lr=0.01, rectify=True, weight_decay=0.01,
       fixed_decay=True),
    _c("lamb-rectify-sgd-threshold", "LAMB", lr=0.01, rectify=True, degenerated_to_sgd=True,
       n_sma_threshold=6, weight_decay=0.05, weight_decouple=False, grad_averaging=False),
    _c("lamb-adam", "LAMB", lr=0.01, adam=True, eps=1e-8),
    _c("lamb-all", "LAMB", lr=0.01, betas=(0.85, 0.995), weight_decay=0.05, weight_decouple=False,
       grad_averaging=False, eps=1e-5, maximize=True),
    # LARS: momentum (0, dampening, nesterov), weight_decay, trust_coefficient, adapt, maximize
    _c("lars", "LARS", lr=0.1, trust_coefficient=0.05),
    _c("lars-no-momentum", "LARS", lr=0.1, momentum=0.0, trust_coefficient=0.05),
    _c("lars-dampening", "LARS", lr=0.1, momentum=0.5, dampening=0.3, trust_coefficient=0.05),
    _c("lars-unadapted", "LARS", lr=0.01, weight_decay=0.01, adapt=False),
    _c("lars-all", "LARS", lr=0.1, weight_decay=0.05, momentum=0.8, nesterov=True,
       trust_coefficient=0.02, maximize=True),
    # Rprop: lr (the initial step size), etas, step_sizes, maximize
    _c("rprop", "Rprop", lr=0.01),
    _c("rprop-all", "Rprop", lr=0.02, etas=(0.4, 1.3), step_sizes=(1e-4, 0.1), maximize=True),
    # ASGD: lambd, alpha, t0 (averaging from step 20 on), weight_decay, maximize
    _c("asgd", "ASGD", lr=0.01),
    _c("asgd-all", "ASGD", lr=0.02, lambd=0.01, alpha=0.6, t0=20, weight_decay=0.01,
       maximize=True),
    # Lion: betas, weight_decay, maximize
    _c("lion", "Lion", lr=0.001),
    _c("lion-all", "Lion", lr=0.001, betas=(0.8, 0.95), weight_decay=0.1, maximize=True),
    # ADOPT: betas, clip_exponent (None: no clipping), weight decay (L2, decoupled, fixed), eps
    _c("adopt", "ADOPT", lr=0.01),
    _c("adopt-l2-noclip", "ADOPT", lr=0.01, betas=(0.8, 0.99), clip_exponent=None,
       weight_decay=0.05, eps=1e-4, maximize=True),
    _c("adopt-decoupled", "ADOPT", lr=0.01, clip_exponent=0.3, weight_decay=0.1,
       weight_decouple=True),
    # AdEMAMix: betas, alpha, t_alpha_beta3 (warm-up), weight decay (L2, decoupled, fixed), eps
    _c("ademamix", "AdEMAMix", lr=0.01),
    _c("ademamix-l2", "AdEMAMix", lr=0.01, betas=(0.8, 0.99, 0.999), weight_decay=0.05,
       eps=1e-6),
    _c("ademamix-all", "AdEMAMix", lr=0.01, alpha=3.0, t_alpha_beta3=50, weight_decay=0.1,
       weight_decouple=True, fixed_decay=True, maximize=True),
    # Schedule-free (schedulefree's rules): every option at once; the oracle's own tests
    # (test_oracles_schedule_free.py) take them one by one.
    _c("adamw-schedule-free", "AdamWScheduleFree", lr=0.01, betas=(0.8, 0.99), eps=1e-6,
       weight_decay=0.02, warmup_steps=10, r=0.5, weight_lr_power=1.0, maximize=True),
    _c("sgd-schedule-free", "SGDScheduleFree", lr=0.1, momentum=0.8, weight_decay=0.02,
       warmup_steps=10, r=0.5, weight_lr_power=1.0, maximize=True),
    # SparseAdam: row-sparse gradients (conftest.row_sparse); betas, eps, maximize
    _c("sparse-adam", "SparseAdam", lr=0.01, betas=(0.8, 0.99), eps=1e-6, maximize=True),
    # Muon: Nesterov (default) or heavy ball, momentum, weight decay, its Newton–Schulz
    # options, the lr adjustment (2-D parameters only: the suites' shapes go through
    # shapes_for; its matrix products make it the costliest rule, hence two configurations)
    _c("muon", "Muon", lr=0.02),
    _c("muon-all", "Muon", lr=0.01, weight_decay=0.05, momentum=0.8, nesterov=False,
       ns_coefficients=(3.4, -4.7, 2.0), eps=1e-4, ns_steps=6, adjust_lr_fn="match_rms_adamw"),
]
CONFIG_IDS = [c.id for c in CONFIGS]
CONFIG_BY_ID = {c.id: c for c in CONFIGS}

def rule_of(config: Config):
    from fastopt.rules import RULES

    return RULES[config.name]


def training(opt):
    """``opt``, put in train mode if its rule has modes (schedule-free steps only there)."""
    from fastopt.optim.optimizer import has_modes

    if has_modes(opt):
        opt.train()
    return opt


# One representative "everything on" configuration per optimizer class, for tests that need
# each class once (threads, state-dict round trips with every kind of state); a class without
# a hand-picked one is represented by its last configuration in CONFIGS.
PER_CLASS = [
    CONFIG_BY_ID[i]
    for i in ("sgd-momentum-wd-maximize", "sgd-nesterov", "sgd", "adagrad-all", "rmsprop-all",
              "rmsprop", "adam-all", "adam-decoupled", "adamw-amsgrad-wd-maximize", "adamw",
              "adadelta-all", "adamax-all", "nadam-all")
]
PER_CLASS += list({c.name: c for c in CONFIGS if c.name not in {p.name for p in PER_CLASS}}.values())
PER_CLASS_IDS = [c.id for c in PER_CLASS]
# Those whose steps take dense gradients (opt.grads, fastopt.flatten of the gradients); a
# rule that takes row-sparse ones (SparseAdam) has tests of its own for those paths.
DENSE_PER_CLASS = [c for c in PER_CLASS if rule_of(c).gradient == "dense"]
DENSE_PER_CLASS_IDS = [c.id for c in DENSE_PER_CLASS]

# The configurations of rules torch.optim has: those the torch comparisons run (a rule torch
# lacks is compared with the package its rule names, in a test of its own).
TORCH_CONFIGS = [c for c in CONFIGS if rule_of(c).torch_name]
TORCH_CONFIG_IDS = [c.id for c in TORCH_CONFIGS]
TORCH_PER_CLASS = [c for c in PER_CLASS if rule_of(c).torch_name]
TORCH_PER_CLASS_IDS = [c.id for c in TORCH_PER_CLASS]


def expected_state_keys(config: Config) -> set:
    """The per-parameter state keys the rule documents (after at least one step): ``step``
    for rules that count steps, their scalar state, and the roles these options use."""
    rule = rule_of(config)
    h = rule.check_group(rule.defaults(**{k: v for k, v in config.kwargs.items()}))
    return ({"step"} if rule.counts_steps else set()) | {s.name for s in rule.scalars} | set(
        rule.roles_used(h))


def shapes_for(config: Config | str | None, shapes):
    """``shapes`` as a configuration's rule (or the rule of a class name) takes them:
    unchanged, or for a rule of matrices (Muon) each made 2-D with as many elements, wide and
    tall in turn: its smallest factor up to 16 as one side, or one row (column) above 4096
    elements, so that the matrix products stay cheap while the element-wise pass still
    crosses the parallel threshold."""
    from fastopt.rules import RULES

    rule = None if config is None else RULES.get(config) if isinstance(config, str) else (
        rule_of(config))
    if rule is None or rule.matrix is None:
        return list(shapes)
    matrices = []
    for i, shape in enumerate(shapes):
        n = math.prod(shape)
        side = next((k for k in range(2, 17) if n % k == 0), 1) if n <= 4096 else 1
        matrices.append((side, n // side) if i % 2 == 0 else (n // side, side))
    return matrices


# Per-group scalar state: per parameter in state dicts (like "step"), but no array (NAdam's
# mu_product, ASGD's eta and mu).
def _scalar_state_keys() -> set:
    from fastopt.rules import RULES

    return {s.name for rule in RULES.values() for s in rule.scalars}


SCALAR_STATE_KEYS = _scalar_state_keys()


# --------------------------------------------------------------------------------------------
# Storage modes
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mode:
    """A storage mode: the dtypes of parameters and gradients, and the storage options."""

    id: str
    param: str
    grad: str
    options: dict

    def dtypes(self):
        from fastopt.rules.storage import dtype

        return dtype(self.param), dtype(self.grad)


# Every parameter dtype with each rounding it takes, low-precision gradients into float32
# parameters, and low-precision state beside parameters of either kind (the float32 and
# bfloat16 ones are stepped by direct loops where a rule has one, the rest staged).
STORAGE_MODES = [
    Mode("bf16", "bfloat16", "bfloat16", {}),  # stochastic rounding, the default
    Mode("bf16-nearest", "bfloat16", "bfloat16", {"rounding": "nearest"}),
    Mode("bf16-kahan", "bfloat16", "bfloat16", {"rounding": "kahan"}),
    Mode("bf16-bf16state", "bfloat16", "bfloat16", {"state_dtype": "bfloat16", "seed": 7}),
    Mode("bf16-nearest-bf16state", "bfloat16", "bfloat16",
         {"rounding": "nearest", "state_dtype": "bfloat16"}),
    Mode("f16", "float16", "float16", {}),  # compensated, the default
    Mode("f16-nearest-f16state", "float16", "float16",
         {"rounding": "nearest", "state_dtype": "float16"}),
    Mode("f32-bf16grads-bf16state", "float32", "bfloat16", {"state_dtype": "bfloat16"}),
    Mode("f32-f16grads-f16state", "float32", "float16", {"state_dtype": "float16"}),
    Mode("f32-bf16state", "float32", "float32", {"state_dtype": "bfloat16"}),
    Mode("f32-bf16grads", "float32", "bfloat16", {}),
    Mode("f32-8bit", "float32", "float32", {"state_dtype": "8bit"}),
    Mode("bf16-8bit", "bfloat16", "bfloat16", {"state_dtype": "8bit"}),
    Mode("bf16-kahan-8bit", "bfloat16", "bfloat16", {"state_dtype": "8bit", "rounding": "kahan"}),
]
STORAGE_MODE_IDS = [m.id for m in STORAGE_MODES]


# --------------------------------------------------------------------------------------------
# Parameters and gradients
# --------------------------------------------------------------------------------------------

LARGE = (613, 517)  # 316_921 elements: above the 300_000 that the parallel path needs
assert math.prod(LARGE) > 300_000

# 0-d, one element, size 0, odd sizes (1023, 91, 105), a 2-D and a 3-D tensor, the large one.
MULTI_SHAPES = [(), (1,), (1023,), (0,), (7, 13), (3, 5, 7), LARGE, (2, 0, 3), (64,)]
FLAT_SHAPES = [(40_961,)]

# Layouts: a list of groups, each (shapes, per-group overrides). An empty overrides dict on a
# single group means "pass a plain list of arrays".
LAYOUTS = {
    "multi": [(MULTI_SHAPES, {})],
    "flat": [(FLAT_SHAPES, {})],
    "two_groups": [
        ([(1,), (7, 13), (20_011,)], {"lr": 0.003, "weight_decay": 0.03}),
        ([(), (1023,), (3, 5, 7)], {}),
    ],
}
LAYOUT_IDS = list(LAYOUTS)


class Model:
    """A deterministic set of initial parameters laid out in groups.

    ``fresh()`` returns (params_argument, flat_list_of_arrays) built from new copies of the
    initial values every call, so two optimizers never share a parameter.
    """

    def __init__(self, groups, dtype, seed: int = 0, config: Config | None = None):
        self.dtype = np.dtype(dtype)
        self.groups = [(shapes_for(config, shapes), dict(over)) for shapes, over in groups]
        rng = np.random.default_rng([seed, 12345])
        self.initial = []
        for shapes, _ in self.groups:
            arrays = []
            for shape in shapes:
                a = rng.standard_normal(shape).astype(self.dtype)
                arrays.append(a)
            self.initial.append(arrays)

    @property
    def shapes(self):
        return [a.shape for arrays in self.initial for a in arrays]

    @property
    def sizes(self):
        return [a.size for arrays in self.initial for a in arrays]

    def fresh(self, convert=None):
        convert = convert or (lambda a: a)
        flat, arg = [], []
        for (shapes, over), arrays in zip(self.groups, self.initial):
            copies = [np.array(a, copy=True, order="C") for a in arrays]
            flat.extend(copies)
            arg.append({"params": [convert(c) for c in copies], **over})
        if len(arg) == 1 and not arg[0].keys() - {"params"}:
            arg = arg[0]["params"]
        return arg, flat


def make_model(layout: str, dtype, seed: int = 0, config: Config | None = None) -> Model:
    """The layout's model, its shapes as ``config``'s rule takes them (shapes_for)."""
    return Model(LAYOUTS[layout], dtype, seed, config)


def make_params(shapes, dtype, seed: int = 0, config: Config | None = None):
    """A flat list of fresh parameter arrays of the given shapes (deterministic values)."""
    return Model([(shapes, {})], dtype, seed, config).fresh()[1]


@functools.lru_cache(maxsize=16)
def _noise_pool(n: int, dtype: np.dtype, seed: int) -> np.ndarray:
    """Standard normal noise, generated once per (size, dtype, seed) and never written."""
    pool = np.random.default_rng([seed, 777]).standard_normal(n + _POOL_SLACK).astype(dtype)
    pool.flags.writeable = False
    return pool


_POOL_SLACK = 8191


def row_sparse(grads, t: int):
    """Row-sparse gradients (index, values) made from dense ones, for a rule that takes them
    (SparseAdam): of each array, the rows (first-axis slices; a 0-d array is one row) whose
    number r has (r + t) % 3 != 0, in reverse order, and the first of them once more at the
    end (a duplicate, which the step sums), its values those of the dense gradient."""
    out = []
    for g in grads:
        rows = g.reshape(1, *g.shape) if g.ndim == 0 else g
        chosen = [r for r in range(len(rows) - 1, -1, -1) if (r + t) % 3]
        indices = np.array(chosen + chosen[:1], dtype=np.int64)
        out.append((indices, np.ascontiguousarray(rows[indices].reshape(len(indices),
                                                                          *g.shape[1:]))))
    return out


def given(name: str, grads, t: int):
    """``grads`` (dense) as optimizer ``name``'s step takes them: as they are, or row-sparse."""
    from fastopt.rules import RULES

    return row_sparse(grads, t) if RULES[name].gradient == "rows" else grads


def cast_grad(g, dtype):
    """A gradient (dense, or row-sparse: its values) in ``dtype``."""
    if isinstance(g, tuple):
        return g[0], g[1].astype(dtype)
    return g.astype(dtype)


def refuses(config: Config, options) -> bool:
    """Whether ``config``'s rule refuses these storage options (8-bit state where its kernel
    cannot keep it: SparseAdam)."""
    rule = rule_of(config)
    try:
        rule.check_group(rule.defaults(**{**config.kwargs, **options}))
    except ValueError:
        return True
    return False


def torch_grad(g, shape):
    """A gradient of fastopt's NumPy API (:func:`given`) as torch's ``.grad`` of a parameter
    of ``shape``: a dense tensor, or a row-sparse one as a sparse COO tensor (torch's
    nn.Embedding(sparse=True) makes such, over the first dimension)."""
    import torch

    if not isinstance(g, tuple):
        return torch.from_numpy(g.copy())
    indices, values = g
    sparse = torch.from_numpy(indices.copy())[None] if shape else torch.zeros(
        (0, len(indices)), dtype=torch.int64)
    # Invariants checked: a test's gradient that breaks them is the test's bug, caught here.
    return torch.sparse_coo_tensor(sparse, torch.from_numpy(values.copy()), shape,
                                   check_invariants=True)


class GradStream:
    """Deterministic random gradients: ``stream(t)`` returns fresh arrays for step t.

    The values depend only on (seed, t, tensor index), not on call order. Step t reads a
    window of a fixed pool of standard normal noise at an offset that changes with t (cheap:
    drawing fresh normals for 300_000+ elements at every step dominated the suite's time), so
    every element sees a different value at every step. Each tensor gets its own scale (0.1,
    1, 10 in turn) and the overall scale oscillates and decays with t, so that AMSGrad's
    running maximum differs from the second moment and momentum has something to do.
    """

    def __init__(self, shapes, dtype, seed: int = 0, name: str | None = None):
        """``name``: the optimizer the gradients are for, whose step may take them otherwise
        than dense (:func:`given`)."""
        self.name = name
        self.shapes = [tuple(s) for s in shapes]
        self.dtype = np.dtype(dtype)
        self.seed = seed
        sizes = [math.prod(s) for s in self.shapes]
        self.starts = [0, *itertools.accumulate(sizes)][:-1]
        self.total = sum(sizes)

    def __call__(self, t: int):
        pool = _noise_pool(self.total, self.dtype, self.seed)
        offset = (t * 4099 + self.seed * 31) % _POOL_SLACK
        scale_t = (1.5 + math.sin(t / 4.0)) / math.sqrt(1.0 + t / 25.0)
        grads = []
        for i, (shape, start) in enumerate(zip(self.shapes, self.starts)):
            n = math.prod(shape)
            window = pool[offset + start: offset + start + n]
            g = np.multiply(window, self.dtype.type(scale_t * 10.0 ** (i % 3 - 1)))
            grads.append(g.reshape(shape))
        return grads if self.name is None else given(self.name, grads, t)


# --------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------


def in_every_simd_variant(tmp_path, script: str, *args: str) -> list:
    """``script`` run in a process per SIMD variant this CPU runs (FASTOPT_SIMD chooses it),
    with the path of the .npy/.npz file it writes, then ``args``: what each wrote, loaded."""
    import os
    import subprocess
    import sys

    from fastopt._kernels import built_variants, kernels

    outputs = []
    for variant in [v for v in kernels.cpu_variants() if v in built_variants()]:
        out = tmp_path / f"{variant}.npz"
        subprocess.run([sys.executable, "-c", script, str(out), *args], check=True,
                       timeout=120, cwd=tmp_path,  # the installed fastopt, not a source tree
                       env={**os.environ, "FASTOPT_SIMD": variant})
        outputs.append(np.load(out))
    return outputs


def snapshot(arrays):
    """Copies of ``arrays`` (and of the pairs of arrays of row-sparse gradients)."""
    return [tuple(snapshot(a)) if isinstance(a, tuple) else np.array(a, copy=True)
            for a in arrays]


def assert_arrays_equal(actual, desired, what=""):
    """Bitwise equality (NaNs at the same places count as equal), same dtype and shape."""
    assert len(actual) == len(desired), what
    for i, (a, d) in enumerate(zip(actual, desired)):
        if isinstance(d, tuple):  # a row-sparse gradient: indices and values
            assert_arrays_equal(list(a), list(d), f"{what}[{i}]")
            continue
        a, d = np.asarray(a), np.asarray(d)
        assert a.dtype == d.dtype, f"{what}[{i}]: dtype {a.dtype} != {d.dtype}"
        assert a.shape == d.shape, f"{what}[{i}]: shape {a.shape} != {d.shape}"
        if not np.array_equal(a, d, equal_nan=True):
            diff = np.abs(a.astype(np.float64) - d.astype(np.float64))
            raise AssertionError(
                f"{what}[{i}] differs in {np.count_nonzero(diff)} of {a.size} elements; "
                f"max abs diff {np.nanmax(diff)}"
            )


def assert_state_dicts_equal(a: dict, b: dict, what="state_dict"):
    """Two state_dicts are identical: same keys, same ints, bitwise equal arrays."""
    assert set(a) == set(b) == {"state", "param_groups"}, what
    assert set(a["state"]) == set(b["state"]), f"{what}: state indices differ"
    for idx in a["state"]:
        sa, sb = a["state"][idx], b["state"][idx]
        assert set(sa) == set(sb), f"{what}: state[{idx}] keys {set(sa)} != {set(sb)}"
        for key in sa:
            va, vb = sa[key], sb[key]
            if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                assert_arrays_equal([va], [vb], f"{what}: state[{idx}][{key!r}]")
            else:
                assert type(va) is type(vb) and va == vb, f"{what}: state[{idx}][{key!r}]"
    assert len(a["param_groups"]) == len(b["param_groups"]), what
    for ga, gb in zip(a["param_groups"], b["param_groups"]):
        assert set(ga) == set(gb), f"{what}: group keys {set(ga)} != {set(gb)}"
        for key in ga:
            assert ga[key] == gb[key], f"{what}: group[{key!r}] {ga[key]!r} != {gb[key]!r}"


def assert_close(actual, desired, rtol: float, what=""):
    """|actual - desired| <= rtol * (|desired| + max|desired|), element-wise.

    The second term makes the tolerance relative to the array's scale for elements that pass
    near zero (a parameter crossing zero has an unbounded element-wise relative error even when
    the trajectory is right to the last bit of its scale).
    """
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    assert a.shape == d.shape, f"{what}: shape {a.shape} != {d.shape}"
    if d.size == 0:
        return
    scale = float(np.max(np.abs(d)))
    np.testing.assert_allclose(a, d, rtol=rtol, atol=rtol * scale, err_msg=what)


def scaled_error(actual, desired) -> float:
    """max |a - d| / (|d| + max|d|): the quantity assert_close bounds (for measurements)."""
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    if d.size == 0:
        return 0.0
    scale = float(np.max(np.abs(d)))
    if scale == 0.0:
        return float(np.max(np.abs(a)))
    return float(np.max(np.abs(a - d) / (np.abs(d) + scale)))


def copy_state_dict(sd: dict) -> dict:
    """A deep copy of a (fastopt) state_dict."""
    import copy

    return copy.deepcopy(sd)


@pytest.fixture(params=DTYPES, ids=DTYPE_IDS)
def dtype(request):
    return request.param


@pytest.fixture
def restore_threads():
    """Put the OpenMP thread count back to what it was before the test."""
    import fastopt

    before = fastopt.get_num_threads()
    yield before
    fastopt.set_num_threads(before)
    assert fastopt.get_num_threads() == before


# Runs over several ranks (tests/distributed.py): a module defines ``at_2_ranks``, the results
# of its run over 2 ranks (module-scoped, as these fixtures), and finds these here.
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, request):
    """A folder for the checkpoints that a module's runs over several ranks write and read."""
    return tmp_path_factory.mktemp(request.module.__name__)


@pytest.fixture(scope="module")
def at_2(at_2_ranks):
    """Rank 0's results of the module's run over 2 ranks."""
    return at_2_ranks[0]


def pytest_report_header(config):
    """Say which fastopt is under test: CI must test the installed wheel, not the source tree."""
    import fastopt

    return f"fastopt {fastopt.__version__} from {fastopt.__file__} (openmp={fastopt.OPENMP})"


# Modules whose subject is the same for every build and NumPy release: runs over several
# processes, the oracle packages, torch's optimizer database, the benchmark and demo command
# lines. .ci/run's first suite runs them; its later suites (serial build, oldest NumPy, newest
# Python) leave them out (-m "not matrix and not once"), which keeps CI's time in bounds.
ONCE = {"test_torch_distributed", "test_torch_fsdp", "test_torch_ecosystem",
        "test_torch_optim_db", "test_bench_cli", "test_bench_distributed", "test_bench_outside",
        "test_demos", "test_oracles_elementwise", "test_oracles_low_precision",
        "test_oracles_schedule_free", "test_oracles_sparse_adam", "test_oracles_trust"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__ in ONCE:
            item.add_marker(pytest.mark.once)
