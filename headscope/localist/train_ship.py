"""Shipping trained localist checkpoints into `assets/localist/`: weights, tokenizer, model card, table, eval slice.

Each shipped folder `assets/localist/2l-lambda{λ}/` holds `model.safetensors`, `config.json`, `tokenizer.json`,
`tokenizer_config.json`, `README.md` (the model card) and `card.json` (its numbers, for tests and the app).
`assets/localist/eval_slice.json` holds the first `SLICE_WINDOWS` test windows (token ids + blocks): the fixed
small slice on which every card states a perplexity that the catalog-loaded model must reproduce.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope import assets
from headscope.data import ATTRIBUTION
from headscope.errors import ModelUnavailableError
from headscope.localist.corpus import Windows
from headscope.localist.train_sweep import SweepTable
from headscope.localist.training import build_corpus

SHIP_DIR = assets.path("localist")
TABLE_FILE = "sweep_table.json"
SLICE_FILE = "eval_slice.json"
SLICE_WINDOWS = 8
SHIPPED_LAMBDAS = (0.0, 0.6, 1.0)
_COPY = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json")


def folder_name(lam: float) -> str:
    return f"2l-lambda{lam:g}" if lam != 1.0 else "2l-lambda1.0"


def slice_perplexity(logits: Float[Tensor, "batch pos d_vocab"], ids: Int[Tensor, "batch pos"]) -> float:
    """exp(mean CE) of predicting tokens 1.. of each window from the ones before (as in training)."""
    pred = logits[:, :-1].float()
    ce = torch.nn.functional.cross_entropy(pred.reshape(-1, pred.shape[-1]), ids[:, 1:].reshape(-1))
    return math.exp(float(ce))


def load_slice(ship_dir: Path = SHIP_DIR) -> Windows:
    path = ship_dir / SLICE_FILE
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing: run `headscope localist sweep --ship`")
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Windows(torch.tensor(raw["ids"]), torch.tensor(raw["blocks"]))


def load_table(ship_dir: Path = SHIP_DIR) -> dict[str, Any]:
    path = ship_dir / TABLE_FILE
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing: run `headscope localist sweep --ship`")
    return json.loads(path.read_text(encoding="utf-8"))


def paper_comparison(table: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The shipped sweep table's summary next to the paper's numbers, quantity by quantity (None where either
    side lacks one; "yes" / "no" / "n/a" for the trends). The shipped runs are far smaller than the paper's."""
    s, p = (table or {}).get("summary", {}), (table or {}).get("paper", {})

    def yes(v: Any) -> str:
        return "n/a" if v is None else ("yes" if v else "no")

    return [
        {
            "what": "mean entropy at λ = 0 (bits)",
            "ours": s.get("entropy_bits_lambda0"),
            "paper": p.get("entropy_bits_lambda0"),
        },
        {
            "what": "mean entropy at λ = 1 (bits)",
            "ours": s.get("entropy_bits_lambda1"),
            "paper": p.get("entropy_bits_lambda1"),
        },
        {"what": "best trade-off λ", "ours": s.get("best_tradeoff_lambda"), "paper": p.get("best_lambda")},
        {"what": "entropy falls as λ rises", "ours": yes(s.get("entropy_falls_like_paper")), "paper": "yes"},
        {
            "what": "pointer fidelity rises with λ",
            "ours": yes(s.get("pointer_fidelity_rises")),
            "paper": "yes",
        },
    ]


def load_card(lam: float, ship_dir: Path = SHIP_DIR) -> dict[str, Any]:
    path = ship_dir / folder_name(lam) / "card.json"
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing: run `headscope localist sweep --ship`")
    return json.loads(path.read_text(encoding="utf-8"))


def _card_markdown(card: dict[str, Any]) -> str:
    m, c = card["metrics"], card["config"]
    return f"""---
license: cc-by-sa-4.0
language: en
library_name: transformers
tags: [localist, attention-locality, headscope]
---
# {card["catalog_name"]}

A 2-layer `LlamaForCausalLM` ({card["n_params"]:,} parameters; d_model {c["d_model"]}, {c["n_heads"]} heads,
MLP {c["d_mlp"]}, vocab {c["vocab_size"]}, tied embeddings) trained from scratch by headscope's localist training
(`headscope localist sweep --ship`) with **λ = {c["lam"]}** (uniform over layers, penalty `{c["penalty"]}`),
{c["steps"]} steps × {c["batch_size"]} windows of {c["ctx"]} tokens, seed {c["seed"]}.

**Loss** L = CE + Σ_l λ·Ω_l. **Semantic blocks** are sentences (a `.`/`!`/`?` followed by whitespace and a capital,
digit, quote or bracket ends one; an article boundary always does); a token belongs to the block of its last
character. **Pointer targets** of query i: the keys j ≤ i of its own sentence. **Ω (leakage)**: the attention mass
outside the targets, averaged over heads and over the queries that have keys outside their sentence. Full
definitions: `headscope/localist/train_objective.py`, `corpus.py`.

## Data and licence
{ATTRIBUTION}. Split by article: sha256(title) mod 100 < 80 train, < 90 validation, else test. The tokenizer
(byte-level BPE, `<|endoftext|>` only, adds no BOS) is trained on the train split. Being trained on CC BY-SA 4.0
text, these weights are shared under **CC BY-SA 4.0** with the same attribution.

## Metrics (test split, first {m["n_windows"]} windows = {m["n_predicted_tokens"]:,} predicted tokens)
| metric | value |
|---|---|
| perplexity | {m["perplexity"]:.4f} |
| next-token accuracy | {m["accuracy"]:.4f} |
| mean attention entropy (bits) | {m["mean_entropy_bits"]:.4f} (causal uniform ceiling {m["uniform_entropy_bits"]:.3f}) |
| entropy per layer (bits) | {", ".join(f"{x:.3f}" for x in m["entropy_bits_per_layer"])} |
| pointer fidelity (mass on targets) | {m["pointer_fidelity"]:.4f} |
| pointer hit rate (argmax on a target) | {m["pointer_hit_rate"]:.4f} |
| **slice perplexity** (`eval_slice.json`, {SLICE_WINDOWS} windows) | {card["slice_perplexity"]:.4f} |

Load it in headscope as `{card["catalog_name"]}` (every tab), or with transformers from this folder.
"""


def _ship_one(lam: float, run_dir: Path, ship_dir: Path, slice_w: Windows) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    dest = ship_dir / folder_name(lam)
    dest.mkdir(parents=True, exist_ok=True)
    for name in _COPY:
        shutil.copyfile(run_dir / name, dest / name)
    result = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    model = AutoModelForCausalLM.from_pretrained(
        dest, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        ppl = slice_perplexity(model(input_ids=slice_w.ids).logits, slice_w.ids)
    card = {
        "catalog_name": f"localist-{folder_name(lam)}",
        "lambda": lam,
        "config": result["config"],
        "metrics": result["metrics"],
        "slice_perplexity": ppl,
        "n_params": sum(p.numel() for p in model.parameters()),
        "attribution": ATTRIBUTION,
        "license": "CC-BY-SA-4.0",
    }
    (dest / "card.json").write_text(json.dumps(card, indent=1), encoding="utf-8")
    (dest / "README.md").write_text(_card_markdown(card), encoding="utf-8")
    return card


def ship(table: SweepTable, work_dir: str | Path, ship_dir: Path = SHIP_DIR) -> list[dict[str, Any]]:
    """Copy the λ ∈ SHIPPED_LAMBDAS runs of a finished sweep into `ship_dir`, with cards, slice and table."""
    base = table.config["base"]
    corpus = build_corpus(base["vocab_size"], base["ctx"], base["max_train_windows"], base["eval_windows"])
    slice_w = corpus.test.slice(0, SLICE_WINDOWS)
    ship_dir.mkdir(parents=True, exist_ok=True)
    payload = {"ids": slice_w.ids.tolist(), "blocks": slice_w.blocks.tolist(),
               "source": f"first {SLICE_WINDOWS} test-split windows", "attribution": ATTRIBUTION}  # fmt: skip
    (ship_dir / SLICE_FILE).write_text(json.dumps(payload), encoding="utf-8")
    (ship_dir / TABLE_FILE).write_text(json.dumps(table.to_json(), indent=1), encoding="utf-8")
    return [
        _ship_one(lam, Path(work_dir) / f"2l-lambda{lam:g}", ship_dir, slice_w) for lam in SHIPPED_LAMBDAS
    ]
