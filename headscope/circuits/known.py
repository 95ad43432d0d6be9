"""A check whose answer is known without patching: a tiny attention-only model trained here on repeated random
tokens, whose previous-token and induction heads are read off their attention patterns, then scored by every
method (issue 15, item 8).

The model (`assets/circuits/induction-2l`, rebuilt by `python -m headscope.circuits.known`): GPT-2 layout, 2
layers × 4 heads, d_model 64, the byte tokenizer of `models.tiny`; its MLPs are zero and frozen, so it is
attention-only. Trained (seeded, CPU) on sequences R + A + A of random distinct letters,
|A| from 6 to 12 and a random prefix R of 0 to 6 letters (so no fixed offset gives the answer away), with the
loss on the second copy.

Head roles from attention alone, on fresh repeated letter sequences A + A (|A| = 8): a previous-token head puts
on average ≥ 0.4 of its attention on the token before; an induction head, at the second copy, puts ≥ 0.4 on the
token after the earlier occurrence of the current token (position i − |A| + 1). Those heads are the truth each
method's ROC-AUC is measured against — independent of patching.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from headscope import assets
from headscope.circuits.config import CircuitConfig
from headscope.circuits.finder import find_circuit
from headscope.circuits.result import CircuitResult, Metrics
from headscope.circuits.tasks import LETTERS
from headscope.models import ModelHandle, hooks
from headscope.models.tiny import BOS_ID, EOS_ID, VOCAB, byte_tokenizer

MODEL_DIR = ("circuits", "induction-2l")
ROLE_THRESHOLD = 0.4
SEQ = 8


def model_path() -> Path:
    return assets.path(*MODEL_DIR)


def _config() -> GPT2Config:
    cfg = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4, bos_token_id=BOS_ID,
        eos_token_id=EOS_ID, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    cfg.architectures = ["GPT2LMHeadModel"]
    return cfg


def _letter_ids() -> list[int]:
    tok = byte_tokenizer()
    return [tok(c, add_special_tokens=False).input_ids[0] for c in LETTERS]


def _batch(rng: random.Random, letters: list[int], size: int, length: int | None = None) -> torch.Tensor:
    """Rows A + A of distinct random letters (|A| = `length`, or random 6..12 per batch)."""
    n = length or rng.randint(6, 12)
    return torch.tensor([(a := rng.sample(letters, n)) + a for _ in range(size)])


def _training_batch(rng: random.Random, letters: list[int], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """R + A + A with a random prefix R (0..6 letters), so no fixed position gives the answer away; the loss is
    taken on the second copy only (labels −100 elsewhere)."""
    n, pre = rng.randint(6, 12), rng.randint(0, 6)
    rows = []
    for _ in range(size):
        picked = rng.sample(letters, n + pre)
        a = picked[:n]
        rows.append(picked[n:] + a + a)
    ids = torch.tensor(rows)
    labels = ids.clone()
    labels[:, : pre + n + 1] = -100  # the first copy (and the first token of the second) cannot be predicted
    return ids, labels


def train_induction_model(
    out: Path,
    *,
    seed: int = 0,
    steps: int = 3000,
    batch: int = 32,
    log: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train and save the model (safetensors + byte tokenizer + card.json)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = GPT2LMHeadModel(_config())
    for block in model.transformer.h:  # attention-only: zero, frozen MLPs
        for p in block.mlp.parameters():
            p.data.zero_()
            p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
    letters, t0, loss = _letter_ids(), time.perf_counter(), torch.tensor(0.0)
    model.train()
    for step in range(steps):
        ids, labels = _training_batch(rng, letters, batch)
        loss = model(ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log is not None and step % 250 == 0:
            log(step, float(loss.detach()))
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    byte_tokenizer().save_pretrained(out)
    card = {"seed": seed, "steps": steps, "batch": batch, "final_loss": float(loss.detach()),
            "train_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return card


@dataclass(frozen=True)
class HeadRoles:
    """Per-head attention scores and the heads they single out ("L.H")."""

    previous_token: np.ndarray  # [layer, head] mean attention to the token before
    induction: np.ndarray  # [layer, head] mean attention to the token after the earlier occurrence
    previous_heads: tuple[str, ...]
    induction_heads: tuple[str, ...]

    def mask(self) -> np.ndarray:
        return (self.previous_token >= ROLE_THRESHOLD) | (self.induction >= ROLE_THRESHOLD)


def head_roles(handle: ModelHandle, n: int = 32, seed: int = 1) -> HeadRoles:
    """Previous-token and induction scores from the attention patterns on repeated letter sequences."""
    tok = handle.tokenizer
    letters = [tok(c, add_special_tokens=False).input_ids[0] for c in LETTERS]
    ids = _batch(random.Random(seed), letters, n, SEQ).to(handle.device)
    names = [hooks.pattern(layer) for layer in range(handle.facts.n_layers)]
    _, cache = handle.run_with_cache(ids, names)
    pos = torch.arange(1, 2 * SEQ)
    second = torch.arange(SEQ, 2 * SEQ)
    prev = np.stack([cache[n_][:, :, pos, pos - 1].mean(dim=(0, 2)).cpu().numpy() for n_ in names])
    ind = np.stack([cache[n_][:, :, second, second - SEQ + 1].mean(dim=(0, 2)).cpu().numpy() for n_ in names])

    def named(grid: np.ndarray) -> tuple[str, ...]:
        return tuple(f"{int(a)}.{int(b)}" for a, b in zip(*np.nonzero(grid >= ROLE_THRESHOLD), strict=True))

    return HeadRoles(prev, ind, named(prev), named(ind))


@dataclass(frozen=True)
class KnownAnswer:
    roles: HeadRoles
    result: CircuitResult  # the induction task run (its own patching ground truth included)
    against_roles: dict[str, Metrics]  # each scored method, and the patching ground truth, vs the roles

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.result.model.name,
            "previous_token_heads": list(self.roles.previous_heads),
            "induction_heads": list(self.roles.induction_heads),
            "roc_auc_vs_attention_roles": {m: v.roc_auc for m, v in self.against_roles.items()},
            "roc_auc_vs_patching": {m: v.roc_auc for m, v in self.result.metrics.items()},
            "patching_ground_truth_heads": list(self.result.ground_truth.heads),
        }


def known_answer_check(handle: ModelHandle, cfg: CircuitConfig | None = None) -> KnownAnswer:
    """Run the induction task and score every method (and the patching effects) against the attention roles."""
    cfg = cfg or CircuitConfig(task="induction", n_examples=24, faithfulness=False)
    roles = head_roles(handle)
    result = find_circuit(handle, cfg)
    truth, effects = roles.mask(), result.ground_truth.effects
    k = max(1, int(truth.sum()))
    scores = {m.name: Metrics.of(m.ranking(), truth, effects, k) for m in result.methods}
    scores["activation_patching (ground truth effects)"] = Metrics.of(np.abs(effects), truth, effects, k)
    return KnownAnswer(roles, result, scores)


def main() -> None:
    torch.set_num_threads(1)
    card = train_induction_model(
        model_path(), log=lambda step, loss: print(f"step {step}: loss {loss:.3f}", flush=True)
    )
    handle = ModelHandle.load(str(model_path()), device="cpu")
    roles = head_roles(handle)
    card["previous_token_heads"] = list(roles.previous_heads)
    card["induction_heads"] = list(roles.induction_heads)
    card["previous_token_score"] = np.round(roles.previous_token, 3).tolist()
    card["induction_score"] = np.round(roles.induction, 3).tolist()
    (model_path() / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(card))


if __name__ == "__main__":
    main()
