"""`headscope localist train|sweep`: localist training from the command line (JSON with --json).

`to_argv(cfg, ...)` writes the command for a `TrainConfig` or a localist `SweepConfig`, `config_from_argv(argv)`
parses it back (`config_from_argv(to_argv(c)) == c`); a config the options cannot express is refused."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from headscope.cli.common import json_flag, numbers, writable_dir, writable_file
from headscope.errors import InputError

MAX_THREADS = 256


def _threads(n: int) -> int:
    if not 1 <= n <= MAX_THREADS:
        raise InputError(f"--threads must be an integer in [1, {MAX_THREADS}], got {n}")
    return n


def _train_config(args: argparse.Namespace) -> Any:
    from headscope.localist.train_sweep import DEEP
    from headscope.localist.training import TrainConfig

    base = DEEP if args.layers >= 6 else TrainConfig()
    changes: dict[str, Any] = {"lam": args.lam, "schedule": args.schedule, "beta": args.beta,
                               "n_layers": args.layers, "seed": args.seed, "penalty": args.penalty}  # fmt: skip
    if args.steps is not None:
        changes["steps"] = args.steps
    return replace(base, **changes)


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from headscope.localist.training import train

    cfg = _train_config(args)  # validated before any work
    torch.set_num_threads(_threads(args.threads))
    result = train(cfg, writable_dir(args.out), progress=True)
    payload = result.to_json()
    payload.pop("loss_history")
    if args.json:
        print(json.dumps(payload, indent=1))
    else:
        m = payload["metrics"]
        print(f"{args.out}: perplexity {m['perplexity']:.3f}, accuracy {m['accuracy']:.3f}, "
              f"entropy {m['mean_entropy_bits']:.3f} bits, pointer fidelity {m['pointer_fidelity']:.3f}")  # fmt: skip


def _sweep_config(args: argparse.Namespace) -> Any:
    from headscope.localist.train_sweep import SweepConfig

    cfg = SweepConfig(
        lambdas=numbers("--lambdas", args.lambdas),
        betas=numbers("--betas", args.betas),
        progressive=not args.no_progressive,
    )
    if args.steps is not None:
        cfg = replace(cfg, base=replace(cfg.base, steps=args.steps), deep=replace(cfg.deep, steps=args.steps))
    return cfg


def cmd_sweep(args: argparse.Namespace) -> None:
    from headscope.localist.train_ship import SHIPPED_LAMBDAS, ship
    from headscope.localist.train_sweep import run_sweep
    from headscope.models.loading import cache_root

    cfg = _sweep_config(args)
    out = writable_file(args.out)
    threads = _threads(args.threads)
    if args.ship and not set(SHIPPED_LAMBDAS) <= set(cfg.lambdas):
        raise InputError(f"--ship needs the lambdas {list(SHIPPED_LAMBDAS)} in --lambdas")
    work = Path(args.work) if args.work else cache_root() / "localist" / "sweep"
    table = run_sweep(cfg, writable_dir(work, "--work"), progress=True, threads=threads)
    payload = table.to_json()
    out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    if args.ship:
        ship(table, work)
    if args.json:
        print(json.dumps({"rows": payload["rows"], "summary": payload["summary"]}, indent=1))
    else:
        for r in payload["rows"]:
            print(f"{r['run']:24} ppl {r['perplexity']:8.3f}  acc {r['accuracy']:.3f}  "
                  f"H {r['mean_entropy_bits']:.3f} bits  PF {r['pointer_fidelity']:.3f}")  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    from headscope.localist.train_objective import PENALTIES
    from headscope.localist.training import TRAIN_SCHEDULES

    parser = sub.add_parser("localist", help="localist training: one run, or the AILA λ sweep")
    lsub = parser.add_subparsers(dest="localist_command", required=True)

    p = lsub.add_parser("train", help="train one localist model (resumes if --out holds the same run)")
    p.add_argument("--lambda", dest="lam", type=float, required=True, help="penalty weight λ in [0, 1]")
    p.add_argument("--schedule", choices=list(TRAIN_SCHEDULES), default="uniform", help="λ_l over layers")
    p.add_argument("--beta", type=float, default=1.0, help="progressive exponent β ≥ 1")
    p.add_argument("--layers", type=int, default=2, help="2 (AILA model) or 6 (progressive model)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--penalty", choices=list(PENALTIES), default="leakage")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="output folder (checkpoint, optimizer state, metrics.json)")
    json_flag(p)
    p.set_defaults(func=cmd_train)

    p = lsub.add_parser("sweep", help="the λ sweep (2 layers) + progressive schedules (6 layers) → table")
    p.add_argument("--out", required=True, help="where to write the table JSON")
    p.add_argument("--work", default=None, help="run folders (default: $HEADSCOPE_CACHE/localist/sweep)")
    p.add_argument("--lambdas", default="0,0.2,0.4,0.6,0.8,1.0")
    p.add_argument("--betas", default="1,3,5")
    p.add_argument("--no-progressive", action="store_true", help="skip the 6-layer progressive runs")
    p.add_argument("--steps", type=int, default=None, help="override the steps of every run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ship", action="store_true", help="copy λ=0, 0.6, 1.0 into assets/localist (developers)")
    json_flag(p)
    p.set_defaults(func=cmd_sweep)


# ---- argument writers: the exact inverse of the parsers above ------------------------------------------------------
ARGV_CONFIGS = ("headscope.localist.training:TrainConfig", "headscope.localist.train_sweep:SweepConfig")


def _nums(values: Any) -> str:
    return ",".join(repr(float(v)) for v in values)


def _expressible(cfg: Any, back: Any, command: str) -> None:
    if back != cfg:
        diff = [f for f in cfg.__dataclass_fields__ if getattr(cfg, f) != getattr(back, f)]
        raise InputError(
            f"`headscope localist {command}` cannot express this config (fields: {', '.join(diff)})"
        )


def to_argv(cfg: Any, *, out: str = "localist-run", threads: int = 1, work: str | None = None) -> list[str]:
    """What follows `headscope` to train `cfg` (a `TrainConfig`: `localist train`; a `SweepConfig`: `localist
    sweep`), writing to `out`."""
    from headscope.localist.train_sweep import SweepConfig
    from headscope.localist.training import TrainConfig

    if isinstance(cfg, TrainConfig):
        argv = ["localist", "train", f"--lambda={cfg.lam!r}", f"--schedule={cfg.schedule}", f"--beta={cfg.beta!r}",
                f"--layers={cfg.n_layers}", f"--steps={cfg.steps}", f"--seed={cfg.seed}", f"--penalty={cfg.penalty}",
                f"--threads={threads}", f"--out={out}"]  # fmt: skip
    elif isinstance(cfg, SweepConfig):
        argv = ["localist", "sweep", f"--lambdas={_nums(cfg.lambdas)}", f"--betas={_nums(cfg.betas)}",
                f"--threads={threads}", f"--out={out}"]  # fmt: skip
        argv += ([] if cfg.progressive else ["--no-progressive"]) + ([f"--work={work}"] if work else [])
        if _sweep_config(_SweepArgs(cfg)) != cfg:  # --steps sets both models' steps
            argv.append(f"--steps={cfg.base.steps}")
    else:
        raise TypeError(f"no headscope command for a {type(cfg).__name__}")
    _expressible(cfg, config_from_argv(argv), argv[1])
    return argv


class _SweepArgs(argparse.Namespace):
    """The sweep options without --steps, to see whether a config needs it."""

    def __init__(self, cfg: Any):
        super().__init__(lambdas=_nums(cfg.lambdas), betas=_nums(cfg.betas), no_progressive=not cfg.progressive,
                         steps=None)  # fmt: skip


def config_from_argv(argv: Sequence[str]) -> Any:
    """The config the command `argv` (what follows `headscope`) trains, as `main` builds it."""
    from headscope.cli import build_parser

    args = build_parser().parse_args(list(argv))
    if args.command != "localist":
        raise InputError(f"not a localist command: {' '.join(argv[:2])}")
    return _train_config(args) if args.localist_command == "train" else _sweep_config(args)
