"""Say which fastopt the tests are about to run against, and refuse the wrong one.

    python ci/check_installed.py --openmp {vendored,system,none}

Run in the environment the wheel was installed into (by ci/test_wheel.sh, or by cibuildwheel's
test step). Prints where fastopt was imported from, its version and configuration, and checks:
- it is the installed copy (under this interpreter's prefix), not a source tree;
- `python -m fastopt --version`, `fastopt.__version__`, `show_config()` and the installed
  metadata agree;
- the build is the expected kind: OpenMP with the runtime vendored in the wheel (a repaired
  wheel), OpenMP from the system, or serial.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--openmp", choices=["vendored", "system", "none"], required=True)
    expected = parser.parse_args().openmp

    # Import from an empty directory: the current directory must not shadow the installed copy.
    os.chdir(tempfile.mkdtemp())
    sys.path = [p for p in sys.path if p not in ("", ".", os.getcwd())]
    import numpy

    import fastopt

    location = Path(fastopt.__file__).resolve().parent
    print(f"fastopt imported from {location}")
    print(f"numpy {numpy.__version__} from {Path(numpy.__file__).resolve().parent}")
    cli = subprocess.run([sys.executable, "-m", "fastopt", "--version"], check=True,
                         capture_output=True, text=True).stdout.strip()
    print(cli)
    fastopt.show_config()

    errors = []
    prefix = Path(sys.prefix).resolve()
    if prefix not in location.parents:
        errors.append(f"fastopt is not the installed copy: {location} is outside {prefix}")
    versions = {fastopt.__version__, version("fastopt"), fastopt.config()["fastopt"],
                cli.removeprefix("fastopt ")}
    if len(versions) != 1:
        errors.append(f"versions disagree: {sorted(versions)}")
    vendored = [d for d in (location.parent / "fastopt.libs", location / ".dylibs") if d.is_dir()]
    runtimes = [f.name for d in vendored for f in d.iterdir()
                if f.name.startswith(("libgomp", "libomp", "vcomp"))]
    print(f"vendored OpenMP runtime: {', '.join(runtimes) or 'none'}")
    if (expected != "none") != fastopt.OPENMP:
        errors.append(f"expected openmp={expected}, but this build has OPENMP={fastopt.OPENMP}")
    if (expected == "vendored") != bool(runtimes):
        errors.append(f"expected openmp={expected}, vendored runtime: {runtimes or 'none'}")
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
