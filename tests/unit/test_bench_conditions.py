"""Every benchmark script records its conditions through bench/conditions.py (read from the source: nothing runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if "__main__" in p.read_text(encoding="utf-8"))
# Scripts their owners convert in the same phase; once one records its conditions, drop it from here.
PENDING = {"circuits.py"}


def _records_conditions(source: str) -> list[str]:
    """What a script lacks of: importing conditions, starting them, writing the result through them."""
    needs = {
        "imports bench.conditions": r"^from bench import conditions$",
        "calls conditions.start(...)": r"\bconditions\.start\(",
        "calls conditions.write(...)": r"\bconditions\.write\(",
    }
    return [what for what, pattern in needs.items() if not re.search(pattern, source, re.MULTILINE)]


def test_the_scan_finds_the_scripts() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"app_views.py", "load.py", "locality.py"} <= names and "conditions.py" not in names


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.name not in PENDING], ids=lambda p: p.name)
def test_every_bench_records_its_conditions(script: Path) -> None:
    missing = _records_conditions(script.read_text(encoding="utf-8"))
    assert not missing, f"bench/{script.name}: {', '.join(missing)}"


def test_pending_scripts_are_still_pending() -> None:
    done = [p.name for p in SCRIPTS if p.name in PENDING and not _records_conditions(p.read_text())]
    assert not done, f"these record their conditions now; remove them from PENDING: {done}"


def test_the_check_can_fail() -> None:
    assert _records_conditions("import json\nprint(json.dumps({}))\n") == [
        "imports bench.conditions",
        "calls conditions.start(...)",
        "calls conditions.write(...)",
    ]
