"""`headscope circuits run|compare|export|import|faithfulness|ablate`: find a circuit and write its report (schema
2.1), diff two reports, convert to and from field formats (attribution graph for circuit-tracer / Neuronpedia, MIB
circuit file), faithfulness curves of a report (head or edge level), and the task metric with a head selection
mean-ablated. `to_argv(config)` is the exact inverse of `circuits run`'s parser."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
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
    r = csub.add_parser("run", help="find a task's circuit and write a JSON report (schema 2.1)")
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
    r.add_argument("--latents", type=int, default=200, help="SAE latents (default 200)")
    r.add_argument("--lr", type=float, default=1e-3, help="SAE learning rate (default 1e-3)")
    r.add_argument("--n-train", type=int, default=10, help="SAE training examples (default 10)")
    r.add_argument("--sae-seed", type=int, default=None, help="SAE init and split seed (default: --seed)")
    r.add_argument("--circuit-k", type=int, default=None, help="circuit = top-k heads by SAE node score")
    r.add_argument(
        "--circuit-threshold", type=float, default=None, help="or: heads with SAE node score ≥ this"
    )
    r.add_argument(
        "--sae-variant",
        default="named_separation",  # = circuits.variants.DEFAULT_VARIANT (not imported here: it loads torch)
        help="discrete-SAE variant behind sae_node/sae_edge (default named_separation, the study's pick; "
        "reference = the paper's method exactly); the variants are listed in headscope/circuits/README.md",
    )
    r.add_argument(
        "--ig-steps", type=int, default=5, help="EAP-IG interpolation steps (heads and edges; default 5)"
    )
    r.add_argument(
        "--gt-frac", type=float, default=0.03, help="ground truth: |effect| ≥ this × |clean − corrupted|"
    )
    r.add_argument(
        "--edges", action="store_true", help="also path-patch an edge ground truth and score sae_edge on it"
    )
    r.add_argument(
        "--edge-heads", type=int, default=20, help="--edges: pairs among this many top heads (default 20)"
    )
    r.add_argument("--stability", action="store_true", help="bootstrap over prompt pairs and SAE seeds")
    r.add_argument("--stability-seeds", type=int, default=5, help="SAE seeds for --stability (default 5)")
    r.add_argument(
        "--n-bootstrap",
        type=int,
        default=200,
        help="resamples for the intervals and --stability (default 200)",
    )
    r.add_argument(
        "--no-intervals", action="store_true", help="skip the bootstrap intervals of ROC-AUC, CPR, CMD"
    )
    r.add_argument(
        "--edge-methods", default="",
        help="edge attribution over the whole model graph (MIB's): eap, eap_ig or eap,eap_ig (default: none)",
    )  # fmt: skip
    r.add_argument(
        "--no-edge-faithfulness",
        action="store_true",
        help="with --edge-methods: skip MIB's edge faithfulness",
    )
    r.add_argument("--no-faithfulness", action="store_true", help="skip the faithfulness curves")
    r.add_argument(
        "--layers", default=None, help="analyse only layers START:STOP (Python range; default: all layers)"
    )
    r.add_argument("--out", default="circuit_report.json", help="report file; '-' writes none")
    r.add_argument(
        "--print-report",
        action="store_true",
        help="with --json: print the whole report (schema 2.1) instead of the headline "
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
    e.add_argument(
        "--method", default=None,
        help="whose scores: an edge method (eap, eap_ig; default eap_ig when the report has edge scores) or, for "
        "neuronpedia, a head method (sae_node, ...)",
    )  # fmt: skip
    e.add_argument(
        "--circuit-size", default=None,
        help="edge circuit size, e.g. 5%% (default: graphs 0.5%%; MIB files the smallest MIB size with faithfulness ≥ 0.8, else 1%%)",
    )  # fmt: skip
    where = e.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="the file to write")
    where.add_argument(
        "--out-dir",
        help="neuronpedia: write <slug>.json and graph-metadata.json here (circuit-tracer's serve)",
    )
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
    f.add_argument(
        "--level", choices=["head", "edge"], default="head",
        help="head: mean-ablation curves over heads; edge: MIB's edge-level curves (needs edge scores)",
    )  # fmt: skip
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
        "roc_auc_ci": {m: v.get("roc_auc_ci") for m, v in report["metrics"].items()},
        "runtime_s": report["runtime_s"],
        "edges": _edge_headline(report.get("edge_attribution")),
        "warnings": report["warnings"],
        "summary": _summary(report),
    }


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The verdicts the app's summary says (best method, ties, near chance, boundary tie, small gaps)."""
    from headscope.circuits.result import CircuitResult
    from headscope.circuits.summary import summarize

    return summarize(CircuitResult.from_json(report)).to_json()


def _edge_headline(ea: dict[str, Any] | None) -> dict[str, Any] | None:
    if ea is None:
        return None
    faith = ea.get("faithfulness") or {"curves": []}
    curves = {c["method"]: {k: c[k] for k in ("cpr", "cpr_ci", "cmd", "cmd_ci")} for c in faith["curves"]}
    return {
        "n_edges": ea["graph"]["n_edges"],
        "runtime_s": {m: b["runtime_s"] for m, b in ea["methods"].items()},
        "faithfulness": curves,
    }


def _config(args: argparse.Namespace) -> Any:
    from headscope.circuits.config import CircuitConfig
    from headscope.circuits.sae import SAEConfig

    sae = SAEConfig(
        n_latents=args.latents, l1=args.l1, lr=args.lr, epochs=args.epochs, decoder_norm=args.decoder_norm
    )
    return CircuitConfig(
        task=args.task, n_examples=args.n_examples, seed=args.seed, n_train=args.n_train, reduce=args.reduce, sae=sae,
        circuit_k=args.circuit_k, circuit_threshold=args.circuit_threshold, gt_frac=args.gt_frac,
        layers=_layer_range(args.layers), sae_seed=args.sae_seed, ig_steps=args.ig_steps,
        faithfulness=not args.no_faithfulness, edges=args.edges, edge_heads=args.edge_heads,
        stability=args.stability, n_bootstrap=args.n_bootstrap, stability_seeds=args.stability_seeds,
        edge_methods=args.edge_methods, edge_faithfulness=not args.no_edge_faithfulness,
        intervals=not args.no_intervals, sae_variant=args.sae_variant,
    )  # fmt: skip


ARGV_CONFIGS = (
    "headscope.circuits.config:CircuitConfig",
)  # what to_argv writes (tests/unit/test_cli_argv.py)


def config_from_argv(argv: Sequence[str]) -> Any:
    """The CircuitConfig the command `argv` (what follows `headscope`) runs: its parser and checks, as `main`."""
    from headscope.cli import build_parser

    args = build_parser().parse_args(list(argv))
    if args.command != "circuits" or args.circuits_command != "run":
        raise InputError(f"not a circuits run command: {' '.join(argv[:2])}")
    return _config(args)


def to_argv(cfg: Any, task_file: str | None = None) -> list[str]:
    """The `headscope circuits run` arguments that parse back into exactly `cfg` (a CircuitConfig; a custom
    task's JSON goes by `task_file`)."""
    argv = ["circuits", "run", "--task", cfg.task, "--n-examples", str(cfg.n_examples), "--seed", str(cfg.seed),
            "--n-train", str(cfg.n_train), "--reduce", cfg.reduce, "--latents", str(cfg.sae.n_latents),
            "--lr", repr(cfg.sae.lr), "--epochs", str(cfg.sae.epochs), "--decoder-norm", cfg.sae.decoder_norm,
            "--gt-frac", repr(cfg.gt_frac), "--sae-variant", cfg.sae_variant, "--ig-steps", str(cfg.ig_steps), "--edge-heads", str(cfg.edge_heads),
            "--n-bootstrap", str(cfg.n_bootstrap), "--stability-seeds", str(cfg.stability_seeds)]  # fmt: skip
    optional = {"--task-file": task_file, "--l1": cfg.sae.l1, "--sae-seed": cfg.sae_seed,
                "--circuit-k": cfg.circuit_k, "--circuit-threshold": cfg.circuit_threshold}  # fmt: skip
    # flag=value: a negative threshold in exponent form ("-2e-308") would read as an option otherwise
    argv += [
        f"{flag}={repr(v) if isinstance(v, float) else v}" for flag, v in optional.items() if v is not None
    ]
    if cfg.layers is not None:
        argv += ["--layers", f"{cfg.layers[0]}:{cfg.layers[1]}"]
    if cfg.edge_methods:
        argv += ["--edge-methods", ",".join(cfg.edge_methods)]
    flags = {"--no-faithfulness": not cfg.faithfulness, "--edges": cfg.edges, "--stability": cfg.stability,
             "--no-intervals": not cfg.intervals, "--no-edge-faithfulness": not cfg.edge_faithfulness}  # fmt: skip
    return argv + [flag for flag, on in flags.items() if on]


def ablate_argv(cfg: Any, heads: str) -> list[str]:
    """The `headscope circuits ablate` arguments that parse back into `cfg` (an AblationConfig of a built-in task)
    and the head selection `heads` (the L.H grammar, e.g. "9.4, 12.*")."""
    return ["circuits", "ablate", "--task", cfg.task, "--n-examples", str(cfg.n_examples), "--seed", str(cfg.seed),
            f"--heads={heads}"]  # fmt: skip


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
    for w in out["summary"]["warnings"]:
        print(f"warning: {w}")
    gt = out["ground_truth"]
    print(f"ground truth: {gt['method']} ({gt['mode']}), {gt['heads']} heads, {gt['runtime_s']:.1f} s")
    print(f"circuit ({report['circuit_rule']['rule']}): {' '.join(report['circuit'])}")
    for m, auc in out["roc_auc"].items():
        auc_s = "n/a" if auc is None else f"{auc:.3f} {_ci(out['roc_auc_ci'][m])}"
        print(f"{m:22} ROC-AUC {auc_s:>22}  {report['runtime_s'][m]:8.2f} s")
    agree = out["summary"]["agreement"]
    tie = " (a tie)" if len(agree["best"]) > 1 else ""
    print(f"best agreement with the ground truth: {', '.join(agree['best']) or 'n/a'}{tie}")
    if agree["near_chance"]:
        print(f"near chance (95 % CI contains 0.5): {', '.join(agree['near_chance'])}")
    edges = out["edges"]
    for m, secs in (edges or {"runtime_s": {}})["runtime_s"].items():
        c = edges["faithfulness"].get(m) if edges else None
        area = f"CPR {c['cpr']:.3f} {_ci(c['cpr_ci'])}  CMD {c['cmd']:.3f} {_ci(c['cmd_ci'])}" if c else ""
        print(f"edges {m:16} {edges['n_edges'] if edges else 0} edges  {secs:8.2f} s  {area}")


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
    from headscope.circuits.formats import export_graph_dir, export_report, parse_size
    from headscope.circuits.report import read_report

    size = parse_size(args.circuit_size)
    if args.out_dir and args.format != "neuronpedia":
        raise InputError("--out-dir is for --format neuronpedia (circuit-tracer's graph folder); use --out")
    out = writable_file(args.out) if args.out else None
    data = export_report(read_report(args.report), args.format, args.method, size)
    if out is not None:
        out.write_text(json.dumps(data), encoding="utf-8")
        written = [str(out)]
    else:
        written = [str(p) for p in export_graph_dir(data, args.out_dir)]
    info = data["metadata"]["info"] if args.format == "neuronpedia" else data
    summary = {
        "files": written, "format": args.format, "nodes": len(data["nodes"]),
        "method": info.get("method", info.get("score_method")), "circuit_size": info.get("circuit_size"),
        "edges": len(data["edges"]) if args.format == "mib" else len(data["links"]),
    }  # fmt: skip
    print(json.dumps(summary, indent=1) if args.json else f"{args.format}: {', '.join(written)}")


def cmd_import(args: argparse.Namespace) -> None:
    from headscope.circuits.formats import read_export
    from headscope.circuits.report import write_report

    out = writable_file(args.out)
    got = read_export(args.file)
    if isinstance(got, dict):
        write_report(got, out)
        print(json.dumps({"report": str(out), **headline(got)}, indent=1) if args.json else f"report: {out}")
        return
    out.write_text(json.dumps(got.to_json()), encoding="utf-8")  # a file made elsewhere: its scores only
    summary = {
        "scores": str(out),
        "kind": got.kind,
        "source_format": got.source_format,
        "in_graph": len(got.in_graph),
    }
    print(json.dumps(summary, indent=1) if args.json else f"scores only (not a headscope export): {out}")


def cmd_faithfulness(args: argparse.Namespace) -> None:
    from headscope.circuits.report import read_report, write_report

    report = read_report(args.report)
    if args.out:
        writable_file(args.out)
    if args.level == "edge":
        return _edge_faithfulness(report, args)
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
        print(
            f"{c['method']:22} CPR {c['cpr']:.3f} {_ci(c.get('cpr_ci'))}  CMD {c['cmd']:.3f} {_ci(c.get('cmd_ci'))}  k80 {c['k80']}"
        )


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _edge_faithfulness(report: dict[str, Any], args: argparse.Namespace) -> None:
    """MIB's edge-level curves of the report's edge methods (computed if the report has none)."""
    from headscope.circuits.report import write_report

    ea = report.get("edge_attribution")
    if ea is None:
        raise InputError(
            "this report has no edge scores; run `headscope circuits run --edge-methods eap_ig` first"
        )
    if ea.get("faithfulness") is None:
        report = _recompute(report, args, _add_edge_faithfulness)
    if args.out:
        write_report(report, args.out)
    f = report["edge_attribution"]["faithfulness"]
    if args.json:
        print(json.dumps(f, indent=1))
        return
    print(
        f"m(N) = {f['full_metric']:.3f}, m(∅) = {f['empty_metric']:.3f}; outside edges: {f['intervention']}"
    )
    for c in f["curves"]:
        print(
            f"{c['method']:8} CPR {c['cpr']:.3f} {_ci(c.get('cpr_ci'))}  CMD {c['cmd']:.3f} {_ci(c.get('cmd_ci'))}"
        )


def _with_faithfulness(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return _recompute(report, args, _add_head_faithfulness)


def _add_head_faithfulness(result: Any, handle: Any, prep: Any) -> Any:
    import dataclasses

    from headscope.circuits.faithfulness import faithfulness_curves

    cfg = result.config
    rankings = {m.name: m.ranking() for m in result.methods}
    boot = cfg.n_bootstrap if cfg.intervals else 0
    faith = faithfulness_curves(
        handle, prep, rankings, list(result.ground_truth.layers), n_bootstrap=boot, seed=cfg.seed
    )
    return dataclasses.replace(result, faithfulness=faith)


def _add_edge_faithfulness(result: Any, handle: Any, prep: Any) -> Any:
    import dataclasses

    from headscope.circuits.edges_run import edge_faithfulness

    cfg, ea = result.config, result.edge_attribution
    bar, progress = _bar()
    with bar:
        faith = edge_faithfulness(
            handle, prep, ea.methods, n_bootstrap=cfg.n_bootstrap if cfg.intervals else 0, seed=cfg.seed,
            progress=lambda i, n: progress("edge faithfulness", i / n),
        )  # fmt: skip
    return dataclasses.replace(result, edge_attribution=dataclasses.replace(ea, faithfulness=faith))


def _recompute(report: dict[str, Any], args: argparse.Namespace, add: Any) -> dict[str, Any]:
    """Recompute the report's task on its model (same seed and size) and add what `add` computes."""
    from headscope.circuits import patching
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
    return add(result, handle, prep).to_json()


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
