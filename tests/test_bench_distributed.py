"""``fastopt bench --distributed``: each case runs on its ranks and reports every contender;
the tables show them; a rank that fails ends the run with its traceback.

The cases run here on a model of one small layer and one round, so that they take seconds:
what is checked is that every engine, implementation and case is timed (and refused only where
torch has no such kernel), not the times.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402

import fastopt  # noqa: E402
from fastopt.bench import cli, distributed, multi_rank, ranks  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available(),
                                reason="this torch is built without torch.distributed")
TINY = {"layers": 2, "width": 16, "batch": 4, "rounds": 1, "budget": 0.0}


def test_training_times_every_engine_and_contender():
    rows = ranks.launch(2, "training", {"engines": list(distributed.ENGINES),
                                        "optimizers": ["AdamW", "SGD"], **TINY},
                        env={"OMP_NUM_THREADS": "1"}, timeout=150)
    assert [(r["engine"], r["optimizer"]) for r in rows] == [
        (e, o) for e in distributed.ENGINES for o in ("AdamW", "SGD")]
    for r in rows:
        keys = set(r["seconds"])
        expected = {"step, fastopt", "training, fastopt", "step, torch", "training, torch"}
        if r["engine"] == "zero":  # ZeroOptimizer against fastopt unsharded over DDP too
            expected |= {"step, fastopt unsharded", "training, fastopt unsharded"}
        else:
            expected.add("training, fastopt in backward")
        # torch.optim has fused CPU kernels for both, but not fused SGD over DTensors
        if not (r["engine"] == "fsdp2" and r["optimizer"] == "SGD"):
            expected |= {"step, torch fused", "training, torch fused"}
        assert keys == expected, (r["engine"], r["optimizer"])
        assert all(s > 0 for s in r["seconds"].values())
        assert set(r["speedup"]) == keys - {"step, fastopt", "training, fastopt"}
        assert r["world_size"] == 2 and r["torch_threads"] == 1
        params = 2 * 16 * 17
        assert r["collective_bytes"] == distributed.collective_bytes(r["engine"], 4 * params, 2)
    table = multi_rank.format_training(rows)
    assert "fsdp2  SGD       step" in table and "collectives per step" in table


def test_shared_cores_and_in_backward_report_what_ran():
    default = ranks.launch(2, "shared_cores", {"size": 100_000, "steps": 3})
    full = ranks.launch(2, "shared_cores", {"size": 100_000, "steps": 3, "adaptive": False},
                        env={"OMP_NUM_THREADS": "2"})
    # a serial build reports where the count came from, and steps with one thread
    team = (lambda n: n) if fastopt.OPENMP else (lambda n: 1)
    assert default["threads"] == team(max(1, fastopt.threads.usable_cores() // 2))
    assert default["policy"].startswith("LOCAL_WORLD_SIZE=2 processes share")
    assert (full["threads"], full["policy"]) == (team(2), "OMP_NUM_THREADS=2")
    assert full["team"] == team(2)  # no fallback: the team asked for ran
    table = multi_rank.format_shared([("default", 100_000, default), ("full", 100_000, full)], 2)
    assert "default" in table and "full" in table
    rows = distributed.in_backward(["SGD"], **TINY)
    assert set(rows[0]["seconds"]) == {"after backward", "in backward"}
    assert "after / in" in multi_rank.format_in_backward(rows)


def test_a_failing_rank_ends_the_run_with_its_traceback():
    with pytest.raises(RuntimeError, match=r"(?s)benchmark case 'no_such_case' failed.*"
                                           r"--- rank \d.*AttributeError"):
        ranks.launch(2, "no_such_case", {}, timeout=60)


def test_cli_takes_distributed_and_ranks():
    args = cli.build_parser().parse_args(["--distributed", "--ranks", "3"])
    assert args.distributed and args.ranks == 3
