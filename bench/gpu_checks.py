"""Every capability's CLI on a tiny model, on CUDA and on the CPU, with the two JSON results compared — the
capability part of bench/gpu_run.sh.

Each check is a `headscope` command run in-process twice (`--device cpu`, then `--device cuda`); its JSON results
are compared leaf by leaf (numbers within the check's tolerance; wall-clock fields, paths and versions ignored).
Deterministic computations (entropy with the fused backend and eagerly, a λ sweep, decoding with every strategy:
the tokens must be identical) use tight tolerances; SAE training and the circuit run, whose random draws differ
between the devices' generators, compare loosely. A check whose imports fail on the machine is reported as not
run, with the missing module. `--dry-run` only builds the commands and parses each with the CLI's own parser
(no model is loaded): what the unit test runs. Writes one JSON object to `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root holds `bench`
from bench import conditions

TEXT = "The cat sat on the mat. The cat sat on the mat again, and then the dog sat on the cat."
IGNORE = re.compile(
    r"(^|_)(wall|seconds?|runtime|ms|load|path|out|file|folder|versions?|device|torch)($|_)|_s$"
)


@dataclass(frozen=True)
class Check:
    name: str
    argv: tuple[str, ...]
    rtol: float = 1e-3
    atol: float = 1e-3
    exact: tuple[str, ...] = ()  # keys whose values must match exactly (token ids)


def checks(work: Path) -> list[Check]:
    pos, neg = work / "pos.txt", work / "neg.txt"
    pos.write_text("I love this.\nWhat a wonderful day.\nThis is great.\n")
    neg.write_text("I hate this.\nWhat an awful day.\nThis is terrible.\n")
    tiny = ("--model", "tiny-llama")
    decode = ("decode", "compare", *tiny, "--prompt", "abc abc abd abc ab", "--max-new-tokens", "24")
    return [
        Check("entropy_fused", ("entropy", *tiny, "--text", TEXT, "--backend", "fused", "--lambda", "0.5")),
        Check("entropy_eager", ("entropy", *tiny, "--text", TEXT, "--backend", "eager")),
        Check("locality_sweep", ("locality", "sweep", *tiny, "--text", TEXT, "--lambdas", "0,0.5,1")),
        Check(
            "decode_greedy_strategies",
            (
                *decode,
                "--strategies",
                "greedy,token_recycling,ngram,lookahead,jacobi,layer_skip,speculative",
                "--draft-model",
                "tiny-gpt2",
            ),
            exact=("token_ids", "identical_to_greedy"),
        ),
        Check(
            "decode_sampled_strategies",
            (
                *decode,
                "--strategies",
                "sample,token_recycling,speculative,constrained",
                "--temperature",
                "0.8",
                "--draft-model",
                "tiny-gpt2",
                "--regex",
                "[a-c ]+",
            ),
            exact=("token_ids",),
        ),
        Check(
            "steer_contrastive",
            (
                "steer",
                "contrastive",
                *tiny,
                "--pos",
                str(pos),
                "--neg",
                str(neg),
                "--prompt",
                "Today is",
                "--max-new-tokens",
                "8",
            ),
            rtol=1e-2,
            atol=1e-2,
        ),
        Check(
            "sae_training",
            (
                "features",
                "train",
                *tiny,
                "--hook",
                "resid_post",
                "--layer",
                "1",
                "--latents",
                "16",
                "--topk",
                "4",
                "--tokens",
                "2048",
                "--out",
                str(work / "sae"),
            ),
            rtol=0.2,
            atol=0.1,
        ),
        Check(
            "circuit_run",
            (
                "circuits",
                "run",
                *tiny,
                "--task",
                "induction",
                "--n-examples",
                "8",
                "--epochs",
                "50",
                "--no-faithfulness",
                "--out",
                "-",
                "--print-report",
            ),
            rtol=0.2,
            atol=0.1,
        ),
    ]


def run_cli(argv: list[str]) -> tuple[int, Any, str, float]:
    from headscope.cli import main

    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    try:
        payload = json.loads(out.getvalue()) if out.getvalue().strip() else None
    except ValueError:
        payload = None
    return code, payload, err.getvalue()[-600:], time.perf_counter() - t0


def differences(a: Any, b: Any, check: Check, where: str = "", key: str = "") -> list[str]:
    """Where two JSON values differ beyond the check's tolerance (ignored keys skipped)."""
    if key and IGNORE.search(key) and key not in check.exact:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only on one device" for k in set(a) ^ set(b) if not IGNORE.search(k)]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], check, f"{where}.{k}", k)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, check, f"{where}[{i}]", key)
        ]
    if (
        isinstance(a, float | int)
        and isinstance(b, float | int)
        and not isinstance(a, bool)
        and key not in check.exact
    ):
        if math.isclose(a, b, rel_tol=check.rtol, abs_tol=check.atol):
            return []
        return [f"{where}: {a} vs {b}"]
    return [] if a == b else [f"{where}: {str(a)[:60]} vs {str(b)[:60]}"]


def run_check(check: Check, device: str) -> dict[str, Any]:
    """The check on the CPU (the reference) and on `device`; their JSON compared."""
    runs: dict[str, dict[str, Any]] = {}
    payloads = []
    for role, dev in (("cpu", "cpu"), (device if device != "cpu" else "cpu_again", device)):
        try:
            code, payload, err, secs = run_cli([*check.argv, "--device", dev, "--json"])
        except ModuleNotFoundError as e:  # the machine lacks something this capability imports
            return {"name": check.name, "ran": False, "missing_module": e.name}
        missing = re.search(r"No module named '([^']+)'", err) if code else None
        if missing:  # the CLI reports an import failure as an internal error: the machine lacks a module
            return {"name": check.name, "ran": False, "missing_module": missing.group(1)}
        runs[role] = {"exit_code": code, "seconds": round(secs, 2), "stderr_tail": err if code else ""}
        if code != 0 or payload is None:
            return {"name": check.name, "ran": True, "ok": False, "runs": runs}
        payloads.append(payload)
    diffs = differences(payloads[0], payloads[1], check)
    return {
        "name": check.name,
        "ran": True,
        "ok": not diffs,
        "differences": diffs[:8],
        "n_differences": len(diffs),
        "runs": runs,
    }


def dry_run(items: list[Check]) -> list[dict[str, Any]]:
    from headscope.cli import build_parser

    parser = build_parser()
    return [
        {"name": c.name, "argv": list(c.argv), "parses": bool(parser.parse_args([*c.argv, "--json"]))}
        for c in items
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (inputs, trained SAEs)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", default="", help="comma-separated check names")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    cond = conditions.start()
    args.work.mkdir(parents=True, exist_ok=True)
    items = [c for c in checks(args.work) if not args.only or c.name in args.only.split(",")]
    if args.dry_run:
        out: dict[str, Any] = {"dry_run": True, "checks": dry_run(items)}
    else:
        rows = []
        for c in items:
            rows.append(run_check(c, args.device))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "runs"}), file=sys.stderr, flush=True)
        out = {
            "device": args.device,
            "checks": rows,
            "all_ok": all(r.get("ok") for r in rows if r["ran"]),
            "not_run": [r["name"] for r in rows if not r["ran"]],
        }
    conditions.write(out, args.out, cond)


if __name__ == "__main__":
    main()
