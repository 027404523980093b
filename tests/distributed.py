"""Run a function in several fresh processes, one per rank, as ``torchrun`` would on one host.

``run(world_size, fn, *args)`` starts ``world_size`` processes (multiprocessing's *spawn*: each
a fresh interpreter, nothing inherited but the environment and ``sys.path``), calls
``fn(*args)`` in each with the default process group initialised, and returns what each call
returned, in rank order::

    from distributed import run

    def train(steps):                     # module level: the ranks import it by name
        rank = torch.distributed.get_rank()
        ...
        return model.state_dict()

    per_rank = run(2, train, 10)          # [rank 0's result, rank 1's result]

Made to fail cleanly rather than hang:

- everything stays on this host: the rendezvous store is a ``TCPStore`` that the calling process
  holds on 127.0.0.1, on a port the system chose (bound to port 0, so no other process can take
  it between choosing and use); gloo is told to use the loopback interface;
- a rank that raises makes ``run`` raise :class:`DistributedError` whose message holds that rank's
  traceback; the other ranks are given ``grace`` seconds to finish or fail (one blocked in a
  collective with the dead rank never will), then killed, and where each was stuck (Python
  stacks, dumped by faulthandler) is added to the message; a rank that dies without a word (a
  signal, ``os._exit``) is reported with its exit code and whatever faulthandler wrote;
- ``timeout`` seconds after the start (ranks' start-up included) every rank still running is
  dumped and killed, and ``run`` raises; the process group's own timeout is set to the same, so
  collectives do not wait longer than the whole run may;
- the children are killed whatever happens in the caller (an interrupt included), and their
  files (results, errors, stack dumps: a temporary directory) are removed.

Each rank sees what ``torchrun`` sets: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, and ``OMP_NUM_THREADS=1`` unless the
caller's environment sets it; ``env`` adds or overrides variables for the ranks only. With
``backend=None`` no process group is made (and torch is not imported for it).

``fn`` and ``args`` must pickle (``fn`` defined at module level of an importable module, such as
a test module) and so must each result (tensors do); results travel through files, so they may
be large.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import multiprocessing.connection
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["DistributedError", "run"]

HOST = "127.0.0.1"


class DistributedError(AssertionError):
    """Some rank raised, died, or did not finish in time; the message says which and why.

    An AssertionError, so that pytest reports it as a test failure (with the message) rather
    than as an error of the test's machinery."""


def run(world_size: int, fn: Callable[..., Any], *args: Any, timeout: float = 120.0,
        backend: str | None = "gloo", env: dict[str, str] | None = None,
        grace: float = 3.0) -> list[Any]:
    """Call ``fn(*args)`` in ``world_size`` fresh processes (ranks 0 .. world_size - 1, one
    default process group of ``backend`` over them) and return their results in rank order.

    Raises :class:`DistributedError` when a rank raises (its traceback in the message), dies,
    or is still running ``timeout`` seconds after the start; every rank is dead by then.
    """
    if world_size < 1:
        raise ValueError(f"world_size: expected at least 1, got {world_size}")
    payload = pickle.dumps((fn, args))
    name = getattr(fn, "__qualname__", repr(fn))
    workdir = tempfile.mkdtemp(prefix="fastopt-ranks-")
    store = None
    port = 0
    if backend is not None:
        import datetime

        import torch.distributed as dist

        # The store lives here, on a port the system chose and this process keeps bound.
        store = dist.TCPStore(HOST, 0, is_master=True, wait_for_workers=False,
                              timeout=datetime.timedelta(seconds=timeout))
        port = store.port
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_rank_main, name=f"rank{rank}",
                         args=(rank, world_size, port, backend, timeout, payload, workdir,
                               dict(env or {})))
             for rank in range(world_size)]
    try:
        for p in procs:
            p.start()
        failed_at, alive = _wait(procs, time.monotonic() + timeout, grace)
        stuck = _dump_and_kill([procs[r] for r in alive], workdir)
        report = _report(procs, workdir, name, timeout, failed_at is None and bool(alive),
                         stuck)
        if report:
            raise DistributedError(report)
        results = []
        for rank in range(world_size):
            with open(_path(workdir, rank, "result"), "rb") as f:
                results.append(pickle.load(f))
        return results
    finally:
        for p in procs:  # whatever happened above (an interrupt included), no rank outlives us
            if p.is_alive():
                p.kill()
            if p.pid is not None:
                p.join(5)
        if store is not None:
            del store
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------------- the caller


def _wait(procs: list[Any], deadline: float, grace: float) -> tuple[float | None, set[int]]:
    """Wait until every rank has exited, or the deadline, or ``grace`` seconds after the first
    rank failed; return when that first failure was seen (None if none) and who is alive."""
    alive = set(range(len(procs)))
    failed_at = None
    while alive:
        limit = deadline if failed_at is None else min(deadline, failed_at + grace)
        left = limit - time.monotonic()
        if left <= 0:
            break
        multiprocessing.connection.wait([procs[r].sentinel for r in alive], timeout=left)
        for r in sorted(alive):
            if not procs[r].is_alive():
                procs[r].join()
                alive.discard(r)
                if procs[r].exitcode != 0 and failed_at is None:
                    failed_at = time.monotonic()
    return failed_at, alive


def _dump_and_kill(procs: list[Any], workdir: str) -> list[int]:
    """Have each process dump its Python stacks (faulthandler, on SIGUSR1) and kill it; return
    their ranks."""
    ranks = [int(p.name[len("rank"):]) for p in procs]
    if procs and hasattr(signal, "SIGUSR1"):
        for p in procs:
            with contextlib.suppress(OSError):
                os.kill(p.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not all(
                _read(_path(workdir, r, "stacks")).strip() for r in ranks):
            time.sleep(0.05)
        time.sleep(0.1)  # let the last lines of a dump land
    for p in procs:
        p.kill()
        p.join(5)
    return ranks


def _report(procs: list[Any], workdir: str, name: str, timeout: float, timed_out: bool,
            stuck: list[int]) -> str:
    """What went wrong, rank by rank; empty if nothing did."""
    parts = []
    for rank, p in enumerate(procs):
        error = _read(_path(workdir, rank, "error"))
        stacks = _read(_path(workdir, rank, "stacks")).strip()
        if rank in stuck:
            why = (f"still running after {timeout:g} s" if timed_out else
                   "killed: still running after another rank failed")
            parts.append(f"--- rank {rank}: {why}; where it was:\n{stacks or '(no stack dump)'}")
        elif error:
            parts.append(f"--- rank {rank} raised:\n{error.rstrip()}")
        elif p.exitcode != 0:
            how = (f"killed by signal {-p.exitcode}" if p.exitcode is not None and p.exitcode < 0
                   else f"exited with code {p.exitcode}")
            parts.append(f"--- rank {rank} {how} without a result"
                         + (f"; faulthandler wrote:\n{stacks}" if stacks else ""))
        elif not os.path.exists(_path(workdir, rank, "result")):
            parts.append(f"--- rank {rank} exited without writing a result")
    if not parts:
        return ""
    head = (f"{name} on {len(procs)} ranks timed out after {timeout:g} s" if timed_out
            else f"{name} on {len(procs)} ranks failed")
    return "\n".join([head, *parts])


def _path(workdir: str, rank: int, what: str) -> str:
    return os.path.join(workdir, f"rank{rank}.{what}")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


# ------------------------------------------------------------------------------- each rank


def _rank_main(rank: int, world_size: int, port: int, backend: str | None, timeout: float,
               payload: bytes, workdir: str, env: dict[str, str]) -> None:
    """A rank's whole life: its environment, the process group, ``fn(*args)``, its result or
    its traceback written to ``workdir``; then it exits at once (no interpreter shutdown that
    could hang on a library's threads)."""
    os.environ.update({
        "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world_size), "GROUP_RANK": "0", "MASTER_ADDR": HOST,
        "MASTER_PORT": str(port),
    })
    if "OMP_NUM_THREADS" not in os.environ and world_size > 1:
        os.environ["OMP_NUM_THREADS"] = "1"  # as torchrun: ranks share the cores
    if "GLOO_SOCKET_IFNAME" not in os.environ and os.path.exists("/sys/class/net/lo"):
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    os.environ.update(env)
    stacks = open(_path(workdir, rank, "stacks"), "w")  # noqa: SIM115 (open until exit)
    faulthandler.enable(stacks, all_threads=True)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, stacks, all_threads=True)
    code = 1
    dist = None
    try:
        fn, args = pickle.loads(payload)  # after the environment is set: imports see it
        if backend is not None:
            import datetime

            import torch.distributed as dist

            limit = datetime.timedelta(seconds=timeout)
            store = dist.TCPStore(HOST, port, is_master=False, timeout=limit)
            dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                    timeout=limit)
        result = fn(*args)
        partial = _path(workdir, rank, "partial")
        with open(partial, "wb") as f:
            pickle.dump(result, f)
        os.replace(partial, _path(workdir, rank, "result"))
        code = 0
    except BaseException:
        with open(_path(workdir, rank, "error"), "w") as f:
            f.write(traceback.format_exc())
    finally:
        if code == 0 and dist is not None and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
