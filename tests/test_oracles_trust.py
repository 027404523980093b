"""LAMB and LARS against their oracle, pytorch-optimizer 4.1.0 (``Lamb``, ``LARS``).

Proves, for configurations covering every argument fastopt supports, in float32 and float64,
over 150 steps of a four-layer MLP with biases (``test_torch.mlp``): that ``fastopt.LAMB`` /
``fastopt.LARS`` fed the oracle's gradients end where the oracle's parameters end, and that
``fastopt.torch.LAMB`` / ``fastopt.torch.LARS`` train a twin model to the oracle's losses and
parameters; within relative 1e-4 (float32) and 1e-11 (float64) of the largest parameter, as
``test_torch`` holds torch.optim. Measured, the worst deviation over all of them is 3.1e-7 and
9.8e-16 for the NumPy classes, 2.1e-6 and 4.8e-15 for fastopt.torch (closed loop: each model
computes its own gradients). And that the tolerances catch a wrong variant: the learning rate
1% off, a trust ratio over the whole group instead of each tensor, LARS adapting 1-D tensors.

Where fastopt differs from the oracle (also in docs/semantics.md):

- Rounding: fastopt evaluates in its own order (LAMB's u = m / (√v + ε), the oracle's foreach
  path m · (1 / (√v + ε)); norms are sums of squares in double, the oracle's in the tensor's
  dtype; trust ratios in double, the oracle's in the dtype), hence the tolerances.
- LARS: the oracle adapts and decays only tensors of two or more dimensions. A segment of
  memory has no dimensions, so fastopt adapts every tensor of a group with ``adapt=True``
  (fastopt's own argument, default True); a group of the 0-d and 1-D tensors with
  ``adapt=False, weight_decay=0`` steps them exactly as the oracle does (how these tests run).
- LAMB's ``pre_norm`` / ``max_grad_norm`` (every gradient scaled by min(max_grad_norm /
  (‖g‖ + ε), 1) over all groups) are not arguments: ``step(grads, max_norm=...)`` is that, for
  ε = 1e-6, and ``torch.nn.utils.clip_grad_norm_`` before ``fastopt.torch.LAMB.step``. The
  oracle computes that factor in float32 whatever the dtype: float64 agrees to ~1e-8 only.
- LAMB: ``adam``, ``eps`` and ``maximize`` are keyword-only (positions would not match the
  oracle's, which has max_grad_norm and pre_norm between); ``n_sma_threshold`` must be >= 4
  with ``rectify`` (the oracle's step raises a math domain error below it); the oracle's
  extra keywords (``adanorm``, ``adanorm_r``, ``adam_debias``) are refused.
- Neither takes ``foreach`` (the oracle's choice of torch kernels); both keep ``step`` as
  fastopt does (LAMB per parameter in its state, LARS none) where the oracle counts it per
  group, and the oracle's LAMB diagnostics (``weight_norm``, ``adam_norm``, ``trust_ratio`` in
  its state) are not kept. ``maximize``, ``n_sma_threshold``, ``degenerated_to_sgd`` are per
  group in fastopt (the oracle's are per optimizer).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
po = pytest.importorskip("pytorch_optimizer")

import fastopt  # noqa: E402
import fastopt.torch as ft  # noqa: E402

from conftest import assert_close  # noqa: E402
from test_torch import RTOL, data, mlp, train  # noqa: E402

STEPS = 150
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["f32", "f64"]
ORACLES = {"LAMB": po.Lamb, "LARS": po.LARS}

# (rule, id, fastopt's and the oracle's arguments, the oracle's own extra arguments)
LAMB_CASES = [
    ("default", dict(lr=0.01), {}),
    ("decoupled", dict(lr=0.01, weight_decay=0.1), {}),
    ("fixed_decay", dict(lr=0.01, weight_decay=0.01, fixed_decay=True), {}),
    ("l2", dict(lr=0.01, weight_decay=0.05, weight_decouple=False), {}),
    ("l2-per-param-path", dict(lr=0.01, weight_decay=0.05, weight_decouple=False),
     {"foreach": False}),
    ("rectify", dict(lr=0.01, rectify=True, weight_decay=0.05), {}),
    ("rectify-sgd-threshold", dict(lr=0.01, rectify=True, degenerated_to_sgd=True,
                                   n_sma_threshold=6, weight_decay=0.05,
                                   weight_decouple=False), {}),
    ("betas-eps-no-averaging", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-4,
                                    grad_averaging=False), {}),
    # adam=True is Adam without its second bias correction: at lr 0.01 its first steps make
    # this model's training chaotic (twin models drift apart by 0.18 in float32, fastopt or
    # not); at 0.003 it is not.
    ("adam", dict(lr=0.003, adam=True, weight_decay=0.05), {}),
    ("maximize", dict(lr=0.01, maximize=True, weight_decay=0.05), {}),
]
LARS_CASES = [
    ("default", dict(lr=0.1, trust_coefficient=0.05), {}),
    ("per-param-path", dict(lr=0.1, trust_coefficient=0.05, weight_decay=0.01), {"foreach": False}),
    ("wd-nesterov", dict(lr=0.1, trust_coefficient=0.05, weight_decay=0.01, nesterov=True), {}),
    ("no-momentum", dict(lr=0.1, momentum=0.0, trust_coefficient=0.05), {}),
    ("dampening-maximize", dict(lr=0.1, momentum=0.5, dampening=0.3, trust_coefficient=0.02,
                                maximize=True), {}),
    ("defaults-but-lr", dict(lr=1.0), {}),
]
CASES = [pytest.param("LAMB", kw, extra, id=f"lamb-{i}") for i, kw, extra in LAMB_CASES] + [
    pytest.param("LARS", kw, extra, id=f"lars-{i}") for i, kw, extra in LARS_CASES]


def fastopt_groups(name, params):
    """fastopt's parameter groups for the oracle's one: LARS's 0-d and 1-D tensors (the
    biases here) step unadapted and undecayed, as the oracle steps them."""
    if name != "LARS":
        return [{"params": list(params)}]
    params = list(params)
    return [{"params": [p for p in params if p.ndim > 1]},
            {"params": [p for p in params if p.ndim <= 1], "adapt": False, "weight_decay": 0.0}]


def flat_order(groups, params):
    """Indices into ``params`` of the groups' parameters, in group order."""
    ids = [id(p) for p in params]
    return [ids.index(id(p)) for g in groups for p in g["params"]]


def batches(x, y, steps):
    for k in range(steps):
        start = k * 32 % len(x)
        yield x[start:start + 32], y[start:start + 32]


def oracle_run(name, kwargs, extra, dtype, steps=STEPS, clip=None):
    """The oracle trains an MLP: its initial and final parameters and each step's gradients
    as read by the oracle (copied before its step, which writes into them)."""
    model, (x, y) = mlp(dtype), data(dtype)
    params = list(model.parameters())
    initial = [p.detach().numpy().copy() for p in params]
    opt = ORACLES[name](params, **kwargs, **extra)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    grads = []
    for xb, yb in batches(x, y, steps):
        opt.zero_grad()
        (sign * torch.nn.functional.mse_loss(model(xb), yb)).backward()
        grads.append([p.grad.detach().numpy().copy() for p in params])
        opt.step()
    return initial, grads, [p.detach().numpy() for p in params]


def numpy_run(name, kwargs, initial, grads, *, flatten=False, groups=fastopt_groups,
              max_norm=None):
    """fastopt's NumPy class over copies of ``initial``, fed ``grads``: its final parameters
    in the oracle's order. ``flatten``: each group's arrays as one flat buffer, so one norm
    per group (a wrong variant)."""
    params = [a.copy() for a in initial]
    spec = groups(name, params)
    members = [flat_order([g], params) for g in spec]  # per group, indices into params
    if flatten:
        views = {}
        for g, indices in zip(spec, members):
            flat, group_views = fastopt.flatten(g["params"])
            g["params"] = [flat]
            views.update(zip(indices, group_views))
        params = [views[i] for i in range(len(params))]
    opt = getattr(fastopt, name)(spec, **kwargs)
    for step in grads:
        if flatten:
            ordered = [fastopt.flatten([step[i] for i in indices])[0] for indices in members]
        else:
            ordered = [step[i] for indices in members for i in indices]
        norm = opt.step(ordered, max_norm=max_norm)
        if max_norm is not None:
            assert norm > max_norm  # clipping was at work
    return params


def numpy_of(model):
    return [p.detach().numpy() for p in model.parameters()]


def assert_same(actual, desired, dtype, what, rtol=None):
    for k, (a, d) in enumerate(zip(actual, desired)):
        assert_close(a, d, rtol or RTOL[dtype], f"{what}: parameter {k}")


def twins(name, kwargs, extra, dtype, **mine):
    """An MLP under fastopt.torch.<name> (``kwargs`` updated by ``mine``), its twin under the
    oracle."""
    a, b = mlp(dtype), mlp(dtype)
    return (a, getattr(ft, name)(fastopt_groups(name, a.parameters()), **{**kwargs, **mine}),
            b, ORACLES[name](b.parameters(), **kwargs, **extra))


# ----------------------------------------------------------------------------- parity
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name, kwargs, extra", CASES)
def test_numpy_class_matches_oracle(name, kwargs, extra, dtype):
    initial, grads, final = oracle_run(name, kwargs, extra, dtype)
    assert_same(numpy_run(name, kwargs, initial, grads), final, dtype, f"{name}({kwargs})")
    assert all(not np.allclose(a, b, rtol=1e-3) for a, b in zip(initial, final)), "no training"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name, kwargs, extra", CASES)
def test_torch_class_trains_like_oracle(name, kwargs, extra, dtype):
    a, mine, b, theirs = twins(name, kwargs, extra, dtype)
    x, y = data(dtype)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    losses = train(a, mine, x, y, STEPS, sign=sign)
    assert_close(losses, train(b, theirs, x, y, STEPS, sign=sign), RTOL[dtype], "losses")
    assert_same(numpy_of(a), numpy_of(b), dtype, f"fastopt.torch.{name}({kwargs})")
    assert not np.allclose(losses[-20:].mean(), losses[0], rtol=1e-3), "the model did not train"


# The oracle's clipping factor is a float32 number whatever the dtype (its global norm is
# summed in float32), fastopt's a double: float64 trajectories agree only to that rounding,
# measured 4.0e-8 (NumPy class) and 1.2e-7 (fastopt.torch); the learning rate 1% off moves
# them by 7e-3.
PRE_NORM_RTOL = {torch.float32: RTOL[torch.float32], torch.float64: 1e-6}
MAX_GRAD_NORM = 0.05  # below the MLP's gradient norms at every step: the clipping is active


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_pre_norm_is_max_norm(dtype):
    """The oracle's pre_norm=True is step(grads, max_norm=...) and, in fastopt.torch,
    clip_grad_norm_ before the step."""
    kwargs = dict(lr=0.01, weight_decay=0.05)
    extra = {"pre_norm": True, "max_grad_norm": MAX_GRAD_NORM}
    initial, grads, final = oracle_run("LAMB", kwargs, extra, dtype)
    assert_same(numpy_run("LAMB", kwargs, initial, grads, max_norm=MAX_GRAD_NORM), final,
                dtype, "LAMB max_norm", PRE_NORM_RTOL[dtype])
    a, mine, _, _ = twins("LAMB", kwargs, {}, dtype)
    x, y = data(dtype)
    for xb, yb in batches(x, y, STEPS):
        mine.zero_grad()
        torch.nn.functional.mse_loss(a(xb), yb).backward()
        torch.nn.utils.clip_grad_norm_(a.parameters(), MAX_GRAD_NORM)
        mine.step()
    assert_same(numpy_of(a), final, dtype, "fastopt.torch.LAMB, clipped", PRE_NORM_RTOL[dtype])


# ----------------------------------------------------------------------------- wrong variants
WRONG_CASES = [("LAMB", dict(lr=0.01, weight_decay=0.1)),
               ("LARS", dict(lr=0.1, trust_coefficient=0.05, weight_decay=0.01))]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name, kwargs", WRONG_CASES, ids=[n for n, _ in WRONG_CASES])
def test_tolerances_catch_wrong_variants(name, kwargs, dtype):
    initial, grads, final = oracle_run(name, kwargs, {}, dtype)
    assert_same(numpy_run(name, kwargs, initial, grads), final, dtype, "the right variant")
    wrong = {"lr 1% off": numpy_run(name, {**kwargs, "lr": kwargs["lr"] * 1.01}, initial, grads),
             "trust ratio over the group": numpy_run(name, kwargs, initial, grads, flatten=True)}
    if name == "LARS":
        wrong["1-D tensors adapted"] = numpy_run(name, kwargs, initial, grads,
                                                 groups=lambda _, ps: [{"params": ps}])
    for what, params in wrong.items():
        with pytest.raises(AssertionError):
            assert_same(params, final, dtype, what)
    a, mine, b, theirs = twins(name, kwargs, {}, dtype, lr=kwargs["lr"] * 1.01)
    x, y = data(dtype)
    train(a, mine, x, y, STEPS)
    train(b, theirs, x, y, STEPS)
    with pytest.raises(AssertionError):
        assert_same(numpy_of(a), numpy_of(b), dtype, "fastopt.torch, lr 1% off")
