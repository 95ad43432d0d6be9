"""`headscope circuits run|compare`: find a circuit and write its report; diff two reports."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from headscope.cli.common import json_flag, model_args, read_file, writable_file
from headscope.errors import InputError

MAX_TASK_FILE_BYTES = 2_000_000


def register(sub: Any) -> None:
    p = sub.add_parser(
        "circuits", help="circuit discovery with discrete SAEs, patching baselines, JSON reports"
    )
    csub = p.add_subparsers(dest="circuits_command", required=True)
    r = csub.add_parser("run", help="find a task's circuit and write a JSON report")
    # Names only (importing the task registry would load torch for `headscope --help`); checked by CircuitConfig.
    r.add_argument("--task", default="ioi", help="ioi, greater_than, docstring or custom")
    r.add_argument(
        "--task-file",
        help="custom task JSON: {name, positive: [{prompt, answer, wrong}], negative: [{prompt}]}",
    )
    model_args(r)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--n-examples", type=int, default=24, help="positive/negative pairs (default 24)")
    r.add_argument("--epochs", type=int, default=500, help="SAE full-batch epochs (default 500)")
    r.add_argument(
        "--reduce", choices=["mean", "last"], default="mean", help="head outputs: mean over positions or last"
    )
    r.add_argument("--circuit-k", type=int, default=None, help="circuit = top-k heads by SAE node score")
    r.add_argument("--out", default="circuit_report.json")
    r.set_defaults(func=cmd_run)
    c = csub.add_parser("compare", help="diff two circuit reports (same model)")
    c.add_argument("a")
    c.add_argument("b")
    json_flag(c)
    c.set_defaults(func=cmd_compare)


def _task_spec(args: argparse.Namespace) -> Any:
    if args.task != "custom":
        if args.task_file:
            raise InputError("--task-file is only for --task custom")
        return None
    if not args.task_file:
        raise InputError("--task custom needs --task-file")
    return read_file(args.task_file, "task", max_bytes=MAX_TASK_FILE_BYTES)


def headline(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": report["task"]["name"],
        "model": report["model"]["name"],
        "accuracy_positive": report["task"]["performance"]["positive"]["accuracy"],
        "circuit": report["circuit"],
        "ground_truth_heads": report["ground_truth"]["n_positive"],
        "roc_auc": {m: v["roc_auc"] for m, v in report["metrics"].items()},
        "runtime_s": report["runtime_s"],
        "warnings": report["warnings"],
    }


def cmd_run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from headscope.circuits.finder import CircuitConfig, find_circuit
    from headscope.circuits.report import write_report
    from headscope.circuits.sae import SAEConfig
    from headscope.models import ModelHandle

    spec = _task_spec(args)
    out_path = writable_file(args.out)
    cfg = CircuitConfig(
        task=args.task, n_examples=args.n_examples, seed=args.seed, reduce=args.reduce,
        sae=SAEConfig(epochs=args.epochs), circuit_k=args.circuit_k,
    )  # fmt: skip
    handle = ModelHandle.load(args.model, device=args.device)
    with tqdm(total=100, file=sys.stderr, desc="circuits", unit="%") as bar:

        def progress(stage: str, frac: float) -> None:
            bar.set_description(stage[:40])
            bar.update(max(0, round(100 * frac) - bar.n))

        report = find_circuit(handle, cfg, task_spec=spec, progress=progress).to_json()
        bar.update(100 - bar.n)
    path = write_report(report, out_path)
    out = {"report": str(path), **headline(report)}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"report: {path}")
        for w in report["warnings"]:
            print(f"warning: {w}")
        print(f"circuit ({report['circuit_rule']['rule']}): {' '.join(report['circuit'])}")
        for m, auc in out["roc_auc"].items():
            auc_s = "n/a" if auc is None else f"{auc:.3f}"
            print(f"{m:22} ROC-AUC {auc_s:>6}  {report['runtime_s'][m]:8.2f} s")


def cmd_compare(args: argparse.Namespace) -> None:
    from headscope.circuits.report import compare_reports, read_report

    diff = compare_reports(read_report(args.a), read_report(args.b))
    if args.json:
        print(json.dumps(diff, indent=1))
        return
    print(f"model {diff['model']}; task {diff['task']['a']} → {diff['task']['b']}")
    print(
        f"heads added: {' '.join(diff['heads_added']) or '-'}; removed: {' '.join(diff['heads_removed']) or '-'}"
    )
    for m, d in diff["metrics"].items():
        print(f"{m:22} ROC-AUC {d['roc_auc']['a']} → {d['roc_auc']['b']}")
