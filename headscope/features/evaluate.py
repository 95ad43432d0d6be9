"""How well an SAE stands in for the activation it reads: explained variance, L0, dead features, and SAELens's
`ce_loss_score`, measured by splicing the SAE into the forward pass through the handle.

Position 0 is never spliced and never counted (it is the attention sink; see collect.py). With x the clean
activation at the SAE's hook and x̂ its reconstruction, over the counted positions:
- explained variance = 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (sae-lens's `ExplainedVarianceCalculator`);
- L0 = mean number of active latents per position; dead fraction = share of latents never active in the set;
- CE: next-token cross-entropy of positions 1..T−2, clean / with x̂ spliced in / with x zero-ablated;
  ce_loss_score = (CE_ablated − CE_sae) / (CE_ablated − CE_clean) (SAELens's definition),
  ce_increase = CE_sae / CE_clean − 1.
Several SAEs share one clean pass per batch; each adds a spliced and an ablated pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from sae_lens.evals import ExplainedVarianceCalculator
from torch import Tensor

from headscope.features.saes import FeatureSAE
from headscope.models.handle import HookFn, ModelHandle
from headscope.progress import Progress, steps


def splice_hook(fsae: FeatureSAE) -> tuple[str, HookFn]:
    """Replace the activation at positions ≥ 1 by the SAE's reconstruction (position 0 stays clean)."""

    def hook(act: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor:
        out = act.clone()
        out[:, 1:] = fsae.reconstruct(act[:, 1:])
        return out

    return fsae.hook, hook


def ablate_hook(name: str) -> tuple[str, HookFn]:
    """Zero the activation at positions ≥ 1 (SAELens's ablation baseline for ce_loss_score)."""

    def hook(act: Tensor, hook: Any) -> Tensor:
        out = act.clone()
        out[:, 1:] = 0.0
        return out

    return name, hook


def next_token_ce(logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]) -> Tensor:
    """Per-position CE of positions 1..T−2 predicting tokens 2..T−1: [batch, T−2]."""
    logp = logits[:, 1:-1].float().log_softmax(-1)
    return -logp.gather(-1, tokens[:, 2:].unsqueeze(-1).to(logp.device)).squeeze(-1)


@dataclass(frozen=True)
class Reconstruction:
    name: str
    tokens: int  # positions counted (position 0 of each sequence excluded)
    explained_variance: float
    l0: float
    dead_fraction: float
    ce_loss_clean: float
    ce_loss_with_sae: float
    ce_loss_ablated: float

    @property
    def ce_loss_score(self) -> float:
        gap = self.ce_loss_ablated - self.ce_loss_clean
        return (self.ce_loss_ablated - self.ce_loss_with_sae) / gap if gap > 0 else float("nan")

    @property
    def ce_increase(self) -> float:
        return self.ce_loss_with_sae / self.ce_loss_clean - 1.0

    def to_json(self) -> dict[str, Any]:
        raw = {"tokens": self.tokens, "explained_variance": self.explained_variance, "l0": self.l0,
               "dead_fraction": self.dead_fraction, "ce_loss_clean": self.ce_loss_clean,
               "ce_loss_with_sae": self.ce_loss_with_sae, "ce_loss_ablated": self.ce_loss_ablated,
               "ce_loss_score": self.ce_loss_score, "ce_increase": self.ce_increase}  # fmt: skip
        return {k: v if isinstance(v, int) else _num(v) for k, v in raw.items()}


def _mean(total: float, n: int) -> float:
    return total / n if n else float("nan")  # a text of under 3 tokens has no counted prediction


def _num(x: float) -> float | None:
    return round(x, 5) if math.isfinite(x) else None


class _Tally:
    def __init__(self, fsae: FeatureSAE) -> None:
        self.ev = ExplainedVarianceCalculator()
        self.fired = torch.zeros(fsae.d_sae, dtype=torch.bool)
        self.l0 = 0.0
        self.ce_sae = 0.0
        self.ce_abl = 0.0

    def add(self, x: Tensor, f: Tensor, x_hat: Tensor) -> None:
        flat = f.reshape(-1, f.shape[-1])
        self.ev.add_batch(x_hat.reshape(-1, x.shape[-1]).float(), x.reshape(-1, x.shape[-1]).float())
        self.fired |= (flat > 0).any(0).cpu()
        self.l0 += float((flat > 0).sum())


def evaluate(
    handle: ModelHandle,
    saes: Sequence[FeatureSAE],
    windows: Int[Tensor, "window pos"],
    *,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> list[Reconstruction]:
    """Reconstruction metrics of each SAE over `windows` (one clean pass per batch shared by all SAEs)."""
    tallies = [_Tally(s) for s in saes]
    n_pos, ce_clean, n_ce = 0, 0.0, 0
    names = list(dict.fromkeys(s.hook for s in saes))
    tick = steps(progress, "evaluate windows")
    for lo in range(0, windows.shape[0], batch_size):
        tokens = windows[lo : lo + batch_size].to(handle.device)
        logits, acts = handle.run_with_cache(tokens, names)
        ce = next_token_ce(logits, tokens)
        ce_clean += float(ce.sum())
        n_ce += ce.numel()
        n_pos += tokens.shape[0] * (tokens.shape[1] - 1)
        for fsae, tally in zip(saes, tallies, strict=True):
            x = acts[fsae.hook][:, 1:]
            with torch.inference_mode():
                f = fsae.encode(x)
                tally.add(x, f, fsae.decode(f).to(x.dtype))
            tally.ce_sae += float(
                next_token_ce(handle.forward(tokens, fwd_hooks=[splice_hook(fsae)]), tokens).sum()
            )
            tally.ce_abl += float(
                next_token_ce(handle.forward(tokens, fwd_hooks=[ablate_hook(fsae.hook)]), tokens).sum()
            )
        tick(min(lo + batch_size, windows.shape[0]), windows.shape[0])
    return [
        Reconstruction(
            s.name,
            n_pos,
            t.ev.compute(),
            t.l0 / max(n_pos, 1),
            1.0 - float(t.fired.float().mean()),
            _mean(ce_clean, n_ce),
            _mean(t.ce_sae, n_ce),
            _mean(t.ce_abl, n_ce),
        )
        for s, t in zip(saes, tallies, strict=True)
    ]
