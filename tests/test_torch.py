"""fastopt.torch: drop-in torch.optim optimizers, zero-copy over flat buffers.

Proves that every configuration in ``conftest.CONFIGS``, in float32 and float64, trains a real
torch model (an MLP with four layers and biases) for 200 steps to the same losses and
parameters as the matching ``torch.optim`` class; that parameters and gradients are views of
the flat buffers (backward writes straight into them); that parameters without a gradient,
frozen parameters, schedules, state dicts through files (both ways between fastopt.torch and
torch.optim), added groups, hand-assigned gradients, mixed dtypes and channels_last weights
behave as in torch; and that unsupported parameters are refused at construction, changing
nothing.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastopt.torch as ft  # noqa: E402

from conftest import CONFIGS, CONFIG_IDS, PER_CLASS, PER_CLASS_IDS, assert_close  # noqa: E402

STEPS = 200
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["f32", "f64"]
NAMES = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adadelta", "Adamax", "NAdam"]

# CONFIGS' learning rates suit random gradient streams; on this model a few of them (RMSprop
# with momentum) make training chaotic, where any rounding difference grows without bound.
# At 0.3 times those rates no trajectory is: measured over every configuration, the largest
# deviation from torch.optim after 200 steps (relative to the largest parameter) is 1.4e-5 in
# float32 and 1.3e-13 in float64 (RMSprop with momentum; every other configuration is below
# 3e-6 and 4e-14). A 1% change of the learning rate moves the result by far more than these
# bounds (test_tolerance_detects_a_wrong_rate).
LR_SCALE = 0.3
RTOL = {torch.float32: 1e-4, torch.float64: 1e-11}


def mlp(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
              torch.nn.Linear(32, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)]
    return torch.nn.Sequential(*layers).to(dtype)


def data(dtype, n=256):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g, dtype=dtype), torch.randn(n, 3, generator=g, dtype=dtype)


def kwargs_for(config):
    return {**config.kwargs, "lr": config.kwargs.get("lr", 1.0) * LR_SCALE}


def train(model, opt, x, y, steps=STEPS, *, sign=1.0, start=0, scheduler=None):
    """Mini-batches of 32 in a fixed order; returns the losses. ``sign=-1`` ascends -loss,
    which is how a maximizing optimizer trains."""
    losses = []
    for k in range(start, start + steps):
        batch = slice(k * 32 % len(x), k * 32 % len(x) + 32)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        (sign * loss).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return np.array(losses)


def assert_same_model(a, b, rtol, what=""):
    for k, (p, q) in enumerate(zip(a.parameters(), b.parameters())):
        assert_close(p.detach().numpy(), q.detach().numpy(), rtol, f"{what} parameter {k}")


def pair(name, dtype=torch.float32, model=mlp, **kwargs):
    """The same model twice, one under fastopt.torch.<name>, one under torch.optim.<name>."""
    a, b = model(dtype), model(dtype)
    return a, getattr(ft, name)(a.parameters(), **kwargs), b, getattr(torch.optim, name)(b.parameters(), **kwargs)


def flat_of(opt, p):
    """The flat parameter buffer ``p`` lives in."""
    return opt.flat_params(p.dtype)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_trains_like_torch(config, dtype):
    kwargs = kwargs_for(config)
    a, opt, b, ref = pair(config.name, dtype, **kwargs)
    x, y = data(dtype)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    mine, theirs = train(a, opt, x, y, sign=sign), train(b, ref, x, y, sign=sign)
    assert_close(mine, theirs, RTOL[dtype], f"{config} losses")
    assert_same_model(a, b, RTOL[dtype], repr(config))
    assert not np.allclose(mine[-20:].mean(), mine[0], rtol=1e-3), "the model did not train"
    for p in a.parameters():  # still views of the flat buffer after 200 steps
        assert p.untyped_storage().data_ptr() == flat_of(opt, p).untyped_storage().data_ptr()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_tolerance_detects_a_wrong_rate(dtype):
    """The tolerances above are tight enough to catch a 1% error in the learning rate."""
    a, opt, _, _ = pair("Adam", dtype, lr=0.003)
    b = mlp(dtype)
    ref = torch.optim.Adam(b.parameters(), lr=0.003 * 1.01)
    x, y = data(dtype)
    train(a, opt, x, y)
    train(b, ref, x, y)
    with pytest.raises(AssertionError):
        assert_same_model(a, b, RTOL[dtype])


@pytest.mark.parametrize("name", NAMES)
def test_arguments_are_torchs(name):
    ours, theirs = getattr(ft, name), getattr(torch.optim, name)
    assert inspect.signature(ours) == inspect.signature(theirs)
    a, b = mlp(), mlp()
    mine, ref = ours(a.parameters()), theirs(b.parameters())
    assert isinstance(mine, torch.optim.Optimizer)
    for key, value in mine.param_groups[0].items():  # same defaults, where torch has the key
        if key != "params" and key in ref.param_groups[0]:
            assert value == ref.param_groups[0][key], key


def test_positional_arguments_bind_as_in_torch():
    a, b = mlp(), mlp()
    mine = ft.RMSprop(a.parameters(), 0.02, 0.9, 1e-6, 0.01, 0.5, True)
    ref = torch.optim.RMSprop(b.parameters(), 0.02, 0.9, 1e-6, 0.01, 0.5, True)
    for key in ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"):
        assert mine.param_groups[0][key] == ref.param_groups[0][key]


# ----------------------------------------------------------------------------- zero copy
def test_parameters_and_gradients_are_views_of_the_flat_buffers():
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    opt = ft.Adam(model.parameters(), lr=1e-3)
    flat, grads = opt.flat_params(), opt.flat_grads()
    assert flat.dtype == grads.dtype == torch.float32
    assert flat.numel() >= sum(p.numel() for p in model.parameters())
    for p, old in zip(model.parameters(), before):
        assert torch.equal(p, old)  # values carried over
        assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
        assert p.grad.untyped_storage().data_ptr() == grads.untyped_storage().data_ptr()
    x, y = data(torch.float32)
    torch.nn.functional.mse_loss(model(x), y).backward()
    for p in model.parameters():  # backward wrote into the flat gradient buffer
        offset = (p.grad.data_ptr() - grads.data_ptr()) // 4
        assert torch.equal(grads[offset : offset + p.numel()], p.grad.flatten())
        assert grads[offset : offset + p.numel()].abs().sum() > 0
    flat[:] = 0.5  # and a write to the flat buffer is the model's parameters
    assert all(bool((p == 0.5).all()) for p in model.parameters())
    opt.step()
    assert not torch.equal(model[0].weight, torch.full_like(model[0].weight, 0.5))


def test_zero_grad_keeps_the_views():
    model = mlp()
    opt = ft.SGD(model.parameters(), lr=0.1)
    views = [p.grad for p in model.parameters()]
    x, y = data(torch.float32)
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.zero_grad()
    assert all(p.grad is v for p, v in zip(model.parameters(), views))
    assert float(opt.flat_grads().abs().sum()) == 0.0


def test_model_zero_grad_and_assigned_gradients_are_copied_in():
    """model.zero_grad() sets .grad to None, so backward makes new tensors; a step copies them
    into the flat buffer and restores the views. Results stay torch's."""
    a, opt, b, ref = pair("Adam", torch.float64, lr=0.01)
    x, y = data(torch.float64)
    for k in range(5):
        for model, o in ((a, opt), (b, ref)):
            model.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            if k == 3:
                model[0].bias.grad = torch.ones_like(model[0].bias)  # assigned by hand
            o.step()
    assert_same_model(a, b, RTOL[torch.float64])
    grads = opt.flat_grads()
    for p in a.parameters():
        assert p.grad.untyped_storage().data_ptr() == grads.untyped_storage().data_ptr()


def test_flat_buffers_by_dtype():
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2).double()
    opt = ft.SGD([*a.parameters(), *b.parameters()], lr=0.1)
    assert opt.flat_params(torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="dtype"):
        opt.flat_params()
    with pytest.raises(ValueError, match="float16"):
        opt.flat_grads(torch.float16)


# ----------------------------------------------------------------------------- as torch does
class Branches(torch.nn.Module):
    """Two heads over a trunk; ``head`` picks the one used, so the other gets no gradient."""

    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Linear(6, 16)
        self.heads = torch.nn.ModuleList([torch.nn.Linear(16, 3), torch.nn.Linear(16, 3)])
        self.head = 0

    def forward(self, x):
        return self.heads[self.head](torch.tanh(self.trunk(x)))


def branches(dtype, seed=0):
    torch.manual_seed(seed)
    return Branches().to(dtype)


@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_parameters_without_gradient_are_left_alone(config):
    """Steps counted per parameter, as torch counts them: head 1 is used on every third step
    only, so its step count, bias corrections and state differ from the trunk's."""
    dtype = torch.float64
    kwargs = kwargs_for(config)
    a, opt, b, ref = pair(config.name, dtype, model=branches, **kwargs)
    x, y = data(dtype)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    for k in range(60):
        a.head = b.head = 1 if k % 3 == 2 else 0
        train(a, opt, x, y, 1, sign=sign, start=k)
        train(b, ref, x, y, 1, sign=sign, start=k)
    assert_same_model(a, b, RTOL[dtype], repr(config))
    mine, theirs = opt.state_dict()["state"], ref.state_dict()["state"]
    assert mine.keys() == theirs.keys()
    for index, entry in theirs.items():
        assert mine[index].keys() == entry.keys()
        for key, value in entry.items():
            assert_close(mine[index][key].numpy(), value.numpy(), RTOL[dtype], f"{index} {key}")


def test_zero_grad_set_to_none_false_steps_zero_gradients():
    a, opt, b, ref = pair("Adam", torch.float64, model=branches, lr=0.01)
    x, y = data(torch.float64)
    for model, o in ((a, opt), (b, ref)):
        for k in range(4):
            o.zero_grad(set_to_none=False)
            model.head = k % 2
            torch.nn.functional.mse_loss(model(x), y).backward()
            o.step()
    assert_same_model(a, b, RTOL[torch.float64])


def test_frozen_parameters_are_skipped_until_they_get_a_gradient():
    a, b = mlp(torch.float64), mlp(torch.float64)
    for model in (a, b):
        model[0].requires_grad_(False)
    frozen = a[0].weight.data_ptr()
    opt = ft.Adam(a.parameters(), lr=0.01)
    ref = torch.optim.Adam(b.parameters(), lr=0.01)
    assert a[0].weight.data_ptr() == frozen and a[0].weight.grad is None  # not packed
    x, y = data(torch.float64)
    train(a, opt, x, y, 5)
    train(b, ref, x, y, 5)
    assert a[0].weight.data_ptr() == frozen
    for model in (a, b):  # unfrozen: packed in at the next step, then trained as torch trains it
        model[0].requires_grad_(True)
    train(a, opt, x, y, 5, start=5)
    train(b, ref, x, y, 5, start=5)
    assert a[0].weight.untyped_storage().data_ptr() == opt.flat_params().untyped_storage().data_ptr()
    assert_same_model(a, b, RTOL[torch.float64])
    assert opt.state_dict()["state"].keys() == ref.state_dict()["state"].keys()


@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam"])
def test_torch_schedules_drive_the_groups(name):
    """OneCycleLR sets lr and cycles momentum (SGD) or beta1 (Adam, NAdam) at every step."""
    kwargs = {"lr": 0.01, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
    a, opt, b, ref = pair(name, torch.float64, **kwargs)
    schedulers = [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=60)
                  for o in (opt, ref)]
    x, y = data(torch.float64)
    train(a, opt, x, y, 60, scheduler=schedulers[0])
    train(b, ref, x, y, 60, scheduler=schedulers[1])
    assert opt.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
    assert_same_model(a, b, RTOL[torch.float64])


def test_reduce_on_plateau_and_step_lr():
    a, opt, b, ref = pair("RMSprop", torch.float64, lr=0.01)
    plateau = [torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=1, factor=0.5) for o in (opt, ref)]
    x, y = data(torch.float64)
    for epoch in range(8):
        losses = [train(a, opt, x, y, 4, start=4 * epoch), train(b, ref, x, y, 4, start=4 * epoch)]
        for scheduler, loss in zip(plateau, losses):
            scheduler.step(1.0)  # never improves: the rate halves every other epoch
    assert opt.param_groups[0]["lr"] == ref.param_groups[0]["lr"] < 0.01
    assert_same_model(a, b, RTOL[torch.float64])


def test_add_param_group_as_in_torch():
    dtype = torch.float64
    a, opt, b, ref = pair("Adam", dtype, lr=0.01)
    x, y = data(dtype)
    extra = {}
    for model, o in ((a, opt), (b, ref)):
        torch.manual_seed(5)
        extra[o] = torch.nn.Linear(3, 3).to(dtype)
    train(a, opt, x, y, 5)
    train(b, ref, x, y, 5)
    before = opt.flat_params().data_ptr()
    for o in (opt, ref):
        o.add_param_group({"params": extra[o].parameters(), "lr": 0.02})
    assert opt.flat_params().data_ptr() != before  # laid out again
    for k in range(5, 15):
        for model, o in ((a, opt), (b, ref)):
            o.zero_grad()
            out = model(x[:32])
            (torch.nn.functional.mse_loss(out, y[:32]) + extra[o](out).square().mean()).backward()
            o.step()
    assert_same_model(a, b, RTOL[dtype])
    assert_same_model(extra[opt], extra[ref], RTOL[dtype])
    assert opt.param_groups[1]["lr"] == 0.02


def test_closure():
    a, opt, b, ref = pair("Adadelta", torch.float64)
    x, y = data(torch.float64)
    for model, o in ((a, opt), (b, ref)):
        def closure():
            o.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss
        for _ in range(3):
            loss = o.step(closure)
    assert_same_model(a, b, RTOL[torch.float64])
    assert isinstance(loss, torch.Tensor)


def test_mixed_dtypes_and_channels_last():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
            self.head = torch.nn.Linear(4, 2).double()

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)).double())

    def net(dtype):
        torch.manual_seed(0)
        return Net()

    a, opt, b, ref = pair("Adam", model=net, lr=0.01)
    assert a.conv.weight.stride() == b.conv.weight.stride() != a.conv.weight.contiguous().stride()
    x = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    for model, o in ((a, opt), (b, ref)):
        for _ in range(20):
            o.zero_grad()
            model(x).square().mean().backward()
            o.step()
    # The float64 head is fed by the float32 convolution: float32's tolerance holds for both.
    assert_close(a.head.weight.detach().numpy(), b.head.weight.detach().numpy(), RTOL[torch.float32])
    assert_close(a.conv.weight.detach().numpy(), b.conv.weight.detach().numpy(), RTOL[torch.float32])
    assert a.conv.weight.stride() == b.conv.weight.stride()
    assert a.head.weight.untyped_storage().data_ptr() == opt.flat_params(torch.float64).untyped_storage().data_ptr()


# ----------------------------------------------------------------------------- state dicts
@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_state_dict_through_a_file_resumes_bit_for_bit(config, tmp_path):
    dtype = torch.float32
    kwargs = kwargs_for(config)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    x, y = data(dtype)
    straight = mlp(dtype)
    opt = getattr(ft, config.name)(straight.parameters(), **kwargs)
    train(straight, opt, x, y, 20, sign=sign)
    torch.save({"model": straight.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    train(straight, opt, x, y, 20, sign=sign, start=20)

    resumed = mlp(dtype, seed=7)
    opt2 = getattr(ft, config.name)(resumed.parameters(), **kwargs)
    checkpoint = torch.load(tmp_path / "ckpt.pt")
    resumed.load_state_dict(checkpoint["model"])
    opt2.load_state_dict(checkpoint["opt"])
    train(resumed, opt2, x, y, 20, sign=sign, start=20)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_state_dicts_load_across_torch_and_fastopt(config, tmp_path):
    """torch.optim's state dict, through a file, continues in fastopt.torch, and fastopt.torch's
    in torch.optim: both match a run that never switched."""
    dtype = torch.float64
    kwargs = kwargs_for(config)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    x, y = data(dtype)
    cls = {"fastopt": getattr(ft, config.name), "torch": getattr(torch.optim, config.name)}
    for first, then in (("torch", "fastopt"), ("fastopt", "torch")):
        model = mlp(dtype)
        opt = cls[first](model.parameters(), **kwargs)
        train(model, opt, x, y, 15, sign=sign)
        torch.save(opt.state_dict(), tmp_path / f"{first}.pt")
        switched = mlp(dtype, seed=3)
        switched.load_state_dict(model.state_dict())
        opt2 = cls[then](switched.parameters(), **kwargs)
        opt2.load_state_dict(torch.load(tmp_path / f"{first}.pt"))
        train(switched, opt2, x, y, 15, sign=sign, start=15)
        train(model, opt, x, y, 15, sign=sign, start=15)
        assert_same_model(switched, model, RTOL[dtype], f"{first} -> {then}")


def test_state_is_torchs_layout_with_views():
    model = mlp()
    opt = ft.Adam(model.parameters(), amsgrad=True)
    assert opt.state == {} and opt.state_dict()["state"] == {}
    x, y = data(torch.float32)
    train(model, opt, x, y, 3)
    state = opt.state[model[0].weight]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert state["step"].dtype == torch.float32 and float(state["step"]) == 3
    assert state["exp_avg"].shape == model[0].weight.shape
    before = state["exp_avg"].clone()
    train(model, opt, x, y, 1, start=3)
    assert not torch.equal(state["exp_avg"], before)  # a view: it follows the steps


def test_adagrad_state_exists_from_construction_as_in_torch():
    a, opt, b, ref = pair("Adagrad", initial_accumulator_value=0.25)
    mine, theirs = opt.state_dict()["state"], ref.state_dict()["state"]
    assert mine.keys() == theirs.keys() and len(mine) == 8
    assert float(mine[0]["step"]) == 0 and bool((mine[0]["sum"] == 0.25).all())


def test_bad_state_dicts_change_nothing():
    model = mlp(torch.float64)
    opt = ft.Adam(model.parameters(), lr=0.01)
    x, y = data(torch.float64)
    train(model, opt, x, y, 3)
    good = opt.state_dict()
    snapshot = {k: {n: v.clone() for n, v in e.items()} for k, e in good["state"].items()}
    groups = [dict(g) for g in opt.param_groups]

    def broken(change):
        sd = {"state": {k: dict(e) for k, e in good["state"].items()},
              "param_groups": [dict(g) for g in good["param_groups"]]}
        change(sd)
        return sd

    cases = [
        (lambda sd: sd.pop("state"), ValueError, "keys"),
        (lambda sd: sd["param_groups"].append({"params": []}), ValueError, "groups"),
        (lambda sd: sd["param_groups"][0].update(lr=-1.0), ValueError, "lr"),
        (lambda sd: sd["param_groups"][0].update(params=[0, 1]), ValueError, "parameters"),
        (lambda sd: sd["state"][3].update(exp_avg=torch.zeros(5)), ValueError, "shape"),
        (lambda sd: sd["state"][3].update(momentum_buffer=torch.zeros(5)), ValueError, "unknown"),
        (lambda sd: sd["state"][3].pop("exp_avg_sq"), ValueError, "missing"),
        (lambda sd: sd["state"][3].update(step=torch.tensor(2.5)), ValueError, "whole number"),
        (lambda sd: sd["state"].update({99: {}}), ValueError, "no parameter"),
    ]
    for change, error, words in cases:
        with pytest.raises(error, match=words):
            opt.load_state_dict(broken(change))
        now = opt.state_dict()
        for k, entry in snapshot.items():
            for n, v in entry.items():
                assert torch.equal(now["state"][k][n], v)
        assert [{k: v for k, v in g.items()} for g in opt.param_groups] == groups


# ----------------------------------------------------------------------------- refused
def _owner_of_storage():
    big = torch.zeros(10, requires_grad=False)
    return torch.nn.Parameter(big[2:6])


@pytest.mark.parametrize("make, error, words", [
    (lambda: torch.nn.Parameter(torch.zeros(3, device="meta")), ValueError, "CPU"),
    (lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.float16)), TypeError, "float16"),
    (lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16)), TypeError, "bfloat16"),
    (lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64)), TypeError, "complex64"),
    (lambda: torch.nn.Parameter(torch.zeros(4, 4).to_sparse()), ValueError, "strided"),
    (_owner_of_storage, ValueError, "owns its storage"),
    (lambda: torch.nn.Parameter(torch.zeros(4, 6)[:, ::2]), ValueError, "owns its storage|dense"),
])
def test_unsupported_parameters_are_refused(make, error, words):
    good = torch.nn.Parameter(torch.ones(3))
    address = good.data_ptr()
    with pytest.raises(error, match=words):
        ft.Adam([good, make()])
    assert good.data_ptr() == address and good.grad is None  # nothing was re-pointed


def test_sparse_gradients_and_shared_storage_are_refused():
    p = torch.nn.Parameter(torch.zeros(4, 3))
    p.grad = torch.zeros(4, 3).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        ft.SGD([p], lr=0.1)
    storage = torch.zeros(6)
    a, b = torch.nn.Parameter(storage), torch.nn.Parameter(storage.view(2, 3))
    with pytest.raises(ValueError, match="params\\[0\\]"):
        ft.SGD([a, b], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):  # torch's check
        ft.SGD([{"params": [a]}, {"params": [torch.nn.Parameter(torch.zeros(2)), a]}], lr=0.1)
    with pytest.warns(UserWarning, match="duplicate"), pytest.raises(ValueError, match="once"):
        ft.SGD([a, a], lr=0.1)  # torch only warns; one parameter cannot live in two places


@pytest.mark.parametrize("kwargs, error, words", [
    ({"lr": -1.0}, ValueError, "lr"),
    ({"betas": (0.9, 1.5)}, ValueError, "betas"),
    ({"capturable": True}, ValueError, "capturable"),
    ({"differentiable": True}, ValueError, "differentiable"),
    ({"nesterov_": True}, TypeError, "nesterov_"),
])
def test_bad_arguments(kwargs, error, words):
    model = mlp()
    address = model[0].weight.data_ptr()
    with pytest.raises(error, match=words):
        ft.Adam(model.parameters(), **kwargs)
    assert model[0].weight.data_ptr() == address


def test_foreach_and_fused_are_accepted():
    model = mlp()
    ft.Adam(model.parameters(), foreach=True, fused=False)


def test_bad_group_added_later_changes_nothing():
    model = mlp()
    opt = ft.SGD(model.parameters(), lr=0.1)
    address = opt.flat_params().data_ptr()
    extra = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    with pytest.raises(TypeError, match="float16"):
        opt.add_param_group({"params": [extra]})
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "lr": -1.0})
    assert len(opt.param_groups) == 1 and opt.flat_params().data_ptr() == address


def test_moved_parameters_raise_instead_of_updating_stale_memory():
    model = mlp()
    opt = ft.SGD(model.parameters(), lr=0.1)
    model.double()
    x, y = data(torch.float64)
    torch.nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(RuntimeError, match="create the optimizer again"):
        opt.step()


def test_a_second_optimizer_over_the_same_parameters_takes_them_over():
    model = mlp()
    first = ft.Adam(model.parameters(), lr=0.01)
    second = ft.Adam(model.parameters(), lr=0.01)
    x, y = data(torch.float32)
    train(model, second, x, y, 2)
    with pytest.raises(RuntimeError, match="params\\[0\\]"):
        first.step()


def test_cannot_be_pickled():
    import pickle

    with pytest.raises(TypeError, match="state_dict"):
        pickle.dumps(ft.SGD(mlp().parameters(), lr=0.1))


def test_hooks_are_removed_with_the_optimizer():
    import gc

    model = mlp()
    opt = ft.SGD(model.parameters(), lr=0.1)
    assert all(p._post_accumulate_grad_hooks for p in model.parameters())
    del opt
    gc.collect()
    assert not any(p._post_accumulate_grad_hooks for p in model.parameters())
