#!/usr/bin/env bash
# Install one built wheel, and only it, into a fresh virtual environment with its test extras,
# and run the README's test command against that installed copy (not the source tree).
#   ci/test_wheel.sh WHEEL OPENMP     OPENMP: vendored | system | none (ci/check_installed.py)
# PYTHON: the interpreter for the environment (default python3; it must match the wheel's tag).
# NUMPY=oldest: NumPy pinned to the floor the wheel declares (default: the newest release).
# TORCH=0: leave torch and the oracles built on it out of the test extras (their tests skip).
# MARKS: a pytest mark expression for the suite (default: every test).
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=$1
openmp=$2
venv=build/ci/test-env
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
py=$venv/bin/python
"$py" -m pip install --quiet --upgrade pip packaging

# The dependencies and test extras the wheel declares, from the index (binaries only).
extras="[test]"
options=(--extra test)
if [ "${TORCH:-1}" = 0 ]; then
    extras=""
    # and the oracles that need it (their tests skip)
    for oracle in torch torch-optimi bitsandbytes torchao pytorch-optimizer lion-pytorch \
                  schedulefree; do
        options+=(--without "$oracle")
    done
fi
if [ "${NUMPY:-newest}" = oldest ]; then
    options+=(--oldest numpy)
fi
"$py" ci/wheel_requirements.py "$wheel" "${options[@]}" > "$venv/requirements.txt"
echo "test requirements: $(tr '\n' ' ' < "$venv/requirements.txt")"
"$py" -m pip install --quiet --only-binary :all: -r "$venv/requirements.txt"
# fastopt itself from the wheel file alone: no index, binaries only, so nothing is built or
# fetched; pip checks that every dependency is already there.
"$py" -m pip install --quiet --no-index --only-binary :all: "${wheel}${extras}"
"$py" -m pip check
"$py" -m pip list --format=freeze | grep -iE '^(fastopt|numpy|torch|pytest|hypothesis|threadpoolctl)=='

# shellcheck source=/dev/null
source "$venv/bin/activate"
python ci/check_installed.py --openmp "$openmp"
(cd "$(mktemp -d)" && python -m fastopt demo --steps 400 | tail -n 2)
# The benchmark CLI, the README's main job, as a smoke check (two small sizes).
(cd "$(mktemp -d)" && python -m fastopt bench --quick --optimizers Adam SGD)
# The README's test command. pytest puts tests/ on sys.path, not the repository root, so
# `import fastopt` is the installed wheel (the report header says where it came from).
pytest tests ${MARKS:+-m "$MARKS"}
