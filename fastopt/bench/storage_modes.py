"""The storage modes' rows of the benchmark: Adam with low-precision parameters, gradients and
state (docs/semantics.md, "Low-precision storage") against float32 Adam in the same rounds.

A mode can only be faster by moving fewer bytes, so each row has its own roofline: the probe
(:func:`fastopt._kernels.kernels.probe`, float32 Adam's four arrays) over as many elements as
move the mode's bytes, ``size × bytes_per_element / 28``. ``fastopt bench --storage`` prints the
rows; the targets of the low-precision work are 90% of the own roofline and, against float32
Adam, 1.7x for bfloat16 everything, 1.3x for float32 parameters with bfloat16 moments and 1.5x
for 8-bit moments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import fastopt
from fastopt._kernels import kernels
from fastopt.rules.storage import BLOCK, dtype as storage_dtype

from .report import align, format_time
from .timing import medians, ratio, run_rounds

RULE = "Adam"
ROLES = 2  # Adam's moments
PROBE_BYTES = 28  # the probe's bytes per element: float32 p, g, m, v read, p, m, v written


@dataclass(frozen=True)
class Mode:
    name: str
    param: str  # the parameter's and the gradient's storage
    state: str  # the moments' storage
    rounding: str | None = None

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"state_dtype": self.state}
        if self.rounding is not None:
            options["rounding"] = self.rounding
        return options

    def bytes_per_element(self) -> float:
        """Bytes a step moves per element: the parameter read and written, the gradient read,
        each moment read and written (8-bit ones with their float32 block scale), Kahan's
        compensation read and written."""
        param = storage_dtype(self.param).itemsize
        if self.state == "8bit":
            moment = 1 + 4 / BLOCK
        else:
            moment = storage_dtype(self.state).itemsize
        comp = 2 * param if self.rounding == "kahan" else 0
        return 3 * param + ROLES * 2 * moment + comp


MODES = (
    Mode("float32", "float32", "float32"),
    Mode("bf16 all, stochastic", "bfloat16", "bfloat16", "stochastic"),
    Mode("bf16 all, nearest", "bfloat16", "bfloat16", "nearest"),
    Mode("bf16 all, kahan", "bfloat16", "bfloat16", "kahan"),
    Mode("f32 + bf16 moments", "float32", "bfloat16"),
    Mode("f32 + 8-bit moments", "float32", "8bit"),
    Mode("bf16 + 8-bit moments", "bfloat16", "8bit", "stochastic"),
)


@dataclass
class ModeResult:
    mode: str
    size: int
    bytes_per_element: float
    seconds: float
    gb_per_s: float
    roofline_fraction: float  # the own roofline's time / this mode's
    speedup_float32: float  # float32 Adam's time / this mode's, in the same rounds


def run_modes(size: int, rounds: int, budget: float) -> list[ModeResult]:
    """Every mode at ``size`` elements, each with its probe, and float32 Adam, in the same
    rounds."""
    rng = np.random.default_rng(0)
    param = rng.standard_normal(size, dtype=np.float32)
    grad = rng.standard_normal(size, dtype=np.float32)
    contenders: dict[Any, Any] = {}
    for mode in MODES:
        p = param.astype(storage_dtype(mode.param))
        g = [grad.astype(storage_dtype(mode.param))]
        opt = getattr(fastopt, RULE)([p], **mode.options())
        opt.step(g)  # lay the state out before timing
        contenders[mode.name] = lambda opt=opt, g=g: opt.step(g)
        n = max(1, round(size * mode.bytes_per_element() / PROBE_BYTES))
        probe_arrays = [np.ones(n, np.float32) for _ in range(4)]
        contenders[("probe", mode.name)] = lambda a=probe_arrays: kernels.probe(a)
    times = run_rounds(contenders, rounds, budget)
    t = medians(times)
    return [ModeResult(
        mode=mode.name,
        size=size,
        bytes_per_element=mode.bytes_per_element(),
        seconds=t[mode.name],
        gb_per_s=size * mode.bytes_per_element() / t[mode.name] / 1e9,
        roofline_fraction=ratio(times, ("probe", mode.name), mode.name),
        speedup_float32=ratio(times, MODES[0].name, mode.name),
    ) for mode in MODES]


def format_modes_table(results: list[ModeResult]) -> str:
    head = ("storage mode (Adam)", "size", "B/elem", "time", "GB/s", "own roofline",
            "vs float32")
    rows = [head] + [(r.mode, f"{r.size:.0e}", f"{r.bytes_per_element:.2f}",
                      format_time(r.seconds), f"{r.gb_per_s:.1f}",
                      f"{100 * r.roofline_fraction:.0f}%", f"{r.speedup_float32:.2f}x")
                     for r in results]
    return align(rows)
