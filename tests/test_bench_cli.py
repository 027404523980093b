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
         "--sizes", "1000", "50000", "--rounds", "1", "--budget", "0.002", "--json", str(out)],
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
