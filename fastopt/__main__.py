"""Command line: ``python -m fastopt bench|demo|config``, ``--version``."""

from __future__ import annotations

import argparse
import sys

import fastopt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastopt", description="Fast CPU optimizers.")
    parser.add_argument("--version", action="version", version=f"fastopt {fastopt.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("bench", add_help=False,
                        help="time every optimizer against NumPy, torch and the roofline "
                             "(fastopt bench --help for its options)")
    demo = commands.add_parser("demo", help="train a small network with fastopt.Adam")
    demo.add_argument("--steps", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    commands.add_parser("config", help="show how this fastopt was built and runs")
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from .bench import main as bench

        return bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        from .demo import train

        train(steps=args.steps, seed=args.seed)
    else:
        fastopt.show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
