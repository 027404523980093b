"""fastopt.reference agrees with torch.optim, option by option, in float32 and float64.

The reference is the oracle the compiled kernels are tested against, so it is itself
checked here against the de facto standard it follows (SEMANTICS.md). Every run feeds
the same fresh random gradients to both for 150 steps, then compares every parameter and
every state array. A second group of tests shows the tolerances are tight enough that
plausible mistakes in a rule fail the same comparison.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastopt import reference  # noqa: E402

from conftest import CONFIGS, SCALAR_STATE_KEYS, given, rule_of, torch_grad  # noqa: E402

STEPS = 150

# 0-d, single element, small odd sizes that hit torch's scalar tail loops, and one
# large enough for its vectorised loops.
SHAPES = [(), (1,), (3, 5), (2, 3, 7), (1000,)]

# Error measure (see deviations()): for each array, max |reference - torch| divided by
# max |torch| over all arrays of the same role (all parameters, all exp_avg, ...).
# Worst case measured over every configuration below and 20 seeds, torch 2.13 CPU,
# NumPy 2.4, 150 steps:
#             SGD      Adagrad  RMSprop  Adam     AdamW    Adadelta Adamax   NAdam
#   float64   5.4e-16  5.5e-16  1.4e-15  5.4e-16  5.0e-16  2.9e-15  5.0e-16  5.8e-16
#   float32   2.8e-07  2.4e-07  1.1e-06  4.5e-07  3.6e-07  1.3e-06  4.2e-07  3.6e-07
# Never bitwise equal: the differences are rounding only. torch evaluates m and ḡ with
# lerp rather than β m + (1 − β) g, and its CPU loops may fuse a multiply-add into one
# rounding. The gradients do not depend on the parameters, so these errors accumulate
# but do not grow chaotically. The worst cases are small running means whose accumulated
# rounding is large relative to themselves: RMSprop's centred ḡ and Adadelta's acc_delta.
# NAdam's mu_product is not in the table: it is a float32 scalar computed by the same
# operations on both sides, and must be equal to the last bit (assert_matches).
# Tolerances: 3.4x (float64) and 3.8x (float32) the worst measured deviation (Adadelta's;
# 7x and 4.5x for the other rules). The subtlest wrong rule in
# test_tolerance_rejects_wrong_rule (ε under Adam's root with the default ε = 1e-8)
# deviates by 8.7e-5, 17x above the float32 tolerance and 1e10x above the float64 one;
# NAdam with Π kept in double deviates by 5.5e-11 in float64 (5000x the tolerance; in
# float32 it hides below rounding); the others deviate by 1.4e-4 to 1.
TOLERANCE = {np.float64: 1e-14, np.float32: 5e-6}

DTYPES = [np.float32, np.float64]

# (class name, the same in fastopt.reference and torch.optim; options). lr is raised
# above the defaults so that the parameters move far from their start and the parameter
# comparison means something.
CASES = [
    ("SGD", dict(lr=0.01)),
    ("SGD", dict(lr=0.01, weight_decay=0.1)),
    ("SGD", dict(lr=0.01, momentum=0.9)),
    ("SGD", dict(lr=0.01, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    ("SGD", dict(lr=0.01, maximize=True)),
    ("SGD", dict(lr=0.01, momentum=0.9, dampening=0.3, weight_decay=0.05, maximize=True)),
    ("SGD", dict(lr=0.01, momentum=0.5, nesterov=True, weight_decay=0.1, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, eps=0.1)),
    ("Adagrad", dict(lr=0.1, maximize=True)),
    (
        "Adagrad",
        dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.05, eps=1e-3,
             maximize=True),
    ),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9)),
    ("RMSprop", dict(lr=0.01, eps=1e-2)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, maximize=True)),
    (
        "RMSprop",
        dict(lr=0.01, alpha=0.95, eps=1e-3, weight_decay=0.05, momentum=0.5, centered=True,
             maximize=True),
    ),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, maximize=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-2)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    (
        "Adam",
        dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True, decoupled_weight_decay=True),
    ),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.0)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("Adadelta", dict()),  # lr = 1
    ("Adadelta", dict(rho=0.5)),
    ("Adadelta", dict(eps=1e-3)),
    ("Adadelta", dict(weight_decay=0.1)),
    ("Adadelta", dict(maximize=True)),
    ("Adadelta", dict(lr=0.5, rho=0.95, eps=1e-4, weight_decay=0.05, maximize=True)),
    ("Adamax", dict(lr=0.01)),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.99))),
    ("Adamax", dict(lr=0.01, eps=1e-2)),
    ("Adamax", dict(lr=0.01, weight_decay=0.1)),
    ("Adamax", dict(lr=0.01, maximize=True)),
    ("Adamax", dict(lr=0.01, betas=(0.85, 0.995), eps=1e-3, weight_decay=0.05, maximize=True)),
    ("NAdam", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-2)),
    ("NAdam", dict(lr=0.01, momentum_decay=0.05)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=0.01, maximize=True)),
    (
        "NAdam",
        dict(lr=0.01, betas=(0.85, 0.995), weight_decay=0.05, momentum_decay=0.01,
             decoupled_weight_decay=True, maximize=True),
    ),
]

# A rule torch has that the hand-written cases above do not cover is compared in every
# configuration conftest.CONFIGS has for it; but a rule of matrices (Muon), whose bfloat16
# iteration is matched to bfloat16 precision in a test of its own (test_muon.py).
CASES += [(c.name, dict(c.kwargs)) for c in CONFIGS
          if hasattr(torch.optim, c.name) and c.name not in {name for name, _ in CASES}
          and rule_of(c).matrix is None]

# State kept as a scalar rather than an array: compared exactly, not as a trajectory.
SCALAR_STATE = {"step", *SCALAR_STATE_KEYS}


def _case_id(case):
    name, options = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in options.items()) + ")"


def _make_params(rng, dtype, shapes=SHAPES):
    return [np.array(rng.standard_normal(shape), dtype=dtype) for shape in shapes]


def _torch_optimizer(name, params, options):
    # foreach=False pins torch's per-tensor loop, the path that matches SEMANTICS.md's
    # formulas most literally (it is also torch's CPU default); SparseAdam has no other.
    cls = getattr(torch.optim, name)
    single = {"foreach": False} if "foreach" in inspect.signature(cls).parameters else {}
    return cls(params, **options, **single)


def run_both(name, options, dtype, *, steps=STEPS, seed=0, groups=None,
             changes=None):
    """Run reference and torch side by side; return both optimizers.

    ``groups``: a list of (number of parameters, per-group overrides) to build the
    optimizers from group dicts. ``changes``: {step: function(param_groups)} applied to
    both optimizers' ``param_groups`` before that (1-based) step.
    """
    rng = np.random.default_rng(seed)
    shapes = SHAPES if groups is None else SHAPES[: sum(n for n, _ in groups)]
    ref_params = _make_params(rng, dtype, shapes)
    torch_params = [torch.tensor(p.copy(), requires_grad=True) for p in ref_params]
    if groups is None:
        ref_opt = getattr(reference, name)(ref_params, **options)
        torch_opt = _torch_optimizer(name, torch_params, options)
    else:
        ref_groups, torch_groups, start = [], [], 0
        for count, overrides in groups:
            ref_groups.append({"params": ref_params[start : start + count], **overrides})
            torch_groups.append({"params": torch_params[start : start + count], **overrides})
            start += count
        ref_opt = getattr(reference, name)(ref_groups, **options)
        torch_opt = _torch_optimizer(name, torch_groups, options)

    for step in range(1, steps + 1):
        if changes and step in changes:
            changes[step](ref_opt.param_groups)
            changes[step](torch_opt.param_groups)
        grads = given(name, [np.array(rng.standard_normal(p.shape), dtype=dtype)
                             for p in ref_params], step)
        for torch_param, grad in zip(torch_params, grads):
            torch_param.grad = torch_grad(grad, torch_param.shape)
        ref_opt.step(grads)
        torch_opt.step()
    return ref_opt, torch_opt


def _params(opt):
    return [param for group in opt.param_groups for param in group["params"]]


def _arrays(ref_opt, torch_opt):
    """[(role, index, reference array, torch array)] for each parameter and state array.

    role is "param" or the state key; index is the parameter's position. Torch's state
    says which arrays exist; the reference may lack one (then its array is None).
    """
    arrays = []
    for i, (ref_param, torch_param) in enumerate(zip(_params(ref_opt), _params(torch_opt))):
        arrays.append(("param", i, ref_param, torch_param.detach().numpy()))
        for key, value in sorted(torch_opt.state[torch_param].items()):
            if key not in SCALAR_STATE:
                arrays.append((key, i, ref_opt.state[i].get(key), value.numpy()))
    return arrays


def deviations(arrays):
    """{(role, index): max |reference − torch| / scale(role)}: what the tolerances bound.

    scale(role) is max |torch| over all arrays of that role, as if the model were one
    flat buffer. A per-array scale would turn the 0-d and one-element parameters into
    elementwise relative errors, which blow up (to 1e-4 in float32 in some seeds) when
    such a value ends near zero; elementwise relative error is meaningless there.
    """
    scale = {}
    for role, _, _, expected in arrays:
        scale[role] = max(scale.get(role, 0.0), float(np.max(np.abs(expected), initial=0.0)))
    result = {}
    for role, i, actual, expected in arrays:
        difference = np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64)
        error = np.max(np.abs(difference), initial=0.0)
        result[role, i] = float(error / scale[role]) if scale[role] > 0 else float(error)
    return result


def max_deviation(ref_opt, torch_opt):
    return max(deviations(_arrays(ref_opt, torch_opt)).values())


def assert_matches(ref_opt, torch_opt, dtype):
    arrays = _arrays(ref_opt, torch_opt)
    for i, torch_param in enumerate(_params(torch_opt)):
        torch_state = torch_opt.state[torch_param]
        assert set(ref_opt.state[i]) == set(torch_state) - {"step"}, f"state[{i}] keys"
        if "step" in torch_state:
            assert ref_opt.step_counts[i] == int(torch_state["step"]), f"state[{i}] step"
    for role, i, actual, expected in arrays:
        assert actual.dtype == dtype and actual.shape == expected.shape, (role, i)
        assert np.all(np.isfinite(actual)), (role, i)
    tolerance = TOLERANCE[dtype]
    for (role, i), error in deviations(arrays).items():
        assert error <= tolerance, f"{role}[{i}]: deviation {error:.3g} > tolerance {tolerance:.3g}"
    # Scalar state (NAdam's Π, ASGD's η and μ): float32 whatever the parameters' dtype, and
    # torch's to the last bit.
    for i, torch_param in enumerate(_params(torch_opt)):
        for key in SCALAR_STATE_KEYS & set(torch_opt.state[torch_param]):
            expected = torch_opt.state[torch_param][key]
            actual = ref_opt.state[i][key]
            assert type(actual) is np.float32, f"{key}[{i}]: {type(actual).__name__}"
            assert expected.dtype == torch.float32, f"torch's {key}[{i}]: {expected.dtype}"
            assert actual == expected.item(), f"{key}[{i}]: {actual!r} != {expected.item()!r}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_torch(case, dtype):
    name, options = case
    ref_opt, torch_opt = run_both(name, options, dtype)
    assert_matches(ref_opt, torch_opt, dtype)


# --------------------------------------------------------------------------------------
# Hyper-parameters changed in param_groups between steps take effect.
# --------------------------------------------------------------------------------------


def _set(**values):
    """A change that sets the given hyper-parameters on every group."""

    def change(param_groups):
        for group in param_groups:
            group.update(values)

    return change


def _set_group(index, **values):
    def change(param_groups):
        param_groups[index].update(values)

    return change


# Two groups with different overrides; changes at steps 40, 80 and 120. Changes that
# torch itself cannot take mid-run (switching on RMSprop momentum or centering, or
# amsgrad, after the state was created: torch raises KeyError) are left out, and so is
# a per-group Adagrad initial_accumulator_value, which torch 2.13 ignores (it fills
# "sum" from the constructor's value; see test_adagrad_group_initial_accumulator_value).
SCHEDULES = [
    (
        "SGD",
        dict(lr=0.01),
        [(2, {}), (3, dict(momentum=0.9, dampening=0.2))],
        {
            40: _set_group(0, momentum=0.9),  # first momentum step: b ← g
            80: _set(lr=0.05, weight_decay=0.1),
            120: _set_group(1, dampening=0.0, nesterov=True, maximize=True),
        },
    ),
    (
        "Adagrad",
        dict(lr=0.1),
        [(2, dict(lr_decay=0.01)), (3, dict(eps=1e-3))],
        {
            40: _set(lr=0.05),
            80: _set_group(0, weight_decay=0.1, eps=1e-3, lr_decay=0.1),
            120: _set_group(1, maximize=True, lr_decay=0.02),
        },
    ),
    (
        "RMSprop",
        dict(lr=0.01),
        [(2, dict(momentum=0.5)), (3, dict(centered=True))],
        {
            40: _set(alpha=0.9),
            80: _set_group(0, momentum=0.9, lr=0.005, eps=1e-3),
            120: _set_group(1, weight_decay=0.1, maximize=True),
        },
    ),
    (
        "Adam",
        dict(lr=0.01),
        [(2, dict(amsgrad=True)), (3, dict(weight_decay=0.05))],
        {
            40: _set(betas=(0.8, 0.99)),  # bias corrections use the new betas from now on
            80: _set_group(0, lr=0.03, eps=1e-3, weight_decay=0.1),
            120: _set_group(1, decoupled_weight_decay=True, maximize=True),
        },
    ),
    (
        "AdamW",
        dict(lr=0.01),
        [(2, dict(weight_decay=0.0)), (3, dict(amsgrad=True))],
        {
            40: _set_group(0, weight_decay=0.2),
            80: _set(lr=0.02, betas=(0.85, 0.995)),
            120: _set_group(1, maximize=True, weight_decay=0.0),
        },
    ),
    (
        "Adadelta",
        dict(),
        [(2, dict(rho=0.8)), (3, dict(weight_decay=0.05))],
        {
            40: _set(lr=0.5),
            80: _set_group(0, rho=0.95, eps=1e-4),
            120: _set_group(1, maximize=True, weight_decay=0.0),
        },
    ),
    (
        "Adamax",
        dict(lr=0.01),
        [(2, dict(eps=1e-3)), (3, dict(weight_decay=0.05))],
        {
            40: _set(betas=(0.8, 0.99)),  # the bias correction uses the new beta1 from now on
            80: _set_group(0, lr=0.03, weight_decay=0.1),
            120: _set_group(1, maximize=True),
        },
    ),
    (
        "NAdam",
        dict(lr=0.01),
        [(2, dict(momentum_decay=0.01)), (3, dict(weight_decay=0.05))],
        {
            40: _set(betas=(0.8, 0.99)),  # μₜ, and so Πₜ, use the new beta1 from now on
            80: _set_group(0, lr=0.03, eps=1e-3, momentum_decay=0.05),
            120: _set_group(1, decoupled_weight_decay=True, maximize=True),
        },
    ),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s[0])
def test_changed_hyperparameters_match_torch(schedule, dtype):
    name, options, groups, changes = schedule
    ref_opt, torch_opt = run_both(name, options, dtype, groups=groups, changes=changes)
    assert_matches(ref_opt, torch_opt, dtype)
    # The changes must have done something: without them the parameters end elsewhere.
    unchanged, _ = run_both(name, options, dtype, groups=groups)
    params = [row for row in _arrays(unchanged, torch_opt) if row[0] == "param"]
    for (_, i), error in deviations(params).items():
        assert error > 100 * TOLERANCE[dtype], f"param[{i}] unaffected by the changes"


# --------------------------------------------------------------------------------------
# The tolerances discriminate: plausible mistakes in a rule fail the comparison.
# --------------------------------------------------------------------------------------


def _adam_eps_inside_root(param, grad, state, *, step, lr, betas, eps, weight_decay, amsgrad,
                          maximize, decoupled_weight_decay):
    """Adam with ε under the root, √(v / (1 − β₂ᵗ) + ε), as some lecture notes have it."""
    beta1, beta2 = betas
    grad = -grad if maximize else grad
    if weight_decay != 0:
        grad = grad + weight_decay * param
    exp_avg = reference.zeros_on_first_use(state, "exp_avg", param)
    exp_avg_sq = reference.zeros_on_first_use(state, "exp_avg_sq", param)
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    denom = np.sqrt(exp_avg_sq / (1 - beta2**step) + eps)
    param -= lr / (1 - beta1**step) * exp_avg / denom


def _adam_no_second_bias_correction(param, grad, state, *, step, lr, betas, eps, weight_decay,
                                    amsgrad, maximize, decoupled_weight_decay):
    """Adam that forgets to divide √v by √(1 − β₂ᵗ)."""
    beta1, beta2 = betas
    grad = -grad if maximize else grad
    exp_avg = reference.zeros_on_first_use(state, "exp_avg", param)
    exp_avg_sq = reference.zeros_on_first_use(state, "exp_avg_sq", param)
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    param -= lr / (1 - beta1**step) * exp_avg / (np.sqrt(exp_avg_sq) + eps)


# The correct rules, bound before any test swaps a wrong one into the module.
_correct_adam, _correct_sgd, _correct_adagrad = reference.adam, reference.sgd, reference.adagrad
_correct_adadelta, _correct_nadam = reference.adadelta, reference.nadam


def _adamw_decay_without_lr(param, grad, state, *, weight_decay, decoupled_weight_decay, **kw):
    """AdamW that decays by p · (1 − λ) instead of p · (1 − γ λ)."""
    param *= 1 - weight_decay
    _correct_adam(param, grad, state, weight_decay=0.0, decoupled_weight_decay=True, **kw)


def _sgd_dampening_ignored(param, grad, state, *, dampening, **kw):
    """SGD that drops the (1 − τ) factor."""
    _correct_sgd(param, grad, state, dampening=0.0, **kw)


def _adagrad_lr_decay_off_by_one(param, grad, state, *, step, **kw):
    """Adagrad decaying with t instead of t − 1: γ / (1 + t η)."""
    _correct_adagrad(param, grad, state, step=step + 1, **kw)


def _rmsprop_momentum_before_division(param, grad, state, *, lr, alpha, eps, weight_decay,
                                      momentum, centered, maximize):
    """RMSprop with momentum that accumulates g and divides afterwards: p ← p − γ b / d."""
    grad = -grad if maximize else grad
    square_avg = reference.zeros_on_first_use(state, "square_avg", param)
    square_avg *= alpha
    square_avg += (1 - alpha) * grad * grad
    denom = np.sqrt(square_avg) + eps
    momentum_buffer = reference.zeros_on_first_use(state, "momentum_buffer", param)
    momentum_buffer *= momentum
    momentum_buffer += grad
    param -= lr * momentum_buffer / denom


def _l2_grad(param, grad, weight_decay, maximize):
    """g ← −g if maximizing, then g ← g + λ p: how every rule starts (for the variants below)."""
    grad = -grad if maximize else grad
    return grad + weight_decay * param if weight_decay != 0 else grad


def _running_avg(state, key, param, value, beta):
    """state[key] ← β state[key] + (1 − β) value, from zeros (for the variants below)."""
    avg = reference.zeros_on_first_use(state, key, param)
    avg *= beta
    avg += (1 - beta) * value
    return avg


def _adadelta_eps_outside_roots(param, grad, state, *, lr, rho, eps, weight_decay, maximize):
    """Adadelta with Δ = (√u + ε) / (√v + ε) · g, ε outside the roots as in Adam."""
    grad = _l2_grad(param, grad, weight_decay, maximize)
    square_avg = _running_avg(state, "square_avg", param, grad * grad, rho)
    acc_delta = reference.zeros_on_first_use(state, "acc_delta", param)
    delta = (np.sqrt(acc_delta) + eps) / (np.sqrt(square_avg) + eps) * grad
    _running_avg(state, "acc_delta", param, delta * delta, rho)
    param -= lr * delta


def _adadelta_without_lr(param, grad, state, *, lr, **kw):
    """Adadelta as in the paper, which has no learning rate: p ← p − Δ."""
    _correct_adadelta(param, grad, state, lr=1.0, **kw)


def _adamax_eps_outside_max(param, grad, state, *, step, lr, betas, eps, weight_decay, maximize):
    """Adamax with u ← max(β₂ u, |g|) and ε added to the denominator instead."""
    beta1, beta2 = betas
    grad = _l2_grad(param, grad, weight_decay, maximize)
    exp_avg = _running_avg(state, "exp_avg", param, grad, beta1)
    exp_inf = reference.zeros_on_first_use(state, "exp_inf", param)
    exp_inf *= beta2
    np.maximum(exp_inf, np.abs(grad), out=exp_inf)
    param -= lr / (1 - beta1**step) * exp_avg / (exp_inf + eps)


def _nadam_mu_product_in_double(param, grad, state, **kw):
    """NAdam whose Π is a float64: Πₜ = Πₜ₋₁ · fl32(μₜ) with no rounding to float32."""
    state.setdefault("mu_product", np.float64(1.0))
    _correct_nadam(param, grad, state, **kw)


def _nadam_momentum_term_over_1_minus_product(param, grad, state, *, step, lr, betas, eps,
                                              weight_decay, momentum_decay,
                                              decoupled_weight_decay, maximize):
    """NAdam dividing the momentum term by 1 − Πₜ instead of 1 − Πₜ μₜ₊₁."""
    beta1, beta2 = betas
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    state["mu_product"] = state.get("mu_product", np.float32(1.0)) * np.float32(mu)
    grad = _l2_grad(param, grad, weight_decay, maximize)  # (L2 only: the CASES row has none)
    exp_avg = _running_avg(state, "exp_avg", param, grad, beta1)
    exp_avg_sq = _running_avg(state, "exp_avg_sq", param, grad * grad, beta2)
    denom = np.sqrt(exp_avg_sq / (1 - beta2**step)) + eps
    param -= lr * (1 - mu) / (1 - float(state["mu_product"])) * grad / denom
    param -= lr * mu_next / (1 - float(state["mu_product"])) * exp_avg / denom


# (rule to replace, wrong version, optimizer, options[, dtypes]). The options are rows of
# CASES, so each check is the very comparison test_matches_torch makes. Measured deviations:
# eps under the root 1.8e-3 (ε = 1e-2) and 8.7e-5 (ε = 1e-8), no second bias correction
# 0.69, AdamW decay without γ 1.0, dampening ignored 1.0, lr_decay off by one 6e-3,
# RMSprop momentum before the division 0.34, Adadelta ε outside the roots 1.0, Adadelta
# without lr 0.29, Adamax ε outside the max 2.4e-3 (ε = 1e-2), NAdam's momentum term over
# 1 − Πₜ 1.4e-4 (the same in both dtypes); NAdam with Π in double 5.5e-11 in float64 only
# (2.3e-7 in float32, rounding there: float32 parity cannot tell, float64 parity can).
WRONG_RULES = [
    ("adam", _adam_eps_inside_root, "Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-2)),
    ("adam", _adam_eps_inside_root, "Adam", dict(lr=0.01)),
    ("adam", _adam_no_second_bias_correction, "Adam", dict(lr=0.01)),
    ("adam", _adamw_decay_without_lr, "AdamW", dict(lr=0.01, weight_decay=0.3)),
    ("sgd", _sgd_dampening_ignored, "SGD", dict(lr=0.01, momentum=0.9, dampening=0.5)),
    ("adagrad", _adagrad_lr_decay_off_by_one, "Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("rmsprop", _rmsprop_momentum_before_division, "RMSprop", dict(lr=0.01, momentum=0.9)),
    ("adadelta", _adadelta_eps_outside_roots, "Adadelta", dict()),
    ("adadelta", _adadelta_without_lr, "Adadelta",
     dict(lr=0.5, rho=0.95, eps=1e-4, weight_decay=0.05, maximize=True)),
    ("adamax", _adamax_eps_outside_max, "Adamax", dict(lr=0.01, eps=1e-2)),
    ("nadam", _nadam_momentum_term_over_1_minus_product, "NAdam", dict(lr=0.01)),
    ("nadam", _nadam_mu_product_in_double, "NAdam", dict(lr=0.01), [np.float64]),
]


def _wrong_rule_params():
    for rule, wrong, name, options, *dtypes in WRONG_RULES:
        eps = f"-eps={options['eps']}" if "eps" in options else ""
        for dtype in dtypes[0] if dtypes else DTYPES:
            case_id = f"{wrong.__name__.lstrip('_')}{eps}-{np.dtype(dtype).name}"
            yield pytest.param(rule, wrong, name, options, dtype, id=case_id)


@pytest.mark.parametrize("rule, wrong, name, options, dtype", list(_wrong_rule_params()))
def test_tolerance_rejects_wrong_rule(monkeypatch, rule, wrong, name, options, dtype):
    assert (name, options) in CASES  # the very comparison test_matches_torch makes
    monkeypatch.setattr(reference, rule, wrong)
    ref_opt, torch_opt = run_both(name, options, dtype)
    with pytest.raises(AssertionError, match="deviation"):
        assert_matches(ref_opt, torch_opt, dtype)


# --------------------------------------------------------------------------------------
# The reference itself: in place, in the parameter's dtype, minimal checks.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_updates_in_place_in_parameter_dtype(dtype):
    rng = np.random.default_rng(1)
    for cls, options in [
        (reference.SGD, dict(momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True)),
        (reference.Adagrad, dict(weight_decay=0.1, maximize=True)),
        (reference.RMSprop, dict(momentum=0.9, centered=True, weight_decay=0.1)),
        (reference.Adam, dict(amsgrad=True, weight_decay=0.1)),
        (reference.AdamW, dict(amsgrad=True)),
        (reference.Adadelta, dict(weight_decay=0.1, maximize=True)),
        (reference.Adamax, dict(weight_decay=0.1, maximize=True)),
        (reference.NAdam, dict(weight_decay=0.1, maximize=True)),
    ]:
        params = _make_params(rng, dtype)
        before = [p.copy() for p in params]
        opt = cls(params, **options)
        grads = _make_params(rng, dtype)
        grads_before = [g.copy() for g in grads]
        opt.step(grads)
        for param, old, grad, old_grad in zip(params, before, grads, grads_before):
            assert param.dtype == dtype and not np.array_equal(param, old)
            np.testing.assert_array_equal(grad, old_grad)  # gradients are only read
        assert all(p is q for p, q in zip(opt.param_groups[0]["params"], params))
        for state, param in zip(opt.state, params):
            for key, value in state.items():
                if key == "mu_product":  # NAdam's Π: a float32 scalar whatever the dtype
                    assert type(value) is np.float32
                    continue
                assert isinstance(value, np.ndarray), key
                assert value.dtype == dtype and value.shape == param.shape, key
                assert not np.shares_memory(value, param), key
        # SGD's first momentum buffer is a copy of g, never the caller's array.
        if cls is reference.SGD:
            assert not any(np.shares_memory(s["momentum_buffer"], g)
                           for s, g in zip(opt.state, grads))


def test_defaults_match_api():
    """torch's hyper-parameters and defaults, and the storage options every rule takes."""
    p = [np.zeros(3)]
    storage = dict(state_dtype=None, rounding=None, seed=0)
    assert reference.SGD(p).defaults == dict(lr=1e-3, momentum=0.0, dampening=0.0,
                                             weight_decay=0.0, nesterov=False, maximize=False, **storage)
    assert reference.Adagrad(p).defaults == dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                                                 initial_accumulator_value=0.0, eps=1e-10,
                                                 maximize=False, **storage)
    assert reference.RMSprop(p).defaults == dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                                                 momentum=0.0, centered=False, maximize=False, **storage)
    adam_defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                         maximize=False, decoupled_weight_decay=False, **storage)
    assert reference.Adam(p).defaults == adam_defaults
    assert reference.AdamW(p).defaults == {**adam_defaults, "weight_decay": 1e-2,
                                           "decoupled_weight_decay": True}
    assert reference.Adadelta(p).defaults == dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                                                  maximize=False, **storage)
    assert reference.Adamax(p).defaults == dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
                                                weight_decay=0.0, maximize=False, **storage)
    assert reference.NAdam(p).defaults == dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
                                               weight_decay=0.0, momentum_decay=4e-3,
                                               decoupled_weight_decay=False, maximize=False, **storage)


def test_state_created_only_when_used():
    p = [np.zeros(3)]
    g = [np.ones(3)]
    sgd = reference.SGD(p)
    sgd.step(g)
    assert sgd.state == [{}]
    adagrad = reference.Adagrad(p, initial_accumulator_value=0.25)
    assert set(adagrad.state[0]) == {"sum"} and np.all(adagrad.state[0]["sum"] == 0.25)
    rmsprop = reference.RMSprop(p)
    rmsprop.step(g)
    assert set(rmsprop.state[0]) == {"square_avg"}
    adam = reference.Adam(p)
    adam.step(g)
    assert set(adam.state[0]) == {"exp_avg", "exp_avg_sq"}
    assert adam.step_counts == [1]
    for cls, keys in [(reference.Adadelta, {"square_avg", "acc_delta"}),
                      (reference.Adamax, {"exp_avg", "exp_inf"}),
                      (reference.NAdam, {"mu_product", "exp_avg", "exp_avg_sq"})]:
        opt = cls([np.zeros(3)])
        assert opt.state == [{}]
        opt.step(g)
        assert set(opt.state[0]) == keys, cls


def test_rejects_wrong_gradients():
    params = [np.zeros(3), np.zeros((2, 2))]
    opt = reference.Adam(params)
    with pytest.raises(ValueError, match="grads"):
        opt.step([np.zeros(3)])
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        opt.step([np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        opt.step([np.zeros(3, dtype=np.float32), np.zeros((2, 2))])
    assert opt.state == [{}, {}] and opt.step_counts == [0, 0]


def test_adagrad_group_initial_accumulator_value():
    # The reference honours a group's own initial_accumulator_value. torch 2.13 does
    # not: it fills every "sum" from self.defaults (the constructor argument), so this
    # is checked here on the reference alone.
    params = [np.zeros(2), np.zeros(3)]
    opt = reference.Adagrad([{"params": params[:1]},
                             {"params": params[1:], "initial_accumulator_value": 0.5}],
                            initial_accumulator_value=0.25)
    assert np.all(opt.state[0]["sum"] == 0.25) and np.all(opt.state[1]["sum"] == 0.5)
