"""``fastopt demo [sine|landscapes|batch|digits|all]``: the demos' arguments and dispatch.

Each demo module is imported only when it runs: the sine fit needs NumPy alone, the others
matplotlib and scikit-learn (the ``demo`` extra).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import fastopt

from . import DEMOS
from .data import DataError

DEMO_HELP = """\
sine (the default) fits sin(3x) with a small network and prints its loss. The others write
PNGs and Markdown tables to --out; they need the demo extra (pip install 'fastopt[demo]'):
  landscapes  every optimizer on a quadratic, Rosenbrock's function and a saddle
  batch       gradient descent vs SGD vs mini-batch on logistic regression
  digits      a NumPy MLP on scikit-learn's digits (or MNIST with --mnist) per optimizer
  all         landscapes, batch and digits
"""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``demo`` sub-command, added to ``commands`` (``ArgumentParser.add_subparsers()``)."""
    demo = commands.add_parser(
        "demo", help="show fastopt training (default: a small network with fastopt.Adam)",
        description=DEMO_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("name", nargs="?", default="sine", choices=["sine", *DEMOS, "all"])
    demo.add_argument("--out", default="fastopt-demo", help="folder for PNGs and tables "
                      "(default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--steps", type=int, help="sine: training steps (2000); landscapes: "
                      "at most this many steps per optimizer")
    demo.add_argument("--epochs", type=int, help="batch (50), digits (20; MNIST 8)")
    demo.add_argument("--optimizers", help="landscapes, digits: comma-separated subset, "
                      "e.g. Adam,SGD (default: all)")
    demo.add_argument("--threads", type=int, help="fastopt's OpenMP threads (default: "
                      "OpenMP's; on a busy machine 1, with OMP_NUM_THREADS=1 for NumPy's BLAS "
                      "too, avoids threads competing for cores)")
    demo.add_argument("--mnist", metavar="PATH", help="digits: train on MNIST instead, from a "
                      "folder with the four IDX files (gzipped or not) or an .npz")
    return demo


def run_demo(args: argparse.Namespace) -> None:
    """Run the demo (or all of them) that ``args.name`` names, with ``args``' options."""
    if args.name == "sine":
        from .sine import train

        train(steps=args.steps or 2000, seed=args.seed)
        return
    if args.threads is not None:
        fastopt.set_num_threads(args.threads)

    out = Path(args.out)
    optimizers = args.optimizers.split(",") if args.optimizers else None
    for name in DEMOS if args.name == "all" else (args.name,):
        start = time.perf_counter()
        print(f"== {name} ==")
        if name == "landscapes":
            from . import landscapes

            landscapes.run(out, optimizers=optimizers, max_steps=args.steps, seed=args.seed)
        elif name == "batch":
            from . import batch

            batch.run(out, epochs=args.epochs or 50, seed=args.seed)
        else:
            from . import digits

            digits.run(out, optimizers=optimizers, epochs=args.epochs, seed=args.seed,
                       mnist=args.mnist)
        print(f"{name}: {time.perf_counter() - start:.1f} s\n")


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """:func:`run_demo`, with bad data and a bad ``--optimizers`` reported through ``parser``
    as a one-line error (exit status 2), not a traceback."""
    try:
        run_demo(args)
    except DataError as error:
        parser.exit(2, f"fastopt demo: error: {error}\n")
    except ValueError as error:  # bad --optimizers
        if not str(error).startswith("optimizers:"):
            raise
        parser.exit(2, f"fastopt demo: error: {error}\n")
    return 0
