"""Gradient clipping: norms against float64 NumPy and torch, clipping against
torch.nn.utils, thread-count independence, the fused step, and bad input."""

import math

import numpy as np
import pytest

import fastopt
from fastopt import reference

SHAPES = [(300, 257), (), (1,), (4099,), (70001,)]
DTYPES = [np.float32, np.float64]
NORMS = [1.0, 2.0, math.inf]


def make_grads(dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return [np.array(scale * rng.standard_normal(s), dtype=dtype) for s in SHAPES]


def exact_norm(grads, norm_type):
    flat = np.concatenate([g.astype(np.float64).ravel() for g in grads])
    return float(np.linalg.norm(flat, ord=norm_type))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS)
def test_grad_norm_equals_float64_norm(dtype, norm_type):
    grads = make_grads(dtype)
    # Accumulated in double from the exact float values: only double rounding separates
    # it from NumPy's float64 norm (pairwise summation in another order): ~1e-15 relative.
    assert fastopt.grad_norm(grads, norm_type) == pytest.approx(exact_norm(grads, norm_type), rel=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS)
def test_grad_norm_is_the_same_for_any_thread_count(dtype, norm_type):
    grads = make_grads(dtype, seed=1) + [np.random.default_rng(2).standard_normal(2_000_003).astype(dtype)]
    saved = fastopt.get_num_threads()
    try:
        norms = []
        for threads in (1, 2):
            fastopt.set_num_threads(threads)
            norms.append(fastopt.grad_norm(grads, norm_type))
    finally:
        fastopt.set_num_threads(saved)
    assert norms[0] == norms[1]  # bitwise: the summation order is fixed


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS)
@pytest.mark.parametrize("max_norm", [0.5, 1e9])
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    grads = make_grads(dtype, seed=3)
    tensors = [torch.zeros(s, dtype=torch.float32 if dtype == np.float32 else torch.float64,
                           requires_grad=True) for s in SHAPES]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g.copy())
    want = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type))
    got = fastopt.clip_grad_norm_(grads, max_norm, norm_type)
    # torch sums float32 gradients in float32 (fastopt in double): its norm carries float32
    # rounding, ~1e-6 relative; in float64 both round at ~1e-15.
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    assert got == pytest.approx(want, rel=rtol)
    for t, g in zip(tensors, grads):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value_matches_torch_exactly(dtype):
    torch = pytest.importorskip("torch")
    grads = make_grads(dtype, seed=4)
    grads[3][:3] = [np.nan, np.inf, -np.inf]
    tensors = [torch.from_numpy(g.copy()) for g in grads]
    torch.nn.utils.clip_grad_value_([_leaf(torch, t) for t in tensors], 0.7)
    fastopt.clip_grad_value_(grads, 0.7)
    for t, g in zip(tensors, grads):
        np.testing.assert_array_equal(g, t.numpy())


def _leaf(torch, grad):
    p = torch.zeros_like(grad, requires_grad=True)
    p.grad = grad
    return p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9)), ("Adagrad", dict(lr=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True)), ("Adam", dict(lr=0.01, maximize=True)),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
])
def test_fused_clipping_equals_clip_then_step(dtype, name, kwargs):
    rng = np.random.default_rng(5)
    params = [np.array(rng.standard_normal(s), dtype=dtype) for s in SHAPES]
    fused_params, plain_params = [p.copy() for p in params], [p.copy() for p in params]
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": kwargs["lr"] / 3}]
    fused = getattr(fastopt, name)(groups(fused_params), **kwargs)
    plain = getattr(fastopt, name)(groups(plain_params), **kwargs)
    for step in range(20):
        grads = make_grads(dtype, seed=100 + step, scale=3.0)
        before = [g.copy() for g in grads]
        norm = fused.step(grads, max_norm=1.0)
        for g, b in zip(grads, before):
            np.testing.assert_array_equal(g, b)  # the fused path only reads the gradients
        assert norm == fastopt.clip_grad_norm_(grads, 1.0)
        assert plain.step(grads) is None
    for a, b in zip(fused_params, plain_params):
        np.testing.assert_array_equal(a, b)


def test_fused_clipping_matches_reference_with_torch_coefficient():
    """A clipped Adam step equals the reference fed gradients scaled by torch's formula."""
    rng = np.random.default_rng(6)
    params = [np.array(rng.standard_normal(s)) for s in SHAPES]
    ref_params = [p.copy() for p in params]
    opt, ref = fastopt.Adam(params, lr=0.01), reference.Adam(ref_params, lr=0.01)
    for step in range(10):
        grads = make_grads(np.float64, seed=200 + step, scale=2.0)
        opt.step(grads, max_norm=0.3)
        coef = min(0.3 / (exact_norm(grads, 2.0) + 1e-6), 1.0)
        ref.step([coef * g for g in grads])
    for a, b in zip(params, ref_params):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_error_if_nonfinite_raises_and_changes_nothing():
    grads = make_grads(np.float32)
    grads[2][0] = np.nan
    before = [g.copy() for g in grads]
    with pytest.raises(RuntimeError, match="norm"):
        fastopt.clip_grad_norm_(grads, 1.0, error_if_nonfinite=True)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)
    assert math.isnan(fastopt.clip_grad_norm_(grads, 1.0))  # propagates, as torch does
    assert all(np.isnan(g).all() for g in grads)


def test_empty_and_mixed_dtypes():
    assert fastopt.clip_grad_norm_([], 1.0) == 0.0
    grads = [np.full(3, 3.0, np.float32), np.full(4, 2.0), np.full(1, 1.0, np.float32)]
    norm = fastopt.clip_grad_norm_(grads, 1.0)
    assert norm == pytest.approx(math.sqrt(27 + 16 + 1), rel=1e-15)
    assert fastopt.grad_norm(grads) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("call, error, match", [
    (lambda g: fastopt.clip_grad_norm_(g, 1.0, norm_type=3), ValueError, "norm_type"),
    (lambda g: fastopt.clip_grad_norm_(g, -1.0), ValueError, "max_norm"),
    (lambda g: fastopt.clip_grad_norm_(g + [g[0][:2]], 1.0), ValueError, r"grads\[5\]"),
    (lambda g: fastopt.clip_grad_norm_(g + [[1.0]], 1.0), TypeError, r"grads\[5\]"),
    (lambda g: fastopt.clip_grad_value_(g + [np.ones(3, np.int64)], 1.0), TypeError, r"grads\[5\]"),
    (lambda g: fastopt.clip_grad_value_(g, float("nan")), ValueError, "clip_value"),
    (lambda g: fastopt.clip_grad_norm_(g[0], 1.0), TypeError, "grads"),
])
def test_bad_input_raises_and_changes_nothing(call, error, match):
    grads = make_grads(np.float64, seed=7)
    before = [g.copy() for g in grads]
    with pytest.raises(error, match=match):
        call(grads)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)


def test_step_rejects_bad_clipping_arguments_before_anything():
    p = np.ones(5)
    opt = fastopt.SGD([p], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="max_norm"):
        opt.step([np.ones(5)], max_norm=-1)
    with pytest.raises(ValueError, match="norm_type"):
        opt.step([np.ones(5)], max_norm=1, norm_type=0.5)
    np.testing.assert_array_equal(p, np.ones(5))
    assert opt.state_dict()["state"] == {}
