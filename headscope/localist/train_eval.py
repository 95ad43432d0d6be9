"""Evaluation of a localist model on packed windows: the AILA table's metrics, computed in one pass.

Perplexity = exp(mean next-token cross-entropy over every predicted position of every window; each window predicts
its tokens 1..ctx−1 from the ones before, no BOS). Accuracy = argmax next-token hit rate over the same positions.
Entropy is `attention.patterns.row_entropy_bits`; pointer fidelity and Ω are defined in `train_objective`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from headscope.attention.patterns import row_entropy_bits
from headscope.codec import JsonCodec
from headscope.localist.corpus import Windows
from headscope.localist.train_objective import penalty, pointer_stats


@dataclass(frozen=True)
class EvalResult(JsonCodec):
    perplexity: float
    accuracy: float
    mean_entropy_bits: float
    entropy_bits_per_layer: tuple[float, ...]
    uniform_entropy_bits: float  # the causal ceiling: mean over queries of log2(i+1)
    pointer_fidelity: float
    pointer_hit_rate: float
    penalty_per_layer: tuple[float, ...]
    n_windows: int
    n_predicted_tokens: int


def uniform_ceiling_bits(ctx: int) -> float:
    return sum(math.log2(i + 1) for i in range(ctx)) / ctx


def _lm_stats(logits: torch.Tensor, ids: torch.Tensor) -> tuple[float, int, int]:
    pred, tgt = logits[:, :-1].float(), ids[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        pred.reshape(-1, pred.shape[-1]), tgt.reshape(-1), reduction="sum"
    )
    return float(nll), int((pred.argmax(-1) == tgt).sum()), tgt.numel()


@torch.no_grad()
def evaluate(
    model: PreTrainedModel, windows: Windows, *, batch_size: int = 32, penalty_kind: str = "leakage"
) -> EvalResult:
    """All metrics on `windows` with the plain HF model (eager attention, output_attentions=True)."""
    model.eval()
    n_layers = int(model.config.num_hidden_layers)
    nll = hits = count = 0.0
    ent = [0.0] * n_layers
    pen = [0.0] * n_layers
    mass = hit_ptr = n_inf = 0.0
    for start in range(0, len(windows), batch_size):
        w = windows.slice(start, start + batch_size)
        out = model(input_ids=w.ids, output_attentions=True)
        a, h, c = _lm_stats(out.logits, w.ids)
        nll, hits, count = nll + a, hits + h, count + c
        for layer, attn in enumerate(out.attentions):
            ent[layer] += float(row_entropy_bits(attn).mean()) * len(w)
            pen[layer] += float(penalty(attn, w.blocks, penalty_kind)) * len(w)
            m, hp, n = pointer_stats(attn, w.blocks)
            mass, hit_ptr, n_inf = mass + float(m), hit_ptr + float(hp), n_inf + float(n)
    n_win = len(windows)
    per_layer = tuple(e / n_win for e in ent)
    return EvalResult(
        perplexity=math.exp(nll / count),
        accuracy=hits / count,
        mean_entropy_bits=sum(per_layer) / n_layers,
        entropy_bits_per_layer=per_layer,
        uniform_entropy_bits=uniform_ceiling_bits(int(windows.ids.shape[1])),
        pointer_fidelity=mass / max(n_inf, 1.0),
        pointer_hit_rate=hit_ptr / max(n_inf, 1.0),
        penalty_per_layer=tuple(p / n_win for p in pen),
        n_windows=n_win,
        n_predicted_tokens=int(count),
    )
