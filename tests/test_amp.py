"""Loss scaling (mixed precision): gradients unscaled inside the step, and a step with an
infinite or NaN gradient skipped with nothing modified.

Proves that
- the NumPy front end's ``step(grads, grad_scale=s)`` is, bit for bit, the step of the
  gradients divided by ``s`` (a power of two, as loss scales are), returns their norm, and
  skips a step with an infinite or NaN gradient (returning a non-finite norm), leaving
  parameters, state and step counts as they were, so the next good step is the one it would
  have been;
(fastopt.torch under ``torch.amp.GradScaler``: test_torch_amp.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastopt

from conftest import DENSE_PER_CLASS, DENSE_PER_CLASS_IDS, GradStream, make_params, shapes_for

SHAPES = [(), (3,), (1023,), (7, 13), (300, 1001)]


def _state_bits(opt):
    sd = opt.state_dict()
    return {i: {k: (np.array(v).tobytes(), np.array(v).dtype) for k, v in e.items()}
            for i, e in sd["state"].items()}


def _times(grads, scale):
    """The gradients times a loss scale (arrays, 0-d ones included)."""
    return [np.array(g * scale, dtype=g.dtype) for g in grads]


@pytest.mark.parametrize("config", DENSE_PER_CLASS, ids=DENSE_PER_CLASS_IDS)
def test_numpy_grad_scale_unscales_and_skips_non_finite_steps(config):
    shapes = shapes_for(config, SHAPES)  # matrices for a rule of matrices
    scaled_params = make_params(shapes, np.float32)
    plain_params = make_params(shapes, np.float32)
    scaled = config.make(fastopt, scaled_params)
    plain = config.make(fastopt, plain_params)
    stream = GradStream(shapes, np.float32)
    scale = 2.0 ** 12
    for t in range(1, 9):
        grads = stream(t)
        if t in (3, 6):  # an overflowed backward pass: the scaled step is skipped
            bad = _times(grads, scale)
            bad[2].flat[17] = np.inf if t == 3 else np.nan
            before = ([p.copy() for p in scaled_params], _state_bits(scaled))
            norm = scaled.step(bad, grad_scale=scale)
            assert not math.isfinite(norm)
            for p, b in zip(scaled_params, before[0]):
                np.testing.assert_array_equal(p, b)
            assert _state_bits(scaled) == before[1]
        norm = scaled.step(_times(grads, scale), grad_scale=scale)
        plain.step(grads)
        expected = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
        assert norm == pytest.approx(expected, rel=1e-12)
        for i, (a, b) in enumerate(zip(scaled_params, plain_params)):
            np.testing.assert_array_equal(a, b, err_msg=f"{config.id}: param {i} at step {t}")
    assert _state_bits(scaled) == _state_bits(plain)


def test_numpy_grad_scale_with_clipping_clips_the_unscaled_gradients():
    a, b = make_params(SHAPES, np.float32), make_params(SHAPES, np.float32)
    opt_a, opt_b = fastopt.AdamW(a, lr=0.01), fastopt.AdamW(b, lr=0.01)
    grads = GradStream(SHAPES, np.float32)(1)
    norm_a = opt_a.step(_times(grads, 1024), grad_scale=1024, max_norm=1.0)
    norm_b = opt_b.step(grads, max_norm=1.0)
    assert norm_a == norm_b
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan, "2"])
def test_numpy_bad_grad_scale_is_refused_with_nothing_modified(scale):
    params = make_params(SHAPES, np.float32)
    opt = fastopt.Adam(params)
    before = [p.copy() for p in params]
    with pytest.raises((ValueError, TypeError), match="grad_scale"):
        opt.step(GradStream(SHAPES, np.float32)(1), grad_scale=scale)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    assert opt.state_dict()["state"] == {}


# ----------------------------------------------------------------------------- torch
