"""The benchmark CLI runs, reports every column, and its numbers hang together."""

import json
import subprocess
import sys

import pytest

from fastopt import bench


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
        reads, writes = bench.ACCESS[r["optimizer"]]
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
    from fastopt import bench_torch

    proc, payload = _quick(tmp_path, "--threads", "1")
    assert "torch training Adam" in proc.stderr
    shape = bench_torch.QUICK
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
        assert set(t["torch_s"]) == set(t["speedup"]) == set(bench_torch.TORCH_PATHS)
        assert all(v > 0 for v in [*t["torch_s"].values(), *t["speedup"].values()])


def test_bench_cli_no_torch_model(tmp_path):
    proc, payload = _quick(tmp_path, "--no-torch-model")
    assert "torch training" not in proc.stdout + proc.stderr
    assert payload["torch_model"] == []
    assert [r["optimizer"] for r in payload["results"]] == ["Adam", "SGD"]


def test_torch_model_counts_parameters_and_marks_a_missing_path():
    pytest.importorskip("torch")
    from fastopt import bench_torch

    shape = bench_torch.ModelShape(layers=3, width=8, batch=2)
    model = bench_torch.build_model(shape)
    tensors = list(model.parameters())
    assert len(tensors) == shape.tensors
    assert sum(t.numel() for t in tensors) == shape.parameters
    # RMSprop has no fused CPU kernel: its column says so instead of failing the run.
    results = bench_torch.run_torch_model("RMSprop", shape, rounds=1, budget=0.001)
    assert [r.case for r in results] == list(bench_torch.CASES)
    for r in results:
        assert r.torch_s["fused"] is None and r.speedup["fused"] is None
        assert r.torch_s["default"] > 0 and r.torch_s["foreach"] > 0
    cells = bench_torch.format_torch_table(results).splitlines()[-1].split()
    assert cells[:2] == ["RMSprop", "training"] and cells[-1] == "-" and cells.count("-") == 2


def test_every_optimizer_has_an_access_pattern():
    import fastopt

    exported = {name for name in dir(fastopt) if isinstance(getattr(fastopt, name), type)
                and issubclass(getattr(fastopt, name), fastopt.Optimizer)} - {"Optimizer"}
    assert exported == set(bench.ACCESS)


def test_max_rel_deviation_detects_a_difference(monkeypatch):
    import numpy as np

    param = np.linspace(-1, 1, 1000)
    grads = [np.full(1000, 0.1)] * 3
    assert bench.max_rel_deviation("Adam", param, grads) == 0.0
    original = bench.reference.Adam

    def skewed(params, **kw):
        kw["lr"] = kw.get("lr", 1e-3) * 1.01
        return original(params, **kw)

    monkeypatch.setattr(bench.reference, "Adam", skewed)
    assert bench.max_rel_deviation("Adam", param, grads) > 1e-5
