"""fastopt.torch: drop-in torch.optim optimizers, stepping parameters where torch keeps them.

Proves that every configuration in ``conftest.CONFIGS``, in float32 and float64, trains a real
torch model (an MLP with four layers and biases) for 200 steps to the same losses and
parameters as the matching ``torch.optim`` class; that parameters never move (a step updates
their own storage) and gradients are read where autograd put them; that parameters without a
gradient, frozen parameters, schedules, state dicts through files (both ways between
fastopt.torch and torch.optim), added groups, hand-assigned gradients, mixed dtypes, complex
parameters and channels_last weights behave as in torch; and that unsupported parameters are
refused at construction, changing nothing.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastopt.torch as ft  # noqa: E402
from fastopt.rules import RULES  # noqa: E402

from conftest import (  # noqa: E402
    TORCH_CONFIG_IDS, TORCH_CONFIGS, TORCH_PER_CLASS, TORCH_PER_CLASS_IDS, assert_close, rule_of)

# These train dense models: a rule that takes row-sparse gradients (SparseAdam) is trained on
# an embedding table in tests/test_oracles_sparse_adam.py.
_dense = [rule_of(c).gradient == "dense" for c in TORCH_CONFIGS]
TORCH_CONFIGS = [c for c, d in zip(TORCH_CONFIGS, _dense) if d]
TORCH_CONFIG_IDS = [i for i, d in zip(TORCH_CONFIG_IDS, _dense) if d]
_dense = [rule_of(c).gradient == "dense" for c in TORCH_PER_CLASS]
TORCH_PER_CLASS = [c for c, d in zip(TORCH_PER_CLASS, _dense) if d]
TORCH_PER_CLASS_IDS = [i for i, d in zip(TORCH_PER_CLASS_IDS, _dense) if d]

STEPS = 200
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["f32", "f64"]
NAMES = [name for name in ft.OPTIMIZERS if hasattr(torch.optim, name)]

# CONFIGS' learning rates suit random gradient streams; on this model a few of them (RMSprop
# with momentum) make training chaotic, where any rounding difference grows without bound.
# At 0.3 times those rates no trajectory is: measured over every configuration, the largest
# deviation from torch.optim after 200 steps (relative to the largest parameter) is 1.4e-5 in
# float32 and 1.3e-13 in float64 (RMSprop with momentum; every other configuration is below
# 3e-6 and 4e-14). A 1% change of the learning rate moves the result by far more than these
# bounds (test_tolerance_detects_a_wrong_rate).
LR_SCALE = 0.3
RTOL = {torch.float32: 1e-4, torch.float64: 1e-11}


def mlp(dtype=torch.float32, seed=0, bias=True):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(6, 32, bias), torch.nn.Tanh(), torch.nn.Linear(32, 32, bias),
              torch.nn.Tanh(), torch.nn.Linear(32, 16, bias), torch.nn.Tanh(),
              torch.nn.Linear(16, 3, bias)]
    return torch.nn.Sequential(*layers).to(dtype)


def biased(name):
    """Whether the models ``name`` trains have biases: not for a rule of matrices (Muon), which
    takes 2-D parameters only, as torch's does; its models are their weight matrices."""
    return RULES[name].matrix is None


# Muon's Newton–Schulz iteration runs in bfloat16 on both sides, through different float32
# sums inside its matrix products (NumPy's BLAS, torch's): now and then a bfloat16 result lies
# on the other side of a tie, and the iteration spreads that over its matrix (test_muon.py).
# Over the 200 steps of test_trains_like_torch (32 × 32 matrices, the updates' sums of 32
# terms), where each step's gradient follows from the parameters the last one left, the
# largest deviation measured is 1.3e-2 of the largest element of a parameter ("muon",
# float32; float64 alike: both sides iterate in bfloat16). That is no finer than a 1% change of the learning rate would make, so here
# the bound only says the training follows torch's; the rule itself is held tighter where the
# gradients do not feed back: 1e-3 over 120 steps (test_against_torch.py), the last bit or
# so per step and bitwise the iteration on small matrices (test_muon.py).
RTOL_MATRIX = 3e-2


def rtol(name, dtype):
    return RTOL[dtype] if biased(name) else RTOL_MATRIX


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
    a, b = model(dtype, bias=biased(name)), model(dtype, bias=biased(name))
    return a, getattr(ft, name)(a.parameters(), **kwargs), b, getattr(torch.optim, name)(b.parameters(), **kwargs)


def addresses(model):
    return [p.data_ptr() for p in model.parameters()]


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=TORCH_CONFIG_IDS)
def test_trains_like_torch(config, dtype):
    kwargs = kwargs_for(config)
    a, opt, b, ref = pair(config.name, dtype, **kwargs)
    where = addresses(a)
    x, y = data(dtype)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    mine, theirs = train(a, opt, x, y, sign=sign), train(b, ref, x, y, sign=sign)
    assert_close(mine, theirs, rtol(config.name, dtype), f"{config} losses")
    assert_same_model(a, b, rtol(config.name, dtype), repr(config))
    assert not np.allclose(mine[-20:].mean(), mine[0], rtol=1e-3), "the model did not train"
    assert addresses(a) == where  # stepped in place: the parameters never moved


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
    mine, torchs = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    assert list(mine)[:len(torchs)] == list(torchs)  # torch's, in torch's order, then
    assert all(mine[k] == torchs[k] for k in torchs)
    assert list(mine)[len(torchs):] == ["state_dtype", "rounding", "seed"]  # fastopt's storage
    a, b = mlp(bias=biased(name)), mlp(bias=biased(name))
    mine, ref = ours(a.parameters()), theirs(b.parameters())
    assert isinstance(mine, torch.optim.Optimizer)
    for key, value in mine.param_groups[0].items():  # same defaults, where torch has the key
        if key != "params" and key in ref.param_groups[0]:
            assert value == ref.param_groups[0][key], key


@pytest.mark.parametrize("state_dtype", ["bfloat16", "float16"])
def test_state_kept_in_low_precision_is_shown_as_torch_tensors_and_resumes(state_dtype):
    pytest.importorskip("ml_dtypes")
    x, y = data(torch.float32)
    a, b = mlp(), mlp()
    opt = ft.Adam(a.parameters(), lr=0.01, state_dtype=state_dtype)
    train(a, opt, x, y, steps=3)
    p = next(a.parameters())
    assert opt.state[p]["exp_avg"].dtype == getattr(torch, state_dtype)
    assert opt.state[p]["exp_avg"].shape == p.shape
    b.load_state_dict(a.state_dict())
    resumed = ft.Adam(b.parameters(), lr=0.01, state_dtype=state_dtype)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(a, opt, x, y, steps=2)
    train(b, resumed, x, y, steps=2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_positional_arguments_bind_as_in_torch():
    a, b = mlp(), mlp()
    mine = ft.RMSprop(a.parameters(), 0.02, 0.9, 1e-6, 0.01, 0.5, True)
    ref = torch.optim.RMSprop(b.parameters(), 0.02, 0.9, 1e-6, 0.01, 0.5, True)
    for key in ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"):
        assert mine.param_groups[0][key] == ref.param_groups[0][key]


# ----------------------------------------------------------------------------- in place
def test_parameters_stay_where_torch_keeps_them_and_gradients_are_read_where_they_are():
    model = mlp()
    before = [(p.data_ptr(), p.untyped_storage().data_ptr(), p.detach().clone())
              for p in model.parameters()]
    opt = ft.Adam(model.parameters(), lr=1e-3)
    for p, (ptr, storage, value) in zip(model.parameters(), before):
        assert (p.data_ptr(), p.untyped_storage().data_ptr()) == (ptr, storage)
        assert torch.equal(p, value) and p.grad is None  # nothing moved, nothing created
    x, y = data(torch.float32)
    torch.nn.functional.mse_loss(model(x), y).backward()
    grads = [p.grad for p in model.parameters()]
    model[0].bias.grad.mul_(1000.0)  # the step must read this very tensor
    twin = mlp()
    ref = torch.optim.Adam(twin.parameters(), lr=1e-3)
    for p, g in zip(twin.parameters(), grads):
        p.grad = g.clone()
    opt.step()
    ref.step()
    assert_same_model(model, twin, 1e-6)
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))  # left as torch leaves them
    assert [p.data_ptr() for p in model.parameters()] == [b[0] for b in before]


def test_zero_grad_is_torchs():
    model = mlp()
    opt = ft.SGD(model.parameters(), lr=0.1)
    x, y = data(torch.float32)
    torch.nn.functional.mse_loss(model(x), y).backward()
    grads = [p.grad for p in model.parameters()]
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is g and not g.any() for p, g in zip(model.parameters(), grads))
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_model_zero_grad_and_assigned_gradients_are_read_as_they_are():
    """model.zero_grad() sets .grad to None, so backward makes new tensors; a gradient may
    also be assigned by hand, or laid out unlike its parameter. Results stay torch's."""
    a, opt, b, ref = pair("Adam", torch.float64, lr=0.01)
    x, y = data(torch.float64)
    for k in range(5):
        for model, o in ((a, opt), (b, ref)):
            model.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            if k == 3:
                model[0].bias.grad = torch.ones_like(model[0].bias)  # assigned by hand
            if k == 4:  # a transposed copy: same values, other strides
                g = model[0].weight.grad
                model[0].weight.grad = g.t().contiguous().t()
            o.step()
    assert_same_model(a, b, RTOL[torch.float64])
    assert a[0].weight.grad.stride() != a[0].weight.stride()  # still the user's tensor


def test_complex_parameters_as_torch():
    """torch steps a complex parameter as its real view; so does fastopt."""
    def run(cls):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.complex64))
        opt = cls([p], lr=0.01)
        for k in range(30):
            opt.zero_grad()
            (p * torch.linspace(1, 2, 3)).abs().pow(2).sum().backward()
            opt.step()
        return p.detach(), opt.state[p]
    for name in ("Adam", "SGD", "RMSprop", "NAdam"):
        mine, state = run(getattr(ft, name))
        theirs, _ = run(getattr(torch.optim, name))
        assert_close(torch.view_as_real(mine).numpy(), torch.view_as_real(theirs).numpy(),
                     RTOL[torch.float32], name)
        for key, value in state.items():
            if value.dim():
                assert value.dtype == torch.complex64 and value.shape == (5, 3), (name, key)


# ----------------------------------------------------------------------------- as torch does
class Branches(torch.nn.Module):
    """Two heads over a trunk; ``head`` picks the one used, so the other gets no gradient."""

    def __init__(self, bias=True):
        super().__init__()
        self.trunk = torch.nn.Linear(6, 16, bias)
        self.heads = torch.nn.ModuleList([torch.nn.Linear(16, 3, bias),
                                          torch.nn.Linear(16, 3, bias)])
        self.head = 0

    def forward(self, x):
        return self.heads[self.head](torch.tanh(self.trunk(x)))


def branches(dtype, seed=0, bias=True):
    torch.manual_seed(seed)
    return Branches(bias).to(dtype)


@pytest.mark.parametrize("config", TORCH_PER_CLASS, ids=TORCH_PER_CLASS_IDS)
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
    assert_same_model(a, b, rtol(config.name, dtype), repr(config))
    mine, theirs = opt.state_dict()["state"], ref.state_dict()["state"]
    assert mine.keys() == theirs.keys()
    for index, entry in theirs.items():
        assert mine[index].keys() == entry.keys()
        for key, value in entry.items():
            assert_close(mine[index][key].numpy(), value.numpy(), rtol(config.name, dtype),
                         f"{index} {key}")


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
    assert a[0].weight.data_ptr() == frozen and a[0].weight.grad is None
    assert opt._engine.groups[0].members == [2, 3, 4, 5, 6, 7]  # no state laid out for it
    x, y = data(torch.float64)
    train(a, opt, x, y, 5)
    train(b, ref, x, y, 5)
    assert a[0].weight.data_ptr() == frozen
    for model in (a, b):  # unfrozen: given state at its first gradient, trained as torch trains it
        model[0].requires_grad_(True)
    train(a, opt, x, y, 5, start=5)
    train(b, ref, x, y, 5, start=5)
    assert a[0].weight.data_ptr() == frozen
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
    where = addresses(a)
    for o in (opt, ref):
        o.add_param_group({"params": extra[o].parameters(), "lr": 0.02})
    assert addresses(a) == where
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

    def net(dtype, bias=True):
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
    state = opt.state[a.conv.weight]
    assert state["exp_avg"].stride() == a.conv.weight.stride()  # state laid out as its parameter


# ----------------------------------------------------------------------------- state dicts
@pytest.mark.parametrize("config", TORCH_PER_CLASS, ids=TORCH_PER_CLASS_IDS)
def test_state_dict_through_a_file_resumes_bit_for_bit(config, tmp_path):
    dtype = torch.float32
    kwargs = kwargs_for(config)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    x, y = data(dtype)
    straight = mlp(dtype, bias=biased(config.name))
    opt = getattr(ft, config.name)(straight.parameters(), **kwargs)
    train(straight, opt, x, y, 20, sign=sign)
    torch.save({"model": straight.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    train(straight, opt, x, y, 20, sign=sign, start=20)

    resumed = mlp(dtype, seed=7, bias=biased(config.name))
    opt2 = getattr(ft, config.name)(resumed.parameters(), **kwargs)
    checkpoint = torch.load(tmp_path / "ckpt.pt")
    resumed.load_state_dict(checkpoint["model"])
    opt2.load_state_dict(checkpoint["opt"])
    train(resumed, opt2, x, y, 20, sign=sign, start=20)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("config", TORCH_PER_CLASS, ids=TORCH_PER_CLASS_IDS)
def test_state_dicts_load_across_torch_and_fastopt(config, tmp_path):
    """torch.optim's state dict, through a file, continues in fastopt.torch, and fastopt.torch's
    in torch.optim: both match a run that never switched."""
    dtype = torch.float64
    kwargs = kwargs_for(config)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    x, y = data(dtype)
    cls = {"fastopt": getattr(ft, config.name), "torch": getattr(torch.optim, config.name)}
    for first, then in (("torch", "fastopt"), ("fastopt", "torch")):
        model = mlp(dtype, bias=biased(config.name))
        opt = cls[first](model.parameters(), **kwargs)
        train(model, opt, x, y, 15, sign=sign)
        torch.save(opt.state_dict(), tmp_path / f"{first}.pt")
        switched = mlp(dtype, seed=3, bias=biased(config.name))
        switched.load_state_dict(model.state_dict())
        opt2 = cls[then](switched.parameters(), **kwargs)
        opt2.load_state_dict(torch.load(tmp_path / f"{first}.pt"))
        train(switched, opt2, x, y, 15, sign=sign, start=15)
        train(model, opt, x, y, 15, sign=sign, start=15)
        assert_same_model(switched, model, rtol(config.name, dtype), f"{first} -> {then}")


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


def test_nadam_mu_product_stays_float32_where_torchs_load_casts_it():
    """torch's load_state_dict casts NAdam's mu_product to the parameter's dtype (float64
    here), though an uninterrupted torch run keeps it in float32; fastopt keeps it in float32
    (SEMANTICS.md), so a resumed float64 run continues as the uninterrupted one."""
    a, opt, b, ref = pair("NAdam", torch.float64, lr=0.01)
    x, y = data(torch.float64)
    train(a, opt, x, y, 4)
    train(b, ref, x, y, 4)
    sd = ref.state_dict()
    for o in (opt, ref):
        o.load_state_dict(copy.deepcopy(sd))
    assert ref.state[b[0].weight]["mu_product"].dtype == torch.float64  # torch's cast
    assert opt.state[a[0].weight]["mu_product"].dtype == torch.float32
    straight = mlp(torch.float64)
    uninterrupted = torch.optim.NAdam(straight.parameters(), lr=0.01)
    train(straight, uninterrupted, x, y, 8)
    train(a, opt, x, y, 4, start=4)
    assert_same_model(a, straight, RTOL[torch.float64])


def test_adagrad_state_exists_from_construction_as_in_torch():
    a, opt, b, ref = pair("Adagrad", initial_accumulator_value=0.25)
    mine, theirs = opt.state_dict()["state"], ref.state_dict()["state"]
    assert mine.keys() == theirs.keys() and len(mine) == 8
    assert float(mine[0]["step"]) == 0 and bool((mine[0]["sum"] == 0.25).all())


@pytest.mark.parametrize("storage", [{}, {"state_dtype": "bfloat16"}, {"state_dtype": "float32"},
                                     {"state_dtype": "8bit"}], ids=["default", "bf16", "f32", "8bit"])
def test_adagrad_starts_every_group_at_the_constructors_value_as_torch(storage):
    """torch's Adagrad starts every sum at the constructor's initial_accumulator_value, a
    group's own value (given, or added later) notwithstanding; in every state storage."""
    def groups():
        torch.manual_seed(0)
        p, q, r = (torch.nn.Parameter(torch.randn(300)) for _ in range(3))
        return p, q, r, [{"params": [p]}, {"params": [q], "initial_accumulator_value": 0.5}]

    runs = []
    for make in (lambda g: ft.Adagrad(g, lr=0.1, initial_accumulator_value=0.25, **storage),
                 lambda g: torch.optim.Adagrad(g, lr=0.1, initial_accumulator_value=0.25)):
        p, q, r, given = groups()
        opt = make(given)
        opt.add_param_group({"params": [r], "initial_accumulator_value": 2.0})
        for _ in range(3):
            for t in (p, q, r):
                t.grad = torch.full_like(t, 0.5)
            opt.step()
        runs.append((p, q, r))
    # 8-bit sums are within a code step of torch's; the others exact (bfloat16: its rounding)
    tol = {"8bit": 0.03, "bfloat16": 0.01}.get(storage.get("state_dtype"), 1e-6)
    for mine, theirs in zip(*runs):
        assert_close(mine.detach().numpy(), theirs.detach().numpy(), tol)


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
        (lambda sd: sd["param_groups"][0].update(params=[0, 1]), ValueError, "parameter group"),
        (lambda sd: sd["state"][3].update(exp_avg=torch.zeros(5)), ValueError, "shape"),
        (lambda sd: sd["state"][3].pop("exp_avg_sq"), ValueError, "missing"),
        (lambda sd: sd["state"][3].update(step=torch.tensor(2.5)), ValueError, "whole number"),
        (lambda sd: sd["param_groups"][0].pop("lr"), ValueError, "lr"),
        (lambda sd: sd["param_groups"][0].update(amsgrad=1), TypeError, "amsgrad"),
        (lambda sd: sd["state"][3].update(exp_avg="zeros"), (TypeError, ValueError), "exp_avg"),
    ]
    for change, error, words in cases:
        with pytest.raises(error, match=words):
            opt.load_state_dict(broken(change))
        now = opt.state_dict()
        for k, entry in snapshot.items():
            for n, v in entry.items():
                assert torch.equal(now["state"][k][n], v)
        assert [{k: v for k, v in g.items()} for g in opt.param_groups] == groups


def test_keys_of_their_own_in_state_dicts_are_kept_as_torch_keeps_them():
    """torch keeps state entries whose index is in no group (for old dicts), and keys a rule
    does not know inside a parameter's entry (a tool's own): they do nothing, and stay."""
    a, opt, b, ref = pair("Adam", torch.float64, lr=0.01)
    x, y = data(torch.float64)
    train(a, opt, x, y, 2)
    train(b, ref, x, y, 2)
    for o in (opt, ref):
        sd = o.state_dict()
        state = {**sd["state"], 99: {"note": 1}}
        state[0] = {**state[0], "momentum_buffer": torch.zeros(5), "mine": 7}
        o.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
        assert o.state[99] == {"note": 1}
        assert o.state_dict()["state"][0]["mine"] == 7
    train(a, opt, x, y, 3, start=2)
    train(b, ref, x, y, 3, start=2)
    assert_same_model(a, b, RTOL[torch.float64])


# ----------------------------------------------------------------------------- refused
@pytest.mark.parametrize("make, error, words", [
    (lambda: torch.nn.Parameter(torch.zeros(3, device="meta")), ValueError, "CPU"),
    (lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.float8_e4m3fn), requires_grad=False),
     TypeError, "float8"),
    (lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False),
     TypeError, "int64"),
    (lambda: torch.nn.Parameter(torch.zeros(4, 4).to_sparse()), ValueError, "strided"),
])
def test_unsupported_parameters_are_refused(make, error, words):
    good = torch.nn.Parameter(torch.ones(3))
    address = good.data_ptr()
    with pytest.raises(error, match=words):
        ft.Adam([good, make()])
    assert good.data_ptr() == address and good.grad is None  # nothing was changed


def test_views_and_strided_parameters_step_as_in_torch():
    """A parameter that is a view into a larger tensor, dense or strided, is stepped through
    that view, as torch steps it; the rest of the tensor is left alone."""
    def run(cls):
        base = torch.arange(24.0).reshape(4, 6)
        params = [torch.nn.Parameter(base[1:3]), torch.nn.Parameter(torch.zeros(4, 6)[:, ::2])]
        opt = cls(params, lr=0.1, momentum=0.9)
        for k in range(4):
            opt.zero_grad()
            sum((p * (k + 1.0)).square().sum() for p in params).backward()
            opt.step()
        return [p.detach().clone() for p in params]
    for mine, theirs in zip(run(ft.SGD), run(torch.optim.SGD)):
        assert_close(mine.numpy(), theirs.numpy(), RTOL[torch.float32])


def test_sparse_gradients_and_shared_storage_are_refused():
    p = torch.nn.Parameter(torch.zeros(4, 3))
    opt = ft.SGD([p], lr=0.1)
    p.grad = torch.zeros(4, 3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):  # at the step, as torch
        opt.step()
    assert not p.any()
    storage = torch.zeros(6)
    a, b = torch.nn.Parameter(storage), torch.nn.Parameter(storage.view(2, 3))
    with pytest.raises(ValueError, match="params\\[0\\]"):
        ft.SGD([a, b], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):  # torch's check
        ft.SGD([{"params": [a]}, {"params": [torch.nn.Parameter(torch.zeros(2)), a]}], lr=0.1)


def test_a_parameter_listed_twice_warns_as_torch_and_is_stepped_once():
    """torch warns, then steps the parameter twice per step (one state, two updates); fastopt
    warns the same and steps it once, as if listed once (README, "fastopt.torch")."""
    def run(cls, twice):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(5))
        opt = cls([p, p] if twice else [p], lr=0.1, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            p.square().sum().backward()
            opt.step()
        return p.detach()
    with pytest.warns(UserWarning, match="duplicate"):
        mine = run(ft.SGD, twice=True)
    assert_close(mine.numpy(), run(torch.optim.SGD, twice=False).numpy(), RTOL[torch.float32])
    with pytest.warns(UserWarning, match="duplicate"), pytest.raises(AssertionError):
        assert_close(mine.numpy(), run(torch.optim.SGD, twice=True).numpy(), RTOL[torch.float32])


@pytest.mark.parametrize("kwargs, error, words", [
    ({"lr": -1.0}, ValueError, "learning rate"),  # torch's own checks and messages
    ({"betas": (0.9, 1.5)}, ValueError, "beta"),
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
    groups = len(opt._engine.groups)
    extra = torch.nn.Parameter(torch.zeros(3, dtype=torch.int32), requires_grad=False)
    with pytest.raises(TypeError, match="int32"):
        opt.add_param_group({"params": [extra]})
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "lr": -1.0})
    assert len(opt.param_groups) == 1 and len(opt._engine.groups) == groups
    x, y = data(torch.float32)
    train(model, opt, x, y, 2)  # and it still trains


def test_parameters_converted_to_another_dtype_raise_instead_of_stepping_stale_state():
    model = mlp()
    opt = ft.SGD(model.parameters(), lr=0.1)
    model.double()
    x, y = data(torch.float64)
    torch.nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(RuntimeError, match="create the optimizer again"):
        opt.step()


def test_parameters_whose_memory_is_replaced_are_stepped_where_they_are():
    a, opt, b, ref = pair("Adam", torch.float64, lr=0.01)
    x, y = data(torch.float64)
    train(a, opt, x, y, 3)
    train(b, ref, x, y, 3)
    for model in (a, b):
        model[0].weight.data = model[0].weight.data.clone()  # same values, new memory
    train(a, opt, x, y, 3, start=3)
    train(b, ref, x, y, 3, start=3)
    assert_same_model(a, b, RTOL[torch.float64])


def test_two_optimizers_over_the_same_parameters_step_them_as_torchs_do():
    mine, theirs = mlp(), mlp()
    opts = [ft.Adam(mine.parameters(), lr=0.01), ft.SGD(mine.parameters(), lr=0.05)]
    refs = [torch.optim.Adam(theirs.parameters(), lr=0.01),
            torch.optim.SGD(theirs.parameters(), lr=0.05)]
    x, y = data(torch.float32)
    for k in range(4):
        train(mine, opts[k % 2], x, y, 1, start=k)
        train(theirs, refs[k % 2], x, y, 1, start=k)
    assert_same_model(mine, theirs, RTOL[torch.float32])


def test_a_new_optimizer_after_the_first_is_collected():
    import gc

    a, b = mlp(), mlp()
    first = ft.SGD(a.parameters(), lr=0.1)
    assert not any(p._post_accumulate_grad_hooks for p in a.parameters())  # nothing hooked
    del first
    gc.collect()
    opt, ref = ft.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    x, y = data(torch.float32)
    train(a, opt, x, y, 3)
    train(b, ref, x, y, 3)
    assert_same_model(a, b, RTOL[torch.float32])


def test_pickles_and_deep_copies_as_torchs():
    """A pickled or deep-copied torch optimizer holds copies of its parameters and state and
    trains them on its own; fastopt's does the same."""
    import copy
    import pickle

    x, y = data(torch.float64)
    results = []
    for cls in (ft.Adam, torch.optim.Adam):
        model = mlp(torch.float64)
        opt = cls(model.parameters(), lr=0.01, amsgrad=True)
        train(model, opt, x, y, 3)
        for clone in (pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)):
            params = [p for g in clone.param_groups for p in g["params"]]
            assert all(p.data_ptr() != q.data_ptr() for p, q in zip(params, model.parameters()))
            for _ in range(3):
                clone.zero_grad()
                loss = sum((p * k).square().sum() for k, p in enumerate(params))
                loss.backward()
                clone.step()
            results.append([p.detach().clone() for p in params])
            assert float(clone.state[params[0]]["step"]) == 6
    for mine, theirs in zip(results[:2], results[2:]):
        for p, q in zip(mine, theirs):
            assert_close(p.numpy(), q.numpy(), RTOL[torch.float64])
