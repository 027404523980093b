"""The benchmark's judgement of its own figures (fastopt.bench.trust, cases.measure) and the
plain loops it sets beside fastopt's steps (fastopt.bench.plain). Timings here are made up:
the analysis is fed them; no test measures or asserts a time."""

import numpy as np
import pytest

import fastopt
from fastopt._kernels import kernels
from fastopt.bench import cases, plain, report, timing, trust
from fastopt.bench.optimizers import ACCESS, OPTIONS
from fastopt.rules import RULES

STEADY = [1.00e-5, 1.02e-5, 0.99e-5, 1.01e-5, 1.00e-5]
NOISY = [1.0e-5, 4.0e-5, 1.1e-5, 9.0e-5, 1.0e-5]  # a neighbour took the core twice


def test_spread_is_range_over_median():
    assert trust.spread([2.0]) == 0.0
    assert trust.spread([1.0, 1.0, 1.0]) == 0.0
    assert trust.spread([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert trust.spread(STEADY) < 0.05 < trust.SPREAD_LIMIT < trust.spread(NOISY)


def test_doubts_marks_disagreeing_rounds_an_impossible_roofline_and_a_busy_machine():
    assert trust.doubts({"fastopt": STEADY, "roofline": STEADY}, 0.95, 0.0) == ""
    # any contender's rounds disagreeing puts the case's ratios in doubt
    assert trust.doubts({"fastopt": STEADY, "torch": NOISY}, 0.95, 0.0) == "S"
    # the figures the issue saw on a busy machine: 8019% and 9324% of roofline
    assert trust.doubts({"fastopt": STEADY}, 80.19) == "R"
    assert trust.doubts({"fastopt": STEADY}, 1.05) == ""  # within the limit: run-to-run noise
    assert trust.doubts({"fastopt": STEADY}, None, 1.5) == "B"
    assert trust.doubts({"fastopt": NOISY}, 93.24, 1.5) == "RSB"
    assert trust.doubts({"fastopt": NOISY}, None, None) == "S"  # load unknown: no B


def test_legend_explains_exactly_the_codes_used():
    text = trust.legend(["", "RS", "S"])
    assert "R:" in text and "S:" in text and "B:" not in text
    assert trust.legend(["", ""]) == ""


def test_others_busy_subtracts_this_process():
    before = trust.Snapshot(wall=10.0, own_cpu=5.0, machine_cpu=100.0, load=1.0)
    after = trust.Snapshot(wall=12.0, own_cpu=7.0, machine_cpu=104.0, load=3.0)
    assert trust.others_busy(before, after) == pytest.approx(1.0)  # (4 − 2) s over 2 s
    alone = trust.Snapshot(wall=12.0, own_cpu=7.0, machine_cpu=102.0, load=1.0)
    assert trust.others_busy(before, alone) == 0.0
    unknown = trust.Snapshot(wall=12.0, own_cpu=7.0, machine_cpu=None, load=None)
    assert trust.others_busy(before, unknown) is None
    assert "BUSY" in trust.machine_note(1.0, 3.0, 2)
    assert "quiet" in trust.machine_note(0.05, 0.1, 2)
    assert "unknown" in trust.machine_note(None, 3.0, 2)


def test_snapshot_reads_this_machine():
    before = trust.snapshot()
    sum(range(200_000))
    after = trust.snapshot()
    assert after.wall > before.wall and after.own_cpu >= before.own_cpu
    others = trust.others_busy(before, after)
    assert others is None or others >= 0.0


def _fake_rounds(monkeypatch, measurements):
    """timing.measure fed ``measurements`` (Times, one per call of run_rounds), the machine
    quiet; returns the list of calls made."""
    calls = []

    def run_rounds(contenders, rounds, budget):
        calls.append(1)
        return measurements[len(calls) - 1]

    monkeypatch.setattr(timing, "run_rounds", run_rounds)
    monkeypatch.setattr(timing, "others_busy", lambda before, after: 0.0)
    return calls


def test_a_case_in_doubt_is_measured_again_and_the_clean_measurement_kept(monkeypatch):
    noisy = {"fastopt": NOISY, "roofline": STEADY}
    clean = {"fastopt": STEADY, "roofline": [0.9 * t for t in STEADY]}
    calls = _fake_rounds(monkeypatch, [noisy, clean])
    times, others, codes, attempts = timing.measure({"fastopt": None, "roofline": None}, 5, 0.0,
                                                     roofline=("roofline", "fastopt"))
    assert (codes, attempts, len(calls), others) == ("", 2, 2, 0.0)
    assert times is clean


def test_a_case_that_stays_in_doubt_is_marked(monkeypatch):
    # the probe 80x faster than the step: the step was disturbed in every measurement
    impossible = {"fastopt": STEADY, "roofline": [t * 80 for t in STEADY]}
    worse = {"fastopt": NOISY, "roofline": [t * 80 for t in STEADY]}
    calls = _fake_rounds(monkeypatch, [worse, impossible, worse])
    times, _, codes, attempts = timing.measure({"fastopt": None, "roofline": None}, 5, 0.0,
                                                     roofline=("roofline", "fastopt"))
    assert attempts == len(calls) == trust.MEASURE_TRIES
    assert codes == "R" and times is impossible  # the least doubtful of the three


def _result(**changes):
    fields = dict(
        optimizer="Adam", dtype="float32", size=100_000, fastopt_s=1e-5, numpy_s=5e-5,
        torch_s=2e-5, torch_path="fused", roofline_s=8e-4, plain_s=9e-6, plain_threads=2,
        gelem_per_s=10.0, gb_per_s=280.0, roofline_fraction=80.19, speedup_numpy=5.0,
        speedup_torch=2.0, plain_ratio=1.11, spread=1.9, others_cores=1.5, doubts="RSB",
        attempts=3, max_rel_deviation=0.0)
    fields.update(changes)
    return cases.Result(**fields)


def test_the_table_marks_a_doubtful_row_and_explains_the_marks():
    lines = report.format_table([_result(), _result(size=1000, doubts="", spread=0.02,
                                                    roofline_fraction=0.5)]).splitlines()
    head = lines[0].split()
    doubtful, clean = lines[2].split(), lines[3].split()
    assert head[-1] == "doubt" and doubtful[-1] == "RSB" and clean[-1] == "-"
    assert "8019%" in doubtful and "190%" in doubtful and "1.11" in doubtful
    legend = "\n".join(lines[4:])
    assert all(f"{code}:" in legend for code in "RSB")
    # a table with no doubt carries no legend
    assert len(report.format_table([_result(doubts="")]).splitlines()) == 3


# ---------------------------------------------------------------- plain loops

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(plain.LOOPS))
def test_a_plain_loop_computes_its_rule(name, dtype):
    """One plain step from fresh state is fastopt's first step (within float rounding: the
    hand-written loop may round in another order)."""
    rng = np.random.default_rng(3)
    n = 1000
    param = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    reads = ACCESS[name][0]
    assert kernels.PLAIN_ARRAYS[plain.LOOPS[name][0]] == reads  # reads the step's arrays
    arrays = [param.copy(), grad.copy(), *(np.zeros(n, dtype) for _ in range(reads - 2))]
    step = plain.plain_step(name, arrays, threads=2)
    assert step is not None
    step()
    mine = param.copy()
    getattr(fastopt, name)([mine], **OPTIONS[name]).step([grad])
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(arrays[0], mine, rtol=rtol, atol=rtol)
    assert not np.array_equal(arrays[0], param)


def test_a_plain_loop_serves_only_the_options_it_was_written_for():
    assert plain.scalars("SGD") is not None
    assert plain.scalars("SGD", options={"lr": 0.01, "momentum": 0.0}) is None  # no buffer
    assert plain.scalars("SGD", options={"lr": 0.01, "momentum": 0.9, "nesterov": True}) is None
    assert plain.scalars("Adam", options={"amsgrad": True}) is None
    assert plain.scalars("Adam", options={"weight_decay": 0.1}) is None  # L2 in the loop
    assert plain.scalars("AdamW") is not None  # decoupled decay it has
    assert plain.scalars("Rprop") is None  # no plain loop at all
    assert set(plain.LOOPS) >= {"SGD", "Adam", "AdamW", "Adagrad"}


def test_plain_loop_refuses_bad_arrays_unchanged():
    p, g, m, v = (np.ones(8, np.float32) for _ in range(4))
    args = (0.1, 0.5, 0.9, 0.99, 1e-8, 1.0)
    with pytest.raises(ValueError, match="no plain loop"):
        kernels.plain_loop("nope", [p, g, m, v], args, 1)
    with pytest.raises(ValueError, match="4 arrays and 6 scalars"):
        kernels.plain_loop("adam", [p, g, m], args, 1)
    with pytest.raises(ValueError, match="one dtype"):
        kernels.plain_loop("adam", [p, g, m, v.astype(np.float64)], args, 1)
    with pytest.raises(ValueError, match="one dtype and length"):
        kernels.plain_loop("adam", [p, g, m, np.ones(9, np.float32)], args, 1)
    with pytest.raises(ValueError, match="float32 or float64"):
        kernels.plain_loop("adam", [p.astype(np.int32), g, m, v], args, 1)
    with pytest.raises(ValueError, match="threads"):
        kernels.plain_loop("adam", [p, g, m, v], args, 0)
    assert all((a == 1).all() for a in (p, g, m, v))
