"""fastopt computes what torch.optim computes (torch is the outside oracle).

Proves, for every configuration in ``conftest.CONFIGS`` in float32 and float64, over 120 steps
on a multi-tensor model (0-d, one element, size 0, odd sizes) and on two parameter groups,
that fastopt's parameters and state (``state_dict()``) agree with ``torch.optim``'s (single-
tensor implementation, ``foreach=False``) started from ``torch.from_numpy`` copies of the same
parameters and fed the same gradients; that the state_dict layouts agree (same indices, same
keys, "step" counts); and that NaN/inf gradients propagate into the parameters where torch's do.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastopt  # noqa: E402

from conftest import (  # noqa: E402
    CONFIG_BY_ID,
    TORCH_CONFIG_IDS,
    TORCH_CONFIGS,
    TORCH_PER_CLASS,
    TORCH_PER_CLASS_IDS,
    GradStream,
    Model,
    assert_close,
    given,
    rule_of,
    torch_grad,
)

STEPS = 120

# Shapes for the torch comparison: the large (parallel-path) tensor of the reference test is
# left out to keep the suite fast; the reference test covers it, and the reference is what the
# kernels are held to bit-for-bit-ish. 20_011 elements still runs the kernels' vector loops.
TORCH_LAYOUTS = {
    "multi": [([(), (1,), (1023,), (0,), (7, 13), (3, 5, 7), (20_011,)], {})],
    "two_groups": [
        ([(1,), (7, 13), (2048,)], {"lr": 0.003, "weight_decay": 0.03}),
        ([(), (1023,), (3, 5, 7)], {}),
    ],
}

# Tolerances, fastopt vs torch, in the sense of conftest.assert_close
# (|a - t| <= rtol * (|t| + max|t|)), for parameters and every state array.
# torch computes the same rules in the same dtype but not with the same roundings: Adam's first
# moment is exp_avg.lerp_(g, 1 - beta1) (m + w (g - m), not beta1 m + (1 - beta1) g), its
# vectorised CPU kernels may use FMA, and addcdiv/add(alpha=) round their scalar factors
# differently. That is a few ulp per step, fed back through the state over 120 steps.
# Measured maxima over every configuration and both layouts (120 steps):
#   float32: params 6.2e-7 (RMSprop with momentum), state 7.4e-7  -> bound 1e-5 (>10x margin,
#            ~80 ulp);
#   float64: params 1.4e-14 (SGD with dampening), state 3.5e-15  -> bound 2e-13 (>10x margin).
# Both stay far below the effect of a wrong rule on these trajectories: dropping Adam's
# eps = 1e-8 moves the result by 1e-4, a 1% change of weight_decay/lr_decay/alpha by 1e-4..1e-3.
RTOL_TORCH = {np.float32: 1e-5, np.float64: 2e-13}
# Muon's parameters, in either dtype: its Newton–Schulz iteration runs in bfloat16 on both
# sides, through different float32 sums inside each matrix product (NumPy's BLAS, torch's), so
# a bfloat16 result now and then lies on the other side of a tie, and the iteration spreads
# that over its matrix (tests/test_muon.py measures it). Measured maximum over both
# configurations, both layouts and both dtypes: 4.5e-5 of the largest parameter -> bound 1e-3;
# its momentum buffer is element-wise and within RTOL_TORCH.
RTOL_PARAMS = {"Muon": 1e-3}


def torch_config(config, torch_params):
    cls = getattr(torch.optim, config.name)
    # The single-tensor implementation, where torch has others (Muon has only that one).
    single = {"foreach": False} if "foreach" in inspect.signature(cls).parameters else {}
    return cls(torch_params, **single, **config.kwargs)


def torch_state(topt, n_params):
    """torch's state_dict()["state"] with tensors as NumPy arrays and "step" as int."""
    out = {}
    for idx, entry in topt.state_dict()["state"].items():
        conv = {}
        for key, value in entry.items():
            if key == "step":
                conv[key] = int(value.item()) if torch.is_tensor(value) else int(value)
            elif torch.is_tensor(value):
                conv[key] = value.detach().numpy().copy()
            else:
                conv[key] = value
        out[idx] = conv
    return out


def run_both(config, model, steps, grads_fn=None):
    arg_f, params_f = model.fresh()
    arg_t, params_t = model.fresh(convert=torch.from_numpy)  # shares memory with params_t
    opt = config.make(fastopt, arg_f)
    topt = torch_config(config, arg_t)
    torch_params = [p for g in topt.param_groups for p in g["params"]]
    stream = grads_fn or GradStream(model.shapes, model.dtype)
    for t in range(1, steps + 1):
        grads = given(config.name, stream(t), t)
        for p, g in zip(torch_params, grads):
            p.grad = torch_grad(g, p.shape)
        topt.step()
        opt.step(grads)
    return opt, topt, params_f, params_t


@pytest.mark.parametrize("layout", list(TORCH_LAYOUTS))
@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=TORCH_CONFIG_IDS)
def test_matches_torch(config, layout, dtype):
    model = Model(TORCH_LAYOUTS[layout], dtype, config=config)
    opt, topt, params_f, params_t = run_both(config, model, STEPS)
    rtol = RTOL_TORCH[np.dtype(dtype).type]
    what = f"{config.id}/{layout}"
    for i, (p, q) in enumerate(zip(params_f, params_t)):
        assert p.dtype == q.dtype
        assert_close(p, q, RTOL_PARAMS.get(config.name, rtol), f"{what}: param {i}")

    state = opt.state_dict()["state"]
    tstate = torch_state(topt, len(params_f))
    assert set(state) == set(tstate), f"{what}: state indices"
    for idx, entry in tstate.items():
        assert set(state[idx]) == set(entry), f"{what}: state[{idx}] keys"
        for key, value in entry.items():
            if key == "step":
                assert type(state[idx][key]) is int and state[idx][key] == value == STEPS
            else:
                assert state[idx][key].dtype == value.dtype
                assert state[idx][key].shape == value.shape
                assert_close(state[idx][key], value, rtol, f"{what}: state[{idx}][{key!r}]")

    # The hyper-parameters in the state_dict's groups are torch's (names and values).
    sd_groups = opt.state_dict()["param_groups"]
    t_groups = topt.state_dict()["param_groups"]
    assert len(sd_groups) == len(t_groups)
    for g, tg in zip(sd_groups, t_groups):
        assert g["params"] == tg["params"]
        for key, value in g.items():
            if key in tg and key != "params":
                assert value == (tuple(tg[key]) if key == "betas" else tg[key]), key


# Plain Adamax besides PER_CLASS's: with L2 weight decay g + λ p is NaN at every step once p
# is, which would hide a running max that drops a NaN u.
NON_FINITE_CONFIGS = TORCH_PER_CLASS + [CONFIG_BY_ID["adamax"]]


@pytest.mark.parametrize("config", NON_FINITE_CONFIGS, ids=[c.id for c in NON_FINITE_CONFIGS])
def test_non_finite_gradients_propagate_like_torch(config, dtype):
    """NaN/inf are not checked: they go where torch sends them, and the rest is unaffected
    (a rule of matrices spreads them over their matrix, as torch's does)."""
    model = Model([([(257,), (3, 4)], {})], dtype, config=config)
    base = GradStream(model.shapes, dtype)

    def grads_fn(t):
        grads = base(t)
        if t == 3:
            grads[0].reshape(-1)[5] = np.nan
            grads[0].reshape(-1)[7] = np.inf
            grads[1].reshape(-1)[6] = -np.inf
        return grads

    opt, topt, params_f, params_t = run_both(config, model, 6, grads_fn)
    for p, q in zip(params_f, params_t):  # params_t: NumPy views of torch's parameters
        assert np.array_equal(np.isnan(p), np.isnan(q))
        assert np.array_equal(np.isinf(p), np.isinf(q))
        finite = np.isfinite(q)
        assert_close(p[finite], q[finite], RTOL_PARAMS.get(config.name,
                                                          RTOL_TORCH[np.dtype(dtype).type]))
    # The bad values did reach the parameters, but for Rprop's: it steps by sign(g), 0 for NaN
    # in torch, times a bounded step size, so no gradient makes its parameters non-finite.
    assert not np.all(np.isfinite(params_f[0])) or config.name == "Rprop"
    if rule_of(config).matrix is None:  # Muon's matrix products spread them over the matrix
        assert np.isfinite(params_f[0].reshape(-1)[100])  # and only where they belong
    # The state carries them on where torch's does (Adamax's running max keeps a NaN only if
    # its max propagates NaN from either side, as torch.maximum does). Non-finite, not NaN:
    # torch's lerp makes inf - inf = NaN of a first moment that β m + (1 − β) g keeps at inf.
    state, tstate = opt.state_dict()["state"], torch_state(topt, len(params_f))
    for idx, entry in tstate.items():
        for key, value in entry.items():
            if isinstance(value, np.ndarray) and value.ndim:
                assert np.array_equal(np.isfinite(state[idx][key]), np.isfinite(value)), (idx, key)
