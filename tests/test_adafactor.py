"""fastopt.Adafactor (NumPy arrays) against fastopt.reference's Adafactor, over many steps, for
every option and shape kind; bitwise the same for any thread count and SIMD variant; state
dicts; bad input with nothing modified. (torch.optim.Adafactor: test_adafactor_torch.py.)"""

import numpy as np
import pytest

import fastopt
from fastopt._kernels import built_variants, kernels
from fastopt.reference import adafactor as reference_adafactor

from conftest import assert_arrays_equal, assert_close, in_every_simd_variant, snapshot

DEFAULTS = {"lr": 1e-2, "beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0,
            "weight_decay": 0.0, "maximize": False}
OPTIONS = {
    "default": {},
    "weight_decay-maximize": {"weight_decay": 0.1, "maximize": True},
    "eps-d": {"eps": (1e-30, 1e-2), "d": 1.5},
    "lr-beta2_decay": {"lr": 0.05, "beta2_decay": -0.5},
    "clipped": {"lr": 0.5, "d": 1.0, "eps": (1e-3, 0.0)},
}
# vectors (a full second moment), matrices, stacks of matrices (the last two dimensions), a
# matrix of one row and one of one column, a 0-d parameter, and sizes past the serial threshold
SHAPES = [(7,), (5, 9), (3, 4, 6), (1, 8), (8, 1), (), (2, 1, 3, 5)]
LARGE = [(300, 257), (40000,), (3, 128, 100)]
# The kernels sum in double in lanes, the reference with NumPy's pairwise sums (the factored
# moments in float32): norms and moments part in the last bit, and 120 steps carry that to a
# few ulps of the parameters' scale.
RTOL = {np.float32: 5e-6, np.float64: 1e-13}


def _train(make, shapes, dtype, options, steps=120, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    opt = make(params, **options)
    for _ in range(steps):
        opt.step([rng.standard_normal(s).astype(dtype) for s in shapes])
    return params, opt


def _reference(params, **options):
    class Reference:
        def __init__(self):
            self.states = [{} for _ in params]

        def step(self, grads):
            h = {**DEFAULTS, **options}
            if h["eps"][0] is None:  # the group's first parameter's epsilon, as torch
                h["eps"] = (float(np.finfo(params[0].dtype).eps), h["eps"][1])
            for p, g, state in zip(params, grads, self.states):
                reference_adafactor(p, g, state, **h)
    return Reference()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_matches_reference(option, dtype):
    mine, opt = _train(fastopt.Adafactor, SHAPES + LARGE, dtype, OPTIONS[option])
    theirs, ref = _train(_reference, SHAPES + LARGE, dtype, OPTIONS[option])
    for i, (a, b) in enumerate(zip(mine, theirs)):
        assert_close(a, b, RTOL[dtype], f"params[{i}] {a.shape}")
    for i, entry in opt.state.items():
        assert entry["step"] == 120.0
        for key, value in entry.items():
            if key != "step":
                assert_close(value, ref.states[i][key], RTOL[dtype] * 10, f"state[{i}][{key}]")


def test_moves_and_trains():
    """A least-squares fit: Adafactor's loss falls (a check of the rule's direction, whatever
    the reference says)."""
    rng = np.random.default_rng(3)
    x, w_true = rng.standard_normal((256, 20)), rng.standard_normal((20, 5))
    y = x @ w_true
    w = np.zeros((20, 5))
    opt = fastopt.Adafactor([w], lr=0.1)
    losses = []
    for _ in range(300):
        r = x @ w - y
        losses.append(float(np.mean(r ** 2)))
        opt.step([2 * x.T @ r / r.size])
    assert losses[-1] < 0.01 * losses[0]


def test_bitwise_for_any_thread_count(restore_threads):
    results = []
    for threads in (1, 2, 3):
        fastopt.set_num_threads(threads)
        params, _ = _train(fastopt.Adafactor, LARGE, np.float32, {"weight_decay": 0.1}, steps=5)
        results.append(params)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert_arrays_equal([a], [b], "thread counts")


# float32, and (test_adafactor_storage.py's modes) bfloat16 rounded stochastically and float16
# compensated, compared by their bits
SIMD_SCRIPT = r"""
import sys
import numpy as np
import ml_dtypes
import fastopt
rng = np.random.default_rng(0)
shapes = [(300, 257), (40000,), (5, 9), (7,)]
out = {}
for name, dtype in [("f32", np.float32), ("bf16", ml_dtypes.bfloat16), ("f16", np.float16)]:
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    opt = fastopt.Adafactor(params, weight_decay=0.1, seed=5)
    for _ in range(5):
        opt.step([rng.standard_normal(s).astype(dtype) for s in shapes])
    out.update((f"{name}-{k}", p.view(np.uint16)) for k, p in enumerate(params))
np.savez(sys.argv[1], **out)
"""


@pytest.mark.skipif(len([v for v in kernels.cpu_variants() if v in built_variants()]) < 2,
                    reason="one SIMD variant runs on this CPU")
def test_bitwise_for_every_simd_variant(tmp_path):
    pytest.importorskip("ml_dtypes")
    outputs = in_every_simd_variant(tmp_path, SIMD_SCRIPT)
    for other in outputs[1:]:
        for key in outputs[0].files:
            assert_arrays_equal([other[key]], [outputs[0][key]], key)


def test_state_dict_resumes_bitwise():
    rng = np.random.default_rng(5)
    shapes = [(6, 4), (9,), (2, 3, 5)]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(20)]
    start = [rng.standard_normal(s) for s in shapes]
    whole = [p.copy() for p in start]
    opt = fastopt.Adafactor(whole, weight_decay=0.01)
    for g in grads:
        opt.step(g)
    first = [p.copy() for p in start]
    opt1 = fastopt.Adafactor(first, weight_decay=0.01)
    for g in grads[:10]:
        opt1.step(g)
    sd = opt1.state_dict()
    assert sorted(sd["state"][0]) == ["col_var", "row_var", "step"]
    assert sd["state"][0]["row_var"].shape == (6, 1) and sd["state"][0]["col_var"].shape == (1, 4)
    assert sorted(sd["state"][1]) == ["step", "variance"]
    second = [p.copy() for p in first]
    opt2 = fastopt.Adafactor(second, weight_decay=0.5)  # the state dict's groups win
    opt2.load_state_dict(sd)
    sd["state"][0]["row_var"][...] = 7  # the optimizer took copies
    for g in grads[10:]:
        opt2.step(g)
    for a, b in zip(second, whole):
        assert_arrays_equal([a], [b], "resumed")


def test_parameters_without_gradient_are_left_alone():
    a, b = np.ones((3, 4)), np.ones(5)
    opt = fastopt.Adafactor([a, b])
    opt.step([np.ones((3, 4)), None])
    assert np.all(b == 1) and 1 not in opt.state and opt.state[0]["step"] == 1.0
    assert np.all(a < 1)


def test_empty_parameter_counts_its_step():
    empty, p = np.zeros((0, 3)), np.ones(3)
    opt = fastopt.Adafactor([empty, p])
    opt.step([np.zeros((0, 3)), np.ones(3)])
    assert opt.state[0]["step"] == 1.0 and np.all(p < 1)


def test_groups_take_their_own_hyper_parameters():
    a, b = np.ones((4, 4)), np.ones((4, 4))
    opt = fastopt.Adafactor([{"params": [a]}, {"params": [b], "lr": 0.001}])
    opt.step([np.ones((4, 4)), np.ones((4, 4))])
    assert 1 - a[0, 0] == pytest.approx(0.01, rel=1e-6)
    assert 1 - b[0, 0] == pytest.approx(0.001, rel=1e-6)


BAD_CONSTRUCTION = [
    ({"lr": -1.0}, ValueError), ({"beta2_decay": 0.5}, ValueError),
    ({"eps": (-1.0, 1e-3)}, ValueError), ({"eps": (None, -1.0)}, ValueError),
    ({"eps": 1e-3}, TypeError), ({"d": 0.5}, ValueError), ({"weight_decay": -0.1}, ValueError),
    ({"maximize": 1}, TypeError),
]


@pytest.mark.parametrize("kwargs,error", BAD_CONSTRUCTION, ids=[str(k) for k, _ in BAD_CONSTRUCTION])
def test_bad_hyper_parameters_are_refused(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        fastopt.Adafactor([np.ones(3)], **kwargs)


def test_bad_params_are_refused():
    with pytest.raises(TypeError):
        fastopt.Adafactor([np.ones(3, np.int32)])
    with pytest.raises(ValueError, match="C-contiguous"):
        fastopt.Adafactor([np.ones((3, 4))[:, ::2]])
    a = np.ones(6)
    with pytest.raises(ValueError, match="sharing memory"):
        fastopt.Adafactor([a[:3], a])
    with pytest.raises(ValueError, match="empty"):
        fastopt.Adafactor([])


def test_bad_steps_change_nothing():
    a, b = np.ones((3, 4)), np.ones(5)
    opt = fastopt.Adafactor([a, b])
    opt.step([np.ones((3, 4)), np.ones(5)])
    before, sd = snapshot([a, b]), opt.state_dict()
    bad = [
        ([np.ones((3, 4))], ValueError),                              # one gradient short
        ([np.ones((3, 4)), np.ones(4)], ValueError),                  # a wrong shape
        ([np.ones((3, 4)), np.ones(5, np.float32)], TypeError),       # a wrong dtype
        ([np.ones((3, 4)), b], ValueError),                           # the parameter itself
        ([np.ones((3, 4)), opt.state[1]["variance"]], ValueError),    # the state
        ((g for g in [np.ones((3, 4)), np.ones(5)]), TypeError),     # not a list
    ]
    for grads, error in bad:
        with pytest.raises(error):
            opt.step(grads)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step([np.ones((3, 4)), np.ones(5)])
    assert_arrays_equal([a, b], before)
    after = opt.state_dict()
    for i in sd["state"]:
        for key, value in sd["state"][i].items():
            assert_arrays_equal([np.asarray(after["state"][i][key])], [np.asarray(value)], key)


def test_bad_state_dicts_change_nothing():
    a = np.ones((3, 4))
    opt = fastopt.Adafactor([a])
    opt.step([np.ones((3, 4))])
    sd = opt.state_dict()
    bad = []
    for key, value in [("row_var", np.ones((4, 1))), ("col_var", None), ("step", -1.0)]:
        broken = opt.state_dict()
        if value is None:
            del broken["state"][0][key]
        else:
            broken["state"][0][key] = value
        bad.append(broken)
    bad.append({"state": {5: sd["state"][0]}, "param_groups": sd["param_groups"]})
    bad.append({"state": sd["state"], "param_groups": [{**sd["param_groups"][0], "d": 0.1}]})
    bad.append({"state": sd["state"]})
    for broken in bad:
        with pytest.raises((ValueError, TypeError)):
            opt.load_state_dict(broken)
        after = opt.state_dict()
        assert_arrays_equal([after["state"][0]["row_var"]], [sd["state"][0]["row_var"]])
        assert after["param_groups"] == sd["param_groups"]


def test_functional_matches_the_class():
    rng = np.random.default_rng(7)
    shapes = [(5, 9), (7,), (2, 3, 4)]
    start = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(30)]
    mine = [p.copy() for p in start]
    opt = fastopt.Adafactor(mine, weight_decay=0.1, maximize=True)
    for g in grads:
        opt.step(g)
    from fastopt.adafactor import state_shapes
    for i, p0 in enumerate(start):
        p = p0.copy()
        state = {k: np.zeros(s) for k, s in state_shapes(p.shape).items()}
        for t, g in enumerate(grads, start=1):
            fastopt.functional.adafactor_(p, g[i], **state, step=t, weight_decay=0.1, maximize=True)
        assert_arrays_equal([p], [mine[i]], f"params[{i}]")
        for key, value in state.items():
            assert_arrays_equal([value], [opt.state[i][key]], key)


def test_functional_refuses_bad_state_with_nothing_modified():
    p, g = np.ones((3, 4)), np.ones((3, 4))
    row, col = np.zeros((3, 1)), np.zeros((1, 4))
    cases = [
        ({"row_var": row}, TypeError),                                  # col_var missing
        ({"row_var": row, "col_var": np.zeros((4, 1))}, ValueError),    # wrong shape
        ({"row_var": row, "col_var": col, "variance": np.zeros((3, 4))}, ValueError),
        ({"row_var": row, "col_var": col.astype(np.float32)}, TypeError),
    ]
    for state, error in cases:
        with pytest.raises(error):
            fastopt.functional.adafactor_(p, g, **state, step=1)
    with pytest.raises(ValueError, match="memory"):
        fastopt.functional.adafactor_(p[0], g[0], variance=p[0], step=1)
    with pytest.raises(ValueError, match="step"):
        fastopt.functional.adafactor_(p, g, row, col, step=0)
    assert np.all(p == 1) and np.all(row == 0) and np.all(col == 0)
    fastopt.functional.adafactor_(p, g, row, col, step=1)
    assert np.all(p < 1) and np.all(row > 0)
