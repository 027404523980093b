"""Print the requirements a wheel declares, one per line, for `pip install -r`.

    python ci/wheel_requirements.py WHEEL [--extra NAME] [--without NAME]... [--oldest NAME]...

Read from the wheel's own metadata (so CI installs exactly what users get), with the markers
evaluated for this interpreter and the given extra. --without leaves a requirement out;
--oldest pins a requirement to its declared floor (`numpy>=2.0` becomes `numpy==2.0`), to test
the oldest version the package claims to support. Needs `packaging`.
"""

from __future__ import annotations

import argparse
import email
import zipfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("wheel")
    parser.add_argument("--extra", default="")
    parser.add_argument("--without", action="append", default=[])
    parser.add_argument("--oldest", action="append", default=[])
    args = parser.parse_args()
    without = {canonicalize_name(n) for n in args.without}
    oldest = {canonicalize_name(n) for n in args.oldest}
    with zipfile.ZipFile(args.wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(whl.read(name))
    found = set()
    for line in metadata.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({"extra": args.extra}):
            continue
        key = canonicalize_name(req.name)
        if key in without:
            continue
        req.marker = None
        if key in oldest:
            floors = [s.version for s in req.specifier if s.operator in (">=", "~=", "==")]
            if len(floors) != 1:
                raise SystemExit(f"{req}: no single declared floor to pin")
            req.specifier = type(req.specifier)(f"=={floors[0]}")
        found.add(key)
        print(req)
    for key in sorted(oldest - found):
        raise SystemExit(f"{key}: not a requirement of {args.wheel}")


if __name__ == "__main__":
    main()
