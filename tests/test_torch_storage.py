"""fastopt.torch in low precision: bfloat16 and float16 parameters (and gradients into float32
parameters), bfloat16 and 8-bit state, every rounding.

Proves that
- every rule, in every storage mode of ``conftest.STORAGE_MODES`` and with every option of
  ``CONFIGS`` on bfloat16 and float16 parameters with float32, bfloat16 and 8-bit state,
  steps torch's tensors bit for bit as the NumPy front end steps the same numbers (which
  ``test_storage.py`` proves equal to ``fastopt.reference``), in the tensors' own memory;
- state dicts carry 8-bit codes (uint8, the parameter's shape), their ``<role>_absmax``
  scales (1-D float32) and Kahan compensation buffers; torch's dict round trip, a deep copy
  and ``torch.save``/``torch.load`` round trips are bit for bit, and a resumed run (its
  stochastic rounding stream too) is the run that never stopped;
- float32 values loaded into an 8-bit role are quantised as the NumPy front end quantises
  them; mismatched storage options and malformed 8-bit entries are refused with nothing
  modified;
- state kept in 8 bits or with compensation follows a parameter whose memory order changes;
- complex parameters refuse low-precision storage options.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")

import fastopt  # noqa: E402
import fastopt.torch as ft  # noqa: E402

from conftest import (  # noqa: E402
    CONFIGS,
    DENSE_PER_CLASS,
    DENSE_PER_CLASS_IDS,
    PER_CLASS,
    rule_of,
    STORAGE_MODE_IDS,
    STORAGE_MODES,
    GradStream,
    shapes_for,
    Mode,
)

SHAPES = [(), (1,), (1023,), (0,), (7, 13), (3, 5, 67)]
STEPS = 6
TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def to_torch(a: np.ndarray) -> torch.Tensor:
    """A NumPy array (bfloat16 ones are ml_dtypes') as a new tensor of the same bits."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def bits(x) -> np.ndarray:
    """A tensor's or an array's bytes."""
    if isinstance(x, torch.Tensor):
        if x.numel() == 0:
            return np.empty(0, np.uint8)
        x = x.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return np.ascontiguousarray(x).reshape(-1).view(np.uint8)


def initial(mode: Mode, seed: int = 0, shapes=SHAPES) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    param_dtype = mode.dtypes()[0]
    return [rng.standard_normal(s).astype(np.float32).astype(param_dtype) for s in shapes]


def run_both(config, mode: Mode, steps: int = STEPS):
    """The same steps through the NumPy front end and through fastopt.torch (over matrices
    for a rule of matrices)."""
    shapes = shapes_for(config, SHAPES)
    arrays = initial(mode, shapes=shapes)
    params = [torch.nn.Parameter(to_torch(a)) for a in arrays]
    if mode.grad != mode.param:
        for p in params:
            p.grad_dtype = TORCH[mode.grad]
    mine = config.make(fastopt, arrays, **mode.options)
    theirs = config.make(ft, params, **mode.options)
    stream = GradStream(shapes, np.float32)
    grad_dtype = mode.dtypes()[1]
    for t in range(1, steps + 1):
        grads = [g.astype(grad_dtype) for g in stream(t)]
        mine.step(grads)
        for p, g in zip(params, grads):
            p.grad = to_torch(g)
        theirs.step()
    return mine, theirs, arrays, params


def assert_same(mine, theirs, arrays, params, what):
    for i, (a, p) in enumerate(zip(arrays, params)):
        assert p.dtype is TORCH[a.dtype.name], f"{what}: param {i} dtype"
        np.testing.assert_array_equal(bits(p), bits(a), err_msg=f"{what}: param {i}")
    assert_state_same(mine.state_dict(), theirs.state_dict(), what)


def assert_state_same(numpy_sd, torch_sd, what):
    a, b = numpy_sd["state"], torch_sd["state"]
    assert set(a) == set(b), f"{what}: state indices"
    for index, entry in a.items():
        assert set(entry) == set(b[index]), f"{what}: state[{index}] keys"
        for key, value in entry.items():
            other = b[index][key]
            if isinstance(value, np.ndarray):
                assert tuple(other.shape) == value.shape, f"{what}: state[{index}][{key!r}] shape"
                np.testing.assert_array_equal(bits(other), bits(value),
                                              err_msg=f"{what}: state[{index}][{key!r}]")
            else:
                assert float(other) == float(value), f"{what}: state[{index}][{key!r}]"


# ----------------------------------------------------------------------------- the kernels
# (of dense gradients: SparseAdam's row-sparse ones in storage modes are tests/test_storage.py's,
# and its torch path tests/test_oracles_sparse_adam.py's)
DENSE_CONFIGS = [c for c in CONFIGS if rule_of(c).gradient == "dense"]


@pytest.mark.parametrize("mode", STORAGE_MODES, ids=STORAGE_MODE_IDS)
@pytest.mark.parametrize("config", DENSE_PER_CLASS, ids=DENSE_PER_CLASS_IDS)
def test_every_rule_in_every_mode_steps_as_the_numpy_front_end(config, mode):
    mine, theirs, arrays, params = run_both(config, mode)
    assert_same(mine, theirs, arrays, params, f"{config.id} {mode.id}")


LOW_MODES = [Mode(f"{param}-{state}", param, param, {"state_dtype": state})
             for param in ("bfloat16", "float16") for state in ("float32", "bfloat16", "8bit")]


@pytest.mark.parametrize("mode", LOW_MODES, ids=[m.id for m in LOW_MODES])
@pytest.mark.parametrize("config", DENSE_CONFIGS, ids=[c.id for c in DENSE_CONFIGS])
def test_every_option_trains_low_precision_models(config, mode):
    """Every configuration steps bfloat16 and float16 models (state in float32, bfloat16 or 8
    bits), to the bit as the NumPy front end does, and moves them."""
    mine, theirs, arrays, params = run_both(config, mode)
    assert_same(mine, theirs, arrays, params, f"{config.id} {mode.id}")
    start = initial(mode, shapes=shapes_for(config, SHAPES))
    moved = [not np.array_equal(bits(p), bits(s)) for p, s in zip(params, start) if s.size]
    assert any(moved), f"{config.id} {mode.id}: no parameter moved"
    assert all(torch.isfinite(p.float()).all() for p in params)


def test_parameters_stay_in_torchs_memory():
    p = torch.nn.Parameter(torch.randn(300, dtype=torch.bfloat16))
    address = p.data_ptr()
    opt = ft.AdamW([p], lr=0.01, state_dtype="8bit")
    p.grad = torch.randn_like(p)
    opt.step()
    assert p.data_ptr() == address and p.dtype is torch.bfloat16


# ----------------------------------------------------------------------------- state dicts
MODES = {m.id: m for m in STORAGE_MODES}
RESUMED = ["bf16", "bf16-8bit", "bf16-kahan-8bit", "f16", "bf16-bf16state",
           "f32-bf16grads-bf16state", "f32-8bit"]


def _model(mode: Mode, seed: int = 0) -> list[torch.nn.Parameter]:
    params = [torch.nn.Parameter(to_torch(a)) for a in initial(mode, seed)]
    if mode.grad != mode.param:
        for p in params:
            p.grad_dtype = TORCH[mode.grad]
    return params


def _steps(opt, params, mode, start, stop):
    stream = GradStream(SHAPES, np.float32)
    for t in range(start, stop):
        for p, g in zip(params, stream(t)):
            p.grad = to_torch(g.astype(mode.dtypes()[1]))
        opt.step()


def _assert_same_runs(a_params, a_opt, b_params, b_opt, what):
    for i, (p, q) in enumerate(zip(a_params, b_params)):
        np.testing.assert_array_equal(bits(p), bits(q), err_msg=f"{what}: param {i}")
    sa, sb = a_opt.state_dict(), b_opt.state_dict()
    assert sa["param_groups"] == sb["param_groups"], what
    assert set(sa["state"]) == set(sb["state"]), what
    for index, entry in sa["state"].items():
        assert set(entry) == set(sb["state"][index]), f"{what}: state[{index}] keys"
        for key, value in entry.items():
            other = sb["state"][index][key]
            assert value.dtype == other.dtype and value.shape == other.shape, (what, key)
            np.testing.assert_array_equal(bits(value), bits(other),
                                          err_msg=f"{what}: state[{index}][{key!r}]")


def _round_trips(sd):
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    buffer.seek(0)
    return {"dict": sd, "deepcopy": copy.deepcopy(sd),
            "torch.save": torch.load(buffer, weights_only=True)}


@pytest.mark.parametrize("how", ["dict", "deepcopy", "torch.save"])
@pytest.mark.parametrize("mode_id", RESUMED)
def test_resumed_run_is_the_run_that_never_stopped(mode_id, how):
    mode = MODES[mode_id]
    config = next(c for c in PER_CLASS if c.id == "adamw")
    whole = _model(mode)
    opt = config.make(ft, whole, **mode.options)
    _steps(opt, whole, mode, 1, 4)
    sd = _round_trips(opt.state_dict())[how]
    state = sd["state"][2]
    if mode.options.get("state_dtype") == "8bit":
        assert state["exp_avg"].dtype is torch.uint8 and state["exp_avg"].shape == (1023,)
        assert state["exp_avg_absmax"].dtype is torch.float32
        assert state["exp_avg_absmax"].shape == (4,)
    if opt._engine.groups[0].runs[0].rounding == "kahan":
        assert state["kahan_comp"].dtype is TORCH[mode.param]
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in whole]
    for p, q in zip(whole, resumed):
        q.grad_dtype = p.grad_dtype
    again = config.make(ft, resumed, **mode.options)
    again.load_state_dict(sd)
    _steps(opt, whole, mode, 4, 9)
    _steps(again, resumed, mode, 4, 9)
    _assert_same_runs(whole, opt, resumed, again, f"{mode_id} via {how}")


def test_float32_values_load_quantised_into_8bit_state():
    """A float32 optimizer's state loaded into an 8-bit one (its groups' storage options
    made the 8-bit one's) is quantised as the NumPy front end quantises it."""
    mode = MODES["bf16"]
    params = _model(mode)
    wide = ft.AdamW(params, lr=0.01)
    _steps(wide, params, mode, 1, 4)
    sd = wide.state_dict()
    for group in sd["param_groups"]:
        group["state_dtype"] = "8bit"
    narrow = ft.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params], lr=0.01,
                      state_dtype="8bit")
    narrow.load_state_dict(sd)
    arrays = [a.copy() for a in initial(mode)]
    numpy_sd = {"state": {i: {k: (v.numpy() if k != "step" else int(v)) for k, v in e.items()}
                          for i, e in sd["state"].items()},
                "param_groups": [{**g, "params": list(g["params"])} for g in sd["param_groups"]]}
    for group in numpy_sd["param_groups"]:
        for key in ("foreach", "capturable", "differentiable", "fused"):
            group.pop(key, None)
        group.update(rounding=None, seed=0)  # torch's groups hold only options not the default
    reference = fastopt.AdamW(arrays, lr=0.01, state_dtype="8bit")
    reference.load_state_dict(numpy_sd)
    assert_state_same(reference.state_dict(), narrow.state_dict(), "quantised on loading")
    assert narrow.state_dict()["state"][2]["exp_avg"].dtype is torch.uint8


def _snapshot(opt):
    return copy.deepcopy(opt.state_dict())


@pytest.mark.parametrize("case", ["float32 state dict into 8bit", "codes without scales",
                                  "scales of the wrong size", "codes into float32 state",
                                  "8bit state dict into float32"])
def test_mismatched_storage_is_refused_with_nothing_modified(case):
    mode = MODES["bf16-8bit"]
    params = _model(mode)
    opt = ft.AdamW(params, lr=0.01, state_dtype="8bit")
    _steps(opt, params, mode, 1, 3)
    plain = ft.AdamW(_model(mode), lr=0.01)
    _steps(plain, plain.param_groups[0]["params"], mode, 1, 3)
    target, sd = opt, opt.state_dict()
    if case == "float32 state dict into 8bit":
        sd = plain.state_dict()  # (a dict without storage options would be quantised)
        sd["param_groups"][0]["state_dtype"] = "float32"
    elif case == "codes without scales":
        sd = copy.deepcopy(sd)
        del sd["state"][2]["exp_avg_absmax"]
    elif case == "scales of the wrong size":
        sd = copy.deepcopy(sd)
        sd["state"][2]["exp_avg_absmax"] = torch.ones(5)
    elif case == "codes into float32 state":
        target = plain
        sd = copy.deepcopy(plain.state_dict())
        sd["state"][2]["exp_avg"] = opt.state_dict()["state"][2]["exp_avg"].clone()
    else:
        target = plain
    before = _snapshot(target)
    weights = [bits(p).copy() for p in target.param_groups[0]["params"]]
    with pytest.raises((ValueError, TypeError)):
        target.load_state_dict(sd)
    after = _snapshot(target)
    for index, entry in before["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(bits(after["state"][index][key]), bits(value))
    assert after["param_groups"] == before["param_groups"]
    for p, w in zip(target.param_groups[0]["params"], weights):
        np.testing.assert_array_equal(bits(p), w)


def _moment(opt, role="exp_avg"):
    """The single parameter's 8-bit ``role`` dequantised, in the parameter's logical order."""
    from fastopt._kernels import kernels

    group = opt._engine.groups[0]
    p = opt.param_groups[0]["params"][0]
    values = np.empty(p.numel(), np.float32)
    kernels.dequantize(group.view(0, role), group.scales(0, role), values, group.signed(role))
    return torch.from_numpy(values).as_strided(p.shape, p.stride()).contiguous()


def test_state_follows_a_parameter_whose_memory_order_changes():
    """8-bit state is quantised anew in the new memory order (its blocks are of memory
    order); the compensation is moved element by element."""
    x = torch.randn(4, 8, 16, 16).to(torch.bfloat16)
    p = torch.nn.Parameter(x.clone())
    q = torch.nn.Parameter(x.clone())
    a = ft.AdamW([p], lr=0.01, state_dtype="8bit", rounding="kahan")
    b = ft.AdamW([q], lr=0.01, state_dtype="8bit", rounding="kahan")
    grads = [torch.randn(x.shape).to(torch.bfloat16) for _ in range(3)]
    for g in grads[:2]:
        p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    before, scale = _moment(a), _moment(a).abs().max()
    compensation = a.state[p]["kahan_comp"].clone()
    p.data = p.data.to(memory_format=torch.channels_last)
    p.grad = grads[2].to(memory_format=torch.channels_last)
    a.step()  # follows the parameter first, then steps it
    assert a.state[p]["exp_avg"].stride() == p.stride()
    assert a.state[p]["kahan_comp"].stride() == p.stride()
    beta = 0.9
    expected = beta * before + (1 - beta) * grads[2].float()
    torch.testing.assert_close(_moment(a), expected, rtol=0.05, atol=0.02 * float(scale))
    q.grad = grads[2].clone()
    b.step()
    # The same update in another order: equal but where requantised moments round apart.
    torch.testing.assert_close(p.float(), q.float(), rtol=0.02, atol=0.02)
    assert not torch.equal(compensation, torch.zeros_like(compensation))


def test_added_group_keeps_its_own_low_precision_state():
    mode = MODES["bf16-kahan-8bit"]
    params = _model(mode)
    opt = ft.AdamW(params[:3], lr=0.01, state_dtype="8bit", rounding="kahan")
    opt.add_param_group({"params": params[3:], "lr": 0.02})
    assert opt.param_groups[1]["state_dtype"] == "8bit"
    arrays = initial(mode)
    mine = fastopt.AdamW([{"params": arrays[:3]}, {"params": arrays[3:], "lr": 0.02}], lr=0.01,
                         state_dtype="8bit", rounding="kahan")
    stream = GradStream(SHAPES, np.float32)
    for t in range(1, 5):
        grads = [g.astype(mode.dtypes()[1]) for g in stream(t)]
        mine.step(grads)
        for p, g in zip(params, grads):
            p.grad = to_torch(g)
        opt.step()
    assert_same(mine, opt, arrays, params, "added group")
    with pytest.raises(ValueError, match="state_dtype"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))],
                             "state_dtype": "float64"})
    assert len(opt.param_groups) == 2


def test_complex_parameters_refuse_low_precision_storage():
    z = torch.nn.Parameter(torch.randn(5, dtype=torch.complex64))
    for options in ({"state_dtype": "bfloat16"}, {"state_dtype": "8bit"},
                    {"rounding": "stochastic"}, {"rounding": "kahan"}):
        with pytest.raises(ValueError, match="complex"):
            ft.Adam([z], **options)
    ft.Adam([z], rounding="nearest")  # the default, said aloud


def test_gradients_of_another_dtype_are_refused_but_for_float32_parameters():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))
    p.grad_dtype = None  # torch then lets any dtype be assigned
    opt = ft.SGD([p], lr=0.1)
    p.grad = torch.ones(3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="bfloat16"):
        opt.step()
    assert torch.equal(p, torch.zeros(3, dtype=torch.bfloat16))


def test_float32_parameters_with_mixed_gradient_dtypes_step_as_float32_gradients():
    """One group's float32 parameters with bfloat16 and float32 gradients: promoted (exact)."""
    a = [torch.nn.Parameter(torch.randn(50)) for _ in range(2)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    a[0].grad_dtype = torch.bfloat16
    grads = [torch.randn(50).to(torch.bfloat16), torch.randn(50)]
    a[0].grad, a[1].grad = grads
    b[0].grad, b[1].grad = grads[0].float(), grads[1]
    opt_a, opt_b = ft.Adam(a, lr=0.01), ft.Adam(b, lr=0.01)
    opt_a.step()
    opt_b.step()
    for p, q in zip(a, b):
        assert torch.equal(p, q)


def test_values_written_over_8bit_state_are_quantised():
    """``opt.state[p][role] = values`` (a tool's write) over 8-bit codes: quantised as a
    float32 entry loaded is, not read with the old codes' scales."""
    p = torch.nn.Parameter(torch.randn(600, dtype=torch.bfloat16))
    opt = ft.Adam([p], state_dtype="8bit")
    p.grad = torch.randn_like(p)
    opt.step()
    values = torch.linspace(-3, 3, 600)
    opt.state[p]["exp_avg"] = values
    arrays = [np.zeros(600, np.float32)]
    reference = fastopt.Adam(arrays, state_dtype="8bit")
    reference.step([np.ones(600, np.float32)])
    sd = reference.state_dict()
    sd["state"][0]["exp_avg"] = values.numpy()
    del sd["state"][0]["exp_avg_absmax"]
    reference.load_state_dict(sd)
    mine = opt.state_dict()["state"][0]  # (what was written is taken in first)
    assert opt.state[p]["exp_avg"].dtype is torch.uint8
    theirs = reference.state_dict()["state"][0]
    np.testing.assert_array_equal(mine["exp_avg"].numpy(), theirs["exp_avg"])
    np.testing.assert_array_equal(mine["exp_avg_absmax"].numpy(), theirs["exp_avg_absmax"])
