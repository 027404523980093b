#!/usr/bin/env bash
# Build the sdist, then the wheel from the sdist (so a file missing from the sdist fails here),
# into dist/. OpenMP is required: a serial wheel must never ship by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv build/ci/build-env
build/ci/build-env/bin/pip install --quiet --upgrade pip build
rm -rf dist
FASTOPT_REQUIRE_OPENMP=1 build/ci/build-env/bin/python -m build --outdir dist .
ls -l dist
