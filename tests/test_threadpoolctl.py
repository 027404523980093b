"""fastopt's OpenMP runtime as the ecosystem sees it: threadpoolctl, OMP_NUM_THREADS, set_num_threads.

Each check runs in a fresh interpreter that imports only NumPy, threadpoolctl and fastopt, so
the OpenMP runtime that appears when fastopt is imported is fastopt's own (torch, imported by
other tests, brings a libgomp of its own), and OMP_NUM_THREADS is read by a runtime that has
not started yet. What is observed is the team that actually ran a step's parallel region
(``kernels.get_last_team_size``), not only the thread-count setting.

In a wheel repaired by auditwheel or delvewheel the runtime is vendored under ``fastopt.libs``
(delocate: ``fastopt/.dylibs``): then threadpoolctl must find and limit that copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastopt

pytest.importorskip("threadpoolctl")

PROBE = r"""
import json, sys
import numpy as np
import threadpoolctl

def openmp_libs():
    return [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]

before = {i["filepath"] for i in openmp_libs()}
import fastopt
from fastopt._kernels import kernels

kernels.set_adaptive(False)  # the team asked for, not the contention fallback's choice
# Above the serial threshold and many pieces long, so the step opens a real parallel region.
p = np.zeros(1 << 20, np.float32)
g = np.ones_like(p)
opt = fastopt.SGD([p], lr=0.1)

def team():
    opt.step([g])
    return kernels.get_last_team_size()

out = {"threads": fastopt.get_num_threads(), "team": team()}
out["runtimes"] = [i for i in openmp_libs() if i["filepath"] not in before]
fastopt.set_num_threads(2)
out["team_set_2"] = team()
with threadpoolctl.threadpool_limits(limits=1):
    out["limited_threads"] = fastopt.get_num_threads()
    out["team_limited"] = team()
out["team_after_limit"] = team()
with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
    out["team_limited_openmp"] = team()
fastopt.set_num_threads(1)
out["team_set_1"] = team()
json.dump(out, sys.stdout)
"""


def observe(omp_num_threads: str | None = None, local_world_size: str | None = None) -> dict:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", *fastopt.threads.LOCAL_SIZE_VARIABLES):
        env.pop(name, None)
    if omp_num_threads is not None:
        env["OMP_NUM_THREADS"] = omp_num_threads
    if local_world_size is not None:
        env["LOCAL_WORLD_SIZE"] = local_world_size
    # The same fastopt as this process, whether installed or built in place.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(fastopt.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
        cwd=Path(fastopt.__file__).parents[1], timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def default():
    return observe()


def vendored_dirs() -> list[Path]:
    package = Path(fastopt.__file__).parent
    candidates = [package.parent / "fastopt.libs", package / ".dylibs"]
    return [d for d in candidates if d.is_dir()]


@pytest.mark.skipif(not fastopt.OPENMP, reason="a serial build has no OpenMP runtime")
def test_threadpool_info_lists_fastopts_runtime(default):
    assert len(default["runtimes"]) == 1, default["runtimes"]
    runtime = default["runtimes"][0]
    assert Path(runtime["filepath"]).is_file()
    assert runtime["num_threads"] == default["threads"]
    if vendored_dirs():
        # A repaired wheel: the runtime in use is the vendored copy, not a system library.
        assert any(Path(runtime["filepath"]).parent.samefile(d) for d in vendored_dirs()), (
            runtime, vendored_dirs())


@pytest.mark.skipif(not fastopt.OPENMP, reason="a serial build has no OpenMP runtime")
def test_threadpool_limits_makes_the_next_step_single_threaded(default):
    assert default["team"] == default["threads"]
    assert default["team_set_2"] == 2
    assert default["limited_threads"] == 1
    assert default["team_limited"] == 1
    assert default["team_after_limit"] == 2
    assert default["team_limited_openmp"] == 1
    assert default["team_set_1"] == 1


@pytest.mark.skipif(not fastopt.OPENMP, reason="a serial build has no OpenMP runtime")
@pytest.mark.parametrize("n", [1, 3])
def test_omp_num_threads_sets_the_team(n):
    seen = observe(str(n))
    assert seen["threads"] == n
    assert seen["team"] == n
    assert seen["team_set_2"] == 2  # set_num_threads overrides the environment


@pytest.mark.skipif(fastopt.OPENMP, reason="an OpenMP build")
def test_serial_build_runs_every_step_on_one_thread(default):
    assert default["runtimes"] == []
    for key in ("threads", "team", "team_set_2", "team_limited", "team_after_limit", "team_set_1"):
        assert default[key] == 1, key


@pytest.mark.skipif(not fastopt.OPENMP, reason="a serial build has no OpenMP runtime")
def test_ranks_sharing_the_machine_use_their_share_of_the_cores():
    """Two local ranks (torchrun's LOCAL_WORLD_SIZE): half the cores each, in the team that
    runs the step; OMP_NUM_THREADS and set_num_threads still decide when given."""
    cores = fastopt.threads.usable_cores()
    seen = observe(local_world_size="2")
    assert seen["threads"] == seen["team"] == max(1, cores // 2)
    assert seen["team_set_2"] == 2  # asked for: obeyed
    assert seen["team_set_1"] == 1
    assert observe(omp_num_threads="2", local_world_size="2")["team"] == 2
    assert observe(local_world_size="1")["team"] == observe()["team"]
