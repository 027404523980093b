#!/usr/bin/env bash
# Print the newest CPython of 3.12 or later on this machine (python3.N on PATH, else a pyenv
# version): the newest NumPy releases support only the newest Pythons.
set -euo pipefail
for minor in 15 14 13 12; do
    if command -v "python3.$minor" > /dev/null && "python3.$minor" -c '' 2> /dev/null; then
        command -v "python3.$minor"
        exit 0
    fi
    if command -v pyenv > /dev/null && version=$(pyenv latest "3.$minor" 2> /dev/null); then
        echo "$(pyenv prefix "$version")/bin/python3.$minor"
        exit 0
    fi
done
echo "no CPython 3.12 or newer on this machine" >&2
exit 1
