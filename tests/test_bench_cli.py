"""The benchmark CLI runs, reports every column, and its numbers hang together."""

import importlib.util
import json
import subprocess
import sys

import pytest

from fastopt.bench import cases, optimizers


def test_bench_cli_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastopt", "bench", "--optimizers", "Adam", "SGD",
         "--sizes", "1000", "50000", "--rounds", "1", "--budget", "0.002", "--no-torch-model",
         "--json", str(out)],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert "[4/4] SGD float32 50,000" in proc.stderr  # progress goes to stderr
    assert "roofline" in proc.stdout and "vs numpy" in proc.stdout
    payload = json.loads(out.read_text())
    assert payload["config"]["fastopt"]
    results = payload["results"]
    assert [(r["optimizer"], r["size"]) for r in results] == [
        ("Adam", 1000), ("Adam", 50000), ("SGD", 1000), ("SGD", 50000)]
    for r in results:
        assert r["max_rel_deviation"] == 0.0  # the kernels are bitwise equal to the reference
        assert r["fastopt_s"] > 0 and r["numpy_s"] > 0 and r["roofline_s"] > 0
        reads, writes = optimizers.ACCESS[r["optimizer"]]
        assert r["gb_per_s"] == pytest.approx(r["gelem_per_s"] * 4 * (reads + writes))


def _quick(tmp_path, *extra):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastopt", "bench", "--quick", "--optimizers", "Adam", "SGD",
         "--sizes", "1000", "--no-model", "--budget", "0.002", "--json", str(out), *extra],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    return proc, json.loads(out.read_text())


def test_bench_cli_torch_model(tmp_path):
    torch = pytest.importorskip("torch")
    from fastopt.bench import torch_training

    proc, payload = _quick(tmp_path, "--threads", "1")
    assert "torch training Adam" in proc.stderr
    shape = torch_training.QUICK
    assert f"torch training: {shape.layers} Linear layers" in proc.stdout
    assert "vs default  vs foreach  vs fused" in proc.stdout
    assert payload["config"]["threads"] == 1
    trainings = payload["torch_model"]
    assert [(t["optimizer"], t["case"]) for t in trainings] == [
        ("Adam", "step"), ("Adam", "training"), ("SGD", "step"), ("SGD", "training")]
    for t in trainings:
        assert (t["layers"], t["tensors"], t["parameters"], t["batch"]) == (
            shape.layers, shape.tensors, shape.parameters, shape.batch)
        assert (t["torch_version"], t["torch_threads"]) == (torch.__version__, 1)  # --threads
        assert t["fastopt_s"] > 0
        # Adam and SGD have all three torch paths on the CPU, fused included.
        assert set(t["torch_s"]) == set(t["speedup"]) == set(torch_training.TORCH_PATHS)
        assert all(v > 0 for v in [*t["torch_s"].values(), *t["speedup"].values()])


def test_bench_cli_no_torch_model(tmp_path):
    proc, payload = _quick(tmp_path, "--no-torch-model")
    assert "torch training" not in proc.stdout + proc.stderr
    assert payload["torch_model"] == []
    assert [r["optimizer"] for r in payload["results"]] == ["Adam", "SGD"]


def test_torch_model_counts_parameters_and_marks_a_missing_path():
    pytest.importorskip("torch")
    from fastopt.bench import report, torch_training

    shape = torch_training.ModelShape(layers=3, width=8, batch=2)
    model = torch_training.build_model(shape)
    tensors = list(model.parameters())
    assert len(tensors) == shape.tensors
    assert sum(t.numel() for t in tensors) == shape.parameters
    # RMSprop has no fused CPU kernel: its column says so instead of failing the run.
    results = torch_training.run_torch_model("RMSprop", shape, rounds=1, budget=0.001)
    assert [r.case for r in results] == list(torch_training.CASES)
    for r in results:
        assert r.torch_s["fused"] is None and r.speedup["fused"] is None
        assert r.torch_s["default"] > 0 and r.torch_s["foreach"] > 0
    cells = report.format_torch_table(results).splitlines()[4].split()
    # the fused time and the ratio against it; the doubt column may hold codes or '-'
    assert cells[:2] == ["RMSprop", "training"] and cells[-2] == "-" and cells[:-1].count("-") == 2


def test_every_optimizer_has_an_access_pattern():
    import fastopt

    exported = {name for name in dir(fastopt) if isinstance(getattr(fastopt, name), type)
                and issubclass(getattr(fastopt, name), fastopt.Optimizer)} - {"Optimizer"}
    assert exported == set(optimizers.ACCESS)


def test_max_rel_deviation_detects_a_difference(monkeypatch):
    import numpy as np

    param = np.linspace(-1, 1, 1000)
    grads = [np.full(1000, 0.1)] * 3
    assert cases.max_rel_deviation("Adam", param, grads) == 0.0
    original = cases.reference.Adam

    def skewed(params, **kw):
        kw["lr"] = kw.get("lr", 1e-3) * 1.01
        return original(params, **kw)

    monkeypatch.setattr(cases.reference, "Adam", skewed)
    assert cases.max_rel_deviation("Adam", param, grads) > 1e-5


def test_every_rule_is_benchmarked_with_its_bench_options():
    from fastopt.bench.cli import build_parser
    from fastopt.rules import RULES

    args = build_parser().parse_args([])
    assert args.optimizers == [*RULES, *optimizers.OUTSIDE]
    for name, rule in RULES.items():
        assert optimizers.OPTIONS[name] == dict(rule.bench)
    # SGD runs with momentum, so its momentum buffer is read and written too.
    assert optimizers.OPTIONS["SGD"]["momentum"] and optimizers.ACCESS["SGD"] == (3, 2)
    assert optimizers.ACCESS["Adam"] == (4, 3)


def test_a_rule_torch_lacks_shows_dashes_in_the_torch_columns(monkeypatch):
    import dataclasses

    import numpy as np

    from fastopt.bench import report
    from fastopt.rules import RULES

    monkeypatch.setitem(RULES, "Adam", dataclasses.replace(RULES["Adam"], torch_name=None))
    result = cases.run_case("Adam", np.dtype(np.float32), 1000, rounds=1, budget=0.001)
    assert result.torch_s is result.torch_path is result.speedup_torch is None
    assert result.max_rel_deviation == 0.0 and result.fastopt_s > 0
    cells = report.format_table([result]).splitlines()[2].split()
    assert cells[-4:-2] == ["-", "-"]  # vs torch, torch path
    if importlib.util.find_spec("torch") is None:
        return
    from fastopt.bench import torch_training

    shape = torch_training.ModelShape(layers=2, width=8, batch=2)
    for r in torch_training.run_torch_model("Adam", shape, rounds=1, budget=0.001):
        assert r.fastopt_s > 0
        assert set(r.torch_s.values()) == set(r.speedup.values()) == {None}
    cells = report.format_torch_table([r]).splitlines()[3].split()
    assert cells[-7:-1] == ["-"] * 6


def test_a_rule_of_matrices_is_benchmarked_over_a_wide_matrix_and_one_of_rows_over_a_table():
    import numpy as np

    assert optimizers.case_shape("Adam", 10**6) == (10**6,)
    assert optimizers.case_shape("Muon", 10**6) == (32, 31250)  # the largest divisor <= 32
    assert optimizers.case_shape("Muon", 1000) == (25, 40)
    assert optimizers.case_shape("Muon", 1009) == (1, 1009)  # a prime: one row
    # a rule of row-sparse gradients: an embedding table, rows of at most 64 elements
    assert optimizers.case_shape("SparseAdam", 10**7) == (156250, 64)
    assert optimizers.case_shape("SparseAdam", 1000) == (20, 50)
    result = cases.run_case("Muon", np.dtype(np.float32), 1000, rounds=1, budget=0.001)
    assert result.max_rel_deviation == 0.0 and result.fastopt_s > 0 and result.size == 1000
    if importlib.util.find_spec("torch") is not None:
        assert result.torch_path == "default"  # torch's Muon has no foreach or fused path


def test_the_model_shaped_and_torch_steps_leave_a_rule_of_matrices_out(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fastopt", "bench", "--optimizers", "Muon", "--sizes", "1000",
         "--rounds", "1", "--budget", "0.002", "--dtypes", "float32"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert "Muon" in proc.stdout and "model-shaped" not in proc.stderr
    assert "torch training" not in proc.stderr


@pytest.mark.parametrize("name", ["AdamWScheduleFree", "SGDScheduleFree"])
def test_the_model_shaped_and_torch_steps_run_a_rule_with_modes_in_train_mode(name):
    """Schedule-free rules step in train mode only: the model-shaped and torch training cases
    (the default benchmark runs both) put them there, as a single case does."""
    from fastopt.bench.model_shaped import run_model

    result = run_model(name, rounds=1, budget=0.001)
    assert result.fastopt_s > 0 and result.flat_s > 0 and result.clipped_s > 0
    if importlib.util.find_spec("torch") is not None:
        from fastopt.bench.torch_training import QUICK, run_torch_model

        rows = run_torch_model(name, QUICK, rounds=1, budget=0.001)
        assert [r.case for r in rows] == ["step", "training"] and all(r.fastopt_s > 0 for r in rows)


def test_the_model_shaped_and_torch_steps_leave_a_rule_of_sparse_gradients_out(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fastopt", "bench", "--optimizers", "SparseAdam", "Adam",
         "--sizes", "1000", "--rounds", "1", "--budget", "0.002", "--dtypes", "float32"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert "model-shaped Adam" in proc.stderr and "model-shaped SparseAdam" not in proc.stderr
    assert "torch training SparseAdam" not in proc.stderr


@pytest.mark.parametrize("reads_first", [0, 1, 2, 4, 6])
def test_the_probe_reads_the_first_arrays_in_a_pass_of_their_own(reads_first):
    import numpy as np

    from fastopt._kernels import kernels

    n = 3 * 4096 + 5  # pieces of a table, and a tail that is not a whole lane block
    arrays = [np.full(n, float(k + 1), np.float32) for k in range(6)]
    total = kernels.probe(arrays, reads_first)
    # the reduction pass read the arrays before the read-write pass changed them
    assert total == n * sum(range(1, reads_first + 1))
    assert np.all(arrays[0] == 21.0) and np.all(arrays[1] == 2.0)


def test_the_probe_refuses_a_reduction_over_more_arrays_than_it_has():
    import numpy as np

    from fastopt._kernels import kernels

    arrays = [np.ones(100, np.float32) for _ in range(3)]
    with pytest.raises(ValueError, match="reads_first"):
        kernels.probe(arrays, 4)
    assert all(np.all(a == 1.0) for a in arrays)


@pytest.mark.parametrize("name, transfers", [("LAMB", 7 + 4), ("LARS", 5 + 2)])
def test_a_rule_with_a_reduction_pass_counts_its_reads_twice(name, transfers):
    import numpy as np

    from fastopt.rules import RULES

    reads, writes = optimizers.ACCESS[name]
    assert reads + writes + RULES[name].norm_reads == transfers
    result = cases.run_case(name, np.dtype(np.float32), 1000, rounds=1, budget=0.001)
    assert result.gb_per_s == pytest.approx(result.gelem_per_s * 4 * transfers)
    assert result.max_rel_deviation == 0.0
