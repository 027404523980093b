"""fastopt's compiled optimizers compute what the plain NumPy reference computes.

Proves, for every configuration in ``conftest.CONFIGS`` (every option of every optimizer), in
float32 and float64, over 110 steps, on three layouts (many tensors including 0-d, size-0,
odd sizes and one above the parallel threshold; one flat tensor; two parameter groups with
their own lr/weight_decay), that the parameters and every piece of state (read through
``state_dict()``) match ``fastopt.reference`` within tolerances that are justified below; and
that ``step()`` without an argument (reading ``opt.grads``) is ``step(grads)``, that
hyper-parameters edited in ``param_groups`` between steps take effect at the next step, that
``fastopt.flatten`` + a one-segment optimizer is bitwise the multi-tensor optimizer (for a
rule with per-tensor norms, it is not: one segment, one norm), and that
``add_param_group`` behaves like the reference's.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt import reference
from fastopt.rules import RULES

from conftest import (
    CONFIG_BY_ID,
    CONFIG_IDS,
    CONFIGS,
    DENSE_PER_CLASS,
    DENSE_PER_CLASS_IDS,
    LAYOUT_IDS,
    MULTI_SHAPES,
    PER_CLASS,
    PER_CLASS_IDS,
    SCALAR_STATE_KEYS,
    GradStream,
    Model,
    assert_arrays_equal,
    assert_state_dicts_equal,
    expected_state_keys,
    make_model,
    rule_of,
    snapshot,
)

STEPS = 110

# fastopt vs fastopt.reference: exact equality, parameters and every state array.
# Both sides compute element-wise in the parameter dtype, with the per-step scalars computed
# once in double, the same operations in the same order (SEMANTICS.md, products read left to
# right as torch's addcmul/addcdiv do), no FMA contraction (-ffp-contract=off), and correctly
# rounded sqrt and division. Any difference at all means the kernel computes something else.
# (For scale: dropping Adam's eps = 1e-8 moves these trajectories by 1e-4, a 1% change of
# weight_decay, lr_decay or alpha by 1e-4 to 1e-3.)


def reference_state_dict_state(ref) -> dict:
    """fastopt's state_dict()["state"] layout built from a reference optimizer."""
    out = {}
    counts_steps = ref.rule.counts_steps
    for i, (state, steps) in enumerate(zip(ref.state, ref.step_counts)):
        entry = {k: v for k, v in state.items()}
        if counts_steps and (steps > 0 or entry):
            entry["step"] = steps
        if entry:
            out[i] = entry
    return out


def compare_with_reference(opt, ref, params, ref_params, dtype, what):
    for i, (p, r) in enumerate(zip(params, ref_params)):
        assert p.dtype == r.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(p, r, err_msg=f"{what}: param {i}")
    state = opt.state_dict()["state"]
    ref_state = reference_state_dict_state(ref)
    assert set(state) == set(ref_state), f"{what}: state indices"
    for i in ref_state:
        assert set(state[i]) == set(ref_state[i]), f"{what}: state[{i}] keys"
        for key, r in ref_state[i].items():
            a = state[i][key]
            if key == "step":
                assert type(a) is int and a == r, f"{what}: state[{i}]['step'] = {a!r} != {r}"
            else:
                assert a.dtype == r.dtype and a.shape == r.shape, f"{what}: state[{i}][{key}]"
                np.testing.assert_array_equal(a, r, err_msg=f"{what}: state[{i}][{key!r}]")


def run_pair(config, model, steps, *, on_step=None):
    arg_f, params_f = model.fresh()
    arg_r, params_r = model.fresh()
    opt = config.make(fastopt, arg_f)
    ref = config.make(reference, arg_r)
    stream = GradStream(model.shapes, model.dtype, name=config.name)
    for t in range(1, steps + 1):
        if on_step is not None:
            on_step(t, opt, ref)
        grads = stream(t)
        opt.step(grads)
        ref.step(grads)
    return opt, ref, params_f, params_r


@pytest.mark.matrix
@pytest.mark.parametrize("layout", LAYOUT_IDS)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_matches_reference(config, layout, dtype):
    model = make_model(layout, dtype, config=config)
    arg_f, params_f = model.fresh()
    arg_r, params_r = model.fresh()
    opt = config.make(fastopt, arg_f)
    ref = config.make(reference, arg_r)
    stream = GradStream(model.shapes, dtype, name=config.name)

    # The parameters are the user's arrays, updated in place.
    opt_params = [p for g in opt.param_groups for p in g["params"]]
    assert len(opt_params) == len(params_f)
    assert all(a is b for a, b in zip(opt_params, params_f))

    for t in range(1, STEPS + 1):
        grads = stream(t)
        if t == 1:
            before = snapshot(grads)
        opt.step(grads)
        ref.step(grads)
        if t == 1:  # gradients are read, never written
            assert_arrays_equal(grads, before, "grads after step")

    # The run did something (a test that passes with a no-op step proves nothing).
    moved = [
        not np.array_equal(p, p0)
        for p, p0 in zip(params_f, (a for arrays in model.initial for a in arrays))
        if p.size
    ]
    assert all(moved)

    compare_with_reference(opt, ref, params_f, params_r, dtype, f"{config.id}/{layout}")
    for i, entry in opt.state_dict()["state"].items():
        assert set(entry) == expected_state_keys(config)


# --------------------------------------------------------------------------------------------
# step() with no argument reads opt.grads
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", DENSE_PER_CLASS, ids=DENSE_PER_CLASS_IDS)
def test_step_without_argument_uses_opt_grads(config, dtype):
    model = make_model("multi", dtype, config=config)
    arg_a, params_a = model.fresh()
    arg_b, params_b = model.fresh()
    a = config.make(fastopt, arg_a)
    b = config.make(fastopt, arg_b)
    stream = GradStream(model.shapes, dtype)

    views = list(a.grads)
    assert len(views) == len(params_a)
    for v, p in zip(views, params_a):
        assert isinstance(v, np.ndarray)
        assert v.shape == p.shape and v.dtype == p.dtype
        assert not np.shares_memory(v, p)

    for t in range(1, 21):
        grads = stream(t)
        a.zero_grad()
        # zero_grad zeroes in place: the views stay the same objects.
        assert all(x is y for x, y in zip(a.grads, views))
        assert all(not np.any(v) for v in views)
        for v, g in zip(a.grads, grads):
            v[...] = g
        a.step()
        b.step(grads)
    assert_arrays_equal(params_a, params_b, "params")
    assert_state_dicts_equal(a.state_dict(), b.state_dict())


# --------------------------------------------------------------------------------------------
# hyper-parameters changed in param_groups take effect at the next step
# --------------------------------------------------------------------------------------------

CHANGES = [
    ("sgd", {"lr": 0.2}),
    ("sgd", {"momentum": 0.9}),  # the momentum buffer starts at the first step that uses it
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("sgd-momentum", {"momentum": 0.5, "dampening": 0.5}),
    ("sgd-nesterov", {"momentum": 0.3, "maximize": True}),
    ("adagrad", {"lr": 0.2, "lr_decay": 0.1}),
    ("adagrad", {"eps": 1e-2, "weight_decay": 0.1, "maximize": True}),
    ("rmsprop", {"alpha": 0.5, "eps": 1e-2}),
    # SEMANTICS.md: cyclic schedules give a group built with momentum 0 a momentum > 0; the
    # buffer then starts from zeros (RMSprop) at the first step that uses it.
    ("rmsprop", {"momentum": 0.9}),
    ("rmsprop", {"centered": True}),  # grad_avg starts from zeros, as in the reference
    ("rmsprop-centered-momentum", {"momentum": 0.9, "lr": 0.02, "weight_decay": 0.1}),
    ("adam", {"betas": (0.5, 0.9)}),  # 1 - beta1**t uses the current beta1
    ("adam", {"lr": 0.05, "eps": 1e-3, "weight_decay": 0.1}),
    ("adam", {"maximize": True}),
    ("adam-wd", {"decoupled_weight_decay": True}),
    ("adam-amsgrad", {"betas": (0.95, 0.9)}),
    ("adam", {"amsgrad": True}),  # max_exp_avg_sq starts from zeros, as in the reference
    ("adamw", {"weight_decay": 0.5, "lr": 0.03}),
    ("adadelta", {"rho": 0.5, "eps": 1e-3}),
    ("adadelta-all", {"lr": 1.0, "weight_decay": 0.0, "maximize": False}),
    ("adamax", {"betas": (0.5, 0.9)}),  # 1 - beta1**t uses the current beta1
    ("adamax-all", {"eps": 1e-2, "weight_decay": 0.0}),
    ("nadam", {"betas": (0.5, 0.9)}),  # μₜ, so Πₜ from here on, use the current beta1
    ("nadam", {"momentum_decay": 0.1, "eps": 1e-3}),
    ("nadam-wd", {"decoupled_weight_decay": True, "maximize": True}),
]
CHANGE_IDS = [f"{cid}-" + "-".join(ch) for cid, ch in CHANGES]
CHANGE_AT = 40


@pytest.mark.parametrize(("config_id", "change"), CHANGES, ids=CHANGE_IDS)
def test_param_group_changes_take_effect(config_id, change, dtype):
    config = CONFIG_BY_ID[config_id]
    model = make_model("two_groups", dtype, config=config)

    def on_step(t, opt, ref):
        if t == CHANGE_AT:  # change group 1 only (group 0 keeps its values)
            for o in (opt, ref):
                o.param_groups[1].update(change)

    opt, ref, params_f, params_r = run_pair(config, model, 80, on_step=on_step)
    for key, value in change.items():
        assert opt.param_groups[1][key] == value
    compare_with_reference(opt, ref, params_f, params_r, dtype, f"{config_id} changed {change}")

    # The change matters: the same run without it ends elsewhere, in group 1 only.
    _, _, unchanged, _ = run_pair(config, model, 80)
    n0 = len(model.groups[0][0])
    assert_arrays_equal(params_f[:n0], unchanged[:n0], "group 0 (unchanged)")
    assert any(not np.array_equal(a, b) for a, b in zip(params_f[n0:], unchanged[n0:]))


# --------------------------------------------------------------------------------------------
# flatten + one segment == many tensors
# --------------------------------------------------------------------------------------------


def segment_offsets(flat, views):
    base = flat.__array_interface__["data"][0]
    return [(v.__array_interface__["data"][0] - base) // flat.itemsize for v in views]


@pytest.mark.parametrize("dtype_", [np.float32, np.float64], ids=["f32", "f64"])
def test_flatten_layout(dtype_):
    arrays = Model([(MULTI_SHAPES, {})], dtype_).fresh()[1]
    before = snapshot(arrays)
    flat, views = fastopt.flatten(arrays)
    assert isinstance(flat, np.ndarray) and flat.ndim == 1 and flat.flags.c_contiguous
    assert flat.dtype == np.dtype(dtype_) and flat.flags.writeable
    assert flat.size >= sum(a.size for a in arrays)
    assert len(views) == len(arrays)
    for v, a in zip(views, arrays):
        assert v.shape == a.shape and v.dtype == a.dtype and v.flags.c_contiguous
        assert np.array_equal(v, a)
        assert not np.shares_memory(v, a)  # a copy, not the inputs
        if v.size:
            assert np.shares_memory(v, flat)
            assert v.__array_interface__["data"][0] % 64 == 0, "view start not 64-byte aligned"
    offsets = segment_offsets(flat, views)
    spans = sorted((o, o + v.size) for o, v in zip(offsets, views) if v.size)
    for (s0, e0), (s1, _) in zip(spans, spans[1:]):
        assert e0 <= s1, "views overlap"
    assert all(0 <= o and o + v.size <= flat.size for o, v in zip(offsets, views))
    assert_arrays_equal(arrays, before, "inputs of flatten")
    # Writing through a view writes the flat buffer.
    views[2][0] = 42
    assert flat[offsets[2]] == 42


# Rules whose update scales each tensor by norms of the whole tensor (a trust ratio): over
# one flat buffer they take the norms of everything in it, so they step otherwise. Read from
# the rules' per_tensor_norms (the distributed paths refuse those rules by it), which the test
# below so checks against what the kernels do. A rule of matrices (Muon) updates each matrix
# as a whole: one flat segment is no matrix at all.
PER_TENSOR_NORMS = {name for name, rule in RULES.items() if rule.per_tensor_norms}
ELEMENTWISE = [c for c in DENSE_PER_CLASS if rule_of(c).matrix is None]


@pytest.mark.parametrize("config", ELEMENTWISE, ids=[c.id for c in ELEMENTWISE])
def test_flatten_one_segment_equals_multi_tensor(config, dtype):
    model = make_model("multi", dtype)
    _, multi = model.fresh()
    flat, views = fastopt.flatten(model.fresh()[1])
    flat_v, views_v = fastopt.flatten(model.fresh()[1])
    opt_multi = config.make(fastopt, multi)
    opt_flat = config.make(fastopt, [flat])
    opt_views = config.make(fastopt, views_v)  # non-overlapping views of one buffer are fine
    stream = GradStream(model.shapes, dtype)
    offsets = segment_offsets(flat, views)
    for t in range(1, 31):
        grads = stream(t)
        flat_grad, grad_views = fastopt.flatten(grads)
        assert segment_offsets(flat_grad, grad_views) == offsets
        opt_multi.step(grads)
        opt_flat.step([flat_grad])
        opt_views.step(grads)
    assert_arrays_equal(views_v, multi, "optimizer over views vs multi-tensor params")
    if config.name in PER_TENSOR_NORMS:  # one flat segment has one norm: the group's
        assert not all(np.array_equal(v, m) for v, m in zip(views, multi)), "flat is per tensor"
        return
    assert_arrays_equal(views, multi, "flat views vs multi-tensor params")
    assert_state_dicts_equal(
        {**opt_views.state_dict(), "param_groups": []},
        {**opt_multi.state_dict(), "param_groups": []},
    )
    state_flat = opt_flat.state_dict()["state"]
    state_multi = opt_multi.state_dict()["state"]
    for i, (off, v) in enumerate(zip(offsets, views)):
        if i not in state_multi:
            continue
        for key, value in state_multi[i].items():
            seg = state_flat[0][key]
            if key == "step" or key in SCALAR_STATE_KEYS:  # one per group, repeated
                assert type(seg) is type(value) and seg == value, key
            else:
                assert_arrays_equal(
                    [seg[off:off + v.size]], [value.reshape(-1)], f"flat state {key} segment {i}"
                )


# --------------------------------------------------------------------------------------------
# add_param_group
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_add_param_group_matches_reference(config, dtype):
    model = make_model("two_groups", dtype, config=config)
    (g0_f, g1_f), params_f = model.fresh()
    (g0_r, g1_r), params_r = model.fresh()
    opt = config.make(fastopt, [g0_f])
    ref = config.make(reference, [g0_r])
    # Reference hyper-parameters of the new group: given ones + the optimizer's defaults.
    stream0 = GradStream(model.shapes[: len(g0_f["params"])], dtype, seed=1, name=config.name)
    stream = GradStream(model.shapes, dtype, seed=2, name=config.name)
    for t in range(1, 11):
        grads = stream0(t)
        opt.step(grads)
        ref.step(grads)
    opt.add_param_group(g1_f)
    ref.add_param_group(g1_r)
    assert len(opt.param_groups) == 2
    for key, value in ref.param_groups[1].items():
        if key != "params":
            assert opt.param_groups[1][key] == value, key
    assert all(a is b for a, b in zip(opt.param_groups[1]["params"], g1_f["params"]))
    for t in range(1, 41):
        grads = stream(t)
        opt.step(grads)
        ref.step(grads)
    compare_with_reference(opt, ref, params_f, params_r, dtype, f"{config.id} add_param_group")
