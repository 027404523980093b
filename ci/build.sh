#!/usr/bin/env bash
# Build the sdist, then the wheel from the sdist (a file missing from the sdist fails here).
#   ci/build.sh OUTDIR           sdist + wheel into OUTDIR
#   ci/build.sh OUTDIR SDIST     only a wheel, built from the given sdist
# PYTHON picks the interpreter the wheel is for (default python3). OpenMP is required unless
# FASTOPT_OPENMP=0 asks for a serial build: a serial wheel must never ship by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
outdir=$1
sdist=${2:-}
python=${PYTHON:-python3}
tag=$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
env=build/ci/build-env-$tag
if [ ! -x "$env/bin/python" ]; then
    "$python" -m venv "$env"
    "$env/bin/pip" install --quiet --upgrade pip build
fi
if [ "${FASTOPT_OPENMP:-1}" != 0 ]; then
    export FASTOPT_REQUIRE_OPENMP=1
fi
rm -rf "$outdir"
mkdir -p "$outdir"
if [ -z "$sdist" ]; then
    "$env/bin/python" -m build --outdir "$outdir" .
else
    src=$(mktemp -d)
    tar -xzf "$sdist" -C "$src"
    "$env/bin/python" -m build --wheel --outdir "$outdir" "$src"/*/
    rm -rf "$src"
fi
ls -l "$outdir"
