"""Check that the wheels the release pipeline builds are the ones README.md promises.

    python ci/check_platforms.py

Three places say which wheels exist: the workflow's build matrix (.github/workflows/wheels.yml:
one runner per operating system and architecture), cibuildwheel's configuration in
pyproject.toml (which CPythons, which builds skipped) and README.md's table of supported
platforms. This asks cibuildwheel itself which build identifiers each matrix entry gives
(`--print-build-identifiers`), prints them, and compares them with the table. Needs
cibuildwheel and PyYAML (ci/tools-requirements.txt).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"
README = ROOT / "README.md"


def built() -> set[str]:
    matrix = yaml.safe_load(WORKFLOW.read_text())["jobs"]["wheels"]["strategy"]["matrix"]
    identifiers: set[str] = set()
    for entry in matrix["include"]:
        out = subprocess.run(
            [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers",
             "--platform", entry["os"], "--archs", entry["archs"], str(ROOT)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout.split()
        print(f"{entry['os']} {entry['archs']} ({entry['runner']}): {' '.join(out)}")
        if not out:
            print(f"  no build identifiers for {entry}", file=sys.stderr)
        identifiers.update(out)
    return identifiers


def promised() -> set[str]:
    """Identifiers the README's table promises: one per CPython per row.

    Rows look like `| Linux | x86-64 | `manylinux_x86_64` | 3.10 – 3.15 | ... |`: the third
    column is cibuildwheel's platform part of the identifier, the fourth a CPython range.
    """
    text = README.read_text()
    table = text.split("<!-- platforms -->")[1]
    identifiers = set()
    for row in re.findall(r"^\|.*\|$", table, flags=re.M)[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        platform = cells[2].strip("`")
        first, last = (int(v.split(".")[1]) for v in re.split(r"\s*[–-]\s*", cells[3]))
        identifiers.update(f"cp3{minor}-{platform}" for minor in range(first, last + 1))
    return identifiers


def main() -> int:
    have, want = built(), promised()
    if have != want:
        for name in sorted(have - want):
            print(f"built but not in README.md's table: {name}", file=sys.stderr)
        for name in sorted(want - have):
            print(f"in README.md's table but not built: {name}", file=sys.stderr)
        return 1
    print(f"check_platforms: OK: {len(have)} wheels, as README.md's table says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
