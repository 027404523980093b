"""fastopt.functional: the kernels on caller-owned arrays.

Proves that each functional update (``<rule>_``: sgd_, adam_, ...) applied for 50 steps to one parameter with caller-owned state gives bitwise the
parameters and state (NAdam's mu_product included) of the matching optimizer class, for every
configuration in ``conftest.CONFIGS`` and both dtypes; and that it validates its inputs like
the classes (mismatched shapes or dtypes, non-contiguous or read-only state, aliasing between
any two arrays, a missing momentum_buffer / grad_avg / max_exp_avg_sq that the options need, a
mu_product that is not a writable 0-d float32 array in [0, 1], bad hyper-parameters, step < 1),
raising the right exception with a message naming the argument and modifying nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt import functional as F

from conftest import CONFIGS, CONFIG_IDS, GradStream, assert_arrays_equal, rule_of, snapshot

SHAPE = (33, 31)
STEPS = 50


def run_functional(config, param, grads_at):
    """Apply the functional rule of `config` for STEPS steps with caller-owned state made as
    the rule documents it (its roles in use, from their initial values or as copies of the
    parameter; its scalar state as 0-d arrays; the group entries it returns, passed back);
    return that state."""
    rule = rule_of(config)
    h = rule.check_group(rule.defaults(**config.kwargs))
    kw = {k: v for k, v in config.kwargs.items()
          if not next(x for x in rule.hypers if x.name == k).initial_only}
    roles = rule.roles_used(h)
    starts = {role: rule.role(role).start(h) for role in roles}
    state = {role: param.copy() if start is None else np.full_like(param, start)
             for role, start in starts.items()}
    scalars = {s.name: np.array(s.initial, s.dtype) for s in rule.scalars}
    update = getattr(F, f"{config.name.lower()}_")
    entries = {}
    for t in range(1, STEPS + 1):
        arrays = [state.get(role.name) for role in rule.roles]
        step = {"step": t} if rule.uses_step else {}
        entries = update(param, grads_at(t), *arrays, *scalars.values(), **step, **kw,
                         **entries) or {}
    assert bool(entries) == (rule.progress is not None)
    return {**state, **scalars}


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_functional_equals_class(config, dtype):
    stream = GradStream([SHAPE], dtype, seed=4, name=config.name)
    p0 = np.random.default_rng(8).standard_normal(SHAPE).astype(dtype)
    p_class, p_func = p0.copy(), p0.copy()
    opt = config.make(fastopt, [p_class])
    for t in range(1, STEPS + 1):
        opt.step(stream(t))
    state = run_functional(config, p_func, lambda t: stream(t)[0])

    assert not np.array_equal(p_func, p0)
    assert_arrays_equal([p_func], [p_class], f"{config.id}: param")
    class_state = opt.state_dict()["state"].get(0, {})
    assert set(class_state) - {"step"} == set(state)
    for key, value in state.items():
        assert_arrays_equal([value], [class_state[key]], f"{config.id}: {key}")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def arrays(shape=(7, 5), dtype=np.float64):
    rng = np.random.default_rng(1)
    names = ["param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "sum", "square_avg",
             "momentum_buffer", "grad_avg", "acc_delta", "exp_inf"]
    out = {n: rng.standard_normal(shape).astype(dtype) for n in names}
    for n in ("exp_avg_sq", "max_exp_avg_sq", "sum", "square_avg", "acc_delta", "exp_inf"):
        out[n] = np.abs(out[n]) + 1.0
    out["mu_product"] = np.array(0.5, np.float32)
    return out


def _adam(a, step=3, **kw):
    return F.adam_, (a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"],
                     a.get("max_exp_avg_sq")), {"step": step, "lr": 0.1, **kw}


def _sgd(a, step=3, **kw):
    return F.sgd_, (a["param"], a["grad"], a.get("momentum_buffer")), \
        {"step": step, "lr": 0.1, "momentum": 0.9, **kw}


def _adagrad(a, step=3, **kw):
    return F.adagrad_, (a["param"], a["grad"], a["sum"]), {"step": step, "lr": 0.1, **kw}


def _rmsprop(a, **kw):
    return F.rmsprop_, (a["param"], a["grad"], a["square_avg"], a.get("momentum_buffer"),
                        a.get("grad_avg")), {"lr": 0.1, "momentum": 0.5, "centered": True, **kw}


def _adadelta(a, **kw):
    return F.adadelta_, (a["param"], a["grad"], a["square_avg"], a["acc_delta"]), \
        {"lr": 0.5, **kw}


def _adamax(a, step=3, **kw):
    return F.adamax_, (a["param"], a["grad"], a["exp_avg"], a["exp_inf"]), \
        {"step": step, "lr": 0.1, **kw}


def _nadam(a, step=3, **kw):
    return F.nadam_, (a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], a["mu_product"]), \
        {"step": step, "lr": 0.1, **kw}


def _mu_product_inside_param(a):
    """float32 arrays, with mu_product a 0-d view of one element of param."""
    a = {k: v.astype(np.float32) for k, v in a.items()}
    a["mu_product"] = a["param"].reshape(-1)[3:4].reshape(())
    a["mu_product"][...] = 0.5
    return a


def _with(name, value):
    def edit(a):
        a[name] = value(a) if callable(value) else value
        return a
    return edit


def _readonly(name):
    def edit(a):
        a[name].flags.writeable = False
        return a
    return edit


def _noncontig(name):
    def edit(a):
        a[name] = np.repeat(a[name], 2, axis=1)[:, ::2]
        assert not a[name].flags.c_contiguous
        return a
    return edit


def _astype(name, dtype):
    return _with(name, lambda a: a[name].astype(dtype))


def _same(name, other):
    return _with(name, lambda a: a[other])


def _view_of(name, other):
    return _with(name, lambda a: a[other][:])


def _wrong_shape(name):
    return _with(name, lambda a: np.ones((5, 7), dtype=a[name].dtype))


def _none(name):
    return _with(name, None)


ident = lambda a: a  # noqa: E731

# (id, builder(arrays, **kwargs) -> (fn, args, kwargs), edit of the arrays, extra kwargs,
#  exception, match)
CASES = [
    # adam_
    ("adam-grad-shape", _adam, _wrong_shape("grad"), {}, ValueError, r"grad"),
    ("adam-exp_avg-shape", _adam, _wrong_shape("exp_avg"), {}, ValueError, r"exp_avg"),
    ("adam-exp_avg_sq-dtype", _adam, _astype("exp_avg_sq", np.float32), {}, TypeError,
     r"exp_avg_sq"),
    ("adam-grad-dtype", _adam, _astype("grad", np.float32), {}, TypeError, r"grad"),
    ("adam-param-integer", _adam, _astype("param", np.int64), {}, TypeError, r"param"),
    ("adam-param-list", _adam, _with("param", lambda a: a["param"].tolist()), {}, TypeError,
     r"param"),
    ("adam-param-read-only", _adam, _readonly("param"), {}, ValueError, r"param"),
    ("adam-exp_avg-read-only", _adam, _readonly("exp_avg"), {}, ValueError, r"exp_avg"),
    ("adam-exp_avg-non-contiguous", _adam, _noncontig("exp_avg"), {}, ValueError, r"exp_avg"),
    ("adam-grad-non-contiguous", _adam, _noncontig("grad"), {}, ValueError, r"grad"),
    ("adam-grad-is-exp_avg", _adam, _same("grad", "exp_avg"), {}, ValueError,
     r"grad|exp_avg"),
    ("adam-grad-view-of-param", _adam, _view_of("grad", "param"), {}, ValueError,
     r"grad|param"),
    ("adam-exp_avg-is-exp_avg_sq", _adam, _same("exp_avg", "exp_avg_sq"), {}, ValueError,
     r"exp_avg"),
    ("adam-param-is-exp_avg", _adam, _same("param", "exp_avg"), {}, ValueError,
     r"param|exp_avg"),
    ("adam-max-is-exp_avg_sq", _adam, _same("max_exp_avg_sq", "exp_avg_sq"),
     {"amsgrad": True}, ValueError, r"exp_avg_sq"),
    ("adam-amsgrad-without-max", _adam, _none("max_exp_avg_sq"), {"amsgrad": True}, ValueError,
     r"max_exp_avg_sq"),
    ("adam-max-shape", _adam, _wrong_shape("max_exp_avg_sq"), {"amsgrad": True}, ValueError,
     r"max_exp_avg_sq"),
    ("adam-step-0", _adam, ident, {"step": 0}, ValueError, r"step"),
    ("adam-lr-negative", _adam, ident, {"lr": -0.1}, ValueError, r"lr"),
    ("adam-betas", _adam, ident, {"betas": (0.9, 1.0)}, ValueError, r"betas"),
    ("adam-amsgrad-int", _adam, ident, {"amsgrad": 1}, TypeError, r"amsgrad"),
    # sgd_
    ("sgd-momentum-without-buffer", _sgd, _none("momentum_buffer"), {}, ValueError,
     r"momentum_buffer"),
    ("sgd-buffer-shape", _sgd, _wrong_shape("momentum_buffer"), {}, ValueError,
     r"momentum_buffer"),
    ("sgd-buffer-dtype", _sgd, _astype("momentum_buffer", np.float32), {}, TypeError,
     r"momentum_buffer"),
    ("sgd-buffer-is-grad", _sgd, _same("momentum_buffer", "grad"), {}, ValueError,
     r"momentum_buffer|grad"),
    ("sgd-buffer-is-param", _sgd, _same("momentum_buffer", "param"), {}, ValueError,
     r"momentum_buffer|param"),
    ("sgd-grad-is-param", _sgd, _same("grad", "param"), {}, ValueError, r"grad|param"),
    ("sgd-nesterov-dampening", _sgd, ident, {"nesterov": True, "dampening": 0.5}, ValueError,
     r"nesterov|dampening"),
    ("sgd-nesterov-no-momentum", _sgd, ident, {"nesterov": True, "momentum": 0.0}, ValueError,
     r"nesterov"),
    ("sgd-step-0", _sgd, ident, {"step": 0}, ValueError, r"step"),
    ("sgd-weight_decay-negative", _sgd, ident, {"weight_decay": -1.0}, ValueError,
     r"weight_decay"),
    # adagrad_
    ("adagrad-sum-dtype", _adagrad, _astype("sum", np.float32), {}, TypeError, r"sum"),
    ("adagrad-sum-shape", _adagrad, _wrong_shape("sum"), {}, ValueError, r"sum"),
    ("adagrad-sum-is-param", _adagrad, _same("sum", "param"), {}, ValueError, r"sum|param"),
    ("adagrad-grad-view-of-sum", _adagrad, _view_of("grad", "sum"), {}, ValueError,
     r"grad|sum"),
    ("adagrad-sum-read-only", _adagrad, _readonly("sum"), {}, ValueError, r"sum"),
    ("adagrad-lr_decay-negative", _adagrad, ident, {"lr_decay": -1.0}, ValueError, r"lr_decay"),
    ("adagrad-eps-nan", _adagrad, ident, {"eps": float("nan")}, ValueError, r"eps"),
    ("adagrad-step-0", _adagrad, ident, {"step": 0}, ValueError, r"step"),
    # rmsprop_
    ("rmsprop-momentum-without-buffer", _rmsprop, _none("momentum_buffer"), {}, ValueError,
     r"momentum_buffer"),
    ("rmsprop-centered-without-grad_avg", _rmsprop, _none("grad_avg"), {}, ValueError,
     r"grad_avg"),
    ("rmsprop-grad_avg-is-square_avg", _rmsprop, _same("grad_avg", "square_avg"), {},
     ValueError, r"grad_avg|square_avg"),
    ("rmsprop-buffer-view-of-grad", _rmsprop, _view_of("momentum_buffer", "grad"), {},
     ValueError, r"momentum_buffer|grad"),
    ("rmsprop-square_avg-dtype", _rmsprop, _astype("square_avg", np.float32), {}, TypeError,
     r"square_avg"),
    ("rmsprop-grad_avg-shape", _rmsprop, _wrong_shape("grad_avg"), {}, ValueError,
     r"grad_avg"),
    ("rmsprop-alpha", _rmsprop, ident, {"alpha": 2.0}, ValueError, r"alpha"),
    ("rmsprop-centered-int", _rmsprop, ident, {"centered": 1}, TypeError, r"centered"),
    # adadelta_
    ("adadelta-acc_delta-shape", _adadelta, _wrong_shape("acc_delta"), {}, ValueError,
     r"acc_delta"),
    ("adadelta-acc_delta-is-square_avg", _adadelta, _same("acc_delta", "square_avg"), {},
     ValueError, r"acc_delta|square_avg"),
    ("adadelta-square_avg-read-only", _adadelta, _readonly("square_avg"), {}, ValueError,
     r"square_avg"),
    ("adadelta-rho-above-1", _adadelta, ident, {"rho": 1.5}, ValueError, r"rho"),
    ("adadelta-lr-nan", _adadelta, ident, {"lr": float("nan")}, ValueError, r"lr"),
    # adamax_
    ("adamax-exp_inf-dtype", _adamax, _astype("exp_inf", np.float32), {}, TypeError,
     r"exp_inf"),
    ("adamax-exp_inf-is-exp_avg", _adamax, _same("exp_inf", "exp_avg"), {}, ValueError,
     r"exp_inf|exp_avg"),
    ("adamax-exp_inf-missing", _adamax, _none("exp_inf"), {}, ValueError, r"exp_inf"),
    ("adamax-betas", _adamax, ident, {"betas": (1.0, 0.999)}, ValueError, r"betas"),
    ("adamax-step-0", _adamax, ident, {"step": 0}, ValueError, r"step"),
    # nadam_
    ("nadam-exp_avg_sq-shape", _nadam, _wrong_shape("exp_avg_sq"), {}, ValueError,
     r"exp_avg_sq"),
    ("nadam-mu_product-float64", _nadam, _astype("mu_product", np.float64), {}, TypeError,
     r"mu_product"),
    ("nadam-mu_product-1-d", _nadam, _with("mu_product", np.ones(1, np.float32)), {},
     ValueError, r"mu_product"),
    ("nadam-mu_product-float", _nadam, _with("mu_product", 0.5), {}, TypeError, r"mu_product"),
    ("nadam-mu_product-read-only", _nadam, _readonly("mu_product"), {}, ValueError,
     r"mu_product"),
    ("nadam-mu_product-above-1", _nadam, _with("mu_product", np.array(1.5, np.float32)), {},
     ValueError, r"mu_product"),
    ("nadam-mu_product-nan", _nadam, _with("mu_product", np.array(np.nan, np.float32)), {},
     ValueError, r"mu_product"),
    ("nadam-mu_product-inside-param", _nadam, _mu_product_inside_param, {}, ValueError,
     r"mu_product|param"),
    ("nadam-momentum_decay-negative", _nadam, ident, {"momentum_decay": -1e-3}, ValueError,
     r"momentum_decay"),
    ("nadam-beta1-rounds-to-1-in-float32", _nadam, ident, {"betas": (1 - 2**-26, 0.999)},
     ValueError, r"betas"),
    ("nadam-decoupled-int", _nadam, ident, {"decoupled_weight_decay": 1}, TypeError,
     r"decoupled_weight_decay"),
    ("nadam-step-0", _nadam, ident, {"step": 0}, ValueError, r"step"),
]


@pytest.mark.parametrize(("case", "build", "edit", "extra", "exc", "match"), CASES,
                         ids=[c[0] for c in CASES])
def test_functional_validates_and_changes_nothing(case, build, edit, extra, exc, match):
    a = edit(arrays())
    fn, args, kwargs = build(a, **extra)
    held = [x for x in args if isinstance(x, np.ndarray)]
    before = snapshot(held)
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)
    assert_arrays_equal(held, before, f"{case}: arrays")


@pytest.mark.parametrize("build", [_adam, _sgd, _adagrad, _rmsprop, _adadelta, _adamax, _nadam],
                         ids=["adam_", "sgd_", "adagrad_", "rmsprop_", "adadelta_", "adamax_",
                              "nadam_"])
def test_functional_accepts_read_only_grad_and_valid_input(build):
    """The valid baseline of the cases above runs, updates the parameter and reads the
    gradient only (so the refusals above are caused by the one thing each case breaks)."""
    a = arrays()
    a["grad"].flags.writeable = False
    grad = a["grad"].copy()
    param = a["param"].copy()
    fn, args, kwargs = build(a)
    fn(*args, **kwargs)
    assert np.array_equal(a["grad"], grad)
    assert not np.array_equal(a["param"], param)
