"""NAdam's per-group float32 momentum product (mu_product), beyond the generic suites.

Proves that Πₜ lives in the state dict once per group, repeated in each parameter's entry as
torch's per-parameter value is, equal to torch's to the last bit even for groups added later
(so at different step counts), survives a round trip and resumes bit for bit; that a bad saved
Π (not one per group, out of [0, 1], not a float32 value, not a number, missing) is refused and
changes nothing; and that float64 parity with torch depends on keeping Π in float32: the same
optimizer with Π in double misses torch's float64 trajectory by far more than the tolerance.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastopt
import dataclasses

from fastopt.optim import optimizer_class
from fastopt.rules import RULES, Scalar

from conftest import (
    GradStream,
    Model,
    assert_arrays_equal,
    assert_close,
    assert_state_dicts_equal,
    scaled_error,
)

torch = pytest.importorskip("torch")

OPTIONS = dict(lr=0.01, betas=(0.85, 0.995), momentum_decay=0.05, weight_decay=0.01)
SHAPES = [(), (7, 13), (1023,), (2048,)]
FIRST = 2  # parameters in the first group; the rest form a group added after ADD_AT steps
ADD_AT = 5


def _groups(params):
    return {"params": params[:FIRST]}, {"params": params[FIRST:], "lr": 0.003}


def _train(opt, params, stream, steps, start=1, topt=None, torch_params=None):
    """Step ``opt`` (and torch alongside, if given); the second group joins at ADD_AT."""
    for t in range(start, start + steps):
        if t == ADD_AT + 1 and len(opt.param_groups) == 1:
            opt.add_param_group(_groups(params)[1])
            if topt is not None:
                topt.add_param_group(_groups(torch_params)[1])
        n = sum(len(g["params"]) for g in opt.param_groups)
        grads = stream(t)[:n] if t > ADD_AT else stream(t)[:FIRST]
        opt.step(grads)
        if topt is not None:
            for p, g in zip(torch_params, grads):
                p.grad = torch.from_numpy(g.copy())
            topt.step()


def _trained(dtype, steps=12, with_torch=False):
    model = Model([(SHAPES, {})], dtype)
    params = model.fresh()[1]
    stream = GradStream(SHAPES, dtype)
    opt = fastopt.NAdam([_groups(params)[0]], **OPTIONS)
    topt = torch_params = None
    if with_torch:
        torch_params = [torch.from_numpy(p) for p in model.fresh()[1]]
        topt = torch.optim.NAdam([_groups(torch_params)[0]], **OPTIONS, foreach=False)
    _train(opt, params, stream, steps, topt=topt, torch_params=torch_params)
    return opt, params, stream, topt


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_mu_product_per_group_equals_torch_bitwise(dtype):
    opt, params, _, topt = _trained(dtype, with_torch=True)
    state = opt.state_dict()["state"]
    torch_params = [p for g in topt.param_groups for p in g["params"]]
    per_group = []
    for g, group in enumerate(opt.state_dict()["param_groups"]):
        values = {state[i]["mu_product"] for i in group["params"]}
        assert len(values) == 1  # one per group, repeated in each entry
        per_group.append(values.pop())
    assert per_group[0] != per_group[1]  # the groups are at different steps
    for i, p in enumerate(torch_params):
        expected = topt.state[p]["mu_product"]
        assert expected.dtype == torch.float32
        assert type(state[i]["mu_product"]) is np.float32
        assert state[i]["mu_product"] == expected.item(), i


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_mu_product_round_trip_resumes_bit_for_bit(dtype, tmp_path):
    a, params_a, stream, _ = _trained(dtype)
    path = tmp_path / "nadam.pkl"
    path.write_bytes(pickle.dumps(a.state_dict()))
    params_b = [p.copy() for p in params_a]
    first, second = _groups(params_b)
    b = fastopt.NAdam([first, second], lr=0.5)
    b.load_state_dict(pickle.loads(path.read_bytes()))
    assert_state_dicts_equal(a.state_dict(), b.state_dict())
    _train(a, params_a, stream, 6, start=13)
    _train(b, params_b, stream, 6, start=13)
    assert_arrays_equal(params_b, params_a, "params")
    assert_state_dicts_equal(a.state_dict(), b.state_dict())


def _set_mu_product(value, index=-1):
    def edit(sd):
        sd["state"][sorted(sd["state"])[index]]["mu_product"] = value
        return sd
    return edit


def _drop_mu_product(sd):
    for entry in sd["state"].values():
        del entry["mu_product"]
    return sd


BAD = [
    ("above-1", _set_mu_product(1.5), ValueError),
    ("negative", _set_mu_product(-0.25), ValueError),
    ("nan", _set_mu_product(float("nan")), ValueError),
    ("inf", _set_mu_product(float("inf")), ValueError),
    ("not-a-float32-value", _set_mu_product(0.1), ValueError),
    ("string", _set_mu_product("0.5"), TypeError),
    ("bool", _set_mu_product(True), TypeError),
    ("array", _set_mu_product(np.array([0.5], np.float32)), TypeError),
    ("missing", _drop_mu_product, ValueError),
]


def test_per_parameter_mu_product_and_step_load_and_continue_as_torch():
    """torch keeps ``step`` and ``mu_product`` per parameter: a dict whose first parameter is
    several steps behind the others (as after skipped gradients) loads, and every parameter
    continues from its own values, as torch.optim.NAdam continues from the same dict."""
    early, _, _, _ = _trained(np.float64, steps=4)
    late, params, stream, _ = _trained(np.float64, steps=12)
    sd = late.state_dict()
    sd["state"][0] = early.state_dict()["state"][0]  # 4 steps, its mu_product after 4
    assert sd["state"][0]["step"] != sd["state"][1]["step"]
    torch_params = [torch.from_numpy(p.copy()) for p in params]
    topt = torch.optim.NAdam([_groups(torch_params)[0]], **OPTIONS, foreach=False)
    topt.add_param_group(_groups(torch_params)[1])
    topt.load_state_dict({
        "state": {i: {k: torch.tensor(v) for k, v in e.items()} for i, e in sd["state"].items()},
        "param_groups": sd["param_groups"]})
    for p in torch_params:  # torch's load casts mu_product to the parameter's dtype; its steps
        entry = topt.state[p]  # keep it in float32
        entry["mu_product"] = entry["mu_product"].float()
    late.load_state_dict(sd)
    for t in range(13, 19):
        grads = stream(t)
        late.step(grads)
        for p, g in zip(torch_params, grads):
            p.grad = torch.from_numpy(g.copy())
        topt.step()
    for i, (p, q) in enumerate(zip(params, torch_params)):
        assert_close(p, q.numpy(), RTOL_F64, f"param {i}")
    state = late.state_dict()["state"]
    assert state[0]["step"] == 10 and state[1]["step"] == 18
    for i, p in enumerate(torch_params):
        assert state[i]["mu_product"] == topt.state[p]["mu_product"].item(), i


@pytest.mark.parametrize(("case", "edit", "exc"), BAD, ids=[c[0] for c in BAD])
def test_bad_mu_product_is_refused_and_changes_nothing(case, edit, exc):
    a, params_a, stream, _ = _trained(np.float64)
    b, params_b, _, _ = _trained(np.float64)  # untouched twin
    before = a.state_dict()
    with pytest.raises(exc, match="mu_product"):
        a.load_state_dict(edit(copy.deepcopy(before)))
    assert_state_dicts_equal(a.state_dict(), before)
    _train(a, params_a, stream, 3, start=13)
    _train(b, params_b, stream, 3, start=13)
    assert_arrays_equal(params_a, params_b, "params")
    assert_state_dicts_equal(a.state_dict(), b.state_dict())


@pytest.mark.parametrize("convert", [float, np.float64], ids=["float", "float64"])
def test_mu_product_given_as_another_number_type_loads_exactly(convert):
    """A float32 value written as a Python float (torch's .item()) or a float64 is the same Π."""
    a, _, _, _ = _trained(np.float64)
    saved = a.state_dict()
    sd = copy.deepcopy(saved)
    for entry in sd["state"].values():
        entry["mu_product"] = convert(entry["mu_product"])
    a.load_state_dict(sd)
    assert_state_dicts_equal(a.state_dict(), saved)  # np.float32 again, same values


def _advance_in_double(h, step, mu_product):
    mu = h.betas[0] * (1.0 - 0.5 * (0.96 ** (step * h.momentum_decay)))
    return mu_product * mu


# NAdam keeping Π in double, Πₜ = Πₜ₋₁ μₜ: what SEMANTICS.md warns against.
_NAdamProductInDouble = optimizer_class(dataclasses.replace(
    RULES["NAdam"],
    scalars=(Scalar("mu_product", 1.0, np.float64, 0.0, 1.0, _advance_in_double),)))


# fastopt's float64 NAdam vs torch after 120 steps, parameters: measured 9.3e-17 (scaled as
# assert_close does; 5e-14 element-wise relative); with Π in double 6.0e-11 (4e-7
# element-wise relative), 300x test_against_torch's float64 tolerance.
RTOL_F64 = 2e-13


@pytest.mark.parametrize("cls, parity", [(fastopt.NAdam, True), (_NAdamProductInDouble, False)],
                         ids=["float32-product", "double-product"])
def test_float64_parity_with_torch_needs_float32_mu_product(cls, parity):
    model = Model([(SHAPES, {})], np.float64)
    params = model.fresh()[1]
    torch_params = [torch.from_numpy(p) for p in model.fresh()[1]]
    options = dict(lr=0.01)
    opt = cls(params, **options)
    topt = torch.optim.NAdam(torch_params, **options, foreach=False)
    stream = GradStream(SHAPES, np.float64)
    for t in range(1, 121):
        grads = stream(t)
        opt.step(grads)
        for p, g in zip(torch_params, grads):
            p.grad = torch.from_numpy(g.copy())
        topt.step()
    errors = [scaled_error(p, q.numpy()) for p, q in zip(params, torch_params)]
    if parity:
        for i, (p, q) in enumerate(zip(params, torch_params)):
            assert_close(p, q.numpy(), RTOL_F64, f"param {i}")
    else:
        assert max(errors) > 100 * RTOL_F64, errors
        with pytest.raises(AssertionError):
            for i, (p, q) in enumerate(zip(params, torch_params)):
                assert_close(p, q.numpy(), RTOL_F64, f"param {i}")
