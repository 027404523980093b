"""Loss scaling (mixed precision): gradients unscaled inside the step, and a step with an
infinite or NaN gradient skipped with nothing modified.

Proves that
- the NumPy front end's ``step(grads, grad_scale=s)`` is, bit for bit, the step of the
  gradients divided by ``s`` (a power of two, as loss scales are), returns their norm, and
  skips a step with an infinite or NaN gradient (returning a non-finite norm), leaving
  parameters, state and step counts as they were, so the next good step is the one it would
  have been;
- fastopt.torch keeps ``torch.amp.GradScaler``'s contract with fused optimizers: a step the
  scaler marks ``found_inf`` changes nothing; AdamW, Adam and SGD under a real GradScaler
  (scaled losses, injected infinities and NaNs, the scale backing off and growing, and
  ``unscale_`` before clipping) track torch's own optimizer under the same scaler (fused=True
  where torch has it on the CPU) over many steps, skipping the same steps.
"""

from __future__ import annotations

import copy
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
torch = pytest.importorskip("torch")
import fastopt.torch as ft  # noqa: E402


def test_torch_step_marked_found_inf_changes_nothing():
    p = torch.nn.Parameter(torch.randn(50, dtype=torch.bfloat16))
    opt = ft.AdamW([p], lr=0.01, state_dtype="8bit")
    assert opt._step_supports_amp_scaling
    p.grad = torch.randn_like(p)
    opt.step()
    before = (p.detach().clone(), copy.deepcopy(opt.state_dict()))
    p.grad = torch.randn_like(p) * 1024
    opt.grad_scale, opt.found_inf = torch.tensor(1024.0), torch.tensor(1.0)
    opt.step()
    assert torch.equal(p.detach().view(torch.int16), before[0].view(torch.int16))
    after = opt.state_dict()["state"][0]
    for key, value in before[1]["state"][0].items():
        assert torch.equal(after[key], value), key
    opt.found_inf = torch.tensor(0.0)
    opt.step()  # unscaled inside: the step of p.grad / 1024
    del opt.grad_scale, opt.found_inf
    assert float(opt.state[p]["step"]) == 2


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(12, 32)
        self.b = torch.nn.Linear(32, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _torch_optimizer(name, params, **kwargs):
    """torch's own, fused on the CPU where torch has it (its for-loop SGD otherwise)."""
    try:
        return getattr(torch.optim, name)(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return getattr(torch.optim, name)(params, foreach=False, **kwargs)


@pytest.mark.parametrize("unscale_first", [False, True], ids=["fused-unscale", "unscale_-clip"])
@pytest.mark.parametrize("name, kwargs", [
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.01}),
    ("Adam", {"lr": 1e-2, "amsgrad": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
])
def test_torch_grad_scaler_matches_torchs_optimizer(name, kwargs, unscale_first):
    torch.manual_seed(0)
    mine_net = _Net()
    theirs_net = copy.deepcopy(mine_net)
    mine = getattr(ft, name)(mine_net.parameters(), **kwargs)
    theirs = _torch_optimizer(name, theirs_net.parameters(), **kwargs)
    scalers = [torch.amp.GradScaler("cpu", init_scale=2.0 ** 14, growth_interval=4)
               for _ in range(2)]
    x, y = torch.randn(64, 12), torch.randn(64, 3)
    skipped = 0
    for t in range(40):
        for net, opt, scaler in zip((mine_net, theirs_net), (mine, theirs), scalers):
            opt.zero_grad()
            # float32 throughout: under autocast the two runs' last-bit differences in the
            # weights would come back as bfloat16-sized differences of the gradients.
            loss = torch.nn.functional.mse_loss(net(x), y)
            scaler.scale(loss).backward()
            if t in (5, 6, 17):  # an overflow, a NaN: the scaler skips and backs off
                net.a.weight.grad[0, 0] = math.inf if t != 6 else math.nan
            if unscale_first:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
        skipped += t in (5, 6, 17)
        assert scalers[0].get_scale() == scalers[1].get_scale(), f"step {t}"
        assert not hasattr(mine, "found_inf")
    assert scalers[0].get_scale() != 2.0 ** 14  # it backed off and grew again
    for p, q in zip(mine_net.parameters(), theirs_net.parameters()):
        # (torch orders the float32 arithmetic of its fused Adam otherwise: lerp moments)
        torch.testing.assert_close(p, q, rtol=1e-4, atol=5e-5)
        if name != "SGD":
            assert float(mine.state[p]["step"]) == float(theirs.state[q]["step"]) == 40 - skipped
