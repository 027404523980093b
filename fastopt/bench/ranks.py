"""Benchmark cases run as several processes on this host, as ``torchrun`` would start them.

:func:`launch` starts ``world_size`` fresh interpreters (``python -m fastopt.bench.ranks``),
each with torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1``) plus the caller's additions, set before
fastopt is imported (its default thread count is read then). Each rank joins a gloo process
group over a rendezvous store that the caller holds on 127.0.0.1, calls the named case of
:mod:`fastopt.bench.distributed`, and rank 0 writes the result as JSON. A rank that fails or
outlives the time limit ends the run: every rank is killed and the error says which failed and
how (the tail of its stderr).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def launch(world_size: int, case: str, args: dict[str, Any], env: dict[str, str] | None = None,
           timeout: float = 900.0) -> Any:
    """Run case ``case`` (a function of :mod:`fastopt.bench.distributed`) with keyword
    arguments ``args`` on ``world_size`` ranks; return rank 0's result."""
    import torch.distributed as dist

    import fastopt

    store = dist.TCPStore(HOST, 0, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=timeout))
    base = dict(os.environ)
    # The fastopt this process runs, wherever the caller's directory is (python -m would
    # otherwise prefer a source tree in it, which holds no compiled kernels).
    base["PYTHONPATH"] = os.pathsep.join([str(Path(fastopt.__file__).parents[1]),
                                          base.get("PYTHONPATH", "")])
    if os.path.exists("/sys/class/net/lo"):
        base.setdefault("GLOO_SOCKET_IFNAME", "lo")
    base.update(MASTER_ADDR=HOST, MASTER_PORT=str(store.port), WORLD_SIZE=str(world_size),
                LOCAL_WORLD_SIZE=str(world_size), GROUP_RANK="0")
    with tempfile.TemporaryDirectory(prefix="fastopt-bench-") as workdir:
        result = os.path.join(workdir, "result.json")
        procs, logs = [], []
        try:
            for rank in range(world_size):
                rank_env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank), **(env or {})}
                log = open(os.path.join(workdir, f"rank{rank}.err"), "w+")  # noqa: SIM115
                logs.append(log)
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "fastopt.bench.ranks", case, json.dumps(args), result,
                     str(timeout)],
                    env=rank_env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=log))
            _wait(procs, logs, case, time.monotonic() + timeout)
            with open(result) as f:
                return json.load(f)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
            for log in logs:
                log.close()
            del store


def _wait(procs: list[subprocess.Popen], logs: list[Any], case: str, deadline: float) -> None:
    while True:
        codes = [p.poll() for p in procs]
        if all(code == 0 for code in codes):
            return
        failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed or time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            parts = []
            for rank in failed or range(len(procs)):
                logs[rank].flush()
                logs[rank].seek(0)
                tail = logs[rank].read()[-3000:]
                parts.append(f"--- rank {rank} (exit code {procs[rank].poll()}):\n{tail}")
            why = "failed" if failed else "ran out of time"
            raise RuntimeError(f"benchmark case {case!r} {why}\n" + "\n".join(parts))
        time.sleep(0.05)


def _main(case: str, args: str, result: str, timeout: str) -> None:
    import torch.distributed as dist

    from . import distributed

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    limit = datetime.timedelta(seconds=float(timeout))
    store = dist.TCPStore(HOST, int(os.environ["MASTER_PORT"]), is_master=False, timeout=limit)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=limit)
    try:
        out = getattr(distributed, case)(**json.loads(args))
        if rank == 0:
            with open(result + ".partial", "w") as f:
                json.dump(out, f)
            os.replace(result + ".partial", result)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _main(*sys.argv[1:])
