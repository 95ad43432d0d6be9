"""How the shipped SAEs of the default model were made (`python -m headscope.features.ship [names]`).

Each is trained by `train.train` on the Wikipedia train split (activations collected once for all four hooks),
stored in fp16 under `assets/saes/<model>/<name>/`, evaluated together on the test split (one clean pass per
batch shared by all SAEs, each adding a spliced and an ablated pass: 25,400 positions, position 0 excluded), and
indexed over the validation split. Long: run it in the background on a quiet machine.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import replace

os.environ.setdefault("WANDB_MODE", "disabled")

import torch
from tqdm import tqdm

from headscope.features import catalog, collect, index, saes
from headscope.features.evaluate import evaluate
from headscope.features.train import TrainConfig, train
from headscope.models import DEFAULT_MODEL, ModelHandle
from headscope.progress import Progress

BASE = TrainConfig(
    "resid_post", 15, 2048, "topk", k=32, tokens=1_600_000, batch_size=4096, lr=4e-4, eval_tokens=0
)
SHIPPED: dict[str, TrainConfig] = {
    "res6": replace(BASE, layer=6),
    "res15": BASE,
    "res24": replace(BASE, layer=24),
    "attn15": replace(BASE, kind="attn_out"),
}
EVAL_TOKENS = 25_400  # test-split positions (position 0 excluded): 200 windows, 9 forwards per batch
INDEX = index.IndexConfig(tokens=51_200, contexts=8, before=10, after=3)


def _bar(desc: str) -> Progress:
    """A tqdm bar (in percent) fed by the one progress protocol `(stage, fraction)`."""
    bar = tqdm(desc=desc, total=100, unit="%", mininterval=10)

    def update(stage: str, fraction: float) -> None:
        bar.update(max(0, round(100 * fraction) - bar.n))

    return update


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", default=list(SHIPPED))
    ap.add_argument("--stage", choices=["collect", "train", "evaluate", "index", "all"], default="all")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=BASE.tokens, help="training tokens per SAE")
    ap.add_argument("--eval-tokens", type=int, default=EVAL_TOKENS, help="test-split positions evaluated")
    ap.add_argument("--index-tokens", type=int, default=INDEX.tokens, help="validation tokens indexed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    handle = ModelHandle.load(DEFAULT_MODEL, device="cpu")
    root = catalog.shipped_root() / handle.identity.name
    configs = {n: replace(SHIPPED[n], tokens=args.tokens) for n in args.names}
    if args.stage in ("collect", "all"):
        collect.collect(handle, [c.site for c in configs.values()], "train", progress=_bar("collect"))
    if args.stage in ("train", "all"):
        for name, cfg in configs.items():
            t0 = time.perf_counter()
            train(handle, cfg, root / name, name=name, progress=_bar(f"train {name}"))
            print(f"{name}: trained in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.stage in ("evaluate", "all"):
        loaded = [saes.load(handle, root / n, n) for n in configs]
        windows = collect.split_windows(
            handle, "test", BASE.ctx, max_windows=math.ceil(args.eval_tokens / (BASE.ctx - 1))
        )
        for fsae, rec in zip(
            loaded, evaluate(handle, loaded, windows, progress=_bar("evaluate")), strict=True
        ):
            fsae.card["eval"] = {"split": "test", **rec.to_json()}
            saes.write_card(root / fsae.name, fsae.card)
            print(fsae.name, fsae.card["eval"], flush=True)
    if args.stage in ("index", "all"):
        for name in configs:
            header = index.build(
                handle,
                saes.load(handle, root / name, name),
                replace(INDEX, tokens=args.index_tokens),
                progress=_bar(f"index {name}"),
            )
            print(name, header, flush=True)


if __name__ == "__main__":
    main()
