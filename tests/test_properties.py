"""Property tests: for any shapes, hyper-parameters, group split and thread count, fastopt's
kernels give exactly (bitwise) the NumPy reference's result.

Exact equality is the right bar: both evaluate the same operations in the same order in the
parameters' dtype, and the kernels are compiled without FMA contraction or -ffast-math.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastopt
from fastopt import reference
from fastopt.rules import RULES
from fastopt.rules.storage import hypers as storage_hypers
from fastopt.validation import Flag, Integer, Pair

from conftest import given as taken_by, training

unit = st.floats(0.0, 0.999)
small = st.floats(0.0, 0.5)
positive = st.floats(1e-4, 0.5)
flag = st.booleans()

SGD = st.builds(dict, lr=positive, momentum=st.sampled_from([0.0, 0.5, 0.9]), dampening=small,
                weight_decay=small, maximize=flag).map(lambda kw: ("SGD", kw))
NESTEROV = st.builds(dict, lr=positive, momentum=st.floats(0.01, 0.99), weight_decay=small,
                     nesterov=st.just(True), maximize=flag).map(lambda kw: ("SGD", kw))
ADAGRAD = st.builds(dict, lr=positive, lr_decay=small, weight_decay=small,
                    initial_accumulator_value=small, eps=st.floats(1e-10, 1e-2),
                    maximize=flag).map(lambda kw: ("Adagrad", kw))
RMSPROP = st.builds(dict, lr=positive, alpha=unit, eps=st.floats(1e-8, 1e-2), weight_decay=small,
                    momentum=st.sampled_from([0.0, 0.9]), centered=flag,
                    maximize=flag).map(lambda kw: ("RMSprop", kw))
ADAM = st.builds(dict, lr=positive, betas=st.tuples(unit, unit), eps=st.floats(1e-8, 1e-2),
                 weight_decay=small, amsgrad=flag, maximize=flag,
                 decoupled_weight_decay=flag).map(lambda kw: ("Adam", kw))
ADADELTA = st.builds(dict, lr=st.floats(1e-2, 2.0), rho=unit, eps=st.floats(1e-8, 1e-2),
                     weight_decay=small, maximize=flag).map(lambda kw: ("Adadelta", kw))
ADAMAX = st.builds(dict, lr=positive, betas=st.tuples(unit, unit), eps=st.floats(1e-8, 1e-2),
                   weight_decay=small, maximize=flag).map(lambda kw: ("Adamax", kw))
NADAM = st.builds(dict, lr=positive, betas=st.tuples(unit, unit), eps=st.floats(1e-8, 1e-2),
                  weight_decay=small, momentum_decay=st.floats(0.0, 0.1),
                  decoupled_weight_decay=flag, maximize=flag).map(lambda kw: ("NAdam", kw))


def _values(check):
    """Values a constraint of fastopt.validation admits, kept small enough that no rule
    overflows in a dozen steps."""
    if isinstance(check, Flag):
        return flag
    if isinstance(check, Pair):
        return st.tuples(_values(check.item), _values(check.item))
    if isinstance(check, Integer):
        return st.integers(check.minimum, check.minimum + 20)
    high = min(check.high, 0.5) - (1e-3 if check.high_open and check.high <= 0.5 else 0.0)
    return st.floats(max(check.low, 1e-4 if check.low_open else 0.0), high)


def _from_rule(rule):
    """Any hyper-parameters the rule's constraints admit (lr at least 1e-4), for a rule that
    has no hand-written strategy above; combinations a rule refuses are left out."""
    def valid(kwargs):
        try:
            rule.check_group(rule.defaults(**kwargs))
        except (TypeError, ValueError):
            return False
        return True
    values = {h.name: positive if h.name == "lr" else _values(h.check) for h in rule.arguments
              if h.name not in STORAGE}  # the storage options have tests of their own
    return st.fixed_dictionaries(values).filter(valid).map(lambda kw: (rule.name, kw))


STORAGE = {h.name for h in storage_hypers()}
WRITTEN = {"SGD", "Adagrad", "RMSprop", "Adam", "Adadelta", "Adamax", "NAdam"}
CONFIGS = st.one_of(SGD, NESTEROV, ADAGRAD, RMSPROP, ADAM, ADADELTA, ADAMAX, NADAM,
                    *(_from_rule(rule) for name, rule in RULES.items() if name not in WRITTEN))
SHAPES = st.lists(st.lists(st.integers(1, 40), max_size=3).map(tuple), min_size=1, max_size=5)


@settings(max_examples=90, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=CONFIGS, shapes=SHAPES, dtype=st.sampled_from([np.float32, np.float64]),
       split=st.integers(0, 5), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**32 - 1))
def test_kernels_equal_reference_bitwise(config, shapes, dtype, split, threads, seed):
    name, kwargs = config
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    copies = [p.copy() for p in params]
    split = min(split, len(params) - 1)

    def groups(arrays):
        if split == 0:
            return arrays
        return [{"params": arrays[:split]}, {"params": arrays[split:], "lr": kwargs["lr"] / 2}]

    opt = training(getattr(fastopt, name)(groups(params), **kwargs))
    ref = training(getattr(reference, name)(groups(copies), **kwargs))
    saved = fastopt.get_num_threads()
    fastopt.set_num_threads(threads)
    try:
        for t in range(1, 13):
            grads = taken_by(name, [rng.standard_normal(shape).astype(dtype) for shape in shapes],
                             t)  # row-sparse for a rule that takes them so
            opt.step(grads)
            ref.step(grads)
    finally:
        fastopt.set_num_threads(saved)
    for got, want in zip(params, copies):
        np.testing.assert_array_equal(got, want)
