"""`headscope circuits run|compare|export|import|faithfulness|ablate`: find a circuit and write its report (schema
2.0), diff two reports, convert to and from field formats (Neuronpedia graph, MIB circuit file), faithfulness
curves of a report, and the task metric with a head selection mean-ablated."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from headscope.cli.common import json_flag, model_args, writable_file
from headscope.errors import InputError
from headscope.files import read_text

MAX_TASK_FILE_BYTES = 2_000_000
TASK_HELP = "ioi, greater_than, docstring, induction or custom"


def _task_args(p: argparse.ArgumentParser) -> None:
    # Names only (importing the task registry would load torch for `headscope --help`); checked by CircuitConfig.
    p.add_argument("--task", default="ioi", help=TASK_HELP)
    p.add_argument(
        "--task-file",
        help="custom task JSON: {name, positive: [{prompt, answer, wrong}], negative: [{prompt}]}",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-examples", type=int, default=24, help="positive/negative pairs (default 24)")


def _run_parser(csub: Any) -> None:
    r = csub.add_parser("run", help="find a task's circuit and write a JSON report (schema 2.0)")
    _task_args(r)
    model_args(r)
    r.add_argument("--epochs", type=int, default=500, help="SAE full-batch epochs (default 500)")
    r.add_argument(
        "--reduce", choices=["mean", "last"], default="mean", help="head outputs: mean over positions or last"
    )
    r.add_argument("--decoder-norm", choices=["reference_rows", "atoms"], default="reference_rows",
                   help="SAE decoder constraint: per row as the reference code (default) or per atom")  # fmt: skip
    r.add_argument(
        "--l1",
        type=float,
        default=None,
        help="SAE L1 weight (default: the task's, 0.05 docstring, else 0.02)",
    )
    r.add_argument("--circuit-k", type=int, default=None, help="circuit = top-k heads by SAE node score")
    r.add_argument(
        "--sae-variant",
        default="named_separation",  # = circuits.variants.DEFAULT_VARIANT (not imported here: it loads torch)
        help="discrete-SAE variant behind sae_node/sae_edge (default named_separation, the study's pick; "
        "reference = the paper's method exactly); the variants are listed in headscope/circuits/README.md",
    )
    r.add_argument(
        "--gt-frac", type=float, default=0.03, help="ground truth: |effect| ≥ this × |clean − corrupted|"
    )
    r.add_argument(
        "--edges", action="store_true", help="also path-patch an edge ground truth and score sae_edge on it"
    )
    r.add_argument("--stability", action="store_true", help="bootstrap over prompt pairs and SAE seeds")
    r.add_argument("--n-bootstrap", type=int, default=200, help="stability resamples (default 200)")
    r.add_argument("--no-faithfulness", action="store_true", help="skip the faithfulness curves")
    r.add_argument(
        "--layers", default=None, help="analyse only layers START:STOP (Python range; default: all layers)"
    )
    r.add_argument("--out", default="circuit_report.json", help="report file; '-' writes none")
    r.add_argument(
        "--print-report",
        action="store_true",
        help="with --json: print the whole report (schema 2.0) instead of the headline "
        "(what the app's cluster runner reads)",
    )
    r.set_defaults(func=cmd_run)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "circuits", help="circuit discovery: ground truth, discrete-SAE and gradient methods, reports"
    )
    csub = p.add_subparsers(dest="circuits_command", required=True)
    _run_parser(csub)
    c = csub.add_parser("compare", help="diff two circuit reports (same model)")
    c.add_argument("a")
    c.add_argument("b")
    json_flag(c)
    c.set_defaults(func=cmd_compare)
    e = csub.add_parser("export", help="write a report as a Neuronpedia graph or an MIB circuit file")
    e.add_argument("report")
    e.add_argument("--format", required=True, choices=["neuronpedia", "mib"])
    e.add_argument("--method", default=None, help="whose scores to export (default: the circuit's, sae_node)")
    e.add_argument("--out", required=True)
    json_flag(e)
    e.set_defaults(func=cmd_export)
    i = csub.add_parser("import", help="read a headscope Neuronpedia/MIB export back into a report")
    i.add_argument("file")
    i.add_argument("--out", required=True)
    json_flag(i)
    i.set_defaults(func=cmd_import)
    f = csub.add_parser(
        "faithfulness", help="a report's faithfulness curves (computed if the report has none)"
    )
    f.add_argument("report")
    f.add_argument("--task-file", help="the custom task's JSON, if the report is of a custom task")
    f.add_argument("--device", choices=["cpu", "cuda"], default=None)
    f.add_argument("--out", default=None, help="also write the report with its curves to this file")
    json_flag(f)
    f.set_defaults(func=cmd_faithfulness)
    a = csub.add_parser(
        "ablate", help="task metric with --heads mean-ablated, and with all other heads ablated"
    )
    _task_args(a)
    a.add_argument("--heads", required=True, help="head selection, e.g. '9.4, 12.*' (L.H, L.*, *.H)")
    model_args(a)
    a.set_defaults(func=cmd_ablate)


def _task_spec(args: argparse.Namespace) -> Any:
    if args.task != "custom":
        if args.task_file:
            raise InputError("--task-file is only for --task custom")
        return None
    if not args.task_file:
        raise InputError("--task custom needs --task-file")
    return read_text(args.task_file, "task", limit=MAX_TASK_FILE_BYTES)


def headline(report: dict[str, Any]) -> dict[str, Any]:
    gt = report["ground_truth"]
    return {
        "task": report["task"]["name"],
        "model": report["model"]["name"],
        "accuracy_positive": report["task"]["performance"]["positive"]["accuracy"],
        "circuit": report["circuit"],
        "ground_truth": {
            "method": gt["method"],
            "mode": gt["mode"],
            "heads": len(gt["heads"]),
            "runtime_s": gt["runtime_s"],
        },
        "roc_auc": {m: v["roc_auc"] for m, v in report["metrics"].items()},
        "runtime_s": report["runtime_s"],
        "warnings": report["warnings"],
    }


def _config(args: argparse.Namespace) -> Any:
    from headscope.circuits.config import CircuitConfig
    from headscope.circuits.sae import SAEConfig

    return CircuitConfig(
        task=args.task, n_examples=args.n_examples, seed=args.seed, reduce=args.reduce,
        sae=SAEConfig(epochs=args.epochs, l1=args.l1, decoder_norm=args.decoder_norm), circuit_k=args.circuit_k,
        gt_frac=args.gt_frac, faithfulness=not args.no_faithfulness, edges=args.edges, stability=args.stability,
        n_bootstrap=args.n_bootstrap, layers=_layer_range(args.layers), sae_variant=args.sae_variant,
    )  # fmt: skip


def _layer_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start), int(stop)
    except ValueError:
        raise InputError(f"--layers takes START:STOP, e.g. 26:30; got {text!r}") from None


def _bar() -> Any:
    from tqdm import tqdm

    bar = tqdm(total=100, file=sys.stderr, desc="circuits", unit="%")

    def progress(stage: str, frac: float) -> None:
        bar.set_description(stage[:40])
        bar.update(max(0, round(100 * frac) - bar.n))

    return bar, progress


def cmd_run(args: argparse.Namespace) -> None:
    from headscope.circuits.finder import find_circuit
    from headscope.circuits.report import write_report
    from headscope.models import ModelHandle

    spec = _task_spec(args)
    printed = bool(args.print_report and args.json)
    out_path = None if args.out == "-" else writable_file(args.out)
    cfg = _config(args)
    handle = ModelHandle.load(args.model, device=args.device)
    bar, progress = _bar()
    fits: list[Any] = []
    with bar:
        result = find_circuit(handle, cfg, task_spec=spec, progress=progress, on_sae=fits.append)
        bar.update(100 - bar.n)
    report = _with_saved_sae(result, fits[0], out_path)
    if out_path is None:
        from headscope.circuits.report import validate_report

        validate_report(report)  # what writing would have checked
        path: Any = None
    else:
        path = write_report(report, out_path)
    out = {"report": None if path is None else str(path), **headline(report)}
    if printed:
        print(json.dumps(report, indent=1))
        return
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"report: {path if path is not None else '(not written: --out -)'}")
    for w in report["warnings"]:
        print(f"warning: {w}")
    gt = out["ground_truth"]
    print(f"ground truth: {gt['method']} ({gt['mode']}), {gt['heads']} heads, {gt['runtime_s']:.1f} s")
    print(f"circuit ({report['circuit_rule']['rule']}): {' '.join(report['circuit'])}")
    for m, auc in out["roc_auc"].items():
        auc_s = "n/a" if auc is None else f"{auc:.3f}"
        print(f"{m:22} ROC-AUC {auc_s:>6}  {report['runtime_s'][m]:8.2f} s")


HEAD_SCALING = "head_scaling.safetensors"  # beside a saved SAE whose variant normalises head outputs


def sae_folder(report_path: Any) -> Any:
    """Where `circuits run` saves a report's SAE: beside it, `<report stem>.sae/`."""
    return report_path.with_name(report_path.stem + ".sae")


def _with_saved_sae(result: Any, fit: Any, out_path: Any) -> dict[str, Any]:
    """The report, with the run's SAE saved beside it in SAELens format and named in `sae.path` (and the older
    `sae_file`); no report file (`--out -`), no SAE file."""
    import dataclasses

    if out_path is None or result.sae is None:
        return result.to_json()
    from headscope.features import discrete

    folder = sae_folder(out_path)
    r, scaling = fit.fit.resolved, fit.fit.scaling
    parts = {
        k: v.contiguous() for k, v in (("shift", scaling.shift), ("scale", scaling.scale)) if v is not None
    }
    meta = {"variant": r.variant, "seed": result.sae.seed, "read": r.read, "norm": r.norm, "layers": list(fit.layers),
            "n_heads": fit.n_heads, "head_scaling": HEAD_SCALING if parts else None}  # fmt: skip
    discrete.save(fit.fit.trained.sae, folder, hook_name="blocks.{layer}.attn.hook_result", model=fit.model,
                  metadata=meta)  # fmt: skip
    if parts:  # the SAE's inputs are (head output − shift) / scale, per head
        from safetensors.torch import save_file

        save_file(parts, str(folder / HEAD_SCALING))
    sae = dataclasses.replace(result.sae, path=str(folder))
    return dataclasses.replace(result, sae=sae, sae_file=str(folder)).to_json()


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


def cmd_export(args: argparse.Namespace) -> None:
    from headscope.circuits.formats import export_report
    from headscope.circuits.report import read_report

    out = writable_file(args.out)
    data = export_report(read_report(args.report), args.format, args.method)
    out.write_text(json.dumps(data), encoding="utf-8")
    summary = {"out": str(out), "format": args.format, "nodes": len(data["nodes"])}
    print(json.dumps(summary, indent=1) if args.json else f"{args.format} file: {out}")


def cmd_import(args: argparse.Namespace) -> None:
    from headscope.circuits.formats import read_export
    from headscope.circuits.report import write_report

    out = writable_file(args.out)
    report = read_export(args.file)
    write_report(report, out)
    print(json.dumps({"report": str(out), **headline(report)}, indent=1) if args.json else f"report: {out}")


def cmd_faithfulness(args: argparse.Namespace) -> None:
    from headscope.circuits.report import read_report, write_report

    report = read_report(args.report)
    if args.out:
        writable_file(args.out)
    if report["faithfulness"] is None:
        report = _with_faithfulness(report, args)
    if args.out:
        write_report(report, args.out)
    f = report["faithfulness"]
    if args.json:
        print(json.dumps(f, indent=1))
        return
    print(f"m(N) = {f['full_metric']:.3f}, m(∅) = {f['empty_metric']:.3f} over {f['n_components']} heads")
    for c in f["curves"]:
        print(f"{c['method']:22} CPR {c['cpr']:.3f}  CMD {c['cmd']:.3f}  k80 {c['k80']}")


def _with_faithfulness(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Recompute the report's task on its model (same seed and size) and add the curves."""
    import dataclasses

    from headscope.circuits import patching
    from headscope.circuits.faithfulness import faithfulness_curves
    from headscope.circuits.result import CircuitResult
    from headscope.circuits.tasks import make_task
    from headscope.models import ModelHandle

    result = CircuitResult.from_json(report)
    cfg = result.config
    spec = None
    if cfg.task == "custom":
        if not args.task_file:
            raise InputError("this report is of a custom task: give its --task-file")
        spec = read_text(args.task_file, "task", limit=MAX_TASK_FILE_BYTES)
    handle = ModelHandle.load(result.model.name, device=args.device)
    if (handle.facts.n_layers, handle.facts.n_heads) != (result.model.n_layers, result.model.n_heads):
        raise InputError(f"model {result.model.name} no longer has the report's shape")
    prep = patching.prepare(
        handle, make_task(cfg.task, handle.tokenizer, n=cfg.n_examples, seed=cfg.seed, spec=spec)
    )
    rankings = {m.name: m.ranking() for m in result.methods}
    faith = faithfulness_curves(handle, prep, rankings, list(result.ground_truth.layers))
    return dataclasses.replace(result, faithfulness=faith).to_json()


def cmd_ablate(args: argparse.Namespace) -> None:
    from headscope.circuits.ablate import AblationConfig, ablate_selection
    from headscope.models import ModelHandle
    from headscope.selection import parse_patterns

    spec = _task_spec(args)
    parse_patterns(args.heads)  # the grammar is checked before the model loads; the shape after
    cfg = AblationConfig(task=args.task, n_examples=args.n_examples, seed=args.seed)
    handle = ModelHandle.load(args.model, device=args.device)
    heads = handle.head_set(args.heads)
    if not heads:
        raise InputError("--heads selects no head")
    res = ablate_selection(handle, heads, cfg=cfg, spec=spec)
    if args.json:
        print(json.dumps(res.to_json(), indent=1))
        return
    print(f"{res.task} on {res.model}, heads {res.heads} ({res.n_heads}); metric = logit difference")
    print(f"clean {res.clean_metric:.3f} | selection ablated {res.selection_ablated:.3f} | "
          f"all but the selection ablated {res.others_ablated:.3f} | all ablated {res.all_ablated:.3f}")  # fmt: skip
    print(f"faithfulness of the selection: {res.faithfulness:.3f}")
