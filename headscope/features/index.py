"""Feature dashboards, precomputed over a held-out slice of the corpus and stored beside the SAE.

For every feature: its top-activating contexts (at most one per window; the activating token and its activation,
`before` tokens before it and `after` after it, with the feature's activation on each), a histogram of its
non-zero activations (equal bins from 0 to its maximum), its firing frequency, and the tokens its decoder
direction promotes and suppresses through the unembedding (a logit lens of the decoder row).

The slice is the validation split (never trained on, never the test split the cards are scored on), position 0
of each window excluded. One pass: the codes of every position are kept sparse (feature, value) in memory, so
top contexts, context activations and histograms all come from vectorised scatters over them.

Stored as `dashboards.safetensors` (tensors + a JSON header): the slice's token ids once, then per feature the
context pointers (window, position), the context activations (fp16), histogram counts, frequency, maximum, and
the logit-lens token ids / values.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import save_file
from torch import Tensor

from headscope import checks
from headscope.errors import InputError
from headscope.features import collect as collect_mod
from headscope.features.catalog import DASHBOARDS
from headscope.features.saes import FeatureSAE
from headscope.models.handle import ModelHandle
from headscope.progress import Progress, steps

FILE = DASHBOARDS
FORMAT = "headscope-dashboards/1"


@dataclass(frozen=True)
class IndexConfig:
    tokens: int = 51_200  # positions of the validation split to index
    contexts: int = 10
    before: int = 12
    after: int = 4
    bins: int = 20
    logits: int = 10
    ctx: int = collect_mod.DEFAULT_CTX
    batch_size: int = 8
    corpus: str = "wiki"

    def __post_init__(self) -> None:
        limits = {"tokens": (64, 10**8), "contexts": (1, 100), "before": (0, 256), "after": (0, 256),
                  "bins": (2, 200), "logits": (1, 100), "ctx": (8, 4096), "batch_size": (1, 256)}  # fmt: skip
        for name, (lo, hi) in limits.items():  # store the checked int ("64" and 64.0 become 64)
            object.__setattr__(self, name, checks.integer(getattr(self, name), name, lo, hi))
        checks.choice(self.corpus, "corpus", collect_mod.CORPORA)

    @property
    def width(self) -> int:
        return self.before + 1 + self.after


def unembedding(handle: ModelHandle) -> Float[Tensor, "d_model d_vocab"]:
    """W_U with the final norm's scale folded in (as TransformerLens folds it), so d · W_U reads a direction in
    the residual stream as logits. (Read from the loaded weights; nothing runs.)"""
    w_u = handle.hf_model.get_output_embeddings().weight.detach().float()  # [vocab, d_model]
    base = handle.hf_model.base_model
    norm = next((getattr(base, a) for a in ("norm", "ln_f", "final_layer_norm") if hasattr(base, a)), None)
    gamma = getattr(norm, "weight", None)
    scale = gamma.detach().float() if isinstance(gamma, Tensor) else torch.ones(w_u.shape[1])
    return (w_u * scale.to(w_u.device)).T[:, : handle.facts.d_vocab]


def logit_lens(handle: ModelHandle, rows: Float[Tensor, "n d_model"], top: int) -> dict[str, Tensor]:
    """The `top` tokens each row promotes / suppresses most, with their logit contributions."""
    w_u = unembedding(handle).to(rows.device)
    out: dict[str, list[Tensor]] = {"pos_ids": [], "pos_vals": [], "neg_ids": [], "neg_vals": []}
    for lo in range(0, rows.shape[0], 256):  # 256 × vocab logits at a time
        logits = rows[lo : lo + 256].float() @ w_u
        pos, neg = logits.topk(top, dim=-1), (-logits).topk(top, dim=-1)
        out["pos_ids"].append(pos.indices)
        out["pos_vals"].append(pos.values)
        out["neg_ids"].append(neg.indices)
        out["neg_vals"].append(-neg.values)
    return {k: torch.cat(v) for k, v in out.items()}


@dataclass
class _Codes:
    """Sparse codes of every indexed position: flat position, feature, value."""

    pos: list[Tensor]
    feat: list[Tensor]
    val: list[Tensor]

    def add(self, f: Tensor, offset: int) -> None:
        flat = f.reshape(-1, f.shape[-1])
        nz = (flat > 0).nonzero()
        self.pos.append(nz[:, 0] + offset)
        self.feat.append(nz[:, 1])
        self.val.append(flat[nz[:, 0], nz[:, 1]].float())

    def cat(self) -> tuple[Tensor, Tensor, Tensor]:
        return torch.cat(self.pos).cpu(), torch.cat(self.feat).cpu(), torch.cat(self.val).cpu()


def _encode_slice(handle: ModelHandle, fsae: FeatureSAE, windows: Tensor, cfg: IndexConfig,
                  progress: Progress | None) -> _Codes:  # fmt: skip
    codes, tick = _Codes([], [], []), steps(progress, "index windows")
    for lo in range(0, windows.shape[0], cfg.batch_size):
        batch = windows[lo : lo + cfg.batch_size]
        acts = collect_mod.capture(handle, batch, [fsae.hook])[fsae.hook]
        with torch.inference_mode():
            f = fsae.encode(acts)
            f[:, 0] = 0.0  # position 0 is never indexed
        codes.add(f, lo * windows.shape[1])
        tick(min(lo + cfg.batch_size, windows.shape[0]), windows.shape[0])
    return codes


def _top_contexts(pos: Tensor, feat: Tensor, val: Tensor, d_sae: int, n_win: int, ctx: int,
                  k: int) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Per feature, the k windows with the largest activation: (window, position, value), −1 where fewer."""
    win = pos // ctx
    key = feat * n_win + win
    best = torch.zeros(d_sae * n_win).scatter_reduce(0, key, val, "amax")
    where = torch.full((d_sae * n_win,), -1, dtype=torch.long)
    hit = val == best[key]
    where[key[hit]] = pos[hit] % ctx
    top = best.view(d_sae, n_win).topk(min(k, n_win), dim=-1)
    windows = torch.where(top.values > 0, top.indices, -1)
    flat = (torch.arange(d_sae)[:, None] * n_win + top.indices).clamp_min(0)
    positions = torch.where(top.values > 0, where[flat], -1)
    return _pad(windows, k, -1), _pad(positions, k, -1), _pad(top.values, k, 0.0)


def _pad(t: Tensor, k: int, fill: float) -> Tensor:
    return (
        t
        if t.shape[1] == k
        else torch.cat([t, torch.full((t.shape[0], k - t.shape[1]), fill, dtype=t.dtype)], 1)
    )


def _context_acts(pos: Tensor, feat: Tensor, val: Tensor, windows: Tensor, positions: Tensor, n_win: int,
                  ctx: int, cfg: IndexConfig) -> Tensor:  # fmt: skip
    """[d_sae, contexts, width]: the feature's activation on each token of each of its contexts."""
    d_sae, k = windows.shape
    slot = torch.full((d_sae * n_win,), -1, dtype=torch.long)
    valid = windows >= 0
    fidx = torch.arange(d_sae)[:, None].expand(-1, k)
    slot[(fidx * n_win + windows.clamp_min(0))[valid]] = torch.arange(k).expand(d_sae, -1)[valid]
    s = slot[feat * n_win + pos // ctx]
    keep = s >= 0
    f, s, q, v = feat[keep], s[keep], (pos % ctx)[keep], val[keep]
    off = q - positions[f, s] + cfg.before
    ok = (off >= 0) & (off < cfg.width)
    out = torch.zeros(d_sae, k, cfg.width)
    out[f[ok], s[ok], off[ok]] = v[ok]
    return out


def _histograms(feat: Tensor, val: Tensor, d_sae: int, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    top = torch.zeros(d_sae).scatter_reduce(0, feat, val, "amax")
    b = (val / top[feat].clamp_min(1e-12) * bins).long().clamp(0, bins - 1)
    counts = torch.zeros(d_sae * bins, dtype=torch.long).scatter_add(0, feat * bins + b, torch.ones_like(b))
    fired = torch.zeros(d_sae, dtype=torch.long).scatter_add(0, feat, torch.ones_like(feat))
    return counts.view(d_sae, bins), top, fired


def build(handle: ModelHandle, fsae: FeatureSAE, cfg: IndexConfig = IndexConfig(), *,
          progress: Progress | None = None) -> dict[str, Any]:  # fmt: skip
    """Index `fsae` over the validation slice and write `dashboards.safetensors` into its folder; returns the
    header (what was indexed, how long it took)."""
    if fsae.folder is None:
        raise InputError(f"SAE {fsae.name} has no folder to store dashboards in")
    t0 = time.perf_counter()
    n_win = -(-cfg.tokens // (cfg.ctx - 1))
    windows = collect_mod.split_windows(handle, "validation", cfg.ctx, max_windows=n_win, corpus=cfg.corpus)  # type: ignore[arg-type]
    pos, feat, val = _encode_slice(handle, fsae, windows, cfg, progress).cat()
    n_win, d_sae = windows.shape[0], fsae.d_sae
    top_w, top_p, top_v = _top_contexts(pos, feat, val, d_sae, n_win, cfg.ctx, cfg.contexts)
    acts = _context_acts(pos, feat, val, top_w, top_p, n_win, cfg.ctx, cfg)
    counts, fmax, fired = _histograms(feat, val, d_sae, cfg.bins)
    lens = logit_lens(handle, fsae.decoder_rows, cfg.logits)
    n_pos = n_win * (cfg.ctx - 1)
    tensors = {
        "tokens": windows.to(torch.int32), "top_windows": top_w.to(torch.int32), "top_positions": top_p.to(torch.int32),
        "top_values": top_v.half(), "context_acts": acts.half(), "hist_counts": counts.to(torch.int32),
        "max_act": fmax.float(), "frequency": (fired.float() / n_pos),
        "lens_pos_ids": lens["pos_ids"].to(torch.int32), "lens_pos_vals": lens["pos_vals"].half(),
        "lens_neg_ids": lens["neg_ids"].to(torch.int32), "lens_neg_vals": lens["neg_vals"].half(),
    }  # fmt: skip
    header = {"format": FORMAT, "sae": fsae.name, "split": "validation", "positions": n_pos,
              "config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 1),
              "model": {"name": handle.identity.name, "sha256": handle.identity.sha256}}  # fmt: skip
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(fsae.folder / FILE),
              metadata={"headscope": json.dumps(header)})  # fmt: skip
    return header
