"""Versioned JSON circuit reports: build, validate (on write and on read), load from text, compare two.

The schema is `assets/schemas/circuit_report.schema.json`; a report whose `schema_version` is not this code's
is refused with the versions named (no silent migration). Beyond the schema, every score grid must be
n_layers × n_heads of the report's model.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from headscope import assets
from headscope.errors import InputError

if TYPE_CHECKING:
    from headscope.circuits.finder import CircuitResult

SCHEMA_VERSION = "1.0"
MAX_REPORT_BYTES = 2_000_000
METHODS = ("sae_node", "sae_edge", "attribution_patching", "activation_patching")


@functools.cache
def schema() -> dict[str, Any]:
    return assets.read_json("schemas", "circuit_report.schema.json")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def software_versions() -> dict[str, str]:
    names = ("headscope", "torch", "transformers", "transformer-lens", "numpy", "scipy")
    return {n.replace("-", "_"): _version(n) for n in names} | {"python": platform.python_version()}


def build_report(result: CircuitResult) -> dict[str, Any]:
    seed = int(result.config["seed"])
    sae_seed = seed if result.config.get("sae_seed") is None else int(result.config["sae_seed"])
    report = {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": software_versions(),
        "model": result.model,
        "task": result.task,
        "config": result.config,
        "seeds": {"data": seed, "sae": sae_seed, "split": sae_seed},
        "methods": {
            m: {"scores": [[float(v) for v in row] for row in result.scores[m]], **result.method_info[m]}
            for m in METHODS
        },
        "ranked": result.ranked,
        "circuit": result.circuit,
        "circuit_rule": result.circuit_rule,
        "ground_truth": result.ground_truth,
        "metrics": result.metrics,
        "published": result.published,
        "runtime_s": result.runtime_s,
        "warnings": result.warnings,
    }
    validate_report(report)
    return report


def _first_error(err: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    return f"{where}: {err.message[:200]}"


def validate_report(report: Any) -> dict[str, Any]:
    """The report itself if valid, else an InputError naming the first problem."""
    if not isinstance(report, dict):
        raise InputError("circuit report: expected a JSON object")
    version = report.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"circuit report: schema_version {version!r} is not supported (this headscope reads {SCHEMA_VERSION!r})"
        )
    errors = sorted(
        jsonschema.Draft202012Validator(schema()).iter_errors(report), key=lambda e: list(e.absolute_path)
    )
    if errors:
        raise InputError(f"circuit report is invalid at {_first_error(errors[0])}")
    shape = (report["model"]["n_layers"], report["model"]["n_heads"])
    for m, body in report["methods"].items():
        grid = body["scores"]
        if (len(grid), *{len(r) for r in grid}) != shape:
            raise InputError(
                f"circuit report: methods.{m}.scores is not {shape[0]} layers × {shape[1]} heads"
            )
    return report


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    validate_report(report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return path


def loads_report(text: str | bytes) -> dict[str, Any]:
    """Parse and validate a report given as text or bytes (the app's upload path: no server paths)."""
    if len(text) > MAX_REPORT_BYTES:
        raise InputError(f"circuit report is larger than {MAX_REPORT_BYTES // 1_000_000} MB")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"circuit report is not valid JSON: {e}") from None
    return validate_report(data)


def read_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such report file: {path}")
    if path.stat().st_size > MAX_REPORT_BYTES:
        raise InputError(f"circuit report {path} is larger than {MAX_REPORT_BYTES // 1_000_000} MB")
    return loads_report(path.read_bytes())


def _delta(a: Any, b: Any) -> dict[str, Any]:
    both = isinstance(a, int | float) and isinstance(b, int | float)
    return {"a": a, "b": b, "delta": (b - a) if both else None}


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Heads added to / removed from the circuit (b relative to a) and every metric's change."""
    a, b = validate_report(a), validate_report(b)
    ma, mb = a["model"], b["model"]
    if (ma["name"], ma.get("sha256")) != (mb["name"], mb.get("sha256")):
        raise InputError(
            f"the reports are from different models ({ma['name']} {ma.get('sha256')} vs {mb['name']} {mb.get('sha256')}); "
            "compare reports of one model"
        )
    ca, cb = a["circuit"], b["circuit"]
    return {
        "model": ma["name"],
        "task": {
            "a": a["task"]["name"],
            "b": b["task"]["name"],
            "same": a["task"]["name"] == b["task"]["name"],
        },
        "heads_added": [h for h in cb if h not in ca],
        "heads_removed": [h for h in ca if h not in cb],
        "heads_kept": [h for h in ca if h in cb],
        "metrics": {
            m: {
                k: _delta(a["metrics"][m].get(k), b["metrics"][m].get(k))
                for k in ("roc_auc", "precision", "recall", "spearman")
            }
            for m in METHODS
        },
        "runtime_s": {m: _delta(a["runtime_s"][m], b["runtime_s"][m]) for m in METHODS},
        "ground_truth_n_positive": _delta(a["ground_truth"]["n_positive"], b["ground_truth"]["n_positive"]),
    }
