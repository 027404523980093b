"""Lion, ADOPT and AdEMAMix against the packages they are ported from.

The oracles: ``lion_pytorch.Lion`` (lion-pytorch 0.2.5) for Lion, ``pytorch_optimizer.ADOPT``
and ``pytorch_optimizer.AdEMAMix`` (pytorch-optimizer 4.1.0) for the other two; each test skips
when its package is missing. For every configuration in ``CASES`` (together they set every
argument and switch on every flag), in float32 and float64:

- fastopt's NumPy class follows the oracle over 150 steps of a stochastic quadratic problem
  (g = c (p − target) + noise, evaluated at the oracle's parameters and fed to both, to the
  oracle through ``torch.from_numpy``), parameters and state alike;
- ``fastopt.torch.<Name>`` trains a small MLP side by side with the oracle for 150 steps: the
  same losses and parameters;
- both within a relative 1e-4 (float32) or 1e-11 (float64), in the sense of
  ``conftest.assert_close``; a learning rate 1% off fails those bounds.

The pytorch-optimizer cases run its per-parameter path (``foreach=False``); its default
(``foreach=None``) takes a batched ``_foreach_*`` path on the CPU, and four cases of the
quadratic problem run against that one too.

Measured (torch 2.13, lion-pytorch 0.2.5, pytorch-optimizer 4.1.0), the largest
``conftest.scaled_error`` of the parameters over the cases of each rule, float32 / float64:

- Lion: 0 / 0 on both problems: bitwise lion-pytorch's (its step ±γ is exact, so only m is
  rounded differently, and no interpolated momentum changed sign);
- ADOPT: 3.8e-7 / 3.6e-16 (quadratic problem, either foreach path), 1.6e-6 / 8.7e-14 (MLP);
- AdEMAMix: 9.5e-8 / 1.8e-16 (quadratic), 3.4e-7 / 3.5e-16 (MLP).

A learning rate 1% larger deviates by 5.3e-4 (AdEMAMix, quadratic) to 5.3e-2 (ADOPT, MLP).

Where fastopt differs from its oracles, and why:

Lion (lion-pytorch 0.2.5)
- ``maximize`` (keyword-only, default False) is fastopt's: lion-pytorch has none.
- ``decoupled_weight_decay`` is left out: lion-pytorch then divides ``weight_decay`` by the lr
  given to the constructor (not the group's), a value outside the parameter groups and the
  state dict, which fastopt's rules cannot see. ``weight_decay=λ / lr₀`` gives exactly the same
  arithmetic, schedules included (test_lion_decoupled_weight_decay_is_weight_decay_over_lr).
- ``use_triton`` (CUDA) is left out.
- lion-pytorch asserts ``lr > 0``; fastopt refuses ``lr < 0`` and ``weight_decay < 0`` with
  ValueError (lion-pytorch takes any weight_decay). Both take each beta in [0, 1].
- Rounding: lion-pytorch's ``add(grad, alpha=1 − β)`` is one fused multiply-add on torch's
  vectorised CPU path; fastopt rounds β m + (1 − β) g unfused, as its reference does (NumPy has
  no FMA, and the kernels are bitwise the reference). The step ±γ is exact either way, so the
  parameters agree to the bit unless an interpolated momentum is within a rounding of zero and
  its sign flips (not seen here; it would move one element by 2γ).
- NaN: sign(NaN) is 0 in both (torch.sign), so a NaN gradient never reaches p.

ADOPT (pytorch-optimizer 4.1.0)
- ``clip_lambda`` (a function of the step, default ``step ** 0.25``, None for no clipping) is
  ``clip_exponent`` (default 0.25, None for no clipping), the clip being ``step **
  clip_exponent``: a hyper-parameter of fastopt is data that is checked, stored in state dicts
  and pickled with them; a lambda is none of these. Other clipping functions are not offered,
  nor a negative exponent.
- ``foreach`` is not taken (fastopt has one implementation).
- The step count is per parameter (``state[p]["step"]``), as torch.optim keeps it;
  pytorch-optimizer keeps one per group (``param_groups[i]["step"]``). They differ for a
  parameter that has no gradient at some steps: pytorch-optimizer's group count still advances
  (so such a parameter may never see its "first step" and then divides g by eps), fastopt's
  does not. State dicts differ accordingly (fastopt's groups hold no ``step``; its entries do).
- pytorch-optimizer negates ``p.grad`` in place to maximize and adds the L2 term into it;
  fastopt leaves gradients as they are.
- Rounding: torch's lerp, ``add(alpha=)`` and L2 ``add_(p, alpha=)`` are fused multiply-adds
  on its vectorised CPU path; fastopt evaluates m ← β₁ m + (1 − β₁) u, p − γ m and g + λ p
  unfused (NumPy has no FMA): a few ulp per step.

AdEMAMix (pytorch-optimizer 4.1.0)
- ``foreach`` is not taken; the step count is per parameter, gradients are not modified (as
  ADOPT above); the same rounding notes (lerp for m₁ and m₂, ``add_(alpha=αₜ)``).
- With ``t_alpha_beta3`` set, fastopt refuses ``betas[0] == 0`` and ``betas[0] > betas[2]``
  (the warm-up takes log β₁, and with β₁ > β₃ its exponent can pass through a pole:
  pytorch-optimizer raises ValueError, ZeroDivisionError or OverflowError mid-step), and
  ``t_alpha_beta3 == 0`` (pytorch-optimizer accepts it, then divides by zero).
- fastopt.torch.AdEMAMix steps complex parameters as their real views, where pytorch-optimizer
  refuses them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastopt  # noqa: E402
import fastopt.torch as ft  # noqa: E402

from conftest import GradStream, Model, assert_close, scaled_error  # noqa: E402

STEPS = 150
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
RTOL = {np.float32: 1e-4, np.float64: 1e-11}

# (id, fastopt class, fastopt's arguments): every argument and flag of the three, each set in
# some case.
CASES = [
    ("lion", "Lion", dict(lr=1e-3)),
    ("lion-betas", "Lion", dict(lr=1e-3, betas=(0.8, 0.95))),
    ("lion-wd", "Lion", dict(lr=1e-3, weight_decay=0.5)),
    ("lion-maximize", "Lion", dict(lr=1e-3, weight_decay=0.1, maximize=True)),
    ("adopt", "ADOPT", dict(lr=1e-2)),
    ("adopt-betas-eps", "ADOPT", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-3)),
    ("adopt-no-clip", "ADOPT", dict(lr=1e-2, clip_exponent=None)),
    ("adopt-clip-at-1", "ADOPT", dict(lr=1e-2, clip_exponent=0.0)),  # clipping active
    ("adopt-l2", "ADOPT", dict(lr=1e-2, weight_decay=0.05)),
    ("adopt-decoupled", "ADOPT", dict(lr=1e-2, weight_decay=0.1, weight_decouple=True)),
    ("adopt-fixed", "ADOPT", dict(lr=1e-2, weight_decay=0.01, weight_decouple=True,
                                  fixed_decay=True)),
    ("adopt-maximize", "ADOPT", dict(lr=1e-2, maximize=True)),
    ("ademamix", "AdEMAMix", dict(lr=1e-3)),
    ("ademamix-betas-eps", "AdEMAMix", dict(lr=1e-3, betas=(0.8, 0.99, 0.999), eps=1e-6)),
    ("ademamix-alpha", "AdEMAMix", dict(lr=1e-3, alpha=2.0)),
    ("ademamix-warmup", "AdEMAMix", dict(lr=1e-3, t_alpha_beta3=50)),  # and 100 steps after
    ("ademamix-l2", "AdEMAMix", dict(lr=1e-3, weight_decay=0.05)),
    ("ademamix-decoupled", "AdEMAMix", dict(lr=1e-3, weight_decay=0.1, weight_decouple=True)),
    ("ademamix-fixed", "AdEMAMix", dict(lr=1e-3, weight_decay=0.01, weight_decouple=True,
                                        fixed_decay=True)),
    ("ademamix-maximize", "AdEMAMix", dict(lr=1e-3, maximize=True, t_alpha_beta3=20)),
]
CASE_IDS = [c[0] for c in CASES]
BY_ID = {c[0]: c for c in CASES}


def oracle(name, params, kwargs, foreach=False):
    """The oracle's optimizer for fastopt's ``name(params, **kwargs)``, and the sign its
    gradients need (lion-pytorch has no maximize: it descends −g instead)."""
    kwargs = dict(kwargs)
    if name == "Lion":
        lion_pytorch = pytest.importorskip("lion_pytorch")
        sign = -1.0 if kwargs.pop("maximize", False) else 1.0
        return lion_pytorch.Lion(params, **kwargs), sign
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    if name == "ADOPT" and "clip_exponent" in kwargs:
        exponent = kwargs.pop("clip_exponent")
        kwargs["clip_lambda"] = None if exponent is None else (
            lambda step: math.pow(step, exponent))
    return getattr(pytorch_optimizer, name)(params, foreach=foreach, **kwargs), 1.0


def oracle_state(opt, param):
    """An oracle parameter's state arrays (neither package keeps a step per parameter)."""
    return {key: value.numpy() for key, value in opt.state[param].items()}


# ----------------------------------------------------------------------------- NumPy class
SHAPES = [(), (1,), (257,), (7, 13), (3, 5, 7), (2049,)]


def run_quadratic(name, kwargs, dtype, *, foreach=False, lr_factor=1.0, steps=STEPS):
    """fastopt.<name> and the oracle on g = c (p − target) + noise, at the oracle's p."""
    model = Model([(SHAPES, {})], dtype)
    _, mine = model.fresh()
    _, theirs = model.fresh()  # the oracle's tensors share these arrays
    targets = Model([(SHAPES, {})], dtype, seed=3).fresh()[1]
    opt = getattr(fastopt, name)(mine, **{**kwargs, "lr": kwargs["lr"] * lr_factor})
    ref, sign = oracle(name, [torch.from_numpy(p) for p in theirs], kwargs, foreach)
    noise = GradStream(SHAPES, dtype)
    for t in range(1, steps + 1):
        grads = [np.asarray(dtype(0.5) * (p - target) + n)
                 for p, target, n in zip(theirs, targets, noise(t))]
        for q, g in zip(ref.param_groups[0]["params"], grads):
            q.grad = torch.from_numpy(np.array(sign * g))  # a copy: the oracle may change it
        ref.step()
        opt.step(grads)
    return opt, ref, mine, theirs


def assert_follows(opt, ref, mine, theirs, rtol, what):
    state = opt.state_dict()["state"]
    for i, (p, q) in enumerate(zip(mine, theirs)):
        assert_close(p, q, rtol, f"{what}: param {i}")
        expected = oracle_state(ref, ref.param_groups[0]["params"][i])
        assert set(state[i]) - {"step"} == set(expected), f"{what}: state[{i}] keys"
        for key, value in expected.items():
            assert_close(state[i][key], value, rtol, f"{what}: state[{i}][{key!r}]")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_numpy_class_follows_oracle(case, dtype):
    _, name, kwargs = case
    opt, ref, mine, theirs = run_quadratic(name, kwargs, dtype)
    assert_follows(opt, ref, mine, theirs, RTOL[dtype], case[0])
    assert not np.allclose(mine[2], Model([(SHAPES, {})], dtype).fresh()[1][2], rtol=0.05)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case_id", ["adopt-clip-at-1", "adopt-decoupled", "ademamix-warmup",
                                     "ademamix-l2"])
def test_numpy_class_follows_oracles_default_foreach_path(case_id, dtype):
    """pytorch-optimizer's default (foreach=None) batches its updates on the CPU."""
    _, name, kwargs = BY_ID[case_id]
    opt, ref, mine, theirs = run_quadratic(name, kwargs, dtype, foreach=None)
    assert_follows(opt, ref, mine, theirs, RTOL[dtype], f"{case_id} foreach")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case_id", ["lion", "adopt", "ademamix"])
def test_a_wrong_rate_fails_the_numpy_comparison(case_id, dtype):
    _, name, kwargs = BY_ID[case_id]
    opt, ref, mine, theirs = run_quadratic(name, kwargs, dtype, lr_factor=1.01)
    with pytest.raises(AssertionError):
        assert_follows(opt, ref, mine, theirs, RTOL[dtype], case_id)


def test_lion_decoupled_weight_decay_is_weight_decay_over_lr(dtype):
    """lion-pytorch's decoupled_weight_decay=True is weight_decay / (the constructor's lr):
    fastopt's Lion with that weight decay steps exactly alike, under a schedule too."""
    lion_pytorch = pytest.importorskip("lion_pytorch")
    lr, weight_decay = 2e-3, 1e-2
    model = Model([(SHAPES, {})], dtype)
    _, mine = model.fresh()
    _, theirs = model.fresh()
    opt = fastopt.Lion(mine, lr=lr, weight_decay=weight_decay / lr)
    ref = lion_pytorch.Lion([torch.from_numpy(p) for p in theirs], lr=lr,
                            weight_decay=weight_decay, decoupled_weight_decay=True)
    noise = GradStream(SHAPES, dtype)
    for t in range(1, 61):
        for group in (*opt.param_groups, *ref.param_groups):
            group["lr"] = lr * 0.97**t
        grads = noise(t)
        for q, g in zip(ref.param_groups[0]["params"], grads):
            q.grad = torch.from_numpy(np.array(g))
        ref.step()
        opt.step(grads)
    for p, q in zip(mine, theirs):
        np.testing.assert_array_equal(p, q)


# ----------------------------------------------------------------------------- fastopt.torch
def mlp(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 24), torch.nn.Tanh(), torch.nn.Linear(24, 12),
                               torch.nn.Tanh(), torch.nn.Linear(12, 2)).to(dtype)


def train_side_by_side(name, kwargs, dtype, lr_factor=1.0):
    """fastopt.torch.<name> and the oracle, each on its copy of one MLP, on the same batches;
    returns (losses, model) of each."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(192, 5, generator=g, dtype=dtype)
    y = torch.sin(x[:, :2] * 2) + 0.1 * torch.randn(192, 2, generator=g, dtype=dtype)
    a, b = mlp(dtype), mlp(dtype)
    mine = getattr(ft, name)(a.parameters(), **{**kwargs, "lr": kwargs["lr"] * lr_factor})
    theirs, oracle_sign = oracle(name, b.parameters(), kwargs)
    sign = -1.0 if kwargs.get("maximize") else 1.0  # a maximizer ascends −loss
    runs = []
    for model, opt, s in ((a, mine, sign), (b, theirs, sign * oracle_sign)):
        losses = []
        for k in range(STEPS):
            batch = slice(k * 24 % 192, k * 24 % 192 + 24)
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
            (s * loss).backward()
            opt.step()
            losses.append(loss.item())
        runs.append((np.array(losses), model))
    return runs, mine, theirs


def assert_same_training(runs, rtol, what):
    (losses_a, a), (losses_b, b) = runs
    assert_close(losses_a, losses_b, rtol, f"{what}: losses")
    for k, (p, q) in enumerate(zip(a.parameters(), b.parameters())):
        assert_close(p.detach().numpy(), q.detach().numpy(), rtol, f"{what}: parameter {k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fastopt_torch_trains_like_oracle(case, dtype):
    _, name, kwargs = case
    runs, mine, theirs = train_side_by_side(name, kwargs, getattr(torch, np.dtype(dtype).name))
    assert_same_training(runs, RTOL[dtype], case[0])
    losses = runs[0][0]
    assert losses[-20:].mean() < 0.9 * losses[:5].mean(), "the model did not train"
    for p, q in zip(runs[0][1].parameters(), runs[1][1].parameters()):
        expected = oracle_state(theirs, q)
        assert set(mine.state[p]) - {"step"} == set(expected)
        for key, value in expected.items():
            assert_close(mine.state[p][key].numpy(), value, RTOL[dtype], key)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case_id", ["lion", "adopt", "ademamix"])
def test_a_wrong_rate_fails_the_training_comparison(case_id, dtype):
    _, name, kwargs = BY_ID[case_id]
    runs, _, _ = train_side_by_side(name, kwargs, getattr(torch, np.dtype(dtype).name), 1.01)
    with pytest.raises(AssertionError):
        assert_same_training(runs, RTOL[dtype], case_id)


def measured_deviations():  # pragma: no cover - the numbers in the module docstring
    for case_id, name, kwargs in CASES:
        for dtype in DTYPES:
            opt, ref, mine, theirs = run_quadratic(name, kwargs, dtype)
            runs, _, _ = train_side_by_side(name, kwargs, getattr(torch, np.dtype(dtype).name))
            quadratic = max(scaled_error(p, q) for p, q in zip(mine, theirs))
            trained = max(scaled_error(p.detach().numpy(), q.detach().numpy())
                          for p, q in zip(runs[0][1].parameters(), runs[1][1].parameters()))
            print(f"{case_id:22s} {np.dtype(dtype).name}  quadratic {quadratic:.2g}  "
                  f"MLP {trained:.2g}")
