"""How well an SAE stands in for the activation it reads, over any text: explained variance, L0, dead and dense
latents, and what splicing its reconstruction into the forward pass does to the next-token distribution (CE
clean / spliced / zero-ablated, SAELens's `ce_loss_score`, KL between the clean and spliced distributions).

Position 0 of every sequence is never spliced and never counted (it is the attention sink; see collect.py); the
result says so (`position_0`). A sequence of T tokens (padding after T never counts: the model is causal, so
right padding cannot reach the positions before it) contributes, with x the clean activation at the SAE's hook
and x̂ its reconstruction:
- activations at positions 1..T−1: explained variance = 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (sae-lens's
  `ExplainedVarianceCalculator`, the mean over the whole set), L0 = mean active latents per position, the share
  of latents never active (dead) and the share active on more than `dense_threshold` of the positions (dense);
- next-token predictions made at positions 1..T−2 (position 0's prediction cannot change): CE clean / with x̂
  spliced in / with x zero-ablated, ce_increase = CE_sae / CE_clean − 1, and KL(clean ‖ spliced) averaged over
  the same predictions;
- ce_loss_score = (CE_ablated − CE_sae) / (CE_ablated − CE_clean) (SAELens's definition) only when zero-ablating
  the site moves CE by at least `min_ablation_nats`: below that the score divides by noise (a site the model
  barely uses), so it is null and `ce_loss_score_note` says why.
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

from headscope import checks
from headscope.codec import JsonCodec, jfield
from headscope.features import heldout
from headscope.features.heldout import Sequences
from headscope.features.saes import FeatureSAE
from headscope.models.handle import HookFn, ModelHandle
from headscope.progress import Progress, steps

POSITION_0 = "excluded: position 0 of every sequence is never spliced or counted (the attention sink)"


@dataclass(frozen=True)
class EvalConfig:
    ctx: int = 128  # a text longer than this is cut into sequences of ctx tokens (each with its position 0)
    batch_size: int = 8
    max_tokens: int = 262_144  # tokens evaluated at most (the sequences past it are left out, and it says so)
    dense_threshold: float = 0.1  # a latent active on more than this share of positions is "dense"
    min_ablation_nats: float = 0.5  # ce_loss_score is reported only when ablating the site moves CE this much

    def __post_init__(self) -> None:
        object.__setattr__(self, "ctx", checks.integer(self.ctx, "ctx", 8, 4096))
        object.__setattr__(self, "batch_size", checks.integer(self.batch_size, "batch_size", 1, 256))
        object.__setattr__(self, "max_tokens", checks.integer(self.max_tokens, "max_tokens", 16, 10**8))
        object.__setattr__(self, "dense_threshold",
                           checks.number(self.dense_threshold, "dense_threshold", 0, 1, lo_open=True))  # fmt: skip
        object.__setattr__(self, "min_ablation_nats",
                           checks.number(self.min_ablation_nats, "min_ablation_nats", 0, 100))  # fmt: skip


@dataclass(frozen=True)
class SaeEval(JsonCodec):
    """One SAE over one text set (see the module docstring for every figure's definition)."""

    sae: str
    hook: str
    source: str  # what text: a file name, a held-out set, "text"
    sequences: int
    tokens: int  # activation positions counted (position 0 of each sequence excluded)
    predictions: int  # next-token predictions counted (positions 1..T−2)
    explained_variance: float = jfield(digits=5)
    l0: float = jfield(digits=4)
    dead_fraction: float = jfield(digits=5)
    dense_fraction: float = jfield(digits=5)
    ce_loss_clean: float = jfield(digits=5)
    ce_loss_with_sae: float = jfield(digits=5)
    ce_loss_ablated: float = jfield(digits=5)
    kl_div: float = jfield(digits=5)  # mean KL(clean ‖ spliced) per prediction, nats
    dense_threshold: float = 0.1
    min_ablation_nats: float = 0.5
    truncated: bool = False  # the text had more than max_tokens tokens; the rest was not evaluated
    position_0: str = POSITION_0

    json_extra = ("ablation_effect", "ce_loss_score", "ce_loss_score_note", "ce_increase")

    @property
    def ablation_effect(self) -> float:
        """CE_ablated − CE_clean: how much the model uses the site on this text (nats)."""
        return round(self.ce_loss_ablated - self.ce_loss_clean, 5)

    @property
    def ce_loss_score(self) -> float | None:
        gap = self.ce_loss_ablated - self.ce_loss_clean
        if not gap >= self.min_ablation_nats:  # also NaN: no prediction counted
            return None
        return round((self.ce_loss_ablated - self.ce_loss_with_sae) / gap, 5)

    @property
    def ce_loss_score_note(self) -> str | None:
        if self.ce_loss_score is not None:
            return None
        gap = self.ce_loss_ablated - self.ce_loss_clean
        return (
            f"not meaningful: zero-ablating {self.hook} moves CE by {gap:.3f} nats (< {self.min_ablation_nats:g}), "
            "so the score would divide by noise"
            if math.isfinite(gap)
            else "not meaningful: no next-token prediction was counted (sequences under 3 tokens)"
        )

    @property
    def ce_increase(self) -> float | None:
        x = self.ce_loss_with_sae / self.ce_loss_clean - 1.0
        return round(x, 5) if math.isfinite(x) else None


Reconstruction = SaeEval  # the name views and the app know


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


def _kl(clean: Tensor, spliced: Tensor) -> Tensor:
    """KL(clean ‖ spliced) of the predictions at positions 1..T−2: [batch, T−2]."""
    p = clean[:, 1:-1].float().log_softmax(-1)
    q = spliced[:, 1:-1].float().log_softmax(-1)
    return (p.exp() * (p - q)).sum(-1)


class _Tally:
    def __init__(self, fsae: FeatureSAE) -> None:
        self.ev = ExplainedVarianceCalculator()
        self.counts = torch.zeros(fsae.d_sae, dtype=torch.long)
        self.l0 = 0.0
        self.ce_sae = 0.0
        self.ce_abl = 0.0
        self.kl = 0.0

    def add_acts(self, fsae: FeatureSAE, x: Float[Tensor, "row d_model"]) -> None:
        with torch.inference_mode():
            f = fsae.encode(x)
            x_hat = fsae.decode(f).to(x.dtype)
        active = f > 0
        self.ev.add_batch(x_hat.float(), x.float())
        self.counts += active.sum(0).cpu()
        self.l0 += float(active.sum())


def _masks(lengths: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """(activation positions 1..T−1 [batch, width], predictions at positions 1..T−2 [batch, width − 2])."""
    pos = torch.arange(width, device=lengths.device)[None]
    acts = (pos >= 1) & (pos < lengths[:, None])
    return acts, pos[:, 1:-1] <= lengths[:, None] - 2


def _batch(
    handle: ModelHandle, saes: Sequence[FeatureSAE], tallies: list[_Tally], tokens: Tensor, lengths: Tensor
) -> float:
    """One batch into every tally; returns the summed clean CE of its counted predictions."""
    act_mask, pred_mask = _masks(lengths.to(tokens.device), tokens.shape[1])
    logits, acts = handle.run_with_cache(tokens, list(dict.fromkeys(s.hook for s in saes)))
    pm = pred_mask.float()
    clean_ce = float((next_token_ce(logits, tokens) * pm).sum())
    for fsae, tally in zip(saes, tallies, strict=True):
        tally.add_acts(fsae, acts[fsae.hook][act_mask])
        spliced = handle.forward(tokens, fwd_hooks=[splice_hook(fsae)])
        tally.ce_sae += float((next_token_ce(spliced, tokens) * pm).sum())
        tally.kl += float((_kl(logits, spliced) * pm).sum())
        del spliced
        ablated = handle.forward(tokens, fwd_hooks=[ablate_hook(fsae.hook)])
        tally.ce_abl += float((next_token_ce(ablated, tokens) * pm).sum())
    return clean_ce


def evaluate(
    handle: ModelHandle,
    saes: Sequence[FeatureSAE],
    windows: Int[Tensor, "window pos"] | Sequences,
    *,
    cfg: EvalConfig | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> list[SaeEval]:
    """Every figure of each SAE over `windows` (full windows, or right-padded `Sequences` with their lengths)."""
    cfg = cfg or EvalConfig()
    seqs = (
        windows
        if isinstance(windows, Sequences)
        else Sequences(windows, (windows.shape[1],) * windows.shape[0], "windows", False)
    )
    bs = batch_size or cfg.batch_size
    n = seqs.tokens.shape[0]
    lens = torch.tensor(seqs.lengths, dtype=torch.long)
    tallies = [_Tally(s) for s in saes]
    tick = steps(progress, "evaluate sequences")
    ce_clean = 0.0
    for lo in range(0, n, bs):
        ce_clean += _batch(
            handle, saes, tallies, seqs.tokens[lo : lo + bs].to(handle.device), lens[lo : lo + bs]
        )
        tick(min(lo + bs, n), n)
    counts = (n, int((lens - 1).clamp_min(0).sum()), int((lens - 2).clamp_min(0).sum()))
    return [_result(s, t, cfg, seqs, counts, ce_clean) for s, t in zip(saes, tallies, strict=True)]


def evaluate_sae(
    handle: ModelHandle, sae: FeatureSAE, texts: Sequence[str], *, cfg: EvalConfig | None = None,
    source: str = "text", progress: Progress | None = None,
) -> SaeEval:  # fmt: skip
    """`features eval`: one SAE over any texts (each cut into sequences of at most `cfg.ctx` tokens)."""
    cfg = cfg or EvalConfig()
    seqs = heldout.of_texts(handle, texts, cfg.ctx, cfg.max_tokens, source)
    return evaluate(handle, [sae], seqs, cfg=cfg, progress=progress)[0]


def evaluate_heldout(
    handle: ModelHandle, saes: Sequence[FeatureSAE], name: str, *, cfg: EvalConfig | None = None,
    corpus: str = "wiki", progress: Progress | None = None,
) -> list[SaeEval]:  # fmt: skip
    """SAEs over one of the shipped held-out sets (`heldout.SETS`), up to `cfg.max_tokens` tokens."""
    cfg = cfg or EvalConfig()
    seqs = heldout.load(handle, name, cfg.ctx, cfg.max_tokens, corpus)
    return evaluate(handle, saes, seqs, cfg=cfg, progress=progress)


def activation_figures(sae: Any, x: Float[Tensor, "row d_model"], batch: int = 4096) -> tuple[float, float]:
    """(explained variance, L0) of an sae-lens SAE on stored activations (no forward pass): the figures the
    training curve records at each checkpoint, with the same calculator as `evaluate`."""
    ev, active = ExplainedVarianceCalculator(), 0.0
    with torch.inference_mode():
        for lo in range(0, x.shape[0], batch):
            rows = x[lo : lo + batch].to(sae.dtype)
            f = sae.encode(rows)
            ev.add_batch(sae.decode(f).float(), rows.float())
            active += float((f > 0).sum())
    return ev.compute(), active / max(x.shape[0], 1)


def _result(fsae: FeatureSAE, t: _Tally, cfg: EvalConfig, seqs: Sequences, counts: tuple[int, int, int],
            ce_clean: float) -> SaeEval:  # fmt: skip
    def mean(total: float, count: int) -> float:
        return total / count if count else float("nan")

    n_seq, n_pos, n_pred = counts
    freq = t.counts.double() / max(n_pos, 1)
    return SaeEval(
        fsae.name, fsae.hook, seqs.source, n_seq, n_pos, n_pred,
        explained_variance=t.ev.compute() if n_pos else float("nan"),
        l0=mean(t.l0, n_pos),
        dead_fraction=float((t.counts == 0).double().mean()),
        dense_fraction=float((freq > cfg.dense_threshold).double().mean()),
        ce_loss_clean=mean(ce_clean, n_pred), ce_loss_with_sae=mean(t.ce_sae, n_pred),
        ce_loss_ablated=mean(t.ce_abl, n_pred), kl_div=mean(t.kl, n_pred),
        dense_threshold=cfg.dense_threshold, min_ablation_nats=cfg.min_ablation_nats, truncated=seqs.truncated,
    )  # fmt: skip
