"""Schedule-Free AdamW and SGD against their oracle, the schedulefree package (1.4.1:
``AdamWScheduleFree``, ``SGDScheduleFree``), option by option, in float32 and float64.

Each run steps fastopt (the NumPy class, or fastopt.torch over torch tensors) and the oracle
side by side for 120 steps with the same gradients, switching both to eval mode and back to
train mode midway, and compares the parameters in train mode (y) and in eval mode (x), the
state (``z``, ``exp_avg_sq``) and the group entries the package keeps (``k``, ``weight_sum``,
``lr_max``, ``scheduled_lr``: computed by the same double-precision arithmetic, so equal).
The oracle has no ``maximize``: fastopt's ``maximize=True`` is checked against the oracle fed
the negated gradients. Also: parameters without a gradient at some steps and a group added
midway (the package's group counts), a step in eval mode refused with nothing changed, and a
wrong rule that the tolerances catch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
schedulefree = pytest.importorskip("schedulefree")

import fastopt  # noqa: E402
import fastopt.torch as fot  # noqa: E402
from fastopt import reference  # noqa: E402

from conftest import scaled_error  # noqa: E402

STEPS = 120
SWITCH_AT = 60
SHAPES = [(3, 5), (), (17,), (0,), (2, 3, 4)]
# Measured over the cases below, both APIs, y and x: float64 at most 6.2e-16, float32 at most
# 2.9e-7 (scaled_error: relative to each array's largest value). The oracle's lerp and add run
# as fused multiply-adds in torch's vectorised CPU loops; fastopt rounds each operation. The
# tolerances are 16x and 10x those; decay taken at z instead of y deviates by 2.6e-3.
TOLERANCE = {np.float64: 1e-14, np.float32: 3e-6}
PROGRESS = ("k", "weight_sum", "lr_max", "scheduled_lr", "train_mode")

ADAMW = [
    {},
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.05),
    dict(lr=0.01, warmup_steps=20),
    dict(lr=0.01, r=1.0, weight_lr_power=0.0),
    dict(lr=0.01, betas=(0.7, 0.9), weight_decay=0.01, warmup_steps=10, r=0.5,
         weight_lr_power=1.0, maximize=True),
]
SGD = [
    {},
    dict(lr=0.1, momentum=0.5),
    dict(lr=0.1, weight_decay=0.05),
    dict(lr=0.1, warmup_steps=20, r=0.5),
    dict(lr=0.1, momentum=0.7, weight_decay=0.01, weight_lr_power=0.0, maximize=True),
]
CASES = [("AdamWScheduleFree", kw) for kw in ADAMW] + [("SGDScheduleFree", kw) for kw in SGD]


def _case_id(case):
    name, kw = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")"


class Oracle:
    """The package's optimizer over torch copies of the parameters, fed gradients (negated
    for fastopt's maximize, which it lacks)."""

    def __init__(self, name, params, kwargs, foreach=False):
        self.sign = -1.0 if kwargs.get("maximize") else 1.0
        options = {k: v for k, v in kwargs.items() if k != "maximize"}
        self.params = [torch.tensor(p.copy()) for p in params]
        self.opt = getattr(schedulefree, name)(self.params, **options, foreach=foreach)

    def step(self, grads):
        for p, g in zip(self.params, grads):  # it writes into .grad: a copy each
            p.grad = None if g is None else torch.from_numpy(g.copy()).mul_(self.sign)
        self.opt.step()


class NumPyAPI:
    def __init__(self, name, params, kwargs):
        self.params = [p.copy() for p in params]
        self.opt = getattr(fastopt, name)(self.params, **kwargs)

    def step(self, grads):
        self.opt.step(grads)

    def arrays(self):
        return self.params

    def state(self, i):
        return self.opt.state_dict()["state"].get(i, {})


class TorchAPI:
    def __init__(self, name, params, kwargs):
        self.params = [torch.tensor(p.copy()) for p in params]
        self.opt = getattr(fot, name)(self.params, **kwargs)

    def step(self, grads):
        for p, g in zip(self.params, grads):
            p.grad = None if g is None else torch.from_numpy(g.copy())
        self.opt.step()

    def arrays(self):
        return [p.numpy() for p in self.params]

    def state(self, i):
        return {k: v.numpy() for k, v in self.opt.state[self.params[i]].items()}


APIS = {"numpy": NumPyAPI, "torch": TorchAPI}


def _initial(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _grads(rng, dtype, t, skip=()):
    return [None if (i, t % 3) in skip else rng.standard_normal(s).astype(dtype)
            for i, s in enumerate(SHAPES)]


def _errors(mine, oracle):
    """{what: scaled error} of every parameter and state array."""
    errors = {}
    for i, (a, b) in enumerate(zip(mine.arrays(), oracle.params)):
        errors[f"param[{i}]"] = scaled_error(a, b.numpy())
        for key, value in oracle.opt.state[oracle.params[i]].items():
            errors[f"state[{i}][{key!r}]"] = scaled_error(mine.state(i)[key], value.numpy())
    return errors


def _assert_close(mine, oracle, dtype, what):
    for key, error in _errors(mine, oracle).items():
        assert error <= TOLERANCE[dtype], f"{what}: {key} deviates by {error:.3g}"


def _assert_same_progress(mine_groups, oracle_groups):
    for mine, theirs in zip(mine_groups, oracle_groups):
        for key in PROGRESS:
            assert mine[key] == theirs[key], f"group[{key!r}]: {mine[key]!r} != {theirs[key]!r}"


def run(name, kwargs, dtype, api, *, skip=(), oracle_foreach=False):
    rng = np.random.default_rng(1)
    initial = _initial(dtype)
    mine = APIS[api](name, initial, kwargs)
    oracle = Oracle(name, initial, kwargs, foreach=oracle_foreach)
    for o in (mine.opt, oracle.opt):
        o.train()
    for t in range(1, STEPS + 1):
        grads = _grads(rng, dtype, t, skip)
        mine.step(grads)
        oracle.step(grads)
        if t == SWITCH_AT:
            for o in (mine.opt, oracle.opt):
                o.eval()
            _assert_close(mine, oracle, dtype, f"x at step {t}")
            for o in (mine.opt, oracle.opt):
                o.train()
    return mine, oracle


@pytest.mark.parametrize("api", list(APIS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_schedulefree(case, dtype, api):
    name, kwargs = case
    mine, oracle = run(name, kwargs, dtype, api)
    _assert_close(mine, oracle, dtype, "y")
    _assert_same_progress(mine.opt.param_groups, oracle.opt.param_groups)
    initial = _initial(dtype)
    assert all(not np.array_equal(a, b) for a, b in zip(mine.arrays(), initial) if a.size)
    for o in (mine.opt, oracle.opt):
        o.eval()
    _assert_close(mine, oracle, dtype, "x")
    assert all(not g["train_mode"] for g in mine.opt.param_groups)


@pytest.mark.parametrize("api", list(APIS))
def test_matches_the_foreach_path_too(api):
    """The package's default (foreach=True) is the same rule."""
    mine, oracle = run("AdamWScheduleFree", ADAMW[-1], np.float32, api, oracle_foreach=True)
    _assert_close(mine, oracle, np.float32, "y")


@pytest.mark.parametrize("name", ["AdamWScheduleFree", "SGDScheduleFree"])
def test_missing_gradients_and_a_group_added_later(name):
    """fastopt.torch with some gradients None (those parameters keep y, and their z starts at
    their first gradient, while the group's k goes on) and a group added at step 30."""
    dtype = np.float64
    rng = np.random.default_rng(2)
    initial = _initial(dtype)
    late = rng.standard_normal((4, 3))
    kwargs = dict(lr=0.01 if name.startswith("AdamW") else 0.1, warmup_steps=5)
    mine = TorchAPI(name, initial, kwargs)
    oracle = Oracle(name, initial, kwargs)
    for o in (mine.opt, oracle.opt):
        o.train()
    skip = {(0, 1), (2, 0), (4, 2)}
    for t in range(1, 61):
        if t == 30:
            mine.params.append(torch.tensor(late.copy()))
            oracle.params.append(torch.tensor(late.copy()))
            mine.opt.add_param_group({"params": [mine.params[-1]], "lr": 0.02})
            oracle.opt.add_param_group({"params": [oracle.params[-1]], "lr": 0.02})
            oracle.opt.param_groups[-1]["train_mode"] = True  # fastopt's new group inherits it
        grads = _grads(rng, dtype, t, skip) + ([rng.standard_normal((4, 3))] if t >= 30 else [])
        mine.step(grads)
        oracle.step(grads)
    _assert_close(mine, oracle, dtype, "y")
    _assert_same_progress(mine.opt.param_groups, oracle.opt.param_groups)
    assert mine.opt.param_groups[1]["k"] == 31


@pytest.mark.parametrize("api", list(APIS))
def test_step_in_eval_mode_is_refused_and_changes_nothing(api):
    initial = _initial(np.float64)
    mine = APIS[api]("AdamWScheduleFree", initial, dict(lr=0.01))
    twin = APIS[api]("AdamWScheduleFree", initial, dict(lr=0.01))
    rng = np.random.default_rng(3)
    for o in (mine, twin):
        o.opt.train()
    grads = _grads(rng, np.float64, 1)
    mine.step(grads)
    twin.step(grads)
    mine.opt.eval()
    before = [a.copy() for a in mine.arrays()]
    with pytest.raises(RuntimeError, match="eval mode"):
        mine.step(_grads(rng, np.float64, 2))
    assert all(np.array_equal(a, b) for a, b in zip(mine.arrays(), before))
    assert mine.opt.param_groups[0]["k"] == 1
    mine.opt.train()
    grads = _grads(rng, np.float64, 3)
    mine.step(grads)
    twin.step(grads)
    assert all(np.array_equal(a, b) for a, b in zip(mine.arrays(), twin.arrays()))


def test_train_and_eval_move_only_stepped_parameters_and_are_idempotent():
    """A parameter never stepped has no z and stays where it is; eval() twice moves once."""
    params = [np.ones(3), np.full(2, 2.0)]
    opt = fastopt.SGDScheduleFree(params, lr=0.5)
    opt.train()
    for g in (1.0, -2.0):  # at the first step y, x and z are one point
        opt.step([np.full(3, g), np.full(2, g)])
    y = [p.copy() for p in params]
    opt.add_param_group({"params": [np.full(4, 3.0)]})
    opt.eval()
    x = [p.copy() for p in params]
    opt.eval()
    assert all(np.array_equal(a, b) for a, b in zip(params, x))
    assert not np.array_equal(x[0], y[0])
    assert np.array_equal(opt.param_groups[1]["params"][0], np.full(4, 3.0))
    opt.train()
    assert all(np.allclose(a, b, rtol=1e-15, atol=1e-15) for a, b in zip(params, y))


def _wrong_decay_at_z(param, grad, state, *, weight_decay, **kw):
    """Schedule-Free AdamW with its weight decay taken at z instead of y."""
    z = state.get("z", param)
    progress = _correct(param, grad, state, weight_decay=0.0, **kw)
    param -= kw["lr"] * weight_decay * z
    return progress


_correct = reference.adamw_schedule_free


def test_tolerance_rejects_a_wrong_rule(monkeypatch):
    monkeypatch.setattr(reference, "adamw_schedule_free", _wrong_decay_at_z)
    name, kwargs = CASES[2]
    mine = reference.AdamWScheduleFree([p.copy() for p in _initial(np.float32)], **kwargs)
    oracle = Oracle(name, _initial(np.float32), kwargs)
    for o in (mine, oracle.opt):
        o.train()
    rng = np.random.default_rng(1)
    for t in range(1, STEPS + 1):
        grads = _grads(rng, np.float32, t)
        mine.step(grads)
        oracle.step(grads)
    params = [p for g in mine.param_groups for p in g["params"]]
    errors = [scaled_error(a, b.numpy()) for a, b in zip(params, oracle.params)]
    assert max(errors) > 100 * TOLERANCE[np.float32]
