#!/usr/bin/env bash
# Repair a Linux wheel with auditwheel: vendor the libraries outside the manylinux policy
# (libgomp) into fastopt.libs/ and tag the wheel manylinux; then show what it needs.
#   ci/repair.sh WHEEL OUTDIR
# cibuildwheel runs this same script in the manylinux containers (pyproject.toml).
set -euo pipefail
wheel=$1
outdir=$2
mkdir -p "$outdir"
auditwheel repair --wheel-dir "$outdir" "$wheel"
# The repaired wheel keeps the name, version and Python tags; only the platform tag changes.
stem=$(basename "$wheel" .whl)
repaired=$(ls "$outdir/${stem%-linux_*}"-*manylinux*.whl)
auditwheel show "$repaired"
printf 'wheel size: %s bytes raw (%s), %s bytes repaired (%s)\n' \
    "$(wc -c < "$wheel")" "$(basename "$wheel")" \
    "$(wc -c < "$repaired")" "$(basename "$repaired")"
