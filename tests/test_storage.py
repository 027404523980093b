"""Low-precision storage: bfloat16 and float16 parameters, gradients and state.

Proves that
- the kernels' conversions are exact: every bfloat16 and float16 bit pattern loads as
  ml_dtypes/NumPy load it, and float32 values (normal, subnormal, huge, NaN, ±Inf, halfway
  cases) store rounded to nearest even as they round them;
- every rule in every storage mode of ``conftest.STORAGE_MODES`` computes bit for bit what
  ``fastopt.reference`` computes, parameters and every state array (stochastic rounding
  included: the reference draws from the same counter-based stream), and every option of
  every rule does so with bfloat16 parameters;
- results are the same for any thread count, and a run resumed from a state dict is the run
  that never stopped;
- 8-bit blocks quantise and decode as the reference does, in every SIMD variant, at and
  beside every midpoint of both codes;
- stochastic rounding is unbiased: the mean of many roundings of one value is the value;
- bad storage options are refused with nothing modified.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt import reference
from fastopt.rules.storage import dtype as storage_dtype

from conftest import (
    CONFIGS,
    CONFIG_IDS,
    PER_CLASS,
    PER_CLASS_IDS,
    STORAGE_MODE_IDS,
    STORAGE_MODES,
    GradStream,
    assert_arrays_equal,
    assert_state_dicts_equal,
    cast_grad,
    make_model,
    refuses,
    rule_of,
    shapes_for,
    snapshot,
)

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
STEPS = 25
MODE = {m.id: m for m in STORAGE_MODES}


def _bits(a):
    """An array's bytes: equal bytes are equal bits (NaN payloads and signed zeros included)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _every_pattern(dtype):
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)


# --------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("low", [BF16, F16], ids=["bf16", "f16"])
def test_every_pattern_loads_exactly(low):
    """A gradient of every bit pattern, read by SGD(lr=1, maximize) into a zero float32
    parameter, gives the parameter 0 + g: the loaded value."""
    grads = _every_pattern(low)
    param = np.zeros(grads.size, np.float32)
    fastopt.SGD([param], lr=1.0, maximize=True).step([grads])
    expected = grads.astype(np.float32)
    np.testing.assert_array_equal(param, expected)


def _float32_cases():
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    # Halfway cases of both formats, both parities, and their neighbours.
    halfway = np.arange(1 << 16, dtype=np.uint32) << 16 | 0x8000
    halfway16 = (rng.integers(0, 1 << 32, 50_000, dtype=np.uint64).astype(np.uint32)
                 & ~np.uint32(0x1FFF)) | 0x1000
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001,
                        0x477FEFFF, 0x477FF000, 0x38800000, 0x387FFFFF, 0x33000000, 0x33000001,
                        0x00000001, 0x7F7FFFFF], np.uint32)
    cases = np.concatenate([bits, halfway, halfway - 1, halfway + 1, halfway16, special])
    return cases.view(np.float32)


@pytest.mark.parametrize("low", [BF16, F16], ids=["bf16", "f16"])
def test_float32_values_store_rounded_to_nearest_even(low):
    """SGD's momentum buffer starts as the gradient: stored in the state's dtype, it is the
    float32 gradient rounded to nearest even."""
    values = _float32_cases()
    param = np.zeros(values.size, np.float32)
    opt = fastopt.SGD([param], lr=0.0, momentum=0.9, state_dtype=low.name)
    with np.errstate(over="ignore", invalid="ignore"):
        opt.step([values])
        expected = values.astype(low)
    stored = opt.state_dict()["state"][0]["momentum_buffer"]
    assert stored.dtype == low
    nan = np.isnan(expected.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(stored.astype(np.float32)), nan)
    np.testing.assert_array_equal(stored[~nan].view(np.uint16), expected[~nan].view(np.uint16))


QUANTISE_SCRIPT = """
import sys
import numpy as np
from fastopt._kernels import kernels
from fastopt.rules.storage import blocks
arrays = np.load(sys.argv[2])
out = {}
for name in ("signed", "unsigned"):
    x = arrays[name]
    codes, scales = np.zeros(x.size, np.uint8), np.zeros(blocks(x.size), np.float32)
    kernels.quantize(x, codes, scales, name == "signed")
    values = np.zeros(x.size, np.float32)
    kernels.dequantize(codes, scales, values, name == "signed")
    out[name + "_codes"], out[name + "_scales"], out[name + "_values"] = codes, scales, values
np.savez(sys.argv[1], **out)
"""


def _quantise_cases(signed: bool) -> np.ndarray:
    """Every midpoint of the code and its two float32 neighbours, 0, the code's ends, values
    across twelve decades, in blocks whose largest magnitude is 1 (so value / scale is the
    value, and the midpoints are met exactly), then blocks of other scales, an all-zero block,
    blocks with NaN and Inf, and a last block of 37."""
    from fastopt.reference.storage import _code

    code, mid = _code(signed)
    rng = np.random.default_rng(5)
    exact = np.concatenate([mid, np.nextafter(mid, np.float32(2)),
                            np.nextafter(mid, np.float32(-2)), code, [0.0]]).astype(np.float32)
    exact = exact[(exact >= -1) & (exact <= 1)]
    drawn = rng.standard_normal(40 * 256) * 10.0 ** rng.uniform(-12, 0, 40 * 256)
    if not signed:
        exact, drawn = np.abs(exact), np.abs(drawn)
    rows = np.resize(exact, (-(-exact.size // 255), 255))
    ones = np.ones((rows.shape[0], 1), np.float32)  # each block's largest magnitude is 1
    special = np.zeros((3, 256), np.float32)
    special[1, 7], special[2, 200] = np.nan, np.inf
    cases = np.concatenate([np.hstack([rows, ones]).reshape(-1), drawn, special.reshape(-1),
                            drawn[:37]])
    return cases.astype(np.float32)


def test_8bit_blocks_quantise_and_decode_as_the_reference_in_every_simd_variant(tmp_path):
    from conftest import in_every_simd_variant
    from fastopt.reference.storage import dequantize, quantize

    cases = {name: _quantise_cases(name == "signed") for name in ("signed", "unsigned")}
    np.savez(tmp_path / "cases.npz", **cases)
    outputs = in_every_simd_variant(tmp_path, QUANTISE_SCRIPT, str(tmp_path / "cases.npz"))
    assert outputs
    for name, x in cases.items():
        codes, scales = quantize(x, name == "signed")
        values = dequantize(codes, scales, name == "signed")
        for out in outputs:
            np.testing.assert_array_equal(out[name + "_codes"], codes)
            np.testing.assert_array_equal(out[name + "_scales"], scales)
            np.testing.assert_array_equal(out[name + "_values"], values)
        assert np.unique(codes).size == 256  # the cases reach every code


# --------------------------------------------------------------------------------------------
# Against the reference
# --------------------------------------------------------------------------------------------


def _run_both(config, mode, layout="multi", steps=STEPS):
    param_dtype, grad_dtype = mode.dtypes()
    model = make_model(layout, np.float32, config=config)
    convert = lambda a: a.astype(param_dtype)  # noqa: E731
    arg_f, _ = model.fresh(convert)
    arg_r, _ = model.fresh(convert)
    opt = config.make(fastopt, arg_f, **mode.options)
    ref = config.make(reference, arg_r, **mode.options)
    stream = GradStream(model.shapes, np.float32, name=config.name)
    for t in range(1, steps + 1):
        grads = [cast_grad(g, grad_dtype) for g in stream(t)]
        before = snapshot(grads)
        opt.step(grads)
        ref.step(grads)
        if t == 1:
            assert_arrays_equal(grads, before)  # gradients are read, never written
    return opt, ref


def _assert_same(opt, ref, what):
    params = [p for g in opt.param_groups for p in g["params"]]
    ref_params = [p for g in ref.param_groups for p in g["params"]]
    for i, (p, r) in enumerate(zip(params, ref_params)):
        assert p.dtype == r.dtype, f"{what}: param {i} dtype"
        np.testing.assert_array_equal(_bits(p), _bits(r),
                                      err_msg=f"{what}: param {i}")
    state = opt.state_dict()["state"]
    for i, (entry, steps) in enumerate(zip(ref.state, ref.step_counts)):
        if not entry and i not in state:
            continue
        mine = state[i]
        assert set(mine) - {"step"} == set(entry), f"{what}: state[{i}] keys"
        for key, r in entry.items():
            a = mine[key]
            if isinstance(r, np.ndarray):
                assert a.dtype == r.dtype, f"{what}: state[{i}][{key!r}] dtype"
                np.testing.assert_array_equal(_bits(a), _bits(r),
                                              err_msg=f"{what}: state[{i}][{key!r}]")
            else:
                assert a == r, f"{what}: state[{i}][{key!r}]"
        if "step" in mine:
            assert mine["step"] == steps


def _moved(ref, model_layout="multi", config=None):
    """The run moved the parameters (comparing two no-ops would prove nothing)."""
    start = make_model(model_layout, np.float32, config=config).fresh()[1]
    params = [p for g in ref.param_groups for p in g["params"]]
    return any(p.size and not np.array_equal(p.astype(np.float32), s.astype(p.dtype)
                                              .astype(np.float32))
               for p, s in zip(params, start))


@pytest.mark.matrix
@pytest.mark.parametrize("mode", STORAGE_MODES, ids=STORAGE_MODE_IDS)
@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_every_rule_in_every_mode_matches_reference(config, mode):
    if refuses(config, mode.options):  # SparseAdam in 8 bits: refused, with a reason
        params = make_model("multi", np.float32).fresh(lambda a: a.astype(mode.dtypes()[0]))[0]
        with pytest.raises(ValueError, match="cannot keep 8-bit state"):
            config.make(fastopt, params, **mode.options)
        assert mode.options.get("state_dtype") == "8bit"
        return
    opt, ref = _run_both(config, mode)
    _assert_same(opt, ref, f"{config.id} {mode.id}")
    assert _moved(ref, config=config)


MODES_CONFIGS = [c for c in PER_CLASS if rule_of(c).modes is not None]


@pytest.mark.parametrize("mode", STORAGE_MODES, ids=STORAGE_MODE_IDS)
@pytest.mark.parametrize("config", MODES_CONFIGS, ids=[c.id for c in MODES_CONFIGS])
def test_eval_and_train_match_reference_in_every_mode(config, mode):
    """Schedule-free's eval() and train() passes store the parameters (and read the state) as
    a step does: bit for bit the reference's, and training goes on from there."""
    opt, ref = _run_both(config, mode, steps=5)
    for switch in ("eval", "train"):
        getattr(opt, switch)()
        getattr(ref, switch)()
        _assert_same(opt, ref, f"{config.id} {mode.id} after {switch}()")
    stream = GradStream(make_model("multi", np.float32).shapes, np.float32, seed=3)
    grads = [cast_grad(g, mode.dtypes()[1]) for g in stream(6)]
    opt.step(grads)
    ref.step(grads)
    _assert_same(opt, ref, f"{config.id} {mode.id} stepped after train()")


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_every_option_with_bfloat16_parameters_matches_reference(config):
    opt, ref = _run_both(config, MODE["bf16"], layout="two_groups")
    _assert_same(opt, ref, config.id)


def test_state_dtype_per_role():
    config = next(c for c in CONFIGS if c.id == "adam-all")
    mode = MODE["bf16"].__class__("per-role", "float32", "float32",
                                  {"state_dtype": {"exp_avg": "bfloat16", "max_exp_avg_sq": F16}})
    opt, ref = _run_both(config, mode)
    _assert_same(opt, ref, "per role")
    entry = opt.state_dict()["state"][2]
    assert (entry["exp_avg"].dtype, entry["exp_avg_sq"].dtype, entry["max_exp_avg_sq"].dtype) \
        == (BF16, np.float32, F16)


def test_kahan_keeps_its_compensation_in_the_state():
    opt, ref = _run_both(PER_CLASS[0], MODE["bf16-kahan"], steps=3)
    entry = opt.state_dict()["state"][2]
    assert entry["kahan_comp"].dtype == BF16
    assert np.any(entry["kahan_comp"].astype(np.float32) != 0)


# --------------------------------------------------------------------------------------------
# Threads and resuming
# --------------------------------------------------------------------------------------------


def _train(config, mode, threads, steps=6, resume_at=None):
    fastopt.set_num_threads(threads)
    param_dtype, grad_dtype = mode.dtypes()
    shapes = shapes_for(config, [(1_100_003,), (5, 7)])
    rng = np.random.default_rng(11)
    params = [rng.standard_normal(s).astype(param_dtype) for s in shapes]
    opt = config.make(fastopt, params, **mode.options)
    stream = GradStream(shapes, np.float32, seed=4, name=config.name)
    for t in range(1, steps + 1):
        if t == resume_at:
            saved = opt.state_dict()
            params = [p.copy() for p in params]
            opt = config.make(fastopt, params, **mode.options)
            opt.load_state_dict(saved)
        opt.step([cast_grad(g, grad_dtype) for g in stream(t)])
    return params, opt.state_dict()


# A few element-wise rules, and the rule of matrices (its three passes).
THREADED = PER_CLASS[:13:3] + [c for c in PER_CLASS if c.name == "Muon"]


@pytest.mark.parametrize("mode", STORAGE_MODES, ids=STORAGE_MODE_IDS)
@pytest.mark.parametrize("config", THREADED, ids=[c.id for c in THREADED])
def test_bitwise_the_same_for_any_thread_count_and_when_resumed(config, mode, restore_threads):
    p1, sd1 = _train(config, mode, 1)
    for threads, resume_at in ((2, None), (3, None), (2, 4)):
        p2, sd2 = _train(config, mode, threads, resume_at=resume_at)
        for a, b in zip(p2, p1):
            np.testing.assert_array_equal(_bits(a), _bits(b))
        assert_state_dicts_equal(sd2, sd1, f"{threads} threads, resumed at {resume_at}")


# --------------------------------------------------------------------------------------------
# Stochastic rounding
# --------------------------------------------------------------------------------------------


def _rounded_up(fraction, n=1 << 20, seed=0, steps=1, low=0.75, params=1):
    """Which of n elements of bfloat16 parameters, each stepped by SGD from ``low`` to
    ``low + fraction · ulp`` (exact in float32), rounded up: one row per step and parameter."""
    ulp = float(np.nextafter(BF16.type(low), BF16.type(2)).astype(np.float32)) - low
    rows = []
    for t in range(steps):
        ps = [np.full(n, low, BF16) for _ in range(params)]
        opt = fastopt.SGD(ps, lr=fraction * ulp, seed=seed)
        opt.load_state_dict({"state": {k: {"step": t} for k in range(params)},
                             "param_groups": opt.state_dict()["param_groups"]})
        opt.step([np.full(n, -1.0, BF16) for _ in range(params)])
        for p in ps:
            values = p.astype(np.float64)
            assert set(np.unique(values)) <= {low, low + ulp}
            rows.append(values > low)
    return np.array(rows)


@pytest.mark.parametrize("fraction", [1 / 256, 0.1, 0.5, 0.77, 0.999])
def test_stochastic_rounding_rounds_up_with_the_probability_of_the_distance(fraction):
    """Unbiased: up with probability equal to the distance from the lower neighbour (in ulps),
    so the mean of the stored values is the float32 result; within 5 standard errors."""
    up = _rounded_up(fraction)[0]
    error = np.sqrt(fraction * (1 - fraction) / up.size)
    assert abs(up.mean() - fraction) < 5 * error, (up.mean(), fraction)


def test_stochastic_rounding_draws_independently_across_steps_parameters_and_seeds():
    """Steps, parameters and seeds draw from different streams: the decisions of any two are
    uncorrelated (within 5 standard errors), and the stream is not the elements' order."""
    rows = np.concatenate([_rounded_up(0.5, n=1 << 16, steps=3, params=2),
                           _rounded_up(0.5, n=1 << 16, seed=1)])
    for i in range(len(rows)):
        for j in range(i):
            r = np.corrcoef(rows[i], rows[j])[0, 1]
            assert abs(r) < 5 / np.sqrt(rows.shape[1]), (i, j, r)
    r = np.corrcoef(rows[0][1:], rows[0][:-1])[0, 1]  # neighbouring elements
    assert abs(r) < 5 / np.sqrt(rows.shape[1])


# --------------------------------------------------------------------------------------------
# Bad storage options
# --------------------------------------------------------------------------------------------


def _bf16(n=5):
    return np.linspace(-1, 1, n).astype(BF16)


BAD = [
    ("float64 state for float32 parameters", lambda: fastopt.Adam([np.ones(3, np.float32)],
                                                                  state_dtype="float64"),
     ValueError, "state_dtype"),
    ("low-precision state for float64 parameters",
     lambda: fastopt.Adam([np.ones(3)], state_dtype="bfloat16"), ValueError, "state_dtype"),
    ("unknown dtype", lambda: fastopt.Adam([_bf16()], state_dtype="int8"), ValueError,
     "state_dtype"),
    ("unknown role", lambda: fastopt.Adam([_bf16()], state_dtype={"momentum": "bfloat16"}),
     ValueError, "state_dtype"),
    ("stochastic float16", lambda: fastopt.Adam([np.ones(3, F16)], rounding="stochastic"),
     ValueError, "rounding"),
    ("kahan for float32", lambda: fastopt.Adam([np.ones(3, np.float32)], rounding="kahan"),
     ValueError, "rounding"),
    ("unknown rounding", lambda: fastopt.Adam([_bf16()], rounding="up"), ValueError,
     "rounding"),
    ("negative seed", lambda: fastopt.Adam([_bf16()], seed=-1), ValueError, "seed"),
    ("seed past 64 bits", lambda: fastopt.Adam([_bf16()], seed=2**64), ValueError, "seed"),
    ("float seed", lambda: fastopt.Adam([_bf16()], seed=1.0), TypeError, "seed"),
]


@pytest.mark.parametrize(("case", "make", "exc", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_storage_options_are_refused(case, make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_gradients_of_another_dtype_are_refused_but_for_float32_parameters():
    for param, grad in ((BF16, np.float32), (F16, BF16), (np.float64, BF16), (BF16, F16)):
        p = np.ones(4, param)
        opt = fastopt.Adam([p])
        with pytest.raises(TypeError, match=r"grads\[0\]"):
            opt.step([np.ones(4, grad)])
        assert np.all(p.astype(np.float32) == 1) and opt.state_dict()["state"] == {}


def test_storage_options_are_fixed_once_laid_out():
    p = _bf16()
    opt = fastopt.Adam([p], state_dtype="bfloat16")
    opt.step([_bf16()])
    before, sd = p.copy(), opt.state_dict()
    for key, value in (("state_dtype", "float32"), ("rounding", "nearest")):
        opt.param_groups[0][key] = value
        with pytest.raises(ValueError, match=key):
            opt.step([_bf16()])
        opt.param_groups[0][key] = sd["param_groups"][0].get(key)
    np.testing.assert_array_equal(p.view(np.uint16), before.view(np.uint16))
    other = fastopt.Adam([p.copy()])
    with pytest.raises(ValueError, match="state_dtype"):
        other.load_state_dict(sd)
    assert other.state_dict()["state"] == {}
    opt.param_groups[0]["seed"] = 3  # the seed is read at every step
    opt.step([_bf16()])


def test_state_takes_the_bytes_of_its_dtype():
    n = 1000
    sizes = {}
    for state_dtype in ("float32", "bfloat16", "float16"):
        opt = fastopt.Adam([np.zeros(n, np.float32)], state_dtype=state_dtype)
        opt.step([np.ones(n, np.float32)])
        entry = opt.state_dict()["state"][0]
        sizes[state_dtype] = sum(a.nbytes for a in entry.values() if isinstance(a, np.ndarray))
    assert sizes == {"float32": 8 * n, "bfloat16": 4 * n, "float16": 4 * n}
