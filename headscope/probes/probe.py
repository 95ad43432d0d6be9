"""One run of a text → attention metrics per layer × head × query (`probe_attention`), optionally under a locality
dial, and induction scores.

Patterns are reduced to per-row statistics: all layers at once when they are small, else inside each layer's hook,
so a long run never holds all layers' N×N patterns (30 layers × 9 heads × 2048² floats would be 4.5 GB); see
`headscope.attention.patterns` for definitions. Under a dial, its hooks rewrite `hook_attn_scores` and the metrics
are read from `hook_pattern` as always: what the model computed from the dialed scores, so the heads the dial
leaves alone read exactly as without it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope import checks
from headscope.attention.blocks import BlockSpec, block_ids
from headscope.attention.locality import LocalityDial, dial_hooks
from headscope.attention.patterns import TARGETS, RowStats, normalised_entropy, row_stats, target_mask
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.models import hooks
from headscope.models.handle import Hooks, ModelHandle

BATCH_ELEMENTS = 2**25  # 128 MiB of float32 patterns: all of SmolLM2's at 256 tokens (17.7 M)
MAX_PATTERN_TOKENS = 256  # the single-head viewer draws an N×N matrix: beyond this it is unreadable and heavy
MAX_VIEW_HEADS = 16  # patterns drawn side by side at most
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
        TARGETS.check(self.target, field="target")
        object.__setattr__(self, "induction", checks.flag(self.induction, "induction"))
        object.__setattr__(self, "induction_len", checks.integer(self.induction_len, "induction_len", 4, 512))
        object.__setattr__(self, "seed", checks.integer(self.seed, "seed", 0, 2**63 - 1))


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

    def summary(self) -> ProbeSummary:
        """What crosses a process boundary: every metric averaged per head, and the per-token entropy."""
        m = self.head_means()
        return ProbeSummary(
            self.model, self.token_ids, self.str_tokens, self.target, m["entropy_bits"], m["normalised_entropy"],
            m["pointer_fidelity"], m["hit_rate"], m["previous_token_score"], m["mean_distance"],
            m.get("induction_score"), self.mean_entropy_bits, self.entropy_bits.mean((0, 1)),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return self.summary().to_json()


@dataclass(frozen=True, eq=False)
class ProbeSummary(JsonCodec):
    """`AttentionProbes` as JSON (`to_json`): per layer × head means (entropy over all query rows, the rest over
    rows 1..n−1), the mean entropy and the per-token entropy; `n_tokens` is derived. Floats to 6 digits; the
    arrays are float arrays here, nested lists in JSON."""

    model: str
    token_ids: tuple[int, ...]
    str_tokens: tuple[str, ...]
    target: str
    entropy_bits: Float[np.ndarray, "layer head"] = jfield(digits=6, decode=np.asarray)
    normalised_entropy: Float[np.ndarray, "layer head"] = jfield(digits=6, decode=np.asarray)
    pointer_fidelity: Float[np.ndarray, "layer head"] = jfield(digits=6, decode=np.asarray)
    hit_rate: Float[np.ndarray, "layer head"] = jfield(digits=6, decode=np.asarray)
    previous_token_score: Float[np.ndarray, "layer head"] = jfield(digits=6, decode=np.asarray)
    mean_distance: Float[np.ndarray, "layer head"] = jfield(digits=6, decode=np.asarray)
    induction_score: Float[np.ndarray, "layer head"] | None = jfield(digits=6, decode=np.asarray)
    mean_entropy_bits: float = jfield(digits=6)
    token_entropy_bits: Float[np.ndarray, " pos"] = jfield(digits=6, decode=np.asarray)

    json_extra = ("n_tokens",)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def check_tokens(
    handle: ModelHandle, tokens: Int[Tensor, "batch pos"], *, limit: int | None = None
) -> Int[Tensor, "batch pos"]:
    """One row of 1..limit token ids (default: the eager limit, `handle.max_tokens`)."""
    if tokens.ndim != 2 or tokens.shape[0] != 1 or tokens.shape[1] == 0:
        raise InputError(f"expected token ids of shape [1, pos] with pos ≥ 1, got {tuple(tokens.shape)}")
    limit = handle.max_tokens if limit is None else limit
    if tokens.shape[1] > limit:
        raise InputError(f"{tokens.shape[1]} tokens; the limit is {limit}")
    return tokens


def run_row_stats(
    handle: ModelHandle, tokens: Int[Tensor, "batch pos"], target: torch.Tensor, *, fwd_hooks: Hooks = ()
) -> tuple[Float[Tensor, "batch pos d_vocab"], Stats]:
    """One forward: logits and every layer's per-row statistics (`RowStats` fields → [layer, head, pos]).

    `fwd_hooks` run too (e.g. a locality dial's `dial_hooks`); each layer is read from `hook_pattern`. Patterns are
    kept and reduced all layers at once when they fit in BATCH_ELEMENTS floats (a few large ops instead of a dozen
    small ones per layer), else each layer is reduced inside its hook."""
    check_tokens(handle, tokens)
    n_layers, n = handle.facts.n_layers, tokens.shape[1]
    batched = n_layers * handle.facts.n_heads * n * n <= BATCH_ELEMENTS
    taken: dict[int, Tensor | RowStats] = {}

    def reducer(layer: int) -> Callable[[Tensor, Any], Tensor]:
        def hook(pattern: Tensor, hook: Any) -> Tensor:
            p = pattern[0].float()
            taken[layer] = p if batched else row_stats(p, target)
            return pattern

        return hook

    layer_hooks = [(hooks.pattern(layer), reducer(layer)) for layer in range(n_layers)]
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
    dial: LocalityDial | None = None,
    block_ids: Int[Tensor, " pos"] | None = None,
) -> AttentionProbes:
    """All metrics of `tokens` from one forward (plus one on random tokens when `cfg.induction`), under `dial`
    when given (induction is scored without it: it measures the model's heads, on other tokens).

    `block_ids` (one per token) are the blocks of the `block` target and of the dial's block mode; by default
    they come from the dial's `blocks` spec (sentences without a dial)."""
    check_tokens(handle, tokens)
    blocks = probe_blocks(handle, tokens, cfg.target, dial, block_ids)
    target = target_mask(cfg.target, tokens.shape[1], blocks)
    fwd = dial_hooks(handle, tokens, dial, block_ids=blocks) if dial is not None else []
    _, stats = run_row_stats(handle, tokens, target, fwd_hooks=fwd)
    ids = tuple(int(i) for i in tokens[0].tolist())
    induction = induction_scores(handle, length=cfg.induction_len, seed=cfg.seed) if cfg.induction else None
    return AttentionProbes(
        handle.identity.name, ids, tuple(handle.str_tokens(ids)), cfg.target, **stats, induction=induction
    )


def probe_blocks(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    target: str,
    dial: LocalityDial | None,
    given: Int[Tensor, " pos"] | None,
) -> Int[Tensor, " pos"] | None:
    """The block ids a probe needs (the `block` target, a block-mode dial): `given`, else from the dial's spec."""
    needs = target == "block" or (dial is not None and dial.mode == "block")
    if given is not None or not needs:
        return given
    return block_ids(handle.str_tokens(tokens[0]), dial.blocks if dial is not None else BlockSpec())


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


def head_patterns(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    heads: Iterable[tuple[int, int]],
    *,
    dial: LocalityDial | None = None,
) -> dict[tuple[int, int], Float[np.ndarray, "query key"]]:
    """The full attention patterns of `heads` ((layer, head) pairs, in the order given) from one forward under
    `dial` (none: the model as is), for the viewer: texts of at most MAX_PATTERN_TOKENS tokens, at most
    MAX_VIEW_HEADS heads."""
    check_tokens(handle, tokens)
    if tokens.shape[1] > MAX_PATTERN_TOKENS:
        raise InputError(
            f"the pattern viewer takes at most {MAX_PATTERN_TOKENS} tokens, got {tokens.shape[1]}"
        )
    wanted = list(dict.fromkeys((int(a), int(b)) for a, b in heads))
    if not wanted or len(wanted) > MAX_VIEW_HEADS:
        raise InputError(f"the pattern viewer shows 1 to {MAX_VIEW_HEADS} heads at once, got {len(wanted)}")
    for layer, head in wanted:
        check_layer_head(handle, layer, head)
    fwd = dial_hooks(handle, tokens, dial) if dial is not None else []
    names = sorted({hooks.pattern(layer) for layer, _ in wanted})
    _, cache = handle.run_with_cache(tokens, names, fwd_hooks=fwd)
    return {
        (layer, head): cache[hooks.pattern(layer)][0, head].float().cpu().numpy() for layer, head in wanted
    }


_INDUCTION: weakref.WeakKeyDictionary[ModelHandle, Float[np.ndarray, "layer head"]] = (
    weakref.WeakKeyDictionary()
)
_INDUCTION_LOCK = threading.Lock()


def model_induction_scores(handle: ModelHandle) -> Float[np.ndarray, "layer head"]:
    """`induction_scores` with `ProbeConfig`'s defaults, computed once per loaded model: they depend on the model
    alone (seeded random tokens, no dial), so a repeated view costs one forward, not two. Forgotten with the
    handle."""
    with _INDUCTION_LOCK:
        hit = _INDUCTION.get(handle)
    if hit is None:
        cfg = ProbeConfig()
        hit = induction_scores(handle, length=cfg.induction_len, seed=cfg.seed)
        hit.flags.writeable = False  # shared by every caller
        with _INDUCTION_LOCK:
            _INDUCTION[handle] = hit
    return hit


def check_layer_head(handle: ModelHandle, layer: int, head: int) -> None:
    if not 0 <= layer < handle.facts.n_layers:
        raise InputError(f"layer must be in [0, {handle.facts.n_layers - 1}], got {layer}")
    if not 0 <= head < handle.facts.n_heads:
        raise InputError(f"head must be in [0, {handle.facts.n_heads - 1}], got {head}")
