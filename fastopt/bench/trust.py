"""Whether a figure of the benchmark can be trusted: the spread of its rounds, a roofline share
no step can reach, and how busy the machine was while it was measured.

The analysis (:func:`spread`, :func:`doubts`, :func:`others_busy`) is pure, so that tests feed
it noisy timings; :func:`snapshot` is the one reading of the machine. A case whose figures are
in doubt is measured again (:mod:`.cases`) and, if still in doubt, marked in the table with the
reasons' codes (:data:`CODES`), explained under it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Rounds of one contender disagree when (max − min) / median exceeds this; on an idle machine
# rounds of a step agree within a few per cent.
SPREAD_LIMIT = 0.25
# A step cannot move its bytes faster than the probe that only moves them; a share above this
# (a little over 100%: the two do not run at the same instant) says one of them was disturbed.
ROOFLINE_LIMIT = 1.10
# Cores' worth of other processes' CPU time during a measurement from which the machine is
# called busy: a neighbour holding a quarter of a core already delays a parallel step.
BUSY_LIMIT = 0.25
# Measurements of a case in doubt, the first included.
MEASURE_TRIES = 3

CODES = {
    "R": f"roofline share above {ROOFLINE_LIMIT:.0%}: impossible, the step or the probe was "
         "disturbed",
    "S": f"rounds disagree by more than {SPREAD_LIMIT:.0%} (max − min over the median)",
    "B": f"other processes used more than {BUSY_LIMIT} of a core while it was measured",
}


def spread(samples: Sequence[float]) -> float:
    """(max − min) / median of ``samples``; 0 for fewer than two."""
    if len(samples) < 2:
        return 0.0
    values = np.asarray(samples, dtype=float)
    return float((values.max() - values.min()) / np.median(values))


def doubts(times: dict[str, list[float]], roofline_fraction: float | None = None,
           others_cores: float | None = None) -> str:
    """The codes of :data:`CODES` that apply to one measurement: rounds of any contender in
    ``times`` (seconds per call, one sample per round) that disagree, a roofline share above
    the limit, other processes' load (cores) above the limit; '' when none does."""
    codes = ""
    if roofline_fraction is not None and roofline_fraction > ROOFLINE_LIMIT:
        codes += "R"
    if any(spread(samples) > SPREAD_LIMIT for samples in times.values()):
        codes += "S"
    if others_cores is not None and others_cores > BUSY_LIMIT:
        codes += "B"
    return codes


def legend(codes: Iterable[str]) -> str:
    """The explanation of every code that occurs in ``codes``, one line each; '' if none."""
    used = set("".join(codes))
    return "\n".join(f"  {code}: {text}" for code, text in CODES.items() if code in used)


@dataclass(frozen=True)
class Snapshot:
    wall: float                 # perf_counter, seconds
    own_cpu: float              # this process's CPU time, all its threads, seconds
    machine_cpu: float | None   # CPU time of the whole machine (busy, all cores), seconds
    load: float | None          # 1-minute load average


def machine_cpu_seconds() -> float | None:
    """Busy CPU time of the whole machine since boot (Linux's /proc/stat); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy
    ticks = [int(x) for x in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def snapshot() -> Snapshot:
    times = os.times()
    try:
        load: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        load = None
    return Snapshot(time.perf_counter(), times.user + times.system, machine_cpu_seconds(), load)


def others_busy(before: Snapshot, after: Snapshot) -> float | None:
    """Cores' worth of CPU time that other processes used between two snapshots (the
    machine's busy time less this process's, over the wall time); None where the machine's
    is unknown or no time passed."""
    wall = after.wall - before.wall
    if before.machine_cpu is None or after.machine_cpu is None or wall <= 0:
        return None
    others = (after.machine_cpu - before.machine_cpu) - (after.own_cpu - before.own_cpu)
    return max(0.0, others / wall)


def machine_note(others_cores: float | None, load: float | None, cpus: int) -> str:
    """One line on how busy the machine was during the whole run."""
    if others_cores is None:
        where = "unknown (no /proc/stat)"
        if load is not None:
            where += f"; load average {load:.2f} on {cpus} cores"
        return f"machine load during the run: {where}"
    verdict = "BUSY: figures may be disturbed" if others_cores > BUSY_LIMIT else "quiet"
    tail = f", load average {load:.2f}" if load is not None else ""
    return (f"machine load during the run: other processes used {others_cores:.2f} of "
            f"{cpus} cores{tail}; {verdict}")
