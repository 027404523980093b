"""Thread count control, and results that do not depend on the thread count.

Proves that set_num_threads / get_num_threads round-trip (and refuse nonsense without changing
the count), that config() reports the thread count and OpenMP, and that every configuration of
every optimizer gives bitwise identical parameters and state with 1 and with 2 threads, on one
tensor well above 10^6 elements (so the parallel path splits it between threads) and on a
multi-tensor model (segments split across threads at different points). The thread count is
restored after each test.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastopt

from conftest import (
    CONFIGS,
    CONFIG_IDS,
    MULTI_SHAPES,
    PER_CLASS,
    PER_CLASS_IDS,
    GradStream,
    Model,
    assert_arrays_equal,
    assert_state_dicts_equal,
    given,
    shapes_for,
)

BIG = (1_500_007,)  # well above 10^6, odd: the split between threads is uneven
STEPS = 4


# A serial build (no OpenMP) accepts any thread count and always runs one thread.
requires_openmp = pytest.mark.skipif(not fastopt.OPENMP, reason="a serial build runs one thread")


@pytest.mark.parametrize("n", [1, 2, 3, 1])
def test_set_get_round_trip(n, restore_threads):
    fastopt.set_num_threads(n)
    expected = n if fastopt.OPENMP else 1
    assert fastopt.get_num_threads() == expected
    assert fastopt.config()["threads"] == expected


@pytest.mark.parametrize("bad", [0, -1])
def test_set_num_threads_refuses_nonsense(bad, restore_threads):
    fastopt.set_num_threads(2)
    before = fastopt.get_num_threads()
    with pytest.raises((ValueError, TypeError)):
        fastopt.set_num_threads(bad)
    assert fastopt.get_num_threads() == before == (2 if fastopt.OPENMP else 1)


@pytest.mark.parametrize("environ,cores,expected", [
    ({}, 8, 0),                                                  # one process: OpenMP's count
    ({"LOCAL_WORLD_SIZE": "1"}, 8, 0),
    ({"LOCAL_WORLD_SIZE": "2"}, 8, 4),                           # torchrun, 2 ranks
    ({"LOCAL_WORLD_SIZE": "3"}, 8, 2),                           # rounded down
    ({"LOCAL_WORLD_SIZE": "8"}, 2, 1),                           # at least one each
    ({"OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, 16, 4),                # Open MPI
    ({"MPI_LOCALNRANKS": "2"}, 6, 3),                            # MPICH, Intel MPI
    ({"SLURM_NTASKS_PER_NODE": "2"}, 4, 2),
    ({"LOCAL_WORLD_SIZE": "two"}, 8, 0),                         # not a count: ignored
    ({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "3"}, 8, 0),   # the environment's count
    ({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": " "}, 8, 4),
])
def test_default_threads_is_a_ranks_share_of_the_cores(environ, cores, expected):
    cap, why = fastopt.threads.default_threads(environ, cores)
    assert cap == expected, why
    if expected:
        assert f"share {cores} cores: {expected} each" in why


def test_default_cap_limits_the_count_until_set_num_threads(restore_threads):
    from fastopt._kernels import kernels

    before = kernels.get_default_cap()
    try:
        kernels.set_default_cap(1)
        assert fastopt.get_num_threads() == 1
        assert fastopt.config()["threads"] == 1
        fastopt.set_num_threads(2)  # asked for: the cap no longer applies
        assert kernels.get_default_cap() == 0
        assert fastopt.get_num_threads() == (2 if fastopt.OPENMP else 1)
    finally:
        kernels.set_default_cap(before)


def test_config_and_show_config(capsys):
    cfg = fastopt.config()
    assert isinstance(cfg, dict)
    assert cfg["openmp"] in (True, False)
    assert cfg["threads"] == fastopt.get_num_threads() >= 1
    assert fastopt.__version__ in {str(v) for v in cfg.values()}
    fastopt.show_config()
    out = capsys.readouterr().out
    assert fastopt.__version__ in out and "openmp" in out


def _grads_cache(shapes, dtype, steps):
    stream = GradStream(shapes, dtype, seed=3)
    return [stream(t) for t in range(1, steps + 1)]


@pytest.fixture(scope="module")
def big_grads():
    return {dt: _grads_cache([BIG], dt, STEPS) for dt in (np.float32, np.float64)}


MULTI = MULTI_SHAPES + [(1_100_003,)]


@pytest.fixture(scope="module")
def multi_grads():
    return {dt: _grads_cache(MULTI, dt, STEPS) for dt in (np.float32, np.float64)}


def _run(config, shapes, dtype, grads, threads):
    fastopt.set_num_threads(threads)
    assert fastopt.get_num_threads() == threads
    params = Model([(shapes, {})], dtype, seed=9).fresh()[1]
    opt = config.make(fastopt, params)
    for t, g in enumerate(grads, start=1):
        opt.step(given(config.name, g, t))
    return params, opt.state_dict()


def _check(config, shapes, dtype, grads):
    shapes = shapes_for(config, shapes)
    grads = [[g.reshape(shape) for g, shape in zip(step, shapes)] for step in grads]
    p1, sd1 = _run(config, shapes, dtype, grads, 1)
    p2, sd2 = _run(config, shapes, dtype, grads, 2)
    assert_arrays_equal(p2, p1, "params, 2 threads vs 1")
    assert_state_dicts_equal(sd2, sd1, "state, 2 threads vs 1")
    # The run changed the parameters (comparing two no-ops would prove nothing).
    p0 = Model([(shapes, {})], dtype, seed=9).fresh()[1]
    assert not np.array_equal(p1[-1], p0[-1])


@requires_openmp
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_one_big_tensor_bitwise_identical_1_vs_2_threads(config, dtype, big_grads,
                                                         restore_threads):
    _check(config, [BIG], dtype, big_grads[dtype])


@requires_openmp
@pytest.mark.parametrize("config", PER_CLASS, ids=PER_CLASS_IDS)
def test_multi_tensor_bitwise_identical_1_vs_2_threads(config, dtype, multi_grads,
                                                       restore_threads):
    _check(config, MULTI, dtype, multi_grads[dtype])


def test_threadpoolctl_sees_and_limits_fastopt(restore_threads):
    """DESIGN.md: threadpoolctl must be able to see and limit fastopt's OpenMP."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not fastopt.config()["openmp"]:
        pytest.skip("a serial build (no OpenMP) has no thread pool to limit")
    fastopt.set_num_threads(2)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastopt.get_num_threads() == 1
    assert fastopt.get_num_threads() == 2
