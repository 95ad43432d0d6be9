"""Offline advisory check for the installed environment (run by `make lint`).

pip-audit needs a vulnerability database these machines cannot reach, so the advisories that concern us are kept in
assets/advisories.json and checked against the installed versions here. Exit 1 if any installed package matches.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ADVISORIES = Path(__file__).resolve().parent.parent / "headscope" / "assets" / "advisories.json"


def main() -> int:
    advisories = json.loads(ADVISORIES.read_text())["advisories"]
    hits = []
    for adv in advisories:
        try:
            installed = Version(importlib.metadata.version(adv["package"]))
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed in SpecifierSet(adv["affected"]):
            hits.append(f"{adv['package']} {installed}: {adv['id']} ({adv['summary']}); {adv['mitigation']}")
    for line in hits:
        print(f"audit: {line}", file=sys.stderr)
    print(f"audit: {len(advisories)} advisories checked, {len(hits)} affecting the installed packages")
    return 1 if hits else 0


if __name__ == "__main__":
    raise SystemExit(main())
