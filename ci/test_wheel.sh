#!/usr/bin/env bash
# Install the built wheel with its test extras into a fresh virtual environment and run the
# README's test command against that installed copy (not the source tree).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/ci/test-env
rm -rf "$venv"
python3 -m venv "$venv"
wheel=$(ls dist/fastopt-*.whl)
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "${wheel}[test]"
source "$venv/bin/activate"
# From outside the checkout, so Python cannot pick up the source tree's fastopt/ instead.
(cd "$(mktemp -d)" && python -m fastopt config && python -m fastopt demo --steps 400)
# The README's test command (its install half is the wheel installed above). pytest puts
# tests/ on sys.path, not the repository root, so `import fastopt` is the installed wheel.
pytest tests
