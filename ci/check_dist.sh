#!/usr/bin/env bash
# The contents checks for what ci/build.sh or ci/repair.sh (or cibuildwheel) made: twine's
# metadata check, check-wheel-contents, and ci/check_dist.py (what the sdist and the wheels
# must and must not hold).
#   ci/check_dist.sh [--tag vX.Y.Z] FILE...     (--tag: a release; every file is version X.Y.Z)
set -euo pipefail
here=$(dirname "$0")
tag=()
if [ "${1:-}" = --tag ]; then
    tag=(--tag "$2")
    shift 2
fi
twine check --strict "$@"
for f in "$@"; do
    case $f in
    *.whl)
        # A repaired wheel has a second top-level entry, fastopt.libs/, holding the vendored
        # runtime libraries and (rightly) no Python module.
        if python -c 'import sys, zipfile; sys.exit(not any(n.startswith("fastopt.libs/")
                      for n in zipfile.ZipFile(sys.argv[1]).namelist()))' "$f"; then
            check-wheel-contents --toplevel fastopt,fastopt.libs --ignore W010 "$f"
        else
            check-wheel-contents --toplevel fastopt "$f"
        fi
        ;;
    esac
done
python "$here/check_dist.py" "${tag[@]}" "$@"
