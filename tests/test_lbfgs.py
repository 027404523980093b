"""fastopt.LBFGS over NumPy arrays, without torch: convergence, state dicts, bad input, and its
compiled passes bitwise the same for any thread count and SIMD variant. (Against
torch.optim.LBFGS: tests/test_lbfgs_torch.py.)"""

import copy
import math
from pathlib import Path

import numpy as np
import pytest

import fastopt
from fastopt._kernels import built_variants, kernels

from conftest import in_every_simd_variant


def quadratic(dtype, n=6, seed=0):
    """A convex quadratic ½ xᵀAx − bᵀx split over two arrays, and its minimiser."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    a = m @ m.T + n * np.eye(n)
    b = rng.standard_normal(n)
    params = [np.zeros(4, dtype), np.zeros(n - 4, dtype)]

    def closure():
        x = np.concatenate(params).astype(np.float64)
        g = a @ x - b
        return 0.5 * x @ a @ x - b @ x, [g[:4].astype(dtype), g[4:].astype(dtype)]

    return params, closure, np.linalg.solve(a, b)


def rosenbrock(dtype):
    x = np.array([-1.5, 2.0, 0.5, -0.7, 1.2], dtype)

    def closure():
        r, s = x[1:] - x[:-1] ** 2, 1 - x[:-1]
        g = np.zeros_like(x)
        g[1:] += 200 * r
        g[:-1] += -400 * r * x[:-1] - 2 * s
        return float((100 * r ** 2 + s ** 2).sum()), [g]

    return [x], closure


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("history_size", [3, 100])
def test_reaches_the_minimiser_of_a_quadratic(line_search_fn, history_size):
    params, closure, solution = quadratic(np.float64)
    opt = fastopt.LBFGS(params, history_size=history_size, line_search_fn=line_search_fn,
                        lr=1 if line_search_fn else 0.3, tolerance_change=0.0,
                        tolerance_grad=1e-12)
    for _ in range(20):
        opt.step(closure)
    np.testing.assert_allclose(np.concatenate(params), solution, rtol=1e-6, atol=1e-8)
    assert opt.state[0]["func_evals"] > 1 and len(opt.state[0]["old_dirs"]) <= history_size


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_state_dict_round_trip_continues_identically(dtype, line_search_fn):
    kw = dict(history_size=3, line_search_fn=line_search_fn, lr=1 if line_search_fn else 0.1)
    params, closure = rosenbrock(dtype)
    opt = fastopt.LBFGS(params, **kw)
    for _ in range(5):
        opt.step(closure)
    saved, at = opt.state_dict(), params[0].copy()
    for _ in range(10):
        opt.step(closure)
    uninterrupted = params[0].copy()

    params2, closure2 = rosenbrock(dtype)
    params2[0][...] = at
    other = fastopt.LBFGS(params2, **kw)
    other.load_state_dict(saved)
    for _ in range(10):
        other.step(closure2)
    np.testing.assert_array_equal(params2[0], uninterrupted)
    assert other.state[0]["n_iter"] == opt.state[0]["n_iter"]
    # state_dict() hands out copies: the saved one did not follow the later steps
    assert saved["state"][0]["n_iter"] < opt.state[0]["n_iter"]
    assert saved["state"][0]["d"] is not opt.memory.d


def test_state_keys_are_torchs():
    params, closure = rosenbrock(np.float64)
    opt = fastopt.LBFGS(params)
    assert opt.state_dict()["state"] == {}
    opt.step(closure)
    assert set(opt.state_dict()["state"][0]) == {
        "func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
        "prev_flat_grad", "prev_loss", "al"}
    assert opt.param_groups[0]["max_eval"] == 25  # max_iter * 5 // 4


@pytest.mark.parametrize("kwargs, error", [
    (dict(lr=-1.0), ValueError), (dict(line_search_fn="armijo"), ValueError),
    (dict(history_size=0), ValueError), (dict(max_iter=2.5), TypeError),
    (dict(tolerance_grad=-1.0), ValueError)])
def test_bad_hyper_parameters_are_refused(kwargs, error):
    with pytest.raises(error):
        fastopt.LBFGS([np.zeros(3)], **kwargs)


def test_bad_params_are_refused():
    with pytest.raises(ValueError, match="one parameter group"):
        fastopt.LBFGS([{"params": [np.zeros(3)]}, {"params": [np.zeros(2)]}])
    with pytest.raises(TypeError, match="dtype"):
        fastopt.LBFGS([np.zeros(3), np.zeros(2, np.float32)])
    with pytest.raises(TypeError):
        fastopt.LBFGS([np.zeros(3, np.int64)])
    with pytest.raises(ValueError, match="contiguous"):
        fastopt.LBFGS([np.zeros((3, 4))[:, 1]])


def test_bad_closures_change_nothing():
    params, closure = rosenbrock(np.float64)
    opt = fastopt.LBFGS(params, line_search_fn="strong_wolfe")
    opt.step(closure)
    before, sd = params[0].copy(), opt.state_dict()
    calls = []

    def fails_later():
        calls.append(1)
        if len(calls) > 3:  # deep in the step, after the parameters have moved
            raise RuntimeError("model broke")
        return closure()

    def bad(grads):
        return lambda: (closure()[0], grads)

    with pytest.raises(TypeError):
        opt.step()
    for broken, error in [(fails_later, RuntimeError), (bad([np.zeros(4)]), ValueError),
                          (bad([np.zeros(5, np.float32)]), TypeError), (bad([]), ValueError)]:
        with pytest.raises(error):
            opt.step(broken)
        np.testing.assert_array_equal(params[0], before)
        after = opt.state_dict()["state"][0]
        assert after["n_iter"] == sd["state"][0]["n_iter"]
        np.testing.assert_array_equal(after["d"], sd["state"][0]["d"])
    # and the next good step is the one it would have been
    ref_params, ref_closure = rosenbrock(np.float64)
    ref_params[0][...] = before
    ref = fastopt.LBFGS(ref_params, line_search_fn="strong_wolfe")
    ref.load_state_dict(sd)
    opt.step(closure)
    ref.step(ref_closure)
    np.testing.assert_array_equal(params[0], ref_params[0])


def test_bad_state_dicts_change_nothing():
    params, closure = rosenbrock(np.float64)
    opt = fastopt.LBFGS(params)
    opt.step(closure)
    good = opt.state_dict()
    for change, error in [
            (lambda s: s["state"][0].update(d=np.zeros(4)), ValueError),
            (lambda s: s["state"][0].update(bogus=1), ValueError),
            (lambda s: s["state"][0]["ro"].append(1.0), ValueError),
            (lambda s: s["state"][0].update(n_iter=-1), ValueError),
            (lambda s: s["param_groups"][0].update(lr=-1.0), ValueError),
            (lambda s: s["param_groups"].append(dict(s["param_groups"][0])), ValueError)]:
        sd = opt.state_dict()
        change(sd)
        with pytest.raises(error):
            opt.load_state_dict(sd)
        now = opt.state_dict()
        assert now["param_groups"] == good["param_groups"]
        np.testing.assert_array_equal(now["state"][0]["d"], good["state"][0]["d"])


# --------------------------------------------------------------------------------------------
# The two-loop recursion's passes (kernels.axpy_dot): NumPy's rounding, sums in double, and
# bitwise the same for any thread count and SIMD variant
# --------------------------------------------------------------------------------------------

LARGE = 100_003  # several pieces, past the serial threshold: the passes run in parallel


def separable(n, dtype, seed=0):
    """A diagonal quadratic ½ Σ aᵢ(xᵢ − 1)² of ``n`` elements and a closure over it."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(1, 3, n).astype(dtype)
    x = rng.standard_normal(n).astype(dtype)

    def closure():
        g = a * (x - 1)
        return float(0.5 * np.dot(g, x - 1)), [g]
    return x, closure


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_axpy_dot_rounds_as_numpy_and_sums_in_double(dtype):
    rng = np.random.default_rng(1)
    x, y, s = (rng.standard_normal(LARGE).astype(dtype) for _ in range(3))
    alpha = dtype(-0.37)
    expected = x + alpha * y
    dot = kernels.axpy_dot(x, alpha, y, s)
    np.testing.assert_array_equal(x, expected)
    exact = math.fsum(np.asarray(s, np.float64) * np.asarray(expected, np.float64))
    assert abs(dot - exact) <= 1e-13 * np.sum(np.abs(s.astype(np.float64) * expected))
    assert kernels.axpy_dot(x, 2.0, None, s) == dot  # without y: the dot product alone
    np.testing.assert_array_equal(x, expected)
    assert kernels.axpy_dot(x, 1.0, y) == 0.0  # without s: the update alone


def test_axpy_dot_refuses_bad_arrays_and_changes_nothing():
    x, y = np.ones(10, np.float32), np.ones(10, np.float32)
    for bad in (np.ones(9, np.float32), np.ones(10), np.ones(20, np.float32)[::2]):
        with pytest.raises(ValueError):
            kernels.axpy_dot(x, 1.0, bad)
        with pytest.raises(ValueError):
            kernels.axpy_dot(x, 1.0, y, bad)
    read_only = np.ones(10, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        kernels.axpy_dot(read_only, 1.0, y)
    with pytest.raises(ValueError, match="float32 or float64"):
        kernels.axpy_dot(np.ones(10, np.float16), 1.0)
    np.testing.assert_array_equal(x, 1)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_bitwise_for_any_thread_count(restore_threads, line_search_fn):
    results = []
    for threads in (1, 2, 3):
        fastopt.set_num_threads(threads)
        x, closure = separable(LARGE, np.float32)
        opt = fastopt.LBFGS([x], lr=0.5, history_size=4, line_search_fn=line_search_fn,
                            max_iter=6)
        for _ in range(3):
            opt.step(closure)
        results.append(x)
    assert len(opt.memory.old_dirs) == 4  # the history filled: every round ran
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


SIMD_SCRIPT = r"""
import sys
import numpy as np
import fastopt
sys.path.insert(0, sys.argv[2])
from test_lbfgs import LARGE, separable
x, closure = separable(LARGE, np.float32)
opt = fastopt.LBFGS([x], lr=0.5, history_size=4, max_iter=6, line_search_fn="strong_wolfe")
for _ in range(3):
    opt.step(closure)
np.savez(sys.argv[1], x)
"""


@pytest.mark.skipif(len([v for v in kernels.cpu_variants() if v in built_variants()]) < 2,
                    reason="one SIMD variant runs on this CPU")
def test_bitwise_for_every_simd_variant(tmp_path):
    outputs = in_every_simd_variant(tmp_path, SIMD_SCRIPT, str(Path(__file__).parent))
    for other in outputs[1:]:
        np.testing.assert_array_equal(other["arr_0"], outputs[0]["arr_0"])


def one_array(problem, dtype):
    """The problem's parameters as one flat array, and a closure returning (loss, grad) of it
    (the functional API's and the reference's form)."""
    params, closure = problem(dtype)
    x = np.concatenate([p.reshape(-1) for p in params])
    sizes = np.cumsum([p.size for p in params])[:-1]

    def flat_closure():
        for p, piece in zip(params, np.split(x, sizes)):
            p[...] = piece.reshape(p.shape)
        loss, grads = closure()
        return loss, np.concatenate([g.reshape(-1) for g in grads])

    return x, flat_closure


PROBLEMS = {"quadratic": lambda dtype: quadratic(dtype, n=40)[:2], "rosenbrock": rosenbrock}


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("history_size", [3, 100])
def test_class_functional_and_reference_agree_over_many_steps(problem, dtype, line_search_fn,
                                                             history_size):
    """40 steps of 5 iterations: fastopt.LBFGS and lbfgs_ bitwise alike; the reference (its
    two-loop dot products summed in double, as the kernels do, in another order) bitwise in
    float32 (each sum rounded to float32 from double) and within 1e-9 in float64: over the
    whole run on the quadratic; on Rosenbrock, whose curved valley amplifies a last-bit
    difference in a sum by orders of magnitude over the run (by how much depends on the order
    NumPy's BLAS sums in on the CPU: under 1e-9 on an AVX2 machine, 4e-6 on an AVX-512 one),
    over each step from fastopt's point and state."""
    kw = dict(history_size=history_size, line_search_fn=line_search_fn, max_iter=5,
              lr=1 if line_search_fn else 0.01)
    hypers = {**kw, "max_eval": 6, "tolerance_grad": 1e-7, "tolerance_change": 1e-9}
    params, closure = PROBLEMS[problem](dtype)
    opt = fastopt.LBFGS(params, **kw)
    x, flat_closure = one_array(PROBLEMS[problem], dtype)
    y, reference_closure = one_array(PROBLEMS[problem], dtype)
    state: dict = {}
    reference_state: dict = {}
    restart = dtype == np.float64 and problem == "rosenbrock"
    for _ in range(40):
        if restart:
            y[...] = x
            reference_state = copy.deepcopy(state)
        loss = opt.step(closure)
        assert fastopt.functional.lbfgs_(x, flat_closure, state, **kw) == loss
        reference_loss = fastopt.reference.lbfgs(y, reference_closure, reference_state, **hypers)
        np.testing.assert_array_equal(x, np.concatenate([p.reshape(-1) for p in params]))
        if dtype == np.float32:
            np.testing.assert_array_equal(y, x)
            assert reference_loss == loss
        else:
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-12)
    entry = opt.state[0]
    assert state.keys() == entry.keys() == reference_state.keys()
    for key in ("func_evals", "n_iter"):
        assert state[key] == entry[key] == reference_state[key]
    assert len(state["old_dirs"]) == len(reference_state["old_dirs"]) <= history_size
    assert entry["func_evals"] > 40  # it did iterate


def test_functional_refuses_bad_input_and_changes_nothing():
    x, closure = one_array(rosenbrock, np.float64)
    state: dict = {}
    fastopt.functional.lbfgs_(x, closure, state, line_search_fn="strong_wolfe")
    before, saved = x.copy(), copy.deepcopy(state)
    calls = []

    def fails_later():
        calls.append(1)
        if len(calls) > 3:  # after the parameters have moved
            raise RuntimeError("model broke")
        return closure()

    cases = [
        (lambda: fastopt.functional.lbfgs_(x.astype(np.int64), closure, state), TypeError),
        (lambda: fastopt.functional.lbfgs_(x, None, state), TypeError),
        (lambda: fastopt.functional.lbfgs_(x, closure, [state]), TypeError),
        (lambda: fastopt.functional.lbfgs_(x, closure, state, history_size=0), ValueError),
        (lambda: fastopt.functional.lbfgs_(x, closure, {**state, "d": x}), ValueError),
        (lambda: fastopt.functional.lbfgs_(x, closure, {**state, "d": np.zeros(3)}), ValueError),
        (lambda: fastopt.functional.lbfgs_(x, lambda: (1.0, np.zeros(3)), state), ValueError),
        (lambda: fastopt.functional.lbfgs_(x, lambda: (1.0, x.astype(np.float32)), state),
         TypeError),
        (lambda: fastopt.functional.lbfgs_(x, fails_later, state, line_search_fn="strong_wolfe"),
         RuntimeError),
    ]
    for call, error in cases:
        with pytest.raises(error):
            call()
        np.testing.assert_array_equal(x, before)
        assert state.keys() == saved.keys() and state["n_iter"] == saved["n_iter"]
        np.testing.assert_array_equal(state["d"], saved["d"])
    # and the next good step is the one it would have been
    y, y_closure = one_array(rosenbrock, np.float64)
    y[...] = before
    fastopt.functional.lbfgs_(y, y_closure, saved, line_search_fn="strong_wolfe")
    fastopt.functional.lbfgs_(x, closure, state, line_search_fn="strong_wolfe")
    np.testing.assert_array_equal(x, y)
