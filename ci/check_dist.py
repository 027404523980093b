"""Check what the sdist and the wheels hold.

    python ci/check_dist.py [--tag vX.Y.Z] FILE...   (sdists: .tar.gz; wheels: .whl)

sdist: every source needed to build and test (every file git tracks under fastopt/, tests/,
bench/ and ci/, when run in a git checkout; the README, licence, changelog and build files) and
nothing generated (no Cython-generated C, no compiled or cached files).
wheel: the package only: Python files, compiled modules, each with its .pyi stub beside it,
py.typed, the dist-info, and the runtime libraries a repair tool vendors; no Cython sources or
headers; compiled ELF modules without debug information; the same Python files as the sdist.
--tag (a release): every file is that version, and there is exactly one sdist.
Exits non-zero with one line per problem.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
SDIST_REQUIRED = {"README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "setup.py",
                  "MANIFEST.in", "PKG-INFO"}
GENERATED = (".c", ".cpp", ".so", ".pyd", ".dylib", ".dll", ".o", ".obj", ".pyc", ".html")
COMPILED = (".so", ".pyd")
# Directories that repair tools vendor runtime libraries into (auditwheel and delvewheel:
# fastopt.libs/, delocate: fastopt/.dylibs/).
VENDORED = ("fastopt.libs/", "fastopt/.dylibs/")

problems: list[str] = []


def problem(where: str, what: str) -> None:
    problems.append(f"{where}: {what}")


def git_tracked() -> set[str] | None:
    try:
        out = subprocess.run(
            ["git", "ls-files", "fastopt", "tests", "bench", "ci"], cwd=ROOT,
            capture_output=True, text=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return set(out.split())


def check_sdist(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        top = names[0].split("/", 1)[0]
        files = {n.split("/", 1)[1] for n in names}
        version = [line.split(":", 1)[1].strip()
                   for line in tar.extractfile(f"{top}/PKG-INFO").read().decode().splitlines()
                   if line.startswith("Version:")][0]
        changelog = tar.extractfile(f"{top}/CHANGELOG.md").read().decode() \
            if "CHANGELOG.md" in files else ""
    for name in sorted(SDIST_REQUIRED - files):
        problem(path.name, f"missing {name}")
    for name in sorted(files):
        if name.endswith(GENERATED) or "__pycache__" in name:
            problem(path.name, f"generated file {name}")
    tracked = git_tracked()
    if tracked is None:
        print(f"{path.name}: not in a git checkout; tracked-file completeness not checked")
    else:
        for name in sorted(tracked - files):
            problem(path.name, f"missing tracked file {name}")
    if f"## {version}" not in changelog:
        problem(path.name, f"CHANGELOG.md has no section for version {version}")
    return {n for n in files if n.startswith("fastopt/") and n.endswith(".py")}


def elf_sections(data: bytes) -> list[str] | None:
    """Section names of an ELF file, or None if it is not ELF (Mach-O, PE)."""
    if data[:4] != b"\x7fELF":
        return None
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        shoff = struct.unpack_from(order + "Q", data, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x3A)
        layout = order + "IIQQQQ"
    else:
        shoff = struct.unpack_from(order + "I", data, 0x20)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x2E)
        layout = order + "IIIIII"

    def header(i):
        name, _, _, _, offset, size = struct.unpack_from(layout, data, shoff + i * shentsize)
        return name, offset, size

    _, stroff, strsize = header(shstrndx)
    strtab = data[stroff:stroff + strsize]
    return [strtab[n:strtab.index(b"\0", n)].decode() for n, _, _ in map(header, range(shnum))]


def check_wheel(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as whl:
        names = [n for n in whl.namelist() if not n.endswith("/")]
        compiled = {n: whl.read(n) for n in names
                    if n.startswith("fastopt/") and n.endswith(COMPILED)}
    dist_info = [n for n in names if n.split("/", 1)[0].endswith(".dist-info")]
    if not dist_info:
        problem(path.name, "no .dist-info")
    for name in sorted(set(names) - set(dist_info)):
        suffix = PurePosixPath(name).suffix
        if name.startswith(VENDORED):
            continue
        if not name.startswith("fastopt/"):
            problem(path.name, f"outside the package: {name}")
        elif not (suffix in (".py", ".pyi") or name in compiled or name == "fastopt/py.typed"):
            problem(path.name, f"not part of the installed package: {name}")
    if "fastopt/py.typed" not in names:
        problem(path.name, "no fastopt/py.typed")
    if not compiled:
        problem(path.name, "no compiled module")
    for name, data in compiled.items():
        stub = name.split(".", 1)[0] + ".pyi"
        if stub not in names:
            problem(path.name, f"{name} has no stub {stub}")
        sections = elf_sections(data)
        debug = [s for s in sections or [] if s.startswith((".debug", ".zdebug"))]
        if debug:
            problem(path.name, f"{name} carries debug information: {', '.join(debug)}")
    return {n for n in names if n.startswith("fastopt/") and n.endswith(".py")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", help="the release tag, vX.Y.Z")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    paths = args.paths
    sdist_py: set[str] | None = None
    wheels_py: dict[str, set[str]] = {}
    if args.tag:
        if not args.tag.startswith("v"):
            problem(args.tag, "a release tag is v followed by the version")
        if sum(p.endswith(".tar.gz") for p in paths) != 1:
            problem(args.tag, "a release has exactly one sdist")
    for arg in paths:
        path = Path(arg)
        # fastopt-0.1.0.tar.gz, fastopt-0.1.0-cp311-cp311-manylinux_2_28_x86_64.whl
        file_version = path.name.removesuffix(".tar.gz").split("-")[1]
        if args.tag and file_version != args.tag.removeprefix("v"):
            problem(path.name, f"version {file_version}, but the tag is {args.tag}")
        if path.name.endswith(".tar.gz"):
            sdist_py = check_sdist(path)
        elif path.suffix == ".whl":
            wheels_py[path.name] = check_wheel(path)
        else:
            problem(path.name, "neither an sdist nor a wheel")
    if sdist_py is not None:
        for name, py in wheels_py.items():
            for missing in sorted(sdist_py - py):
                problem(name, f"missing {missing} (in the sdist)")
    for line in problems:
        print(line, file=sys.stderr)
    checked = ", ".join(Path(p).name for p in paths)
    print(f"check_dist: {'FAILED' if problems else 'OK'}: {checked}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
