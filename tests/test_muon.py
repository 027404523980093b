"""Muon's matrix side: its Newton–Schulz iteration in bfloat16 against torch's, its shape rules
and learning-rate adjustments as torch's, and what it refuses (with nothing modified).

The element-wise side (momentum, weight decay, the update's addition) goes through every
generic suite with the other rules (conftest.CONFIGS: "muon", "muon-all").
"""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt import functional, reference
from fastopt.newton_schulz import orthogonalize
from fastopt.rules.muon import NS_COEFFICIENTS, adjusted_lr

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz  # noqa: E402

SHAPES = [(3, 5), (5, 3), (16, 16), (1, 300), (7, 1), (32, 100), (100, 32), (64, 300)]


def _torch_ns(m, coefficients=NS_COEFFICIENTS, steps=5, eps=1e-7):
    return _zeropower_via_newtonschulz(torch.from_numpy(m), coefficients, steps, eps).float().numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_newton_schulz_is_torchs_in_bfloat16(shape, dtype):
    """Every value a bfloat16 one; bitwise torch's where its matrix products are short (up to
    16 columns in the Gram matrix's sums: exact in float32 whatever the order); beyond, torch's
    MKL and NumPy's OpenBLAS add a product's float32 terms in other orders, which moves one
    bfloat16 result in about 3·10^4, and the iteration spreads such a flip over the matrix.
    Measured over these shapes and 4 seeds: at most 1.5e-2 of the largest element (about two
    bfloat16 steps), on at most 57% of the elements (128 × 128)."""
    for seed in range(4):
        m = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
        mine = orthogonalize(m, NS_COEFFICIENTS, 5, 1e-7)
        assert mine.dtype == np.float32 and mine.shape == shape
        assert np.array_equal(mine.astype(ml_dtypes.bfloat16).astype(np.float32), mine)
        theirs = _torch_ns(m)
        if min(shape) <= 16:
            np.testing.assert_array_equal(mine, theirs)
        else:
            scale = np.abs(theirs).max()
            assert np.abs(mine - theirs).max() <= 3e-2 * scale, (shape, seed)
        # and it is an orthogonalisation: singular values near one (the quintic's band)
        sv = np.linalg.svd(mine.astype(np.float64), compute_uv=False)
        assert 0.3 < sv.min() and sv.max() < 1.5


def test_newton_schulz_is_the_references_bitwise():
    for shape in SHAPES:
        m = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(orthogonalize(m, NS_COEFFICIENTS, 5, 1e-7),
                                      reference.muon.__globals__["newton_schulz"](
                                          m, NS_COEFFICIENTS, 5, 1e-7))


def test_float64_goes_to_bfloat16_through_float32_as_torch_converts():
    # A float64 value just above a bfloat16 tie that float32 rounds onto the tie: converted
    # directly it would round up, through float32 it rounds to even (down), as torch does.
    tie = 1.0 + 2.0 ** -8
    m = np.array([[tie + 2.0 ** -40, 1.0], [0.5, 0.25]], np.float64)
    np.testing.assert_array_equal(orthogonalize(m, NS_COEFFICIENTS, 0, 1e-7), _torch_ns(m, steps=0))
    np.testing.assert_array_equal(orthogonalize(m, NS_COEFFICIENTS, 3, 1e-7), _torch_ns(m, steps=3))


@pytest.mark.parametrize("fn", [None, "original", "match_rms_adamw"])
@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (8, 8), (1, 300), (300, 1)])
def test_adjusted_lr_is_torchs(shape, fn):
    assert adjusted_lr(0.02, fn, shape) == _adjust_lr(0.02, fn, torch.Size(shape))


@pytest.mark.parametrize("fn", [None, "match_rms_adamw"])
@pytest.mark.parametrize("shape", [(6, 4), (4, 6)])
def test_a_step_is_torchs(shape, fn):
    """Three steps, both layouts of the matrix (torch transposes a tall one): torch's to the
    last bit or so (a matrix this small has exact float32 sums; torch's vectorised ``lerp_``
    of the momentum rounds otherwise than its formula in an element now and then)."""
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    t = torch.nn.Parameter(torch.from_numpy(p.copy()))
    topt = torch.optim.Muon([t], lr=0.05, adjust_lr_fn=fn)
    opt = fastopt.Muon([p], lr=0.05, adjust_lr_fn=fn)
    for k in range(3):
        t.grad = torch.from_numpy(g * (k + 1))
        topt.step()
        opt.step([g * (k + 1)])
    np.testing.assert_allclose(p, t.detach().numpy(), rtol=3e-7, atol=0)
    np.testing.assert_allclose(opt.state_dict()["state"][0]["momentum_buffer"],
                               topt.state[t]["momentum_buffer"].numpy(), rtol=3e-7, atol=0)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_only_matrices_in_torchs_words(shape):
    p = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        fastopt.Muon([p])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        functional.muon_(p, np.zeros_like(p), np.zeros_like(p))
    import fastopt.torch as ft
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        ft.Muon([torch.nn.Parameter(torch.zeros(shape))])


def test_a_group_added_with_a_vector_is_refused_and_changes_nothing():
    p = np.ones((3, 4), np.float32)
    opt = fastopt.Muon([p], lr=0.1)
    opt.step([np.full((3, 4), 0.5, np.float32)])
    before, state = p.copy(), opt.state_dict()
    with pytest.raises(ValueError, match="only supports 2D"):
        opt.add_param_group({"params": [np.ones(4, np.float32)]})
    assert len(opt.param_groups) == 1 and np.array_equal(p, before)
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["momentum_buffer"],
                                  state["state"][0]["momentum_buffer"])


@pytest.mark.parametrize("kwargs, match", [
    ({"adjust_lr_fn": "arbitrary"}, "adjust_lr_fn"),
    ({"ns_steps": 100}, "ns_steps"),
    ({"ns_coefficients": (1.0, 2.0)}, "ns_coefficients"),
    ({"momentum": -0.1}, "momentum"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fastopt.Muon([np.zeros((2, 2), np.float32)], **kwargs)


def test_empty_matrix_is_left_alone():
    p = np.zeros((0, 4), np.float32)
    opt = fastopt.Muon([p, np.ones((2, 2), np.float32)])
    opt.step([p.copy(), np.ones((2, 2), np.float32)])
    assert p.shape == (0, 4)


def test_non_finite_gradients_spread_over_their_matrix_as_in_torch():
    g = np.ones((3, 4), np.float32)
    g[1, 2] = np.nan
    p = np.ones((3, 4), np.float32)
    t = torch.nn.Parameter(torch.from_numpy(p.copy()))
    t.grad = torch.from_numpy(g.copy())
    torch.optim.Muon([t]).step()
    fastopt.Muon([p]).step([g])
    assert np.array_equal(np.isnan(p), np.isnan(t.detach().numpy()))
    assert np.isnan(p).all()
