"""The benchmark's cases of the rules outside the engine (fastopt.bench.outside): Adafactor
over a matrix, against the reference; L-BFGS from a full history, against torch, each timed
step the same step."""

import importlib.util
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from fastopt.bench import outside, report

HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_the_matrix_is_the_most_nearly_square():
    assert outside.matrix_shape(1000) == (25, 40)
    assert outside.matrix_shape(10**6) == (1000, 1000)
    assert outside.matrix_shape(10**7) == (3125, 3200)
    assert outside.matrix_shape(1009) == (1, 1009)  # a prime: one row


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_adafactor_case(dtype):
    result = outside.outside_case("Adafactor", np.dtype(dtype), 1000, rounds=1, budget=0.001)
    assert result.max_rel_deviation < (1e-6 if dtype == np.float32 else 1e-14)
    assert result.fastopt_s > 0 and result.numpy_s > 0 and result.roofline_s > 0
    assert result.gb_per_s == pytest.approx(
        result.gelem_per_s * np.dtype(dtype).itemsize * outside.ADAFACTOR_TRANSFERS)
    assert result.plain_s is None and result.plain_ratio is None
    if HAS_TORCH:
        assert result.torch_path == "foreach" and result.speedup_torch > 0


def test_every_timed_lbfgs_step_is_the_same_step():
    contenders, transfers, path, deviation = outside.lbfgs_contenders(np.dtype(np.float64), 500)
    assert transfers == outside.lbfgs_transfers(10) == 96
    first = contenders["fastopt"]().copy()
    again = contenders["fastopt"]()
    np.testing.assert_array_equal(first, again)
    # the reference, from the same point and history: the same step (its dot products summed in
    # another order) every time
    reference = contenders["numpy"]().copy()
    np.testing.assert_array_equal(reference, contenders["numpy"]())
    np.testing.assert_allclose(reference, first, rtol=0, atol=1e-12 * np.abs(first).max())
    if not HAS_TORCH:
        assert path is deviation is None and "torch" not in contenders
        return
    theirs = contenders["torch"]().detach().numpy().copy()
    np.testing.assert_array_equal(theirs, contenders["torch"]().detach().numpy())
    # from the same history, the same step as torch's (float64)
    np.testing.assert_allclose(first, theirs, rtol=0, atol=1e-12 * np.abs(theirs).max())
    assert path == "default" and deviation < 1e-12


def test_lbfgs_case_times_the_reference_too():
    result = outside.outside_case("LBFGS", np.dtype(np.float32), 1000, rounds=1, budget=0.001)
    assert result.numpy_s > 0 and result.speedup_numpy > 0
    assert result.fastopt_s > 0 and result.roofline_s > 0
    header, _, row = report.format_table([result]).splitlines()
    cells = dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", row.strip())))
    assert cells["optimizer"] == "LBFGS"
    assert cells["vs numpy"] == f"{result.speedup_numpy:.1f}x"
    if HAS_TORCH:
        assert result.max_rel_deviation < 1e-5 and result.speedup_torch > 0
    else:
        assert result.max_rel_deviation is None and cells["max rel dev"] == "-"


def test_cli_runs_them_and_leaves_them_out_of_the_model_steps(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastopt", "bench", "--optimizers", "Adafactor", "LBFGS",
         "--sizes", "1000", "--rounds", "1", "--budget", "0.002", "--json", str(out)],
        capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "model-shaped" not in proc.stdout + proc.stderr
    assert "torch training" not in proc.stdout + proc.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["optimizer"] for r in results] == ["Adafactor", "LBFGS"]
    assert all(r["fastopt_s"] > 0 for r in results)
