"""Adafactor against torch.optim.Adafactor (torch 2.13, the spec): fastopt.Adafactor (NumPy)
and fastopt.torch.Adafactor over 120 steps, float32 and float64, every option, every kind of
shape; fastopt.torch's state in torch's layout, loadable both ways. The generic behaviours of
torch's optimizers (optim_db's configurations and error inputs, hooks, state dicts) are in
test_torch_optim_db.py."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastopt  # noqa: E402
import fastopt.torch as fot  # noqa: E402

from conftest import assert_close  # noqa: E402
from test_adafactor import LARGE, OPTIONS, SHAPES  # noqa: E402

STEPS = 120
# The same operations, with sums in another order (torch's norms and means sum in float32,
# fastopt's in double): after 120 steps the parameters are within 5e-7 (float32) and 1.2e-15
# (float64) of torch's, relative to their scale (conftest.scaled_error, measured over OPTIONS).
RTOL = {torch.float32: 5e-6, torch.float64: 1e-13}
TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


def _grads(shapes, dtype, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]


def _torch_run(start, grads, options, cls):
    params = [torch.tensor(p) for p in start]
    opt = cls([{"params": params[:3]}, {"params": params[3:], "lr": 0.5 * options.get("lr", 1e-2)}],
              **copy.deepcopy(options))
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.numpy() for p in params], opt


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_numpy_and_fastopt_torch_match_torch(option, dtype):
    shapes = SHAPES + LARGE
    rng = np.random.default_rng(1)
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = _grads(shapes, dtype, STEPS)
    options = OPTIONS[option]
    theirs, topt = _torch_run(start, grads, options, torch.optim.Adafactor)
    via_torch, fopt = _torch_run(start, grads, options, fot.Adafactor)
    mine = [p.copy() for p in start]
    opt = fastopt.Adafactor([{"params": mine[:3]}, {"params": mine[3:], "lr": 0.5 * options.get("lr", 1e-2)}],
                            **options)
    for step in grads:
        opt.step(step)
    rtol = RTOL[TORCH_DTYPES[dtype]]
    for i, (a, b, t) in enumerate(zip(mine, via_torch, theirs)):
        assert_close(a, t, rtol, f"fastopt.Adafactor params[{i}] {t.shape}")
        assert_close(b, t, rtol, f"fastopt.torch.Adafactor params[{i}] {t.shape}")
        assert not np.allclose(t, start[i]) or t.size == 0, f"params[{i}] did not move"
    # the same state, in torch's layout
    for i, (p, q) in enumerate(zip(topt.state, fopt.state)):
        ts, fs = topt.state[p], fopt.state[q]
        assert sorted(ts) == sorted(fs) == sorted(opt.state[i])
        for key in ts:
            assert ts[key].dtype == fs[key].dtype and ts[key].shape == fs[key].shape, key
            assert_close(fs[key].numpy(), ts[key].numpy(), rtol * 10, f"state[{i}][{key}]")
            assert_close(opt.state[i][key], ts[key].numpy(), rtol * 10, f"numpy state[{i}][{key}]")


def test_state_dicts_load_both_ways():
    """torch's state dict into fastopt (both front ends) and fastopt.torch's into torch:
    each continues as the uninterrupted torch run does."""
    shapes = [(6, 4), (9,), (2, 3, 5)]
    rng = np.random.default_rng(2)
    start = [rng.standard_normal(s) for s in shapes]
    grads = _grads(shapes, np.float64, 30)

    def run(first_cls, second_cls, numpy_second=False):
        params = [torch.tensor(p) for p in start]
        opt = first_cls(params, weight_decay=0.01)
        for step in grads[:15]:
            for p, g in zip(params, step):
                p.grad = torch.tensor(g)
            opt.step()
        sd = copy.deepcopy(opt.state_dict())
        if numpy_second:
            arrays = [p.numpy().copy() for p in params]
            second = fastopt.Adafactor(arrays)
            second.load_state_dict(sd)
            for step in grads[15:]:
                second.step(step)
            return arrays
        params2 = [p.detach().clone() for p in params]
        second = second_cls(params2)
        second.load_state_dict(sd)
        for step in grads[15:]:
            for p, g in zip(params2, step):
                p.grad = torch.tensor(g)
            second.step()
        return [p.numpy() for p in params2]

    whole = run(torch.optim.Adafactor, torch.optim.Adafactor)
    for what, got in [("torch into fastopt.torch", run(torch.optim.Adafactor, fot.Adafactor)),
                      ("fastopt.torch into torch", run(fot.Adafactor, torch.optim.Adafactor)),
                      ("torch into fastopt.Adafactor", run(torch.optim.Adafactor, None, True))]:
        for a, b in zip(got, whole):
            assert_close(a, b, 1e-12, what)


def test_a_model_trains_as_with_torch():
    """A small float64 MLP on a regression task, fastopt.torch.Adafactor beside torch's: the
    same losses, and the loss falls. (In float32 the two part near the end, where lr = 0.05
    makes the loss oscillate and the last bits of the sums decide each step.)"""
    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).double()

    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 8, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(dim=1, keepdim=True))
    losses = {}
    for cls in (torch.optim.Adafactor, fot.Adafactor):
        m = model()
        opt = cls(m.parameters(), lr=0.05)
        losses[cls] = []
        for _ in range(200):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(m(x), y)
            loss.backward()
            opt.step()
            losses[cls].append(loss.item())
    mine, theirs = losses[fot.Adafactor], losses[torch.optim.Adafactor]
    assert_close(mine, theirs, 1e-9, "losses")
    assert mine[-1] < 0.2 * mine[0]


def test_refuses_what_it_cannot_step():
    for t in (torch.zeros(3, dtype=torch.int32), torch.zeros(3).to_sparse()):
        with pytest.raises(TypeError, match="float32, float64, bfloat16 or float16"):
            fot.Adafactor([t])
    opt = fot.Adafactor([torch.zeros(2, 2)])
    with pytest.raises(TypeError, match="float32, float64, bfloat16 or float16"):
        opt.add_param_group({"params": [torch.zeros(2, dtype=torch.int64)]})
    bad = [({"state_dtype": "8bit"}, "8-bit"), ({"rounding": "stochastic"}, "bfloat16 and float16"),
           ({"rounding": "up"}, "rounding"), ({"state_dtype": "float64"}, "float64")]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            opt.add_param_group({"params": [torch.zeros(2)], **kwargs})
        with pytest.raises(ValueError, match=match):
            fot.Adafactor([torch.zeros(2)], **kwargs)
    with pytest.raises(ValueError, match="'stochastic' is for bfloat16"):
        fot.Adafactor([torch.zeros(2, dtype=torch.float16)], rounding="stochastic")
    assert len(opt.param_groups) == 1
    c = torch.zeros(3, dtype=torch.complex64, requires_grad=True)
    opt = fot.Adafactor([c])  # as torch: refused at the step
    c.grad = torch.ones_like(c)
    with pytest.raises(RuntimeError, match="complex"):
        opt.step()


def test_a_bad_group_stops_the_step_before_anything_moves():
    a, b = (torch.ones(3, 2, requires_grad=True), torch.ones(3, requires_grad=True))
    opt = fot.Adafactor([{"params": [a]}, {"params": [b]}])
    a.grad, b.grad = torch.ones(3, 2), torch.ones(3)
    opt.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    assert torch.equal(a, torch.ones(3, 2)) and torch.equal(b, torch.ones(3))
    assert all(float(s["step"]) == 0 for s in opt.state.values())


def test_numpy_schedules_and_clipping_match_torchs():
    """fastopt.Adafactor under fastopt.lr_scheduler's OneCycleLR (cycle_momentum=False:
    Adafactor has no momentum), its gradients clipped by fastopt.clip_grad_norm_, against
    torch.optim.Adafactor under torch's scheduler and clipping."""
    import fastopt.lr_scheduler as fls

    shapes = [(6, 5), (4,)]
    rng = np.random.default_rng(4)
    start = [rng.standard_normal(s) for s in shapes]
    grads = _grads(shapes, np.float64, 60, seed=5)
    mine = [p.copy() for p in start]
    opt = fastopt.Adafactor(mine)
    schedule = fls.OneCycleLR(opt, max_lr=0.05, total_steps=60, cycle_momentum=False)
    params = [torch.tensor(p) for p in start]
    topt = torch.optim.Adafactor(params)
    tschedule = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.05, total_steps=60,
                                                    cycle_momentum=False)
    for step in grads:
        given = [g.copy() for g in step]
        fastopt.clip_grad_norm_(given, 1.0)
        opt.step(given)
        schedule.step()
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        topt.step()
        tschedule.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
    for a, p in zip(mine, params):
        assert_close(a, p.numpy(), 1e-12, "scheduled and clipped")
