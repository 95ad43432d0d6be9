"""How the shipped SAEs of the default model were made (`python -m headscope.features.ship [names]`).

Stages (each resumable, run in the background on a quiet machine; one torch thread by default):
- `collect`: the Wikipedia train split's activations at all four hooks in ONE forward pass per batch (collect.py,
  fp16 memory maps under `$HEADSCOPE_CACHE/activations/`);
- `train`: one SAE at a time by `train.train` (recipe in `SHIPPED`), stored in fp16 under
  `assets/saes/<model>/<name>/`, with an EV-vs-tokens curve (`CURVE`) and the held-out figures on its card:
  `wiki-test` (the first `EVAL_TOKENS` tokens of the test split) and `chat` (heldout.py), each through
  `evaluate.evaluate_heldout` — the same code as `headscope features eval`;
- `tune` (issue 24; run on 2026-12-06 for the shipped res15 and res24, their cards list both stages): the SAEs in
  `TUNED` continue from their `SHIPPED` weights on the same train split rendered as chat conversations (collect.py's "chat" windows: the user asks about an article's title, the assistant answers
  with the article, in the model's chat template), with the curve continued (`TUNE_CURVE`); refused for an SAE
  whose card already records a fine-tune, so the stages on a card are always base then one fine-tune;
- `evaluate`: the held-out figures again for SAEs already trained (e.g. after a change to evaluate.py);
- `index`: dashboards over the validation split.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

import torch
from tqdm import tqdm

from headscope.errors import InputError
from headscope.features import catalog, collect, index, saes
from headscope.features.train import TrainConfig, heldout_card, train
from headscope.models import DEFAULT_MODEL, ModelHandle
from headscope.progress import Progress

# wiki-test: 100 windows of 128 tokens (12,700 counted positions; res15's card has 200 windows: the other cards were
# measured at 100 to fit the CPU time left, three forward passes per window); chat: all of it
EVAL_TOKENS = 12_800
# The recipe (pilots on res15, 300k tokens, EV on unseen train-split windows: batch 4096 / lr 4e-4 as before 0.13;
# batch 512 / lr 1e-3 0.83; batch 512 / lr 2e-3 0.92; BatchTopK at batch 512 / lr 1e-3 0.92 at L0 32.5; 4,096
# latents no better than 2,048 at that budget): short CPU runs are limited by optimiser steps, not width.
BASE = TrainConfig(
    "resid_post",
    15,
    2048,
    "batchtopk",
    k=32,
    tokens=600_000,  # what CPU time allowed this session (the curves on the cards still rise slowly at 600k)
    batch_size=512,
    lr=2e-3,
    eval_tokens=EVAL_TOKENS,
)
SHIPPED: dict[str, TrainConfig] = {
    "res6": replace(BASE, layer=6),
    "res15": BASE,
    "res24": replace(BASE, layer=24),
    "attn15": replace(BASE, kind="attn_out"),
}
CURVE = (125_000, 250_000, 500_000, 1_000_000, 2_000_000, 3_000_000)  # held-out EV recorded here
# Issue 24: res15 and res24 stayed under EV 0.7 on the chat set after the base recipe (0.658 / 0.601; the chat
# EV rose ~0.04 per doubling of Wikipedia tokens). The fine-tune keeps the data source (the train split: never
# the held-out sets, never the prompts that built the chat set) and changes its form to what a chat is made of:
# TUNE_ROWS activation rows of "chat" windows, TUNE_TOKENS samples trained over them (several epochs), TUNE_LR.
# Run for the shipped SAEs (2 threads, 150k chat rows collected once for both hooks): res15 with 300k tokens reached
# chat EV 0.740 (wiki-test 0.792); res24 with 300k reached 0.682, with 900k 0.686 (wiki-test 0.775), a plateau under
# 0.7 at k = 32, so res24's fine-tune runs at k = 40 (below). On positions past the chat set's shared 24-token system
# prompt and user header res15's chat EV is 0.690 (base 0.650): part of the gain is the template itself.
TUNE_ROWS = 150_000
TUNE_TOKENS = 300_000
TUNE_LR = 1e-3
TUNE = replace(BASE, render="chat", tokens=TUNE_TOKENS, rows=TUNE_ROWS, lr=TUNE_LR)
# res24 at k = 40 (same rows, tokens and lr; run 2026-12-06, 2 threads): chat EV 0.707, wiki-test 0.790, at L0 49.7 /
# 44.8 instead of 39.4 / 36.3: sparsity traded for reconstruction (features/README.md)
TUNED: dict[str, TrainConfig] = {"res15": TUNE, "res24": replace(TUNE, layer=24, tokens=900_000, k=40)}
# curve points, in tokens into the fine-tune (the card adds the base's)
TUNE_CURVE = (50_000, 100_000, 200_000, 400_000, 800_000)
INDEX = index.IndexConfig(tokens=51_200, contexts=8, before=10, after=3)


def _bar(desc: str) -> Progress:
    """A tqdm bar (in percent) fed by the one progress protocol `(stage, fraction)`."""
    bar = tqdm(desc=desc, total=100, unit="%", mininterval=10)

    def update(stage: str, fraction: float) -> None:
        bar.update(max(0, round(100 * fraction) - bar.n))

    return update


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", default=list(SHIPPED))
    ap.add_argument(
        "--stage", choices=["collect", "train", "tune", "evaluate", "index", "all"], default="all"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--tokens", type=int, default=None, help="training tokens per SAE (default: the recipe's)"
    )
    ap.add_argument("--latents", type=int, default=None)
    ap.add_argument("--architecture", default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--tune-tokens", type=int, default=None, help="fine-tune tokens (default: the recipe's)")
    ap.add_argument("--tune-rows", type=int, default=None, help="fine-tune activation rows collected")
    ap.add_argument("--tune-lr", type=float, default=None)
    ap.add_argument("--eval-tokens", type=int, default=EVAL_TOKENS, help="held-out tokens evaluated per set")
    ap.add_argument("--index-tokens", type=int, default=INDEX.tokens, help="validation tokens indexed")
    return ap.parse_args()


def _configs(args: argparse.Namespace) -> tuple[dict[str, TrainConfig], dict[str, TrainConfig]]:
    """(base configs, fine-tune configs) of the named SAEs, with the command line's changes."""
    keys = {"tokens": args.tokens, "latents": args.latents, "architecture": args.architecture,
            "batch_size": args.batch_size, "lr": args.lr, "eval_tokens": args.eval_tokens}  # fmt: skip
    changes = {k: v for k, v in keys.items() if v is not None}
    tune_keys = {
        "tokens": args.tune_tokens,
        "rows": args.tune_rows,
        "lr": args.tune_lr,
        "eval_tokens": args.eval_tokens,
    }
    tune_changes = {k: v for k, v in tune_keys.items() if v is not None}
    base = {n: replace(SHIPPED[n], **changes) for n in args.names}
    return base, {n: replace(TUNED[n], **tune_changes) for n in args.names if n in TUNED}


def _tune(handle: ModelHandle, name: str, cfg: TrainConfig, folder: Path) -> None:
    """Continue the SAE in `folder` (its base recipe's result) on the fine-tune's data."""
    base = saes.load(handle, folder, name)
    if base.card.get("stages"):
        raise InputError(
            f"{name} is already fine-tuned ({len(base.card['stages'])} stages): train its base first"
        )
    t0 = time.perf_counter()
    curve = tuple(c for c in TUNE_CURVE if c < cfg.tokens)
    result = train(handle, cfg, folder, name=name, progress=_bar(f"tune {name}"), curve=curve, init=base)
    print(
        f"{name}: fine-tuned in {time.perf_counter() - t0:.0f} s; curve {result.card.get('curve')}",
        flush=True,
    )


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    handle = ModelHandle.load(DEFAULT_MODEL, device="cpu")
    root = catalog.shipped_root() / handle.identity.name
    configs, tuned = _configs(args)
    if args.stage in ("collect", "all"):
        sites = [c.site for c in configs.values()]
        collect.collect(handle, sites, "train", progress=_bar("collect"))
        windows = args.eval_tokens // BASE.ctx  # the wiki-test windows the curve and the cards read
        collect.collect(
            handle, sites, "test", max_tokens=windows * (BASE.ctx - 1), progress=_bar("collect test")
        )
        if tuned:
            rows = max(c.rows or c.tokens for c in tuned.values())
            collect.collect(handle, [c.site for c in tuned.values()], "train", max_tokens=rows, render="chat",
                            progress=_bar("collect chat"))  # fmt: skip
    if args.stage in ("train", "all"):
        for name, cfg in configs.items():
            t0 = time.perf_counter()
            curve = tuple(c for c in CURVE if c < cfg.tokens)
            result = train(handle, cfg, root / name, name=name, progress=_bar(f"train {name}"), curve=curve)
            print(
                f"{name}: trained in {time.perf_counter() - t0:.0f} s; curve {result.card.get('curve')}",
                flush=True,
            )
    if args.stage == "tune":
        for name, cfg in tuned.items():
            _tune(handle, name, cfg, root / name)
    if args.stage == "evaluate":
        for name, cfg in {**configs, **tuned}.items():
            fsae = saes.load(handle, root / name, name)
            fsae.card["heldout"] = heldout_card(handle, fsae, cfg, _bar(f"evaluate {name}"))
            saes.write_card(root / name, fsae.card)
            print(name, {k: v["explained_variance"] for k, v in fsae.card["heldout"].items()}, flush=True)
    if args.stage in ("index", "all"):
        for name in configs:
            header = index.build(handle, saes.load(handle, root / name, name),
                                 replace(INDEX, tokens=args.index_tokens), progress=_bar(f"index {name}"))  # fmt: skip
            print(name, header, flush=True)


if __name__ == "__main__":
    main()
