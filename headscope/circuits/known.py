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
from torch import nn
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


class _AttnOnly(nn.Module):
    """GPT-2's computation with the MLPs removed, written out for fast training; `to_gpt2` copies its weights into
    a GPT2LMHeadModel (zero MLPs) that computes the same logits."""

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        d, self.n_heads = cfg.n_embd, cfg.n_head
        self.wte = nn.Embedding(cfg.vocab_size, d)
        self.wpe = nn.Embedding(cfg.n_positions, d)
        self.ln1 = nn.ModuleList(nn.LayerNorm(d, eps=cfg.layer_norm_epsilon) for _ in range(cfg.n_layer))
        self.qkv = nn.ModuleList(nn.Linear(d, 3 * d) for _ in range(cfg.n_layer))
        self.proj = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(d, eps=cfg.layer_norm_epsilon)
        for w in (self.wte.weight, self.wpe.weight, *(m.weight for m in (*self.qkv, *self.proj))):
            nn.init.normal_(w, std=0.02)  # GPT-2's initialisation
        for m in (*self.qkv, *self.proj):
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, n = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(n))
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        for ln, qkv, proj in zip(self.ln1, self.qkv, self.proj, strict=True):
            q, k, v = qkv(ln(x)).view(b, n, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~causal, float("-inf"))
            x = x + proj((att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1))
        return self.ln_f(x) @ self.wte.weight.T

    @torch.no_grad()
    def to_gpt2(self, cfg: GPT2Config) -> GPT2LMHeadModel:
        model = GPT2LMHeadModel(cfg).eval()
        t = model.transformer
        t.wte.weight.copy_(self.wte.weight)
        t.wpe.weight.copy_(self.wpe.weight)
        t.ln_f.load_state_dict(self.ln_f.state_dict())
        for block, ln, qkv, proj in zip(t.h, self.ln1, self.qkv, self.proj, strict=True):
            block.ln_1.load_state_dict(ln.state_dict())
            block.attn.c_attn.weight.copy_(qkv.weight.T)  # Conv1D stores [in, out]
            block.attn.c_attn.bias.copy_(qkv.bias)
            block.attn.c_proj.weight.copy_(proj.weight.T)
            block.attn.c_proj.bias.copy_(proj.bias)
            for p in block.mlp.parameters():  # attention-only: the MLPs add exactly zero
                p.zero_()
        return model


def train_induction_model(
    out: Path, *, seed: int = 0, steps: int = 4000, batch: int = 64, log: Callable[[int, float], None] | None = None
) -> dict[str, Any]:
    """Train (seeded, CPU) and save the model (safetensors + byte tokenizer + card.json)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    cfg = _config()
    net = _AttnOnly(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    letters, t0, loss = _letter_ids(), time.perf_counter(), torch.tensor(0.0)
    for step in range(steps):
        ids, labels = _training_batch(rng, letters, batch)
        logits = net(ids)[:, :-1]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log is not None and step % 250 == 0:
            log(step, float(loss.detach()))
    model = net.to_gpt2(cfg)
    check = _training_batch(random.Random(seed + 1), letters, 4)[0]
    with torch.no_grad():
        assert torch.allclose(model(check).logits, net(check), atol=1e-4), "transplanted weights differ"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    byte_tokenizer().save_pretrained(out)
    card = {"seed": seed, "steps": steps, "batch": batch, "final_loss": round(float(loss.detach()), 4),
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
