"""The property of test_properties.py (for any shapes, hyper-parameters, group split and thread
count, the kernels give bitwise the NumPy reference's result) for the rules whose arguments its
generic strategy, drawn from each constraint alone, cannot produce: Rprop's etas
(0 < η₋ < 1 < η₊: both elements of a pair are drawn alike there) and AdEMAMix's three betas
(with 0 < β₁ ≤ β₃ when it warms up). Those draws are filtered out there, silently."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numpy as np

import test_properties as generic

RPROP = st.builds(dict, lr=generic.positive,
                  etas=st.tuples(st.floats(0.01, 0.99), st.floats(1.01, 3.0)),
                  step_sizes=st.tuples(st.floats(0.0, 1e-2), st.floats(1e-3, 1.0)),
                  maximize=generic.flag).map(lambda kw: ("Rprop", kw))
ADEMAMIX = st.builds(dict, lr=generic.positive,
                     betas=st.tuples(st.floats(0.01, 0.9), generic.unit, st.floats(0.9, 1.0)),
                     weight_decay=generic.small, weight_decouple=generic.flag,
                     fixed_decay=generic.flag, alpha=st.floats(0.0, 8.0),
                     t_alpha_beta3=st.one_of(st.none(), st.floats(1.0, 20.0)),
                     eps=st.floats(1e-8, 1e-2), maximize=generic.flag
                     ).map(lambda kw: ("AdEMAMix", kw))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.one_of(RPROP, ADEMAMIX), shapes=generic.SHAPES,
       dtype=st.sampled_from([np.float32, np.float64]), split=st.integers(0, 5),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**32 - 1))
def test_kernels_equal_reference_bitwise(config, shapes, dtype, split, threads, seed):
    generic.test_kernels_equal_reference_bitwise.hypothesis.inner_test(
        config, shapes, dtype, split, threads, seed)
