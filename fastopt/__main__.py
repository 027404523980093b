"""Command line: ``python -m fastopt bench``, ``python -m fastopt demo
[sine|landscapes|batch|digits|all]``, ``python -m fastopt config``, ``--version``.

The sub-commands live in their packages (:mod:`fastopt.bench`, :mod:`fastopt.demos.cli`);
the benchmark parses its own options, so that ``fastopt bench --help`` shows them.
"""

from __future__ import annotations

import argparse
import sys

import fastopt
from fastopt.demos import cli as demo_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastopt", description="Fast CPU optimizers.")
    parser.add_argument("--version", action="version", version=f"fastopt {fastopt.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("bench", add_help=False,
                        help="time every optimizer against NumPy, torch and the roofline "
                             "(fastopt bench --help for its options)")
    demo = demo_cli.add_parser(commands)
    commands.add_parser("config", help="show how this fastopt was built and runs")
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from fastopt.bench import main as bench

        return bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        return demo_cli.main(args, demo)
    fastopt.show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
