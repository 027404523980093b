"""fastopt's threads: how many, and whether this build has OpenMP at all.

The count is OpenMP's: by default the number of cores this process may run on, or
``OMP_NUM_THREADS`` when set; :func:`set_num_threads` changes it for the calling thread
(threadpoolctl can limit it too). Results are identical whatever the count: every kernel is
element-wise, and each element is computed by the same instructions whichever thread runs it.

Several processes per machine are the normal case at scale (DDP and FSDP ranks, one per
accelerator or per socket, with data-loader workers beside them), and each starting a team
of every core oversubscribes the machine: a step then waits for threads the scheduler has
not run (a Megatron CPU-offload report measured 1227 s instead of 15.5 s per optimizer step,
8 ranks on 2 cores). So at import, unless ``OMP_NUM_THREADS`` is set, a process that a
launcher says is one of several on this machine (:data:`LOCAL_SIZE_VARIABLES`) uses at most
its share of the cores it may run on (``os.sched_getaffinity``): ``cores // local ranks``, at
least one. Ranks that a launcher pinned to cores of their own should say how many threads
they want (``OMP_NUM_THREADS`` or :func:`set_num_threads`), which is always obeyed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._kernels import kernels

OPENMP: bool = kernels.OPENMP

# How launchers say how many processes of the job run on this machine: torchrun (and
# torch.distributed.elastic), Open MPI, MPICH and Intel MPI, Slurm.
LOCAL_SIZE_VARIABLES = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                        "SLURM_NTASKS_PER_NODE")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def default_threads(environ: Mapping[str, str] | None = None,
                    cores: int | None = None) -> tuple[int, str]:
    """The most threads a step uses by default, and why: 0 (no cap: OpenMP's own count
    stands) where ``OMP_NUM_THREADS`` is set or no launcher says this process shares the
    machine; else this process's share of ``cores`` (default: :func:`usable_cores`)."""
    environ = os.environ if environ is None else environ
    if environ.get("OMP_NUM_THREADS", "").strip():
        return 0, f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS'].strip()}"
    for name in LOCAL_SIZE_VARIABLES:
        try:
            local = int(environ.get(name, ""))
        except ValueError:
            continue
        if local > 1:
            cores = usable_cores() if cores is None else cores
            share = max(1, cores // local)
            return share, f"{name}={local} processes share {cores} cores: {share} each"
    return 0, "OpenMP's default"


DEFAULT_CAP, DEFAULT_REASON = default_threads()
kernels.set_default_cap(DEFAULT_CAP)


def get_num_threads() -> int:
    """Threads the next parallel step may use (1 in a build without OpenMP)."""
    return kernels.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads (``n >= 1``) for the following steps of this thread (the
    default share of several processes on one machine no longer applies)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a whole number >= 1, got {n!r}")
    kernels.set_num_threads(n)


def policy() -> str:
    """Where the thread count comes from now."""
    if kernels.get_default_cap() == 0 and DEFAULT_CAP:
        return "set_num_threads"
    return DEFAULT_REASON
