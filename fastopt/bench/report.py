"""The benchmark's tables and its plot, from the results of :mod:`.cases`,
:mod:`.model_shaped` and :mod:`.torch_training`. The tables need no torch; :func:`plot` needs
matplotlib, imported only there."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

import fastopt

from .trust import MEASURE_TRIES, legend

if TYPE_CHECKING:  # torch_training imports torch, which the tables need not
    from .cases import Result
    from .model_shaped import ModelResult
    from .torch_training import TorchResult


def format_time(seconds: float) -> str:
    """Three significant digits in the largest unit that keeps the number ≥ 1 (s, ms, us, ns)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def align(rows: list[tuple[str, ...]]) -> str:
    """Right-aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(results: list[Result]) -> str:
    """The per-size table: a row per optimizer, dtype and size, and under it what its doubt
    codes mean (:mod:`.trust`)."""
    head = ("optimizer", "dtype", "size", "fastopt", "spread", "Gelem/s", "GB/s", "roofline",
            "plain loop", "t/plain", "vs numpy", "vs torch", "torch path", "max rel dev", "doubt")
    rows = [head]
    for r in results:
        rows.append((
            r.optimizer, r.dtype, f"{r.size:.0e}".replace("e+0", "e"), format_time(r.fastopt_s),
            f"{100 * r.spread:.0f}%", f"{r.gelem_per_s:.2f}", f"{r.gb_per_s:.1f}",
            f"{100 * r.roofline_fraction:.0f}%",
            format_time(r.plain_s) if r.plain_s is not None else "-",
            f"{r.plain_ratio:.2f}" if r.plain_ratio is not None else "-",
            f"{r.speedup_numpy:.1f}x" if r.speedup_numpy is not None else "-",
            f"{r.speedup_torch:.1f}x" if r.speedup_torch is not None else "-",
            r.torch_path or "-",
            f"{r.max_rel_deviation:.1e}" if r.max_rel_deviation is not None else "-",
            r.doubts or "-",
        ))
    return align(rows) + with_legend(r.doubts for r in results)


def with_legend(codes: Iterable[str]) -> str:
    """What the doubt codes used in a table mean, as lines to put under it; '' if none."""
    notes = legend(codes)
    if not notes:
        return ""
    return f"\ndoubt (measured up to {MEASURE_TRIES} times, the least doubtful kept):\n{notes}"


def format_model_table(results: list[ModelResult]) -> str:
    """The model-shaped step's table: a row per optimizer."""
    lines = [f"model-shaped step: {results[0].tensors} float32 tensors, "
             f"{results[0].elements:,} elements" if results else "",
             "optimizer   200 tensors  one segment  ratio  +clipping   torch fused  vs torch  doubt"]
    for r in results:
        torch_cells = (f"{format_time(r.torch_s):>11}  {r.speedup_torch:7.1f}x" if r.torch_s
                       else f"{'-':>11}  {'-':>8}")
        lines.append(f"{r.optimizer:9s}  {format_time(r.fastopt_s):>11}  "
                     f"{format_time(r.flat_s):>11}  {r.flat_ratio:5.2f}  "
                     f"{format_time(r.clipped_s):>9}  {torch_cells}  {r.doubts or '-':>5}")
    return "\n".join(lines) + with_legend(r.doubts for r in results)


def format_torch_table(results: list[TorchResult]) -> str:
    """The torch training step's table, a row per optimizer and case, under a title that
    says the model and the threads; '' without results."""
    if not results:
        return ""
    r = results[0]
    paths = list(r.torch_s)  # torch_training.TORCH_PATHS, in its order
    title = (f"torch training: {r.layers} Linear layers, {r.tensors} float32 tensors, "
             f"{r.parameters:,} parameters, batch {r.batch}; torch {r.torch_version}, "
             f"{r.torch_threads} threads, fastopt {fastopt.get_num_threads()}; "
             "ratios: torch / fastopt")
    rows = [("optimizer", "case", "fastopt", "spread", *paths, *(f"vs {p}" for p in paths),
             "doubt")]
    for r in results:
        rows.append((
            r.optimizer, r.case, format_time(r.fastopt_s), f"{100 * r.spread:.0f}%",
            *(format_time(t) if t is not None else "-" for t in r.torch_s.values()),
            *(f"{s:.2f}x" if s is not None else "-" for s in r.speedup.values()),
            r.doubts or "-",
        ))
    return title + "\n" + align(rows) + with_legend(r.doubts for r in results)


def plot(results: list[Result], path: str) -> None:
    """Gelem/s against size, one panel per optimizer: fastopt, NumPy, torch and the roofline."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(
            "fastopt bench: --plot needs matplotlib (pip install matplotlib)") from None
    names = list(dict.fromkeys(r.optimizer for r in results))
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False,
                             sharey=True)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        mine = [r for r in results if r.optimizer == name]
        for dtype in dict.fromkeys(r.dtype for r in mine):
            sel = [r for r in mine if r.dtype == dtype]
            sizes = [r.size for r in sel]
            lines = [("fastopt", "o-", [r.fastopt_s for r in sel])]
            if all(r.numpy_s for r in sel):
                lines.append(("NumPy", "s--", [r.numpy_s for r in sel]))
            if all(r.torch_s for r in sel):
                lines.append(("torch", "^:", [r.torch_s for r in sel]))
            for label, style, seconds in lines:
                ax.plot(sizes, np.array(sizes) / seconds / 1e9, style, label=f"{label} {dtype}")
            ax.plot(sizes, [r.size / r.roofline_s / 1e9 for r in sel], "k-", lw=0.8,
                    label=f"roofline {dtype}")
        ax.set(xscale="log", yscale="log", title=name, xlabel="elements")
    for row in axes:
        row[0].set_ylabel("Gelem/s (higher is better)")
    axes.flat[len(names) - 1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
