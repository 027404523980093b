"""Every bad input of API_SPEC.md's "Errors" paragraph is refused, named, and harmless.

Proves, for constructors, ``step``, ``add_param_group``, hyper-parameters edited into
``param_groups`` between steps, and ``load_state_dict`` (the functional API's checks are in
test_functional.py), that each bad input raises the documented exception type
(TypeError for the wrong kind of thing, ValueError for a wrong value), with a message naming
the argument (checked with ``match=``), and that the call modified nothing: parameters and
``state_dict()`` are bitwise what they were, and the next good step gives exactly what an
untouched twin optimizer gives. Also proves that the edges of the valid ranges (lr = 0,
betas = 0, alpha in {0, 1}, eps = 0, 0-d and size-0 parameters, read-only gradients) are
accepted.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import fastopt

from conftest import (
    CONFIG_BY_ID,
    CONFIGS,
    CONFIG_IDS,
    GradStream,
    assert_arrays_equal,
    assert_state_dicts_equal,
    shapes_for,
    snapshot,
)

NAN, INF = float("nan"), float("inf")


def _ones(shape=(5,), dtype=np.float64):
    return np.ones(shape, dtype=dtype)


def _readonly():
    a = _ones()
    a.flags.writeable = False
    return a


def _shared():
    return _ones((20,))


# --------------------------------------------------------------------------------------------
# Constructors
# --------------------------------------------------------------------------------------------


def _params_cases():
    buf = _shared()
    a = _ones()
    yield "param-is-a-list", lambda: [[1.0, 2.0, 3.0]], TypeError, r"params"
    yield "param-is-a-float", lambda: [1.5], TypeError, r"params"
    yield "param-integer", lambda: [np.arange(5)], TypeError, r"params"
    yield "param-longdouble", lambda: [_ones(dtype=np.longdouble)], TypeError, r"params"
    yield "param-complex", lambda: [_ones(dtype=np.complex128)], TypeError, r"params"
    yield "param-non-contiguous", lambda: [_ones((10,))[::2]], ValueError, r"params"
    yield "param-fortran-order", lambda: [np.asfortranarray(_ones((3, 4)))], ValueError, r"params"
    yield "param-read-only", lambda: [_readonly()], ValueError, r"params"
    yield "mixed-dtypes-in-group", lambda: [_ones(), _ones(dtype=np.float32)], TypeError, r"params"
    yield "empty-params", lambda: [], ValueError, r"params"
    yield "empty-group", lambda: [{"params": []}], ValueError, r"params"
    yield "duplicate-param", lambda: [a, _ones(), a], ValueError, r"params"
    yield "duplicate-across-groups", lambda: [{"params": [a]}, {"params": [a]}], ValueError, \
        r"params"
    yield "overlapping-views", lambda: [buf[:10], buf[5:15]], ValueError, r"params"
    yield "view-inside-other-param", lambda: [buf, buf[2:5]], ValueError, r"params"


PARAMS_CASES = list(_params_cases())


@pytest.mark.parametrize("name", list(fastopt.OPTIMIZERS))
@pytest.mark.parametrize(("case", "make", "exc", "match"), PARAMS_CASES,
                         ids=[c[0] for c in PARAMS_CASES])
def test_constructor_refuses_bad_params(name, case, make, exc, match):
    params = make()
    arrays = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])
              if isinstance(p, np.ndarray)]
    before = snapshot(arrays)
    with pytest.raises(exc, match=match):
        getattr(fastopt, name)(params, lr=0.1)
    assert_arrays_equal(arrays, before, "params")


HYPER_CASES = [
    # (id, class, kwargs, exception, match)
    ("sgd-lr-negative", "SGD", {"lr": -0.1}, ValueError, r"lr"),
    ("sgd-lr-nan", "SGD", {"lr": NAN}, ValueError, r"lr"),
    ("sgd-lr-inf", "SGD", {"lr": INF}, ValueError, r"lr"),
    ("sgd-momentum-negative", "SGD", {"momentum": -0.9}, ValueError, r"momentum"),
    ("sgd-momentum-nan", "SGD", {"momentum": NAN}, ValueError, r"momentum"),
    ("sgd-weight_decay-negative", "SGD", {"weight_decay": -1e-2}, ValueError, r"weight_decay"),
    ("sgd-weight_decay-inf", "SGD", {"weight_decay": INF}, ValueError, r"weight_decay"),
    ("sgd-nesterov-without-momentum", "SGD", {"nesterov": True}, ValueError, r"nesterov"),
    ("sgd-nesterov-with-dampening", "SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
     ValueError, r"nesterov|dampening"),
    ("sgd-nesterov-int", "SGD", {"nesterov": 1, "momentum": 0.9}, TypeError, r"nesterov"),
    ("sgd-maximize-str", "SGD", {"maximize": "yes"}, TypeError, r"maximize"),
    ("adagrad-lr-negative", "Adagrad", {"lr": -1.0}, ValueError, r"lr"),
    ("adagrad-lr_decay-negative", "Adagrad", {"lr_decay": -0.1}, ValueError, r"lr_decay"),
    ("adagrad-lr_decay-inf", "Adagrad", {"lr_decay": INF}, ValueError, r"lr_decay"),
    ("adagrad-init-acc-negative", "Adagrad", {"initial_accumulator_value": -0.1}, ValueError,
     r"initial_accumulator_value"),
    ("adagrad-init-acc-nan", "Adagrad", {"initial_accumulator_value": NAN}, ValueError,
     r"initial_accumulator_value"),
    ("adagrad-eps-negative", "Adagrad", {"eps": -1e-10}, ValueError, r"eps"),
    ("adagrad-weight_decay-negative", "Adagrad", {"weight_decay": -1.0}, ValueError,
     r"weight_decay"),
    ("adagrad-maximize-int", "Adagrad", {"maximize": 0}, TypeError, r"maximize"),
    ("rmsprop-alpha-above-1", "RMSprop", {"alpha": 1.5}, ValueError, r"alpha"),
    ("rmsprop-alpha-negative", "RMSprop", {"alpha": -0.1}, ValueError, r"alpha"),
    ("rmsprop-alpha-nan", "RMSprop", {"alpha": NAN}, ValueError, r"alpha"),
    ("rmsprop-eps-negative", "RMSprop", {"eps": -1e-8}, ValueError, r"eps"),
    ("rmsprop-eps-inf", "RMSprop", {"eps": INF}, ValueError, r"eps"),
    ("rmsprop-momentum-negative", "RMSprop", {"momentum": -0.5}, ValueError, r"momentum"),
    ("rmsprop-weight_decay-nan", "RMSprop", {"weight_decay": NAN}, ValueError, r"weight_decay"),
    ("rmsprop-centered-int", "RMSprop", {"centered": 1}, TypeError, r"centered"),
    ("rmsprop-maximize-none", "RMSprop", {"maximize": None}, TypeError, r"maximize"),
    ("adam-lr-negative", "Adam", {"lr": -1e-3}, ValueError, r"lr"),
    ("adam-beta1-one", "Adam", {"betas": (1.0, 0.999)}, ValueError, r"betas"),
    ("adam-beta2-one", "Adam", {"betas": (0.9, 1.0)}, ValueError, r"betas"),
    ("adam-beta1-negative", "Adam", {"betas": (-0.1, 0.999)}, ValueError, r"betas"),
    ("adam-beta2-nan", "Adam", {"betas": (0.9, NAN)}, ValueError, r"betas"),
    ("adam-eps-negative", "Adam", {"eps": -1e-8}, ValueError, r"eps"),
    ("adam-eps-nan", "Adam", {"eps": NAN}, ValueError, r"eps"),
    ("adam-weight_decay-negative", "Adam", {"weight_decay": -0.1}, ValueError, r"weight_decay"),
    ("adam-amsgrad-int", "Adam", {"amsgrad": 1}, TypeError, r"amsgrad"),
    ("adam-maximize-str", "Adam", {"maximize": "False"}, TypeError, r"maximize"),
    ("adam-decoupled-int", "Adam", {"decoupled_weight_decay": 1}, TypeError,
     r"decoupled_weight_decay"),
    ("adamw-weight_decay-negative", "AdamW", {"weight_decay": -1e-2}, ValueError,
     r"weight_decay"),
    ("adamw-weight_decay-inf", "AdamW", {"weight_decay": INF}, ValueError, r"weight_decay"),
    ("adamw-beta1-above-1", "AdamW", {"betas": (1.5, 0.999)}, ValueError, r"betas"),
    ("adamw-amsgrad-str", "AdamW", {"amsgrad": "yes"}, TypeError, r"amsgrad"),
    ("adadelta-lr-negative", "Adadelta", {"lr": -1.0}, ValueError, r"lr"),
    ("adadelta-rho-above-1", "Adadelta", {"rho": 1.1}, ValueError, r"rho"),
    ("adadelta-rho-nan", "Adadelta", {"rho": NAN}, ValueError, r"rho"),
    ("adadelta-eps-negative", "Adadelta", {"eps": -1e-6}, ValueError, r"eps"),
    ("adadelta-weight_decay-inf", "Adadelta", {"weight_decay": INF}, ValueError,
     r"weight_decay"),
    ("adadelta-maximize-int", "Adadelta", {"maximize": 1}, TypeError, r"maximize"),
    ("adamax-beta1-one", "Adamax", {"betas": (1.0, 0.999)}, ValueError, r"betas"),
    ("adamax-beta2-negative", "Adamax", {"betas": (0.9, -0.1)}, ValueError, r"betas"),
    ("adamax-betas-scalar", "Adamax", {"betas": 0.9}, TypeError, r"betas"),
    ("adamax-eps-nan", "Adamax", {"eps": NAN}, ValueError, r"eps"),
    ("adamax-weight_decay-negative", "Adamax", {"weight_decay": -0.1}, ValueError,
     r"weight_decay"),
    ("nadam-lr-inf", "NAdam", {"lr": INF}, ValueError, r"lr"),
    ("nadam-beta2-one", "NAdam", {"betas": (0.9, 1.0)}, ValueError, r"betas"),
    # Below 1, but 1 in float32, where Π is kept: Π would never decay and 1 − Π be 0.
    ("nadam-beta1-is-1-in-float32", "NAdam", {"betas": (1 - 2**-26, 0.999)}, ValueError,
     r"betas"),
    ("nadam-momentum_decay-negative", "NAdam", {"momentum_decay": -4e-3}, ValueError,
     r"momentum_decay"),
    ("nadam-momentum_decay-nan", "NAdam", {"momentum_decay": NAN}, ValueError,
     r"momentum_decay"),
    ("nadam-decoupled-str", "NAdam", {"decoupled_weight_decay": "True"}, TypeError,
     r"decoupled_weight_decay"),
]


@pytest.mark.parametrize(("case", "name", "kwargs", "exc", "match"), HYPER_CASES,
                         ids=[c[0] for c in HYPER_CASES])
@pytest.mark.parametrize("where", ["argument", "group"])
def test_constructor_refuses_bad_hyper_parameters(case, name, kwargs, exc, match, where):
    params = [_ones(), _ones((2, 3))]
    before = snapshot(params)
    with pytest.raises(exc, match=match):
        if where == "argument":
            getattr(fastopt, name)(params, **kwargs)
        else:  # as a per-group override
            getattr(fastopt, name)([{"params": params[:1]}, {"params": params[1:], **kwargs}])
    assert_arrays_equal(params, before, "params")


VALID_EDGES = [
    ("SGD", {"lr": 0.0}),
    ("SGD", {"momentum": 0.9, "dampening": 1.0}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.0}),
    ("SGD", {"maximize": np.True_}),
    ("Adagrad", {"lr": 0.0, "lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 0.0}),
    ("RMSprop", {"lr": 0.0, "alpha": 0.0}),
    ("RMSprop", {"lr": 0.0, "alpha": 1.0}),
    ("Adam", {"lr": 0.0, "betas": (0.0, 0.0)}),
    ("Adam", {"lr": 0.0, "betas": [0.5, 0.5]}),
    ("AdamW", {"lr": 0.0, "weight_decay": 0.0, "eps": 0.0}),
    ("Adadelta", {"lr": 0.0, "rho": 0.0}),
    ("Adadelta", {"lr": 0.0, "rho": 1.0, "eps": 1e-6}),  # torch allows rho = 1 too
    ("Adamax", {"lr": 0.0, "betas": (0.0, 0.0)}),
    ("NAdam", {"lr": 0.0, "betas": (0.0, 0.0), "momentum_decay": 0.0}),  # Π = 0 from step 1
    ("NAdam", {"lr": 0.0, "betas": (1 - 2**-24, 0.5)}),  # the largest beta1 below 1 in float32
]


@pytest.mark.parametrize(("name", "kwargs"), VALID_EDGES,
                         ids=[f"{n}-{'-'.join(k)}" for n, k in VALID_EDGES])
def test_edges_of_valid_ranges_are_accepted(name, kwargs):
    params = [_ones((3,)) * 0.5, np.ones(()), np.ones((0,)), np.ones((2, 0))]
    opt = getattr(fastopt, name)(params, **kwargs)
    grads = [np.full(p.shape, 0.25) for p in params]
    opt.step(grads)
    if kwargs.get("lr", None) == 0.0:  # lr = 0 leaves the parameters where they were
        assert np.array_equal(params[0], np.full(3, 0.5)) and params[1] == 1.0
    if "betas" in kwargs:
        assert opt.param_groups[0]["betas"] == tuple(kwargs["betas"])
        assert type(opt.param_groups[0]["betas"]) is tuple


# --------------------------------------------------------------------------------------------
# step(grads)
# --------------------------------------------------------------------------------------------

STEP_SHAPES = [(12,), (2, 3), (), (0,)]


class Pair:
    """An optimizer and its untouched twin, trained 3 identical steps."""

    def __init__(self, config, groups=1, dtype=np.float64):
        self.config = config
        self.dtype = dtype
        shapes = shapes_for(config, STEP_SHAPES)
        self.stream = GradStream(shapes, dtype, seed=5, name=config.name)
        self.params = [np.linspace(-1, 1, max(math.prod(s), 1)).astype(dtype)[: math.prod(s)]
                       .reshape(s).copy() for s in shapes]
        self.twin_params = snapshot(self.params)
        self.opt = config.make(fastopt, self._arg(self.params, groups))
        self.twin = config.make(fastopt, self._arg(self.twin_params, groups))
        self.t = 0
        for _ in range(3):
            self.good_step()

    @staticmethod
    def _arg(params, groups):
        if groups == 1:
            return params
        return [{"params": params[:2]}, {"params": params[2:], "lr": 0.01}]

    def good_step(self):
        self.t += 1
        grads = self.stream(self.t)
        self.opt.step(grads)
        self.twin.step(grads)

    def snapshot(self):
        return snapshot(self.params), self.opt.state_dict()

    def assert_unchanged(self, snap):
        params, sd = snap
        assert_arrays_equal(self.params, params, "params")
        assert_state_dicts_equal(self.opt.state_dict(), sd)
        assert_arrays_equal(self.params, self.twin_params, "params vs twin")
        self.good_step()
        self.good_step()
        assert_arrays_equal(self.params, self.twin_params, "params vs twin after good steps")
        assert_state_dicts_equal(self.opt.state_dict(), self.twin.state_dict())


def _grads(pair):
    return pair.stream(pair.t + 1)


def _replace(i, fn):
    def make(pair):
        grads = _grads(pair)
        grads[i] = fn(pair, grads[i])
        return grads
    return make


STEP_CASES = [
    ("too-few-grads", lambda pair: _grads(pair)[:-1], ValueError, r"grads"),
    ("too-many-grads", lambda pair: _grads(pair) + [np.ones(3)], ValueError, r"grads"),
    ("no-grads", lambda pair: [], ValueError, r"grads"),
    ("grads-not-a-list", lambda pair: 42, TypeError, r"grads"),
    ("grad-is-a-list", _replace(1, lambda p, g: g.tolist()), TypeError, r"grads\[1\]"),
    ("grad-is-none", _replace(1, lambda p, g: None), TypeError, r"grads\[1\]"),
    ("grad-wrong-float-dtype", _replace(1, lambda p, g: g.astype(np.float32)), TypeError,
     r"grads\[1\]"),
    ("grad-integer", _replace(1, lambda p, g: np.ones(g.shape, dtype=np.int64)), TypeError,
     r"grads\[1\]"),
    ("grad-float16", _replace(1, lambda p, g: g.astype(np.float16)), TypeError, r"grads\[1\]"),
    ("grad-wrong-shape", _replace(1, lambda p, g: np.ones((3, 2))), ValueError, r"grads\[1\]"),
    ("grad-flattened", _replace(1, lambda p, g: g.reshape(-1).copy()), ValueError, r"grads\[1\]"),
    ("grad-0d-for-1-element", _replace(2, lambda p, g: np.ones((1,))), ValueError, r"grads\[2\]"),
    ("grad-non-contiguous", _replace(1, lambda p, g: np.ones((2, 6))[:, ::2]), ValueError,
     r"grads\[1\]"),
    ("grad-fortran-order", _replace(1, lambda p, g: np.asfortranarray(np.ones((2, 3)) + g)),
     ValueError, r"grads\[1\]"),
    ("grad-is-its-param", _replace(1, lambda p, g: p.params[1]), ValueError, r"grads\[1\]"),
    ("grad-view-of-its-param", _replace(1, lambda p, g: p.params[1][:]), ValueError,
     r"grads\[1\]"),
    ("grad-view-of-other-param", _replace(1, lambda p, g: p.params[0][3:9].reshape(2, 3)),
     ValueError, r"grads\[1\]"),
    ("grad-0d-view-of-other-param", _replace(2, lambda p, g: p.params[0][5:6].reshape(())),
     ValueError, r"grads\[2\]"),
]


def _rows(i, fn):
    """Gradient i (row-sparse: indices, values) replaced by ``fn(pair, indices, values)``."""
    return _replace(i, lambda pair, g: fn(pair, *g))


# Row-sparse gradients (SparseAdam's, conftest.row_sparse): STEP_SHAPES[1] is (2, 3).
ROW_CASES = [
    ("too-few-grads", lambda pair: _grads(pair)[:-1], ValueError, r"grads"),
    ("dense-grad", _replace(1, lambda p, g: np.ones((2, 3))), TypeError,
     r"grads\[1\].*row-sparse.*Adam"),
    ("grad-one-array", _rows(1, lambda p, i, v: (i,)), TypeError, r"grads\[1\]"),
    ("indices-float", _rows(1, lambda p, i, v: (i.astype(np.float64), v)), TypeError,
     r"grads\[1\]\[0\]"),
    ("indices-2d", _rows(1, lambda p, i, v: (i[None], v)), TypeError, r"grads\[1\]\[0\]"),
    ("index-past-the-rows", _rows(1, lambda p, i, v: (np.full_like(i, 2), v)), ValueError,
     r"grads\[1\]\[0\].*\[0, 2\)"),
    ("index-negative", _rows(1, lambda p, i, v: (np.full_like(i, -1), v)), ValueError,
     r"grads\[1\]\[0\]"),
    ("values-wrong-shape", _rows(1, lambda p, i, v: (i, np.ones((len(i), 2)))), ValueError,
     r"grads\[1\]\[1\].*shape"),
    ("values-missing-a-row", _rows(1, lambda p, i, v: (i, v[1:].copy())), ValueError,
     r"grads\[1\]\[1\].*shape"),
    ("values-wrong-dtype", _rows(1, lambda p, i, v: (i, v.astype(np.float32))), TypeError,
     r"grads\[1\]\[1\].*dtype"),
    ("values-non-contiguous", _rows(1, lambda p, i, v: (i, np.ones((len(i), 6))[:, ::2])),
     ValueError, r"grads\[1\]\[1\]"),
    ("values-view-of-a-param", _rows(1, lambda p, i, v: (i[:1], p.params[1][:1])), ValueError,
     r"grads\[1\]\[1\].*memory"),
]


def _bad_step_cases():
    for config in (CONFIG_BY_ID[i] for i in ("sgd-momentum", "adagrad-all", "rmsprop-all",
                                             "adam-all", "adamw", "nadam-all",
                                             "adamw-schedule-free", "sgd-schedule-free")):
        for case in STEP_CASES:
            yield pytest.param(config, *case, id=f"{config.id}-{case[0]}")
    for case in ROW_CASES:
        yield pytest.param(CONFIG_BY_ID["sparse-adam"], *case, id=f"sparse-adam-{case[0]}")


@pytest.mark.parametrize("groups", [1, 2], ids=["one-group", "two-groups"])
@pytest.mark.parametrize(("config", "case", "make", "exc", "match"), list(_bad_step_cases()))
def test_step_refuses_bad_grads_and_changes_nothing(config, case, make, exc, match, groups):
    pair = Pair(config, groups)
    snap = pair.snapshot()
    grads = make(pair)
    with pytest.raises(exc, match=match):
        pair.opt.step(grads)
    pair.assert_unchanged(snap)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_read_only_gradients_are_accepted(config):
    """Gradients are only read: read-only gradient arrays are accepted and give the same
    result as writable copies."""
    pair = Pair(config)
    grads = _grads(pair)
    twin_grads = snapshot(grads)
    for g in grads:
        for a in g if isinstance(g, tuple) else (g,):  # a row-sparse one: indices and values
            a.flags.writeable = False
    pair.opt.step(grads)
    pair.twin.step(twin_grads)
    assert_arrays_equal(pair.params, pair.twin_params, "params")
    assert_state_dicts_equal(pair.opt.state_dict(), pair.twin.state_dict())


# --------------------------------------------------------------------------------------------
# Hyper-parameters made invalid in param_groups between steps
# --------------------------------------------------------------------------------------------

GROUP_EDIT_CASES = [
    # (config id, key, bad value, exception, match)
    ("sgd-momentum", "lr", -0.1, ValueError, r"lr"),
    ("sgd-momentum", "lr", NAN, ValueError, r"lr"),
    ("sgd-momentum", "momentum", -0.5, ValueError, r"momentum"),
    ("sgd-momentum", "weight_decay", INF, ValueError, r"weight_decay"),
    ("sgd-momentum", "maximize", "no", TypeError, r"maximize"),
    ("sgd-nesterov", "dampening", 0.5, ValueError, r"nesterov|dampening"),
    ("sgd-nesterov", "momentum", 0.0, ValueError, r"nesterov|momentum"),
    ("sgd", "nesterov", True, ValueError, r"nesterov"),
    ("sgd", "nesterov", 1, TypeError, r"nesterov"),
    ("adagrad-all", "lr_decay", -0.1, ValueError, r"lr_decay"),
    ("adagrad-all", "eps", NAN, ValueError, r"eps"),
    ("adagrad-all", "weight_decay", -1.0, ValueError, r"weight_decay"),
    ("rmsprop-all", "alpha", 1.5, ValueError, r"alpha"),
    ("rmsprop-all", "momentum", -0.1, ValueError, r"momentum"),
    ("rmsprop-all", "eps", -1.0, ValueError, r"eps"),
    ("rmsprop-all", "centered", 1, TypeError, r"centered"),
    ("adam-all", "betas", (1.0, 0.999), ValueError, r"betas"),
    ("adam-all", "betas", (0.9, -0.5), ValueError, r"betas"),
    ("adam-all", "lr", INF, ValueError, r"lr"),
    ("adam-all", "eps", -1e-8, ValueError, r"eps"),
    ("adam-all", "amsgrad", 1, TypeError, r"amsgrad"),
    ("adam-all", "decoupled_weight_decay", "x", TypeError, r"decoupled_weight_decay"),
    ("adamw", "weight_decay", -0.01, ValueError, r"weight_decay"),
    ("adamw", "maximize", None, TypeError, r"maximize"),
    ("adadelta-all", "rho", -0.5, ValueError, r"rho"),
    ("adamax-all", "betas", (0.9, 1.5), ValueError, r"betas"),
    ("nadam-all", "momentum_decay", INF, ValueError, r"momentum_decay"),
    ("nadam-all", "betas", (1 - 2**-26, 0.999), ValueError, r"betas"),
    ("nadam-all", "decoupled_weight_decay", 0, TypeError, r"decoupled_weight_decay"),
]


@pytest.mark.parametrize("group", [0, 1], ids=["in-group-0", "in-group-1"])
@pytest.mark.parametrize(("config_id", "key", "value", "exc", "match"), GROUP_EDIT_CASES,
                         ids=[f"{c[0]}-{c[1]}={c[2]!r}" for c in GROUP_EDIT_CASES])
def test_bad_value_put_in_param_groups_is_refused_at_step(config_id, key, value, exc, match,
                                                          group):
    pair = Pair(CONFIG_BY_ID[config_id], groups=2)
    good = copy.copy(pair.opt.param_groups[group][key])
    snap = pair.snapshot()
    pair.opt.param_groups[group][key] = value
    with pytest.raises(exc, match=match):
        pair.opt.step(_grads(pair))
    # ... and again (a refused step must not have advanced anything either).
    with pytest.raises(exc, match=match):
        pair.opt.step(_grads(pair))
    pair.opt.param_groups[group][key] = good
    pair.assert_unchanged(snap)


# --------------------------------------------------------------------------------------------
# add_param_group
# --------------------------------------------------------------------------------------------

ADD_GROUP_CASES = [
    ("duplicate-of-existing", lambda pair: {"params": [pair.params[1]]}, ValueError, r"params"),
    ("overlaps-existing", lambda pair: {"params": [pair.params[0][2:4]]}, ValueError, r"params"),
    ("other-dtype-mixed", lambda pair: {"params": [_ones(), _ones(dtype=np.float32)]}, TypeError,
     r"params"),
    ("integer", lambda pair: {"params": [np.arange(3)]}, TypeError, r"params"),
    ("empty", lambda pair: {"params": []}, ValueError, r"params"),
    ("bad-lr", lambda pair: {"params": [_ones()], "lr": -1.0}, ValueError, r"lr"),
    ("read-only", lambda pair: {"params": [_readonly()]}, ValueError, r"params"),
]


@pytest.mark.parametrize(("case", "make", "exc", "match"), ADD_GROUP_CASES,
                         ids=[c[0] for c in ADD_GROUP_CASES])
@pytest.mark.parametrize("config_id", ["sgd-momentum", "adam-all"])
def test_add_param_group_refuses_bad_groups(config_id, case, make, exc, match):
    pair = Pair(CONFIG_BY_ID[config_id])
    snap = pair.snapshot()
    n_groups = len(pair.opt.param_groups)
    with pytest.raises(exc, match=match):
        pair.opt.add_param_group(make(pair))
    assert len(pair.opt.param_groups) == n_groups
    assert len(pair.opt.grads) == len(pair.params)
    pair.assert_unchanged(snap)


# --------------------------------------------------------------------------------------------
# load_state_dict: the message names what is wrong (more cases in test_state_dict.py)
# --------------------------------------------------------------------------------------------


def _sd_lr(sd):
    sd["param_groups"][1]["lr"] = -1.0
    return sd


def _sd_betas(sd):
    sd["param_groups"][0]["betas"] = (0.9, 1.5)
    return sd


def _sd_shape(sd):
    sd["state"][1]["exp_avg_sq"] = np.zeros((3, 2))
    return sd


def _sd_dtype(sd):
    sd["state"][3]["exp_avg"] = sd["state"][3]["exp_avg"].astype(np.float32)
    return sd


# API_SPEC.md allows ValueError or TypeError for a bad state dict.
EITHER = (ValueError, TypeError)
LOAD_CASES = [
    ("not-a-dict", lambda sd: list(sd.items()), EITHER, r"state_dict"),
    ("bad-lr", _sd_lr, EITHER, r"lr"),
    ("bad-betas", _sd_betas, EITHER, r"betas"),
    ("wrong-shape", _sd_shape, EITHER, r"exp_avg_sq"),
    ("wrong-dtype", _sd_dtype, EITHER, r"exp_avg"),
    ("wrong-group-count", lambda sd: {**sd, "param_groups": sd["param_groups"][:1]}, EITHER,
     r"param_groups|group"),
]


@pytest.mark.parametrize(("case", "make", "exc", "match"), LOAD_CASES,
                         ids=[c[0] for c in LOAD_CASES])
def test_load_state_dict_names_the_problem(case, make, exc, match):
    pair = Pair(CONFIG_BY_ID["adam-all"], groups=2)
    snap = pair.snapshot()
    bad = make(copy.deepcopy(pair.opt.state_dict()))
    with pytest.raises(exc, match=match):
        pair.opt.load_state_dict(bad)
    pair.assert_unchanged(snap)
