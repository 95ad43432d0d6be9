"""One run of a text → attention metrics per layer × head × query (`probe_attention`), and induction scores.

Patterns are reduced to per-row statistics: all layers at once when they are small, else inside each layer's hook,
so a long run never holds all layers' N×N patterns (30 layers × 9 heads × 2048² floats would be 4.5 GB); see
`patterns.py` for definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope.errors import InputError
from headscope.models import hooks
from headscope.models.handle import Hooks, ModelHandle
from headscope.probes.patterns import TARGETS, RowStats, normalised_entropy, row_stats, target_mask

ScoreFn = Callable[[Tensor], Tensor]
BATCH_ELEMENTS = 2**25  # 128 MiB of float32 patterns: all of SmolLM2's at 256 tokens (17.7 M)
MAX_PATTERN_TOKENS = 256  # the single-head viewer draws an N×N matrix: beyond this it is unreadable and heavy
Stats = dict[str, Float[np.ndarray, "layer head pos"]]


@dataclass(frozen=True)
class ProbeConfig:
    """target: the pointer-fidelity target (see `patterns.TARGETS`); induction: also score induction heads on
    `induction_len` seeded random tokens repeated twice."""

    target: str = "local"
    induction: bool = True
    induction_len: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise InputError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if not 4 <= self.induction_len <= 512:
            raise InputError(f"induction_len must be in [4, 512], got {self.induction_len}")
        if self.seed < 0:
            raise InputError(f"seed must be ≥ 0, got {self.seed}")


@dataclass(frozen=True, eq=False)
class AttentionProbes:
    """Per-query arrays are [layer, head, pos]; summaries average rows 1..n−1 except entropy (all rows)."""

    model: str
    token_ids: tuple[int, ...]
    str_tokens: tuple[str, ...]
    target: str
    entropy_bits: Float[np.ndarray, "layer head pos"]
    target_mass: Float[np.ndarray, "layer head pos"]
    target_hit: Float[np.ndarray, "layer head pos"]
    prev_token: Float[np.ndarray, "layer head pos"]
    distance: Float[np.ndarray, "layer head pos"]
    induction: Float[np.ndarray, "layer head"] | None = None

    @property
    def normalised_entropy(self) -> Float[np.ndarray, "layer head pos"]:
        return normalised_entropy(torch.from_numpy(self.entropy_bits)).numpy()

    @property
    def mean_entropy_bits(self) -> float:
        return float(self.entropy_bits.mean())

    def head_means(self) -> dict[str, Float[np.ndarray, "layer head"]]:
        """Each metric averaged over queries: entropy over all rows, the rest over rows 1..n−1."""
        rest = slice(1, None) if len(self.token_ids) > 1 else slice(None)
        out = {
            "entropy_bits": self.entropy_bits.mean(-1),
            "normalised_entropy": self.normalised_entropy[..., rest].mean(-1),
            "pointer_fidelity": self.target_mass[..., rest].mean(-1),
            "hit_rate": self.target_hit[..., rest].mean(-1),
            "previous_token_score": self.prev_token[..., rest].mean(-1),
            "mean_distance": self.distance[..., rest].mean(-1),
        }
        if self.induction is not None:
            out["induction_score"] = self.induction
        return out

    def to_json(self) -> dict[str, Any]:
        means = self.head_means()
        return {
            "model": self.model,
            "token_ids": list(self.token_ids),
            "str_tokens": list(self.str_tokens),
            "n_tokens": len(self.token_ids),
            "target": self.target,
            **{k: np.round(v, 6).tolist() for k, v in means.items()},
            "mean_entropy_bits": round(self.mean_entropy_bits, 6),
            "token_entropy_bits": np.round(self.entropy_bits.mean((0, 1)), 6).tolist(),
        }


def check_tokens(handle: ModelHandle, tokens: Int[Tensor, "batch pos"]) -> Int[Tensor, "batch pos"]:
    if tokens.ndim != 2 or tokens.shape[0] != 1 or tokens.shape[1] == 0:
        raise InputError(f"expected token ids of shape [1, pos] with pos ≥ 1, got {tuple(tokens.shape)}")
    if tokens.shape[1] > handle.max_tokens:
        raise InputError(f"{tokens.shape[1]} tokens; the limit is {handle.max_tokens}")
    return tokens


def run_row_stats(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    target: torch.Tensor,
    *,
    score_fns: Mapping[int, ScoreFn] | None = None,
    fwd_hooks: Hooks = (),
) -> tuple[Float[Tensor, "batch pos d_vocab"], Stats]:
    """One forward: logits and every layer's per-row statistics (`RowStats` fields → [layer, head, pos]).

    `score_fns[l]` (e.g. a locality dial) rewrites layer l's pre-softmax scores; such a layer is read as softmax
    of its rewritten scores in the same hook (softmax(hook_attn_scores) is hook_pattern exactly, see the tests),
    the others from `hook_pattern`: one hook per layer either way, whatever the dial. Patterns are kept and
    reduced all layers at once
    when they fit in BATCH_ELEMENTS floats (a few large ops instead of a dozen small ones per layer), else each
    layer is reduced inside its hook."""
    check_tokens(handle, tokens)
    score_fns = score_fns or {}
    n_layers, n = handle.facts.n_layers, tokens.shape[1]
    batched = n_layers * handle.facts.n_heads * n * n <= BATCH_ELEMENTS
    taken: dict[int, Tensor | RowStats] = {}

    def take(layer: int, pattern: Tensor) -> None:
        taken[layer] = pattern if batched else row_stats(pattern, target)

    def reducer(layer: int) -> Callable[[Tensor, Any], Tensor]:
        def hook(pattern: Tensor, hook: Any) -> Tensor:
            take(layer, pattern[0].float())
            return pattern

        return hook

    def rewriter(layer: int, fn: ScoreFn) -> Callable[[Tensor, Any], Tensor]:
        def hook(scores: Tensor, hook: Any) -> Tensor:
            out = fn(scores)
            take(layer, torch.softmax(out[0].float(), -1))
            return out

        return hook

    layer_hooks = [
        (hooks.scores(layer), rewriter(layer, score_fns[layer]))
        if layer in score_fns
        else (hooks.pattern(layer), reducer(layer))
        for layer in range(n_layers)
    ]
    logits = handle.forward(tokens, fwd_hooks=[*fwd_hooks, *layer_hooks])
    return logits, _stack_stats([taken[layer] for layer in range(n_layers)], target)


def _stack_stats(taken: list[Any], target: Tensor) -> Stats:
    """Per-layer patterns [head, q, k] (reduced here in one go) or per-layer RowStats → [layer, head, pos]."""
    if isinstance(taken[0], RowStats):
        return {f.name: torch.stack([getattr(t, f.name) for t in taken]).numpy() for f in fields(RowStats)}
    patterns = torch.stack(taken)  # [layer, head, q, k]
    n_layers, n_heads, n, _ = patterns.shape
    stats = row_stats(patterns.reshape(n_layers * n_heads, n, n), target)
    return {f.name: getattr(stats, f.name).reshape(n_layers, n_heads, n).numpy() for f in fields(RowStats)}


def probe_attention(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    *,
    cfg: ProbeConfig = ProbeConfig(),
    score_fns: Mapping[int, ScoreFn] | None = None,
    block_ids: Int[Tensor, " pos"] | None = None,
) -> AttentionProbes:
    """All metrics of `tokens` from one forward (plus one on random tokens when `cfg.induction`).

    `score_fns` rewrite pre-softmax scores per layer (a locality dial: `localist.score_transforms`); `block_ids`
    are needed for the `block` target."""
    check_tokens(handle, tokens)
    target = target_mask(cfg.target, tokens.shape[1], block_ids)
    _, stats = run_row_stats(handle, tokens, target, score_fns=score_fns)
    ids = tuple(int(i) for i in tokens[0].tolist())
    induction = induction_scores(handle, length=cfg.induction_len, seed=cfg.seed) if cfg.induction else None
    return AttentionProbes(
        handle.identity.name, ids, tuple(handle.str_tokens(ids)), cfg.target, **stats, induction=induction
    )


def random_repeated_tokens(handle: ModelHandle, length: int, seed: int) -> Int[Tensor, "batch pos"]:
    """[BOS if the tokenizer adds one] + r + r, with r `length` seeded random non-special token ids."""
    vocab = min(len(handle.tokenizer), handle.facts.d_vocab)
    allowed = torch.ones(vocab, dtype=torch.bool)
    allowed[[i for i in handle.tokenizer.all_special_ids if i < vocab]] = False
    pool = allowed.nonzero().flatten()
    gen = torch.Generator().manual_seed(seed)
    r = pool[torch.randint(len(pool), (length,), generator=gen)]
    bos = [handle.tokenizer.bos_token_id] if handle.prepends_bos else []
    return torch.cat([torch.tensor(bos, dtype=torch.long), r, r])[None].to(handle.device)


def induction_scores(
    handle: ModelHandle, *, length: int = 32, seed: int = 0
) -> Float[np.ndarray, "layer head"]:
    """Mean attention of second-copy queries on the token after their earlier occurrence (offset −(length−1))."""
    tokens = random_repeated_tokens(handle, length, seed)
    start = tokens.shape[1] - length  # first query of the second copy
    scores: dict[int, Tensor] = {}

    def hook_for(layer: int) -> Callable[[Tensor, Any], Tensor]:
        def hook(pattern: Tensor, hook: Any) -> Tensor:
            diag = torch.diagonal(pattern[0].float(), offset=-(length - 1), dim1=-2, dim2=-1)
            scores[layer] = diag[:, start - (length - 1) :].mean(-1).cpu()
            return pattern

        return hook

    n_layers = handle.facts.n_layers
    handle.forward(tokens, fwd_hooks=[(hooks.pattern(layer), hook_for(layer)) for layer in range(n_layers)])
    return torch.stack([scores[layer] for layer in range(n_layers)]).numpy()


def head_pattern(
    handle: ModelHandle, tokens: Int[Tensor, "batch pos"], layer: int, head: int, *, fwd_hooks: Hooks = ()
) -> Float[np.ndarray, "query key"]:
    """One head's full pattern, for the viewer; only for texts of at most MAX_PATTERN_TOKENS tokens."""
    check_tokens(handle, tokens)
    if tokens.shape[1] > MAX_PATTERN_TOKENS:
        raise InputError(
            f"the pattern viewer takes at most {MAX_PATTERN_TOKENS} tokens, got {tokens.shape[1]}"
        )
    check_layer_head(handle, layer, head)
    name = hooks.pattern(layer)
    _, cache = handle.run_with_cache(tokens, [name], fwd_hooks=fwd_hooks)
    return cache[name][0, head].float().cpu().numpy()


def check_layer_head(handle: ModelHandle, layer: int, head: int) -> None:
    if not 0 <= layer < handle.facts.n_layers:
        raise InputError(f"layer must be in [0, {handle.facts.n_layers - 1}], got {layer}")
    if not 0 <= head < handle.facts.n_heads:
        raise InputError(f"head must be in [0, {handle.facts.n_heads - 1}], got {head}")
