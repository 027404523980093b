"""Adafactor in every storage mode (fastopt.rules.storage): a bfloat16 or float16 parameter
steps exactly as fastopt's float32 step of its values, then stores as fastopt.reference's
rounding does (nearest, stochastic from the parameter's stream, compensated); bfloat16 state
is the float32 state rounded to nearest; bitwise the same for any thread count (and SIMD
variant: test_adafactor.py), in the NumPy class and fastopt.torch; state dicts with the compensation; bad
options refused with nothing modified; a bfloat16 model trained with stochastic rounding
ends near the float32 loss."""

import copy

import numpy as np
import pytest

import fastopt
from fastopt._kernels import kernels
from fastopt.adafactor import machine_eps
from fastopt.reference import adafactor as reference_adafactor
from fastopt.reference.storage import round_stochastic, store_kahan, stream_key

from conftest import snapshot

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
# a vector, matrices, a stack of them, a 0-d parameter, and one past the serial threshold
SHAPES = [(7,), (5, 9), (3, 4, 6), (), (300, 1100)]
MODES = {
    "bf16-nearest": (BF16, "nearest", None), "bf16-stochastic": (BF16, None, None),
    "bf16-kahan": (BF16, "kahan", None), "f16-nearest": (F16, "nearest", None),
    "f16-kahan": (F16, None, None), "bf16-stochastic-bf16-state": (BF16, None, "bfloat16"),
    "f16-kahan-f16-state": (F16, "kahan", "float16"),
}
OPTIONS = {"weight_decay": 0.1, "lr": 0.05}
SEED = 11


def _bits(a):
    """An array's bits, to compare bitwise (NaN payloads and signed zeros too)."""
    return np.ascontiguousarray(a).view(np.uint16)


def _start(dtype, shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _grads(dtype, steps, shapes=SHAPES, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]


@pytest.mark.parametrize("mode", list(MODES))
def test_steps_in_float32_then_stores_as_the_reference_rounds(mode):
    dtype, rounding, state_dtype = MODES[mode]
    params = _start(dtype)
    opt = fastopt.Adafactor(params, rounding=rounding, state_dtype=state_dtype, seed=SEED,
                            **OPTIONS)
    # the oracle: fastopt's float32 Adafactor on the parameters' values, whose result is
    # rounded by fastopt.reference (the state by the cast, as bfloat16 storage rounds it)
    wide = [p.astype(np.float32) for p in params]
    oracle = fastopt.Adafactor(wide, eps=(machine_eps(dtype), 1e-3), **OPTIONS)
    comps = [np.zeros_like(p) for p in params]
    kind = rounding or ("stochastic" if dtype == BF16 else "kahan")
    for t, grads in enumerate(_grads(dtype, 6), start=1):
        old = [p.astype(np.float32) for p in params]
        for w, o in zip(wide, old):
            w[...] = o
        opt.step(grads)
        oracle.step([g.astype(np.float32) for g in grads])
        for k, (p, w) in enumerate(zip(params, wide)):
            if kind == "nearest":
                expected = w.astype(dtype)
            elif kind == "stochastic":
                expected = round_stochastic(w, stream_key(SEED, t, k))
            else:
                expected = old[k].astype(dtype)
                store_kahan(old[k], w, expected, comps[k])
                np.testing.assert_array_equal(_bits(opt.state[k]["kahan_comp"]), _bits(comps[k]))
            np.testing.assert_array_equal(_bits(p), _bits(expected), f"step {t}, params[{k}]")
            for key, value in oracle.state[k].items():
                if key == "step":
                    assert opt.state[k]["step"] == value == t
                    continue
                assert opt.state[k][key].dtype == (np.dtype(state_dtype) if state_dtype
                                                   else np.float32)
                if state_dtype:  # the oracle's state as the storage keeps it
                    value[...] = value.astype(opt.state[k][key].dtype)
                np.testing.assert_array_equal(opt.state[k][key].astype(np.float32), value)


def test_float32_parameters_with_low_precision_gradients_and_state():
    """A float32 parameter takes bfloat16 or float16 gradients (promoted as read) and keeps
    bfloat16 state as its float32 step's, rounded to nearest."""
    params = _start(np.float32)
    wide = [p.copy() for p in params]
    opt = fastopt.Adafactor(params, state_dtype="bfloat16", **OPTIONS)
    oracle = fastopt.Adafactor(wide, **OPTIONS)
    for grads in _grads(BF16, 5):
        opt.step([g if k % 2 else g.astype(F16) for k, g in enumerate(grads)])
        oracle.step([g.astype(np.float32) if k % 2 else g.astype(F16).astype(np.float32)
                     for k, g in enumerate(grads)])
        for k, (p, w) in enumerate(zip(params, wide)):
            np.testing.assert_array_equal(p, w)
            for key, value in oracle.state[k].items():
                if key != "step":
                    value[...] = value.astype(BF16)
                    np.testing.assert_array_equal(opt.state[k][key].astype(np.float32), value)


def _drift(dtype, rounding, steps=100):
    """A bfloat16 parameter in [1.5, 2) (one binade: its ulp 2⁻⁷) under gradients of one sign
    (1 ± 0.1: updates of about lr times its RMS, under half an ulp each), against the
    reference's float64 trajectory: the error and the drift of each element, in ulps."""
    shape = (64, 300)
    rng = np.random.default_rng(4)
    params = [(1.5 + 0.5 * rng.random(shape)).astype(dtype)]
    start = params[0].astype(np.float64)
    exact = start.copy()
    opt = fastopt.Adafactor(params, lr=1e-3, rounding=rounding, seed=3)
    state = {}
    for _ in range(steps):
        g = (1.0 + 0.1 * rng.standard_normal(shape)).astype(dtype)
        opt.step([g])
        reference_adafactor(exact, g.astype(np.float64), state, lr=1e-3, beta2_decay=-0.8,
                            eps=(machine_eps(dtype), 1e-3), d=1.0, weight_decay=0.0,
                            maximize=False)
    assert exact.min() > 1.0  # still in the binade
    ulp = 2.0**-7
    return (params[0].astype(np.float64) - exact) / ulp, (exact - start) / ulp


def test_stochastic_rounding_follows_the_exact_trajectory():
    """Over 100 steps of updates under half an ulp, a bfloat16 parameter rounded
    stochastically follows the exact trajectory, unbiased (its mean error a small part of an
    ulp, its spread the random walk's, a few ulps), where rounding to nearest stalls."""
    error, drift = _drift(BF16, "stochastic")
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(drift) > 8  # the trajectory moved by many ulps
    assert abs(error.mean()) < 0.15  # unbiased: the mean of 19 200 errors of spread ~4 ulps
    assert rms(error) < 0.4 * rms(drift) and np.abs(error).max() < 30
    stalled, _ = _drift(BF16, "nearest")
    assert rms(stalled) > 0.8 * rms(drift)  # (so the test above can fail)


def test_compensated_float16_follows_the_float32_trajectory():
    """Kahan's compensation keeps what float16 storage drops: after 100 steps parameter +
    compensation is the float32 trajectory's to 2e-5 of its scale (rounding to nearest: 4e-3;
    the steps read the float16 parameter, so the two part a little)."""
    shapes = [(40, 50), (333,)]
    params = _start(F16, shapes)
    wide = [p.astype(np.float32) for p in params]
    opt = fastopt.Adafactor(params, lr=1e-3)
    oracle = fastopt.Adafactor(wide, lr=1e-3, eps=(machine_eps(F16), 1e-3))
    for grads in _grads(F16, 100, shapes):
        opt.step(grads)
        oracle.step([g.astype(np.float32) for g in grads])
    for k, (p, w) in enumerate(zip(params, wide)):
        total = p.astype(np.float32) + opt.state[k]["kahan_comp"].astype(np.float32)
        scale = float(np.abs(w).max())  # (measured: 3e-6 of it; the parameter alone 2.4e-4)
        np.testing.assert_allclose(total, w, rtol=0, atol=2e-5 * scale)
        assert np.abs(p.astype(np.float32) - w).max() > 1e-4 * scale


EDGES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, 3.4e38, 65504, 65520,
                  1.00390625, 1.01171875, -2.5e-8], np.float32)


@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bfloat16", "float16"])
def test_the_kernels_conversions_are_numpys(dtype):
    """kernels.store_rounded (to nearest) and kernels.widen_bits, which Adafactor's
    low-precision step uses, convert as NumPy's casts do (ml_dtypes' for bfloat16): NaN, ±Inf,
    signed zeros, subnormals, overflow, ties; over parallel pieces too; bad lengths and
    stochastic rounding to float16 refused."""
    half = dtype == F16
    values = np.concatenate([EDGES, np.random.default_rng(0).standard_normal(400_000)
                             .astype(np.float32)])
    stored = np.zeros(values.size, dtype)
    kernels.store_rounded(values, stored.view(np.uint16), "nearest", half=half)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(_bits(stored), _bits(values.astype(dtype)))
    back = np.empty(values.size, np.float32)
    kernels.widen_bits(stored.view(np.uint16), back, half)
    np.testing.assert_array_equal(back.view(np.uint32), stored.astype(np.float32).view(np.uint32))
    with pytest.raises(ValueError, match="elements"):
        kernels.store_rounded(values[:3], stored.view(np.uint16)[:2], "nearest", half=half)
    with pytest.raises(ValueError, match="elements"):
        kernels.store_rounded(values[:3], stored.view(np.uint16)[:3], "kahan", half=half)
    with pytest.raises(ValueError, match="elements"):
        kernels.widen_bits(stored.view(np.uint16)[:3], back[:2], half)
    if half:
        with pytest.raises(ValueError, match="bfloat16"):
            kernels.store_rounded(values[:3], stored.view(np.uint16)[:3], "stochastic", half=True)


def _train_stochastic(threads):
    fastopt.set_num_threads(threads)
    params = _start(BF16)
    opt = fastopt.Adafactor(params, seed=5, **OPTIONS)
    for grads in _grads(BF16, 4):
        opt.step(grads)
    return params


def test_bitwise_for_any_thread_count(restore_threads):
    results = [_train_stochastic(threads) for threads in (1, 2, 3)]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(_bits(a), _bits(b))


@pytest.mark.parametrize("mode", ["bf16-kahan", "f16-kahan-f16-state", "bf16-stochastic"])
def test_state_dict_round_trip(mode):
    """Saved after 3 steps and loaded into a new optimizer over copies, 3 more steps are
    bitwise those of the optimizer that went on (the compensation and step count saved)."""
    dtype, rounding, state_dtype = MODES[mode]
    grads = _grads(dtype, 6)
    params = _start(dtype)
    opt = fastopt.Adafactor(params, rounding=rounding, state_dtype=state_dtype, seed=2)
    for g in grads[:3]:
        opt.step(g)
    sd = opt.state_dict()
    assert ("kahan_comp" in sd["state"][0]) == (mode != "bf16-stochastic")
    copies = [p.copy() for p in params]
    again = fastopt.Adafactor(copies, rounding=rounding, state_dtype=state_dtype, seed=2)
    again.load_state_dict(sd)
    for g in grads[3:]:
        opt.step(g)
        again.step(g)
    for a, b in zip(params, copies):
        np.testing.assert_array_equal(_bits(a), _bits(b))


def test_bad_options_are_refused_with_nothing_modified():
    f32, bf16, f16 = np.ones((3, 4), np.float32), np.ones(5, BF16), np.ones(5, F16)
    bad = [
        ([f16], {"rounding": "stochastic"}, "'stochastic' is for bfloat16"),
        ([f32], {"rounding": "kahan"}, "bfloat16 and float16"),
        ([bf16], {"state_dtype": "8bit"}, "8-bit"),
        ([bf16], {"state_dtype": "float64"}, "float64"),
        ([bf16], {"rounding": "up"}, "rounding"),
        ([bf16], {"seed": -1}, "seed"),
    ]
    for params, options, match in bad:
        with pytest.raises(ValueError, match=match):
            fastopt.Adafactor(params, **options)
    opt = fastopt.Adafactor([f32])
    opt.add_param_group({"params": [bf16]})
    with pytest.raises(ValueError, match="'stochastic' is for bfloat16"):
        opt.add_param_group({"params": [f16], "rounding": "stochastic"})
    assert len(opt.param_groups) == 2
    grads = [np.ones((3, 4), np.float32), np.ones(5, BF16)]
    opt.step(grads)
    before, sd = snapshot([f32, bf16]), opt.state_dict()
    bad_steps = [
        ([np.ones((3, 4), BF16), np.ones(5, F16)], TypeError),  # another dtype for bfloat16
        ([np.ones((3, 4), np.float64), np.ones(5, BF16)], TypeError),  # wider than float32
    ]
    for bad_grads, error in bad_steps:
        with pytest.raises(error):
            opt.step(bad_grads)
    for g, change in [(1, {"rounding": "kahan"}), (0, {"state_dtype": "bfloat16"}),
                      (1, {"state_dtype": "float16"})]:
        group = opt.param_groups[g]
        saved = {k: group[k] for k in change}
        group.update(change)
        with pytest.raises(ValueError, match="as it was created"):
            opt.step(grads)
        group.update(saved)
    for a, b in zip([f32, bf16], before):
        np.testing.assert_array_equal(a.astype(np.float32), b.astype(np.float32))
    after = opt.state_dict()
    for i, entry in sd["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(np.asarray(after["state"][i][key]), np.asarray(value))
    # a state dict saved with other storage options is refused
    other = fastopt.Adafactor([np.ones((3, 4), np.float32)])
    other.add_param_group({"params": [np.ones(5, BF16)], "rounding": "kahan"})
    with pytest.raises(ValueError, match="as it was created"):
        other.load_state_dict(sd)


# ---------------------------------------------------------------- fastopt.torch.Adafactor
TORCH_GROUPS = [  # (dtype, storage options) per group
    (BF16, {}), (F16, {}), (np.float32, {"state_dtype": "bfloat16"}),
    (BF16, {"rounding": "kahan", "state_dtype": "bfloat16"}),
]


def _torch_tensor(a):
    torch = pytest.importorskip("torch")
    if a.dtype == BF16:
        return torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def _as_numpy(t):
    import torch

    if t.dtype is torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(BF16).copy()
    return t.detach().numpy().copy()


def test_torch_steps_as_the_numpy_class():
    """fastopt.torch.Adafactor over bfloat16, float16 and float32 tensors in four groups of
    storage options is bitwise fastopt.Adafactor over the same values (one rule, one stream
    per parameter: ``(seed, step, group << 32 | index)``), state and all."""
    pytest.importorskip("torch")
    import fastopt.torch as fot

    starts = [_start(dtype, SHAPES, seed=g) for g, (dtype, _) in enumerate(TORCH_GROUPS)]
    arrays = [[a.copy() for a in start] for start in starts]
    tensors = [[_torch_tensor(a).requires_grad_() for a in start] for start in starts]
    mine = fastopt.Adafactor([{"params": a, **o} for a, (_, o) in zip(arrays, TORCH_GROUPS)],
                             seed=9, **OPTIONS)
    theirs = fot.Adafactor([{"params": t, **o} for t, (_, o) in zip(tensors, TORCH_GROUPS)],
                           seed=9, **OPTIONS)
    for step in range(5):
        grads = [_grads(dtype, 1, SHAPES, seed=10 * step + g)[0]
                 for g, (dtype, _) in enumerate(TORCH_GROUPS)]
        mine.step([g for group in grads for g in group])
        for group, gs in zip(tensors, grads):
            for t, g in zip(group, gs):
                t.grad = _torch_tensor(g)
        theirs.step()
    flat = [t for group in tensors for t in group]
    for i, (a, t) in enumerate(zip([a for group in arrays for a in group], flat)):
        np.testing.assert_array_equal(_bits(_as_numpy(t)), _bits(a), f"params[{i}]")
        for key, value in mine.state[i].items():
            if key == "step":
                assert float(theirs.state[t]["step"]) == value
            else:
                got = _as_numpy(theirs.state[t][key])
                assert got.dtype == value.dtype, key
                np.testing.assert_array_equal(got.astype(np.float32), value.astype(np.float32))


def test_torch_bfloat16_rounded_to_nearest_is_torchs_float32_step_rounded():
    """bfloat16 parameters stored by rounding to nearest, float32 state: torch.optim.Adafactor's
    float32 step of their values, rounded to bfloat16 after each step (torch's own bfloat16
    path computes and keeps its state in bfloat16); the two float32 steps part in the last
    float32 bit, which moves a rounding by one bfloat16 ulp at most, and seldom."""
    torch = pytest.importorskip("torch")
    import fastopt.torch as fot

    gen = torch.Generator().manual_seed(0)
    shapes = [(30, 40), (50,), (3, 8, 5)]
    start = [torch.randn(s, generator=gen).bfloat16() for s in shapes]
    mine = [p.clone().requires_grad_() for p in start]
    wide = [p.float().requires_grad_() for p in start]
    opt = fot.Adafactor(mine, rounding="nearest", weight_decay=0.1)
    oracle = torch.optim.Adafactor(wide, eps=(torch.finfo(torch.bfloat16).eps, 1e-3),
                                   weight_decay=0.1)
    for _ in range(20):
        for m, w in zip(mine, wide):
            g = torch.randn(m.shape, generator=gen).bfloat16()
            m.grad, w.grad = g, g.float()
        opt.step()
        oracle.step()
        with torch.no_grad():
            for w in wide:
                w.copy_(w.bfloat16().float())
    differ = total = 0
    for m, w in zip(mine, wide):
        m, w = m.detach(), w.detach()
        ulp = torch.from_numpy(np.spacing(w.abs().numpy()) * 2.0**16)  # bfloat16's at w
        assert float(((m.float() - w).abs() / ulp).max()) <= 1.0
        differ += int((m.float() != w).sum())
        total += m.numel()
    assert differ <= 0.01 * total  # (measured: none of 1370)


def test_torch_state_dicts():
    """A saved fastopt.torch state dict keeps the storage dtypes and the compensation, and
    loads back bitwise (3 + 3 steps as 6); torch.optim.Adafactor's dict (no compensation, its
    state cast to the parameters' dtype) loads with a zero compensation; other storage
    options are refused with nothing changed."""
    torch = pytest.importorskip("torch")
    import fastopt.torch as fot

    gen = torch.Generator().manual_seed(1)
    start = [torch.randn(6, 5, generator=gen).half(), torch.randn(9, generator=gen).half()]
    grads = [[torch.randn(p.shape, generator=gen).half() for p in start] for _ in range(6)]

    def run(params, opt, steps):
        for gs in steps:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()

    a = [p.clone().requires_grad_() for p in start]
    opt = fot.Adafactor(a, state_dtype="bfloat16")
    run(a, opt, grads[:3])
    sd = opt.state_dict()
    assert sd["state"][0]["row_var"].dtype is torch.bfloat16
    assert sd["state"][1]["kahan_comp"].dtype is torch.float16
    saved = copy.deepcopy(sd)
    b = [p.detach().clone().requires_grad_() for p in a]
    again = fot.Adafactor(b, state_dtype="bfloat16")
    again.load_state_dict(saved)
    assert again.state[b[0]]["row_var"].dtype is torch.bfloat16
    run(a, opt, grads[3:])
    run(b, again, grads[3:])
    for x, y in zip(a, b):
        assert torch.equal(x.view(torch.int16), y.view(torch.int16))

    c = [p.clone().requires_grad_() for p in start]
    plain = torch.optim.Adafactor(c)
    run(c, plain, grads[:2])
    d = [p.detach().clone().requires_grad_() for p in c]
    loaded = fot.Adafactor(d)
    loaded.load_state_dict(plain.state_dict())
    assert loaded.state[d[1]]["variance"].dtype is torch.float32
    assert torch.equal(loaded.state[d[1]]["kahan_comp"], torch.zeros(9, dtype=torch.float16))
    run(d, loaded, grads[2:3])
    assert float(loaded.state[d[0]]["step"]) == 3

    other = fot.Adafactor([p.detach().clone() for p in start], rounding="nearest")
    before = other.state_dict()
    with pytest.raises(ValueError, match="as it was created"):
        other.load_state_dict(sd)
    assert other.state_dict() == before


def test_torch_bad_steps_change_nothing():
    torch = pytest.importorskip("torch")
    import fastopt.torch as fot

    p = torch.ones(4, 3, dtype=torch.bfloat16, requires_grad=True)
    q = torch.ones(5, requires_grad=True)
    opt = fot.Adafactor([{"params": [p]}, {"params": [q]}])
    p.grad, q.grad = torch.ones(4, 3, dtype=torch.bfloat16), torch.ones(5)
    opt.step()
    before = [p.detach().clone(), q.detach().clone()]
    sd = copy.deepcopy(opt.state_dict())
    q.grad_dtype = None  # (torch's check of an assigned gradient's dtype, off)
    q.grad = torch.ones(5, dtype=torch.float64)  # a float32 parameter's is at most float32
    with pytest.raises(RuntimeError, match="dtype"):
        opt.step()
    q.grad = torch.ones(5, dtype=torch.float16)
    opt.param_groups[0]["rounding"] = "kahan"
    with pytest.raises(ValueError, match="as it was created"):
        opt.step()
    opt.param_groups[0]["rounding"] = "stochastic"
    opt.param_groups[1]["state_dtype"] = "8bit"
    with pytest.raises(ValueError, match="8-bit"):
        opt.step()
    del opt.param_groups[1]["state_dtype"]
    assert torch.equal(p, before[0]) and torch.equal(q, before[1])
    after = opt.state_dict()
    for i in sd["state"]:
        for key, value in sd["state"][i].items():
            assert torch.equal(after["state"][i][key], value), key


def _train_digits(dtype, seed=0, **options):
    """An MLP (64-128-128-10, tanh) on scikit-learn's digits, 400 Adafactor steps of 64-row
    batches (lr 3e-3: most updates under half a bfloat16 ulp of the weights), its parameters
    kept in ``dtype``, forward and backward in float32 on their values (gradients of their
    dtype, as mixed precision hands them); the training loss over the whole set. ε₁ is
    float32's for every dtype (a bfloat16 parameter's own, 2⁻⁷, damps every step: torch's
    rule, another comparison)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import fastopt.torch as fot
    from fastopt.demos.data import load_digits

    x, y = (torch.tensor(a) for a in load_digits()[:2])
    x = x.float()
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(),
                                torch.nn.Linear(128, 128), torch.nn.Tanh(),
                                torch.nn.Linear(128, 10))
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().to(dtype).requires_grad_() for p in model.parameters()]
    opt = fot.Adafactor(params, lr=3e-3, eps=(float(np.finfo(np.float32).eps), 1e-3),
                        **options)

    def loss_of(rows):
        values = {n: p.float() for n, p in zip(names, params)}
        return torch.nn.functional.cross_entropy(
            torch.func.functional_call(model, values, (x[rows],)), y[rows])

    for rows in np.random.default_rng(seed).integers(0, len(x), (400, 64)):
        opt.zero_grad()
        loss_of(torch.from_numpy(rows)).backward()
        opt.step()
    with torch.no_grad():
        return loss_of(slice(None)).item()


def test_torch_low_precision_models_train_to_the_float32_loss():
    """Measured (2026-12-04): float32 0.324 (another seed 0.335); bfloat16 with stochastic
    rounding 0.324, with Kahan 0.324; float16 with Kahan 0.324; bfloat16 rounded to nearest
    0.449 (1.38x: its updates under half an ulp are lost)."""
    torch = pytest.importorskip("torch")

    full = _train_digits(torch.float32)
    other_seed = _train_digits(torch.float32, seed=1)
    bound = full * max(1.2, 1.15 * max(other_seed / full, full / other_seed))
    for dtype, rounding in [(torch.bfloat16, None), (torch.bfloat16, "kahan"),
                            (torch.float16, None)]:
        loss = _train_digits(dtype, rounding=rounding)
        assert loss <= bound, (dtype, rounding, loss, full)
    assert _train_digits(torch.bfloat16, rounding="nearest") > 1.25 * full
