"""A check whose answer is known without patching: a tiny attention-only model trained here on repeated random
tokens, whose previous-token and induction heads are read off their attention patterns, then scored by every
method (issue 15, item 8).

The model (`assets/circuits/induction-3l`, rebuilt by `python -m headscope.circuits.known`, a few minutes of one
CPU thread): GPT-2 layout, 3 layers × 8 heads, d_model 64, the byte tokenizer of `models.tiny`; its MLPs are zero
(and tiny), so it is attention-only. It has more heads than the task needs, so that a ranking can fail: 6 heads
have a role (2 previous-token heads in layer 0, 4 induction heads in layer 1) and 18 have none (the other layer-0
heads and all of layer 2 attend broadly). Issue 23: the first model (2 × 8, 12 role heads of 16) let any ranking
score well. Trained (seeded) with AdamW on R + A + A + … of distinct random
letters, |A| from 5 to 13 after a random prefix R (so no fixed offset gives the answer away), the loss after the
first copy.

Why an auxiliary loss: trained on the task alone, the model sits on the long plateau before induction forms (4000
steps at lr 1e-3, 13 minutes, formed nothing; the heads stayed near uniform and the loss came from "which letters
were seen"). For the first AUX_STEPS steps a linear probe (discarded afterwards) also reads the previous token off
what AUX_HEADS = 2 of layer 0's heads write into the residual stream; that gives those two a previous-token signal
at once, and the induction heads of layer 1 then form from the task loss alone within a few hundred steps (with
the probe on all 8, every layer-0 head became a previous-token head; on 4 of them, 9 role heads of 24). The probe says nothing about which
heads do what: the roles below are read from the trained model's attention, like any model's.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from headscope import assets
from headscope.circuits.config import CircuitConfig
from headscope.circuits.finder import find_circuit
from headscope.circuits.result import CircuitResult, Metrics
from headscope.circuits.tasks import LETTERS
from headscope.codec import JsonCodec
from headscope.models import ModelHandle, hooks
from headscope.models.tiny import BOS_ID, EOS_ID, VOCAB, byte_tokenizer

MODEL_DIR = ("circuits", "induction-3l")
ROLE_THRESHOLD = 0.4
SEQ = 8
STEPS = 1000
TRAIN_LEN = 48
N_LAYERS, D_MODEL, N_HEADS, D_MLP = 3, 64, 8, 4  # the MLPs are zero: d_mlp only has to exist
AUX_HEADS = 2  # layer-0 heads whose residual write the auxiliary probe reads (the others get no help)
AUX_STEPS = 600


@dataclass(frozen=True)
class Recipe:
    """How the shipped model was trained (recorded in its card)."""

    seed: int = 0
    n_layers: int = N_LAYERS
    n_heads: int = N_HEADS
    d_model: int = D_MODEL
    steps: int = STEPS
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 100
    aux_heads: int = AUX_HEADS
    aux_steps: int = AUX_STEPS
    aux_weight: float = 0.3


def model_path() -> Path:
    return assets.path(*MODEL_DIR)


def _config(recipe: Recipe) -> GPT2Config:
    cfg = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=recipe.d_model, n_layer=recipe.n_layers, n_head=recipe.n_heads,
        n_inner=D_MLP,
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
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
    """R + A + A + A + … (TRAIN_LEN tokens) of distinct random letters, |A| from 5 to 13 and a random prefix R of
    0 to 8 letters, so no fixed offset gives the answer away; the loss is taken after the first copy only (labels
    −100 before). Repeating A several times puts most of the loss on induction positions."""
    n, pre = rng.randint(5, 13), rng.randint(0, 8)
    rows = []
    for _ in range(size):
        picked = rng.sample(letters, n + pre)
        rows.append((picked[n:] + picked[:n] * (TRAIN_LEN // n + 1))[:TRAIN_LEN])
    ids = torch.tensor(rows)
    labels = ids.clone()
    labels[
        :, : pre + n + 1
    ] = -100  # the prefix, the first copy and the first token after it cannot be predicted
    return ids, labels


class _AttnOnly(nn.Module):
    """GPT-2's computation with the MLPs removed, written out for fast training; `to_gpt2` copies its weights into
    a GPT2LMHeadModel (zero MLPs) that computes the same logits."""

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        d, self.n_heads = cfg.n_embd, cfg.n_head
        self.wte = nn.Embedding(cfg.vocab_size, d)
        self.wpe = nn.Embedding(cfg.n_positions, d)
        # typed lists for the code, ModuleLists so the parameters register
        self.ln1 = [nn.LayerNorm(d, eps=cfg.layer_norm_epsilon) for _ in range(cfg.n_layer)]
        self.qkv = [nn.Linear(d, 3 * d) for _ in range(cfg.n_layer)]
        self.proj = [nn.Linear(d, d) for _ in range(cfg.n_layer)]
        self.layers = nn.ModuleList(nn.ModuleList(m) for m in zip(self.ln1, self.qkv, self.proj, strict=True))
        self.ln_f = nn.LayerNorm(d, eps=cfg.layer_norm_epsilon)
        for w in (self.wte.weight, self.wpe.weight, *(m.weight for m in (*self.qkv, *self.proj))):
            nn.init.normal_(w, std=0.02)  # GPT-2's initialisation
        for m in (*self.qkv, *self.proj):
            nn.init.zeros_(m.bias)

    def _heads(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Per-head attention outputs z [batch, head, pos, d_head] of `layer` on the residual `x`."""
        b, n, _ = x.shape
        q, k, v = self.qkv[layer](self.ln1[layer](x)).view(b, n, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        att = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~causal, float("-inf"))
        return att.softmax(-1) @ v

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self._embed(ids)
        for layer, proj in enumerate(self.proj):
            z = self._heads(layer, x)
            x = x + proj(z.transpose(1, 2).reshape(*ids.shape, -1))
        return self.ln_f(x) @ self.wte.weight.T

    def layer0_write(self, ids: torch.Tensor, heads: int) -> torch.Tensor:
        """What layer 0's first `heads` heads write into the residual stream (their slice of the output
        projection; the bias left out)."""
        z = self._heads(0, self._embed(ids))[:, :heads]
        d_head = z.shape[-1]
        return nn.functional.linear(
            z.transpose(1, 2).reshape(*ids.shape, -1), self.proj[0].weight[:, : heads * d_head]
        )

    @torch.no_grad()
    def to_gpt2(self, cfg: GPT2Config) -> GPT2LMHeadModel:
        model = GPT2LMHeadModel(cfg).eval()
        t = model.transformer
        t.wte.weight.copy_(self.wte.weight)
        t.wpe.weight.copy_(self.wpe.weight)
        t.ln_f.load_state_dict(self.ln_f.state_dict())
        for module, ln, qkv, proj in zip(t.h, self.ln1, self.qkv, self.proj, strict=True):
            block = cast(GPT2Block, module)
            block.ln_1.load_state_dict(ln.state_dict())
            block.attn.c_attn.weight.copy_(qkv.weight.T)  # Conv1D stores [in, out]
            block.attn.c_attn.bias.copy_(qkv.bias)
            block.attn.c_proj.weight.copy_(proj.weight.T)
            block.attn.c_proj.bias.copy_(proj.bias)
            for p in block.mlp.parameters():  # attention-only: the MLPs add exactly zero
                p.zero_()
        return model


def _aux_loss(net: _AttnOnly, probe: nn.Module, ids: torch.Tensor, heads: int) -> torch.Tensor:
    """Cross-entropy of a linear probe reading the previous token off the residual write of layer 0's first
    `heads` heads (the probe is discarded: it only shortens the plateau, see the module docstring)."""
    logits = probe(net.layer0_write(ids, heads))[:, 1:]
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, :-1].reshape(-1))


def _train(net: _AttnOnly, recipe: Recipe, log: Callable[[int, float], None] | None) -> float:
    rng, letters, d = random.Random(recipe.seed), _letter_ids(), net.wte.weight.shape[1]
    probe = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, net.wte.weight.shape[0]))
    opt = torch.optim.AdamW([*net.parameters(), *probe.parameters()], lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / recipe.warmup))
    loss = torch.tensor(0.0)
    for step in range(recipe.steps):
        ids, labels = _training_batch(rng, letters, recipe.batch)
        logits = net(ids)[:, :-1]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        total = (
            loss + recipe.aux_weight * _aux_loss(net, probe, ids, recipe.aux_heads)
            if step < recipe.aux_steps
            else loss
        )
        opt.zero_grad()
        total.backward()
        opt.step()
        sched.step()
        if log is not None and step % 100 == 0:
            log(step, float(loss.detach()))
    return float(loss.detach())


def train_induction_model(
    out: Path, recipe: Recipe | None = None, log: Callable[[int, float], None] | None = None
) -> dict[str, Any]:
    """Train (seeded, CPU) and save the model (safetensors + byte tokenizer + card.json)."""
    recipe = recipe or Recipe()
    torch.manual_seed(recipe.seed)
    cfg, t0 = _config(recipe), time.perf_counter()
    net = _AttnOnly(cfg)
    final = _train(net, recipe, log)
    model = net.to_gpt2(cfg)
    check = _training_batch(random.Random(recipe.seed + 1), _letter_ids(), 4)[0]
    with torch.no_grad():
        assert torch.allclose(model(check).logits, net(check), atol=1e-4), "transplanted weights differ"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    byte_tokenizer().save_pretrained(out)
    card = asdict(recipe) | {"final_loss": round(final, 4), "train_s": round(time.perf_counter() - t0, 1)}
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
class KnownAnswerSummary(JsonCodec):
    """What the check reports (`KnownAnswer.to_json`): the roles and each method's ROC-AUC against them."""

    model: str  # the shipped asset, not this machine's path
    previous_token_heads: tuple[str, ...]
    induction_heads: tuple[str, ...]
    roc_auc_vs_attention_roles: dict[str, float | None]
    roc_auc_vs_patching: dict[str, float | None]
    patching_ground_truth_heads: tuple[str, ...]


@dataclass(frozen=True)
class KnownAnswer:
    roles: HeadRoles
    result: CircuitResult  # the induction task run (its own patching ground truth included)
    against_roles: dict[str, Metrics]  # each scored method, and the patching ground truth, vs the roles

    def summary(self) -> KnownAnswerSummary:
        return KnownAnswerSummary(
            "/".join(MODEL_DIR), self.roles.previous_heads, self.roles.induction_heads,
            {m: v.roc_auc for m, v in self.against_roles.items()},
            {m: v.roc_auc for m, v in self.result.metrics.items()}, tuple(self.result.ground_truth.heads),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return self.summary().to_json()


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


def role_card(handle: ModelHandle) -> dict[str, Any]:
    """The card's role fields, read from the model's attention."""
    roles = head_roles(handle)
    return {
        "role_threshold": ROLE_THRESHOLD,
        "previous_token_heads": list(roles.previous_heads),
        "induction_heads": list(roles.induction_heads),
        "previous_token_score": [[round(float(v), 3) for v in row] for row in roles.previous_token],
        "induction_score": [[round(float(v), 3) for v in row] for row in roles.induction],
    }


def main() -> None:
    torch.set_num_threads(1)
    card = train_induction_model(
        model_path(), log=lambda step, loss: print(f"step {step}: loss {loss:.3f}", flush=True)
    )
    card |= role_card(ModelHandle.load(str(model_path()), device="cpu"))
    (model_path() / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(card))


if __name__ == "__main__":
    main()
