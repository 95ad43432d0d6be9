"""Versioned JSON circuit reports, as plain dicts: build (stamp and validate), validate on write and on read,
migrate schemas 1.0 → 2.0 → 2.1, read/write files, compare two. Typed values live in result.py, which calls this
module (never the reverse).

Beyond the JSON Schema (`assets/schemas/circuit_report.schema.json`) a report must fit its model: every score grid
is n_layers × n_heads, every head name ("L.H") is inside the model, and the ground truth's method is not one of the
scored methods (a method scored against itself has ROC-AUC 1 by construction); edge attribution (2.1) describes the
model's own graph and holds one score per edge of it.

2.1 adds, all optional in meaning (null when not computed): `edge_attribution` (edge scores over MIB's whole model
graph per edge method, MIB's edge-level faithfulness with CPR/CMD), `intervals` (how the bootstrap intervals were
made) and `roc_auc_ci` / `cpr_ci` / `cmd_ci` beside each value. A 2.0 report reads as 2.1 with those null.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import json
import math
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from headscope import assets
from headscope.circuits.scoring import metrics_json
from headscope.errors import InputError
from headscope.files import read_bytes

SCHEMA_VERSION = "2.1"
READABLE_VERSIONS = ("1.0", "2.0", "2.1")
# Edge scores for ~123k edges are ~0.66 MB of base64 per method (float32); the rest of a report stays under 0.5 MB.
MAX_REPORT_BYTES = 8_000_000
SCHEMA_FILES = {
    "2.1": "circuit_report.schema.json",
    "2.0": "circuit_report-2.0.schema.json",
    "1.0": "circuit_report-1.0.schema.json",
}


@functools.cache
def schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    return assets.read_json("schemas", SCHEMA_FILES[version])


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def software_versions() -> dict[str, str]:
    names = ("headscope", "torch", "transformers", "transformer-lens", "numpy", "scipy")
    return {n.replace("-", "_"): _version(n) for n in names} | {"python": platform.python_version()}


def plain(obj: Any) -> Any:
    """JSON-ready: tuples → lists, numpy scalars → Python numbers, NaN/±inf → None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def build(payload: dict[str, Any]) -> dict[str, Any]:
    """A report from result.py's payload: version, creation time and software stamped where empty; validated."""
    report = plain({"schema_version": SCHEMA_VERSION, **payload})
    report["created_at"] = payload.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds")
    report["software"] = payload.get("software") or software_versions()
    return validate_report(report)


# ---- validation --------------------------------------------------------------------------------------------------
def _first_error(err: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    return f"{where}: {err.message[:200]}"


def _schema_check(report: dict[str, Any], version: str) -> None:
    validator = jsonschema.Draft202012Validator(schema(version))
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    if errors:
        raise InputError(f"circuit report is invalid at {_first_error(errors[0])}")


def _check_version(report: Any) -> str:
    if not isinstance(report, dict):
        raise InputError("circuit report: expected a JSON object")
    version = report.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise InputError(
            f"circuit report: schema_version {version!r} is not supported "
            f"(this headscope reads {', '.join(map(repr, READABLE_VERSIONS))})"
        )
    return str(version)


def _check_grid(grid: list[list[float]], shape: tuple[int, int], where: str) -> None:
    if (len(grid), *{len(r) for r in grid}) != shape:
        raise InputError(f"circuit report: {where} is not {shape[0]} layers × {shape[1]} heads")


def _check_heads(names: list[str], shape: tuple[int, int], where: str) -> None:
    for name in names:
        layer, head = (int(v) for v in name.split("."))
        if layer >= shape[0] or head >= shape[1]:
            raise InputError(
                f"circuit report: {where} names head {name}, outside the model's {shape[0]} layers × {shape[1]} heads"
            )


def _head_lists(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    out = [(k, report[k]) for k in ("ranked", "circuit")] + [
        ("ground_truth.heads", report["ground_truth"]["heads"])
    ]
    out += [(f"published[{i}].heads", p["heads"]) for i, p in enumerate(report["published"])]
    for e in (report.get("edges") or {}).get("edges", []):
        out.append(("edges", [e["sender"], e["receiver"]]))
    return out


def validate_report(report: Any) -> dict[str, Any]:
    """The report itself if it is a valid current-schema report of its model, else an InputError naming the problem."""
    if _check_version(report) != SCHEMA_VERSION:
        raise InputError(
            f"circuit report: schema_version {report['schema_version']!r} must be migrated first"
        )
    _schema_check(report, SCHEMA_VERSION)
    shape = (report["model"]["n_layers"], report["model"]["n_heads"])
    for m, body in report["methods"].items():
        _check_grid(body["scores"], shape, f"methods.{m}.scores")
    _check_grid(report["ground_truth"]["effects"], shape, "ground_truth.effects")
    for where, names in _head_lists(report):
        _check_heads(names, shape, where)
    truth = report["ground_truth"]["method"]
    for part in ("methods", "metrics", "runtime_s"):
        if truth in report[part]:
            raise InputError(
                f"circuit report: {part} scores {truth!r}, the ground truth's own method (it would be scored "
                "against itself)"
            )
    if set(report["runtime_s"]) != set(report["methods"]):
        raise InputError("circuit report: runtime_s must list exactly the scored methods")
    if report.get("edge_attribution") is not None:
        _check_edge_attribution(report["edge_attribution"], report["model"])
    return report


def _check_edge_attribution(ea: dict[str, Any], model: dict[str, Any]) -> None:
    """The graph is the model's, and every array has one value per edge / sender / size."""
    from headscope.circuits.edges_graph import EdgeGraph
    from headscope.circuits.edges_result import unpack

    g = ea["graph"]
    if (g["n_layers"], g["n_heads"]) != (model["n_layers"], model["n_heads"]):
        raise InputError(
            f"circuit report: edge_attribution.graph is {g['n_layers']} layers × {g['n_heads']} heads, the model "
            f"{model['n_layers']} × {model['n_heads']}"
        )
    graph = EdgeGraph(g["n_layers"], g["n_heads"], g["n_kv_heads"])
    for name, m in ea["methods"].items():
        n = unpack(m["scores"]).size
        if n != graph.n_edges or len(m["node_scores"]) != graph.n_forward:
            raise InputError(
                f"circuit report: edge_attribution.methods.{name} has {n} edge scores and {len(m['node_scores'])} "
                f"node scores; the graph has {graph.n_edges} edges and {graph.n_forward} senders"
            )
    faith = ea.get("faithfulness") or {"curves": [], "sizes": []}
    for c in faith["curves"]:
        keys = (
            "n_edges",
            "kept_edges",
            "kept_nodes",
            "faithfulness",
            "signed_kept_edges",
            "signed_faithfulness",
        )
        lengths = {len(c[k]) for k in keys}
        if lengths != {len(faith["sizes"])}:
            raise InputError(
                f"circuit report: edge faithfulness of {c['method']} does not have one value per size"
            )


# ---- migration ---------------------------------------------------------------------------------------------------
def migrate(report: Any) -> Any:
    """An older report as the current schema (2.1 unchanged; validation comes after): 1.0 → 2.0 → 2.1."""
    version = _check_version(report)
    if version == SCHEMA_VERSION:
        return report
    old = _from_1_0(report) if version == "1.0" else report
    _schema_check(old, "2.0")
    new = copy.deepcopy(old) if old is report else old
    new.update(schema_version=SCHEMA_VERSION, edge_attribution=None, intervals=None)
    return new


def _from_1_0(report: Any) -> Any:
    """A schema-1.0 report as schema 2.0.

    1.0 scored `activation_patching` as a method against its own thresholded effects. In 2.0 those effects are the
    ground truth's, that method leaves `methods`/`metrics`/`runtime_s`, and ROC points are added. 1.0 runs
    normalised decoder atoms and took codes on held-out examples only; the config says so."""
    _schema_check(report, "1.0")
    old = copy.deepcopy(report)
    ap = old["methods"].pop("activation_patching")
    old["metrics"].pop("activation_patching", None)
    gt_runtime = float(old["runtime_s"].pop("activation_patching"))
    gt = old["ground_truth"]
    clean = float(ap.get("clean_metric", gt["gap"]))
    n_l = old["model"]["n_layers"]
    old["ground_truth"] = {
        "method": gt.get("kind", "activation_patching"), "mode": gt["mode"], "metric": "logit_diff",
        "threshold_frac": gt["threshold_frac"], "heads": gt["heads"], "n_positive": gt["n_positive"],
        "runtime_s": gt_runtime, "effects": ap["scores"], "clean_metric": clean,
        "corrupt_metric": float(ap.get("corrupt_metric", clean - gt["gap"])),
        "layers": _layers(old["config"].get("layers"), n_l),
    }  # fmt: skip
    old["methods"] = {m: {"scores": b["scores"], "info": _info(m, b)} for m, b in old["methods"].items()}
    old["metrics"] = _metrics_with_roc(old)
    for p in old["published"]:
        p["metrics"].pop("activation_patching", None)
    old["config"]["sae"].setdefault("decoder_norm", "atoms")
    old.update(schema_version="2.0", faithfulness=None, edges=None, stability=None, sae_file=None)
    old["warnings"] = [
        *old["warnings"],
        "migrated from schema 1.0 (atom-normalised SAE, codes on held-out examples)",
    ]
    return old


def _layers(layers: Any, n_layers: int) -> list[int]:
    return list(range(*layers)) if isinstance(layers, list) and len(layers) == 2 else list(range(n_layers))


def _info(method: str, body: dict[str, Any]) -> dict[str, Any]:
    info = {k: v for k, v in body.items() if k != "scores"}
    if method.startswith("sae_"):
        info["decoder_norm"] = "atoms"
    return info


def _metrics_with_roc(report: dict[str, Any]) -> dict[str, Any]:
    shape = (report["model"]["n_layers"], report["model"]["n_heads"])
    gt = report["ground_truth"]
    truth = np.zeros(shape, dtype=bool)
    for name in gt["heads"]:
        layer, head = (int(v) for v in name.split("."))
        if layer < shape[0] and head < shape[1]:
            truth[layer, head] = True
    rows = gt["layers"]
    effects = np.asarray(gt["effects"], dtype=float)[rows]
    k = int(report["circuit_rule"]["size"]) or 1
    out = {}
    for m, body in report["methods"].items():
        scores = np.asarray(body["scores"], dtype=float)[rows]
        scores = np.abs(scores) if m == "attribution_patching" else scores
        out[m] = {**report["metrics"].get(m, {}), **metrics_json(scores, truth[rows], effects, k)}
    return out


# ---- files -------------------------------------------------------------------------------------------------------
def write_report(report: dict[str, Any], path: str | Path) -> Path:
    validate_report(report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return path


def loads_report(text: str | bytes) -> dict[str, Any]:
    """Parse, migrate and validate a report given as text or bytes (the app's upload path: no server paths)."""
    if len(text) > MAX_REPORT_BYTES:
        raise InputError(f"circuit report is larger than {MAX_REPORT_BYTES // 1_000_000} MB")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise InputError(f"circuit report is not valid JSON: {str(e)[:200]}") from None
    return validate_report(migrate(data))


def loads_upload(data: Any, what: str) -> dict[str, Any]:
    """An uploaded report: bytes or pasted text, never a server path (a path string is just bad JSON)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, bytes):
        raise InputError(f"upload {what} as a JSON file")
    return loads_report(data)


def read_report(path: str | Path) -> dict[str, Any]:
    return loads_report(read_bytes(path, "circuit report", limit=MAX_REPORT_BYTES))


# ---- comparison --------------------------------------------------------------------------------------------------
def _delta(a: Any, b: Any) -> dict[str, Any]:
    both = isinstance(a, int | float) and isinstance(b, int | float)
    return {"a": a, "b": b, "delta": (b - a) if both else None}


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Heads added to / removed from the circuit (b relative to a) and the change of every metric both have."""
    a, b = validate_report(migrate(a)), validate_report(migrate(b))
    ma, mb = a["model"], b["model"]
    if (ma["name"], ma.get("sha256")) != (mb["name"], mb.get("sha256")):
        raise InputError(
            f"the reports are from different models ({ma['name']} {ma.get('sha256')} vs {mb['name']} {mb.get('sha256')}); "
            "compare reports of one model"
        )
    ca, cb = a["circuit"], b["circuit"]
    common = [m for m in a["metrics"] if m in b["metrics"]]
    keys = ("roc_auc", "precision", "recall", "spearman")
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
            m: {k: _delta(a["metrics"][m].get(k), b["metrics"][m].get(k)) for k in keys} for m in common
        },
        "runtime_s": {m: _delta(a["runtime_s"].get(m), b["runtime_s"].get(m)) for m in common},
        "ground_truth_n_positive": _delta(len(a["ground_truth"]["heads"]), len(b["ground_truth"]["heads"])),
        "ground_truth_runtime_s": _delta(a["ground_truth"]["runtime_s"], b["ground_truth"]["runtime_s"]),
    }


def comparison_rows(diff: dict[str, Any]) -> list[dict[str, Any]]:
    """`compare_reports` as rows {what, a, b, delta}: the head changes, then one per method and metric."""
    rows: list[dict[str, Any]] = [
        {"what": "heads added to the circuit", "a": "", "b": ", ".join(diff["heads_added"]) or "—"},
        {"what": "heads removed from the circuit", "a": ", ".join(diff["heads_removed"]) or "—", "b": ""},
    ]
    for m, vals in diff["metrics"].items():
        rows += [
            {"what": f"{m}: {k}", "a": d["a"], "b": d["b"], "delta": d["delta"]} for k, d in vals.items()
        ]
    return rows
