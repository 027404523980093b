"""state_dict / load_state_dict: exact resumption, copies, and refusal of bad dicts.

Proves that (1) a state_dict taken after N steps and loaded into a new optimizer over copies
of the parameters resumes bit for bit (the next M steps give identical parameters and state),
directly and through pickle to a file, for every configuration, before the first step too;
(2) state_dict() has the documented layout (torch's keys, int "step", tuple "betas", param
indices in order) and returns copies: mutating what it returned changes nothing, and
load_state_dict does not keep references to the loaded arrays; (3) a malformed or mismatched
dict (not a dict, missing keys, wrong number of groups or params, wrong shapes or dtypes,
bad hyper-parameters, bad step counts, a dict of another optimizer) raises ValueError or
TypeError and leaves the optimizer exactly as it was: its state_dict is unchanged and training
goes on bit for bit like an untouched twin's.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastopt

from conftest import (
    CONFIG_BY_ID,
    CONFIG_IDS,
    CONFIGS,
    PER_CLASS,
    PER_CLASS_IDS,
    SCALAR_STATE_KEYS,
    GradStream,
    assert_arrays_equal,
    assert_state_dicts_equal,
    expected_state_keys,
    make_model,
    rule_of,
    snapshot,
)

N_STEPS = 7
M_STEPS = 8


def trained(config, dtype, steps=N_STEPS, layout="two_groups"):
    """(optimizer, params, model, stream) after `steps` steps."""
    model = make_model(layout, dtype, config=config)
    arg, params = model.fresh()
    opt = config.make(fastopt, arg)
    stream = GradStream(model.shapes, dtype, name=config.name)
    for t in range(1, steps + 1):
        opt.step(stream(t))
    return opt, params, model, stream


def continue_both(a, b, params_a, params_b, stream, start, count=M_STEPS):
    for t in range(start, start + count):
        grads = stream(t)
        a.step(grads)
        b.step(grads)
    assert_arrays_equal(params_a, params_b, "params")
    assert_state_dicts_equal(a.state_dict(), b.state_dict())


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_layout(config):
    model = make_model("two_groups", np.float64, config=config)
    arg, params = model.fresh()
    opt = config.make(fastopt, arg)
    sd0 = opt.state_dict()
    assert set(sd0) == {"state", "param_groups"}
    if config.name == "Adagrad":  # present from construction, at step 0
        assert set(sd0["state"]) == set(range(len(params)))
        for i, entry in sd0["state"].items():
            assert set(entry) == {"step", "sum"}
            assert type(entry["step"]) is int and entry["step"] == 0
            init = config.kwargs.get("initial_accumulator_value", 0.0)
            assert np.array_equal(entry["sum"], np.full(params[i].shape, init))
    else:
        assert sd0["state"] == {}

    stream = GradStream(model.shapes, np.float64, name=config.name)
    for t in range(1, 4):
        opt.step(stream(t))
    sd = opt.state_dict()
    n0 = len(model.groups[0][0])
    assert [g["params"] for g in sd["param_groups"]] == [
        list(range(n0)), list(range(n0, len(params)))
    ]
    for g, og in zip(sd["param_groups"], opt.param_groups):
        assert set(g) == set(og)
        for key in g:
            if key != "params":
                assert g[key] == og[key]
        if "betas" in g:
            assert type(g["betas"]) is tuple
            assert len(g["betas"]) == len(rule_of(config).defaults()["betas"])
            assert all(type(b) is float for b in g["betas"])
    keys = expected_state_keys(config)
    if keys:
        assert set(sd["state"]) == set(range(len(params)))
    else:
        assert sd["state"] == {}
    for i, entry in sd["state"].items():
        assert set(entry) == keys
        first = sd["param_groups"][0 if i < n0 else 1]["params"][0]
        for key, value in entry.items():
            if key == "step":
                assert type(value) is int and value == 3
            elif key in SCALAR_STATE_KEYS:  # float32 per group, as torch keeps it
                assert type(value) is np.float32 and value == sd["state"][first][key]
            else:
                assert isinstance(value, np.ndarray)
                assert value.shape == params[i].shape and value.dtype == params[i].dtype
                assert not np.shares_memory(value, params[i])


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["memory", "pickle"])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_round_trip_resumes_bit_for_bit(config, via, dtype, tmp_path):
    a, params_a, model, stream = trained(config, dtype)
    sd = a.state_dict()
    if via == "pickle":
        path = tmp_path / "optimizer.pkl"
        with open(path, "wb") as f:
            pickle.dump(sd, f)
        with open(path, "rb") as f:
            sd = pickle.load(f)
    params_b = [p.copy() for p in params_a]
    # A different lr in the constructor: load_state_dict restores the saved hyper-parameters.
    arg_b = [{**g, "params": gp} for g, gp in zip(model.fresh()[0], _split(params_b, model))]
    b = config.make(fastopt, arg_b, lr=0.123)
    b.load_state_dict(sd)
    assert b.param_groups[1]["lr"] == a.param_groups[1]["lr"] != 0.123
    assert all(x is y for x, y in zip(
        [p for g in b.param_groups for p in g["params"]], params_b))
    assert_state_dicts_equal(a.state_dict(), b.state_dict())
    continue_both(a, b, params_a, params_b, stream, N_STEPS + 1)


@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_round_trip_before_first_step(config, dtype):
    model = make_model("multi", dtype, config=config)
    arg_a, params_a = model.fresh()
    arg_b, params_b = model.fresh()
    a = config.make(fastopt, arg_a)
    b = config.make(fastopt, arg_b, lr=0.5)
    b.load_state_dict(a.state_dict())
    assert_state_dicts_equal(a.state_dict(), b.state_dict())
    continue_both(a, b, params_a, params_b, GradStream(model.shapes, dtype, name=config.name), 1)


@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_round_trip_large_model(config):
    """The multi-tensor model with the >300_000-element tensor, float32."""
    a, params_a, model, stream = trained(config, np.float32, steps=3, layout="multi")
    params_b = [p.copy() for p in params_a]
    b = config.make(fastopt, params_b)
    b.load_state_dict(a.state_dict())
    continue_both(a, b, params_a, params_b, stream, 4, count=3)


# --------------------------------------------------------------------------------------------
# Copies
# --------------------------------------------------------------------------------------------


def mutate_everything(sd):
    """Scribble over every array and container of a state_dict, in place."""
    for entry in sd["state"].values():
        for key, value in list(entry.items()):
            if isinstance(value, np.ndarray):
                value[...] = 12345.0
            else:
                entry[key] = value + 100
        entry["bogus"] = 1
    for group in sd["param_groups"]:
        group["lr"] = 77.0
        group["params"].append(999)
        group["bogus"] = 2
    sd["state"][999] = {}
    sd["param_groups"].append({"params": []})


@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_state_dict_returns_copies(config, dtype):
    a, params_a, model, stream = trained(config, dtype)
    b, params_b, _, _ = trained(config, dtype)
    sd = a.state_dict()
    saved = copy.deepcopy(sd)
    other = a.state_dict()
    for i, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                assert not np.shares_memory(value, other["state"][i][key])
    assert sd["param_groups"][0] is not other["param_groups"][0]
    assert sd["param_groups"][0]["params"] is not other["param_groups"][0]["params"]
    mutate_everything(sd)
    assert_state_dicts_equal(a.state_dict(), saved)
    assert a.param_groups[0]["lr"] != 77.0
    continue_both(a, b, params_a, params_b, stream, N_STEPS + 1)


@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_load_state_dict_does_not_keep_the_callers_arrays(config, dtype):
    a, params_a, model, stream = trained(config, dtype)
    sd = a.state_dict()
    params_b = [p.copy() for p in params_a]
    b = config.make(fastopt, [{**g, "params": gp} for g, gp in zip(
        model.fresh()[0], _split(params_b, model))])
    b.load_state_dict(sd)
    mutate_everything(sd)
    continue_both(a, b, params_a, params_b, stream, N_STEPS + 1)


def _split(flat, model):
    out, k = [], 0
    for shapes, _ in model.groups:
        out.append(flat[k:k + len(shapes)])
        k += len(shapes)
    return out


# --------------------------------------------------------------------------------------------
# Malformed and mismatched dicts
# --------------------------------------------------------------------------------------------


def _array_keys(sd, idx):
    return sorted(k for k, v in sd["state"][idx].items() if isinstance(v, np.ndarray))


def _last_index(sd):
    return max(sd["state"])


def _bad_hyper(config):
    return {
        "SGD": ("momentum", -0.5),
        "Adagrad": ("lr_decay", -1.0),
        "RMSprop": ("alpha", 2.0),
        "Adam": ("betas", (1.0, 0.5)),
        "AdamW": ("betas", (0.9, -0.1)),
        "Adadelta": ("rho", 1.5),
        "Adamax": ("betas", (0.9, 1.0)),
        "NAdam": ("momentum_decay", -0.004),
    }[config.name]


def _set_hyper(sd, key, value, group=0):
    sd["param_groups"][group][key] = value
    return sd


def _state_edit(fn):
    """Apply fn(entry, key) to the last parameter's first array (group 1: checks that nothing
    of group 0 was loaded before the bad part was found)."""

    def edit(sd, config):
        idx = _last_index(sd)
        key = _array_keys(sd, idx)[0]
        fn(sd["state"][idx], key)
        return sd

    return edit


def _other_optimizer_sd(sd, config):
    other = CONFIG_BY_ID["sgd-momentum"] if config.name != "SGD" else CONFIG_BY_ID["adam-all"]
    o, _, _, _ = trained(other, np.float64, steps=2)
    return o.state_dict()


def _other_dtype(entry, key):
    value = entry[key]
    entry[key] = value.astype(np.float32 if value.dtype == np.float64 else np.float64)


MALFORMED = {
    "not-a-dict": lambda sd, c: [sd["state"], sd["param_groups"]],
    "none": lambda sd, c: None,
    "missing-state": lambda sd, c: {"param_groups": sd["param_groups"]},
    "missing-param_groups": lambda sd, c: {"state": sd["state"]},
    "state-not-a-dict": lambda sd, c: {**sd, "state": list(sd["state"].values())},
    "param_groups-not-a-list": lambda sd, c: {**sd, "param_groups": "groups"},
    "too-many-groups": lambda sd, c: {**sd, "param_groups": sd["param_groups"] + [
        {**sd["param_groups"][1], "params": [100, 101, 102]}]},
    "too-few-groups": lambda sd, c: {**sd, "param_groups": sd["param_groups"][:1]},
    "group-has-too-many-params": lambda sd, c: _set_hyper(
        sd, "params", sd["param_groups"][1]["params"] + [6], group=1),
    "group-has-too-few-params": lambda sd, c: _set_hyper(
        sd, "params", sd["param_groups"][1]["params"][:-1], group=1),
    "params-not-indices": lambda sd, c: _set_hyper(sd, "params", ["a", "b", "c"], group=1),
    "missing-hyper-parameter": lambda sd, c: (sd["param_groups"][1].pop("lr"), sd)[1],
    "negative-lr": lambda sd, c: _set_hyper(sd, "lr", -1.0, group=1),
    "nan-eps": lambda sd, c: _set_hyper(sd, "eps", float("nan"), group=1)
    if "eps" in sd["param_groups"][1] else _set_hyper(sd, "lr", float("nan"), group=1),
    "bad-class-hyper-parameter": lambda sd, c: _set_hyper(sd, *_bad_hyper(c), group=1),
    "non-bool-flag": lambda sd, c: _set_hyper(sd, "maximize", "yes", group=1),
    "state-index-out-of-range": lambda sd, c: {**sd, "state": {**sd["state"], 6: sd["state"][0]}}
    if sd["state"] else {**sd, "state": {6: {"momentum_buffer": np.zeros(3)}}},
    "state-wrong-shape": _state_edit(lambda e, k: e.__setitem__(k, np.zeros(e[k].shape + (2,),
                                                                              e[k].dtype))),
    "state-wrong-size": _state_edit(lambda e, k: e.__setitem__(k, np.resize(e[k], e[k].size + 1))),
    "state-wrong-dtype": _state_edit(_other_dtype),
    "state-integer-array": _state_edit(lambda e, k: e.__setitem__(k, e[k].astype(np.int64))),
    "state-not-an-array": _state_edit(lambda e, k: e.__setitem__(k, "zeros")),
    "state-missing-key": _state_edit(lambda e, k: e.pop(k)),
    "state-unknown-key": _state_edit(lambda e, k: e.__setitem__("bogus", e[k].copy())),
    "negative-step": lambda sd, c: (sd["state"][_last_index(sd)].__setitem__("step", -3), sd)[1],
    "string-step": lambda sd, c: (sd["state"][_last_index(sd)].__setitem__("step", "7"), sd)[1],
    "other-optimizer": _other_optimizer_sd,
}
# Cases that would be legitimate for a configuration (SGD keeps no "step"; its momentum buffer
# is optional: without it, momentum restarts).
NOT_APPLICABLE = {
    "SGD": {"negative-step", "string-step", "state-missing-key"},
}

MALFORMED_CONFIGS = [CONFIG_BY_ID[i] for i in (
    "sgd-momentum", "adagrad-all", "rmsprop-all", "adam-all", "adamw", "nadam-all")]


def _malformed_cases():
    for config in MALFORMED_CONFIGS:
        for name in MALFORMED:
            if name in NOT_APPLICABLE.get(config.name, ()):
                continue
            yield pytest.param(config, name, id=f"{config.id}-{name}")


@pytest.mark.parametrize(("config", "case"), list(_malformed_cases()))
def test_malformed_state_dict_is_refused_and_changes_nothing(config, case, dtype):
    a, params_a, model, stream = trained(config, dtype)
    b, params_b, _, _ = trained(config, dtype)  # untouched twin
    before = a.state_dict()
    groups_before = copy.deepcopy([{k: v for k, v in g.items() if k != "params"}
                                   for g in a.param_groups])
    params_before = snapshot(params_a)
    bad = MALFORMED[case](copy.deepcopy(before), config)
    with pytest.raises((ValueError, TypeError)):
        a.load_state_dict(bad)
    assert_arrays_equal(params_a, params_before, "params")
    assert_state_dicts_equal(a.state_dict(), before)
    assert [{k: v for k, v in g.items() if k != "params"} for g in a.param_groups] == \
        groups_before
    assert all(x is y for x, y in zip([p for g in a.param_groups for p in g["params"]],
                                      params_a))
    continue_both(a, b, params_a, params_b, stream, N_STEPS + 1, count=3)
