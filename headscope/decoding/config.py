"""The one configuration every strategy reads (each uses the fields that concern it); validated on creation.

Every numeric field goes through `headscope.checks`, so a string, a fraction for an integer, NaN or ±inf gives one
readable `InputError` naming the field and its range — never a TypeError, never a silent truncation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from headscope import checks
from headscope.attention import LocalityDial
from headscope.codec import JsonCodec
from headscope.errors import InputError
from headscope.selection import parse_patterns

MAX_NEW_TOKENS = 256  # CLI/library limit; the app enforces a lower one
CONSTRAINT_METHODS = ("awrs", "mask")
ABLATIONS = ("mean", "zero")
MAX_PARTICLES = 16
MAX_TREE_SIZE = 128  # tree drafts: most drafted nodes verified in one forward

_INTEGERS: dict[str, tuple[int, int]] = {
    "max_new_tokens": (1, MAX_NEW_TOKENS),
    "top_k": (0, 1_000_000),
    "seed": (0, 2**31 - 1),
    "max_draft": (1, 16),
    "search_steps": (0, 200),
    "search_window": (4, 128),
    "ngram_max": (1, 6),
    "window": (1, 16),
    "lookahead_n": (2, 8),
    "lookahead_pool": (1, 64),
    "particles": (1, MAX_PARTICLES),
    "tree_size": (1, MAX_TREE_SIZE),
    "recycle_k": (1, 16),
    "ngram_branches": (1, 8),
    "lookahead_guesses": (1, 8),
}
_NUMBERS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 5.0),
    "top_p": (1e-6, 1.0),
    "min_draft_confidence": (0.0, 1.0),
    "skip_ratio": (0.0, 0.9),
    "accept_stop": (0.0, 1.0),
    "ess_threshold": (0.0, 1.0),
}


@dataclass(frozen=True)
class DecodeConfig(JsonCodec):
    """Settings of a decoding run.

    temperature 0 means greedy (argmax, exact); above 0 the strategies sample from the temperature/top-k/top-p
    warped distribution and the speculative ones verify by rejection sampling, which preserves that distribution.
    """

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    seed: int = 0
    max_draft: int = 6  # longest draft per verifier pass
    adaptive_draft: bool = True  # draft length follows acceptance (+2 after a full accept, −1 otherwise)
    # model drafts stop once the draft's top-1 probability is below this (SWIFT's ε)
    min_draft_confidence: float = 0.8
    draft_model: str | None = None  # speculative: a model sharing the target's tokenizer
    skip_ratio: float = 0.45  # layer_skip: fraction of skippable sublayers skipped (SWIFT's r)
    skip_layers: str | None = (
        None  # layer_skip: a fixed skip set ("a3,m5,..."; a = attention, m = MLP): no search
    )
    # layer_skip: most matchness-search iterations (one per decoding step) and the context tokens each scores.
    # SWIFT uses 32-token windows and searches far longer, amortised over long generations; a search iteration
    # costs a forward over the window (≈ 1.5 one-token forwards at 16 tokens on a CPU), so the defaults are small.
    search_steps: int = 4
    search_window: int = 16
    accept_stop: float = 0.9  # layer_skip: stop searching once the drafts' running acceptance reaches this
    ngram_max: int = 3  # ngram: longest suffix matched in the context (prompt lookup)
    window: int = 6  # jacobi / lookahead: tokens guessed in parallel (W)
    lookahead_n: int = 4  # lookahead: n-gram size N (a pooled guess is N − 1 tokens)
    lookahead_pool: int = 8  # lookahead: n-grams kept per first token
    regex: str | None = None  # constrained: the constraint (partial matches allowed while generating)
    grammar: str | None = None  # constrained: a named JSON-ish grammar instead of a regex ("json_object")
    constraint_method: str = "awrs"
    particles: int = 1  # constrained: SMC particles (1 = plain AWRS, no resampling)
    ess_threshold: float = 0.5  # constrained SMC: resample when ESS < this × particles
    attention_entropy: bool = False  # record per-head attention entropy of every generated token's query row
    # token_recycling: drafted nodes of the static tree (its BFS order cut to this size) and the adjacency
    # matrix's width (candidates kept per token, the paper's k = 8); the tree's depth is at most max_draft
    tree_size: int = 24
    recycle_k: int = 8
    ngram_branches: int = 4  # ngram: most candidate continuations verified together (a trie of them)
    lookahead_guesses: int = 3  # lookahead: pooled n-grams verified per forward (the paper's G)
    task: str | None = None  # layer_skip: the skip set is searched once per (model, task) and cached
    # head interventions while decoding: mean- or zero-ablate a head set (`HeadSet` grammar, "9.4, 12.*"),
    # and/or turn the locality dial (heads, λ, mode, schedule, strength: `headscope.attention.LocalityDial`)
    ablate_heads: str | None = None
    ablation: str = "mean"  # replace the heads' output (hook_z) by its mean over the prompt, or by zero
    dial: LocalityDial | None = None

    def __post_init__(self) -> None:
        for name, (lo, hi) in _INTEGERS.items():
            object.__setattr__(self, name, checks.integer(getattr(self, name), name, lo, hi))
        for name, (lo, hi) in _NUMBERS.items():
            object.__setattr__(self, name, checks.number(getattr(self, name), name, lo, hi))
        checks.choice(self.constraint_method, "constraint_method", CONSTRAINT_METHODS)
        checks.choice(self.ablation, "ablation", ABLATIONS)
        checks.flag(self.attention_entropy, "attention_entropy")
        checks.flag(self.adaptive_draft, "adaptive_draft")
        for name in ("draft_model", "regex", "grammar", "skip_layers", "ablate_heads", "task"):
            self._optional_text(name)
        if self.ablate_heads is not None:
            patterns = parse_patterns(self.ablate_heads)
            if not patterns:
                raise InputError("ablate_heads is empty; give a head set like '9.4, 12.*' or leave it out")
            object.__setattr__(self, "ablate_heads", ", ".join(str(p) for p in patterns))
        if self.dial is not None and not isinstance(self.dial, LocalityDial):
            raise InputError(f"dial must be a LocalityDial, got {type(self.dial).__name__}")

    def _optional_text(self, name: str) -> None:
        value = getattr(self, name)
        if value is None:
            return
        if not isinstance(value, str):
            raise InputError(f"{name} must be text, got {value!r}")
        if len(value) > 500:
            raise InputError(f"{name} is too long (limit 500 characters)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def intervenes(self) -> bool:
        """Whether heads are ablated or dialled (the run is then of a changed model)."""
        return self.ablate_heads is not None or self.dial is not None

    def without_intervention(self) -> DecodeConfig:
        return replace(self, ablate_heads=None, dial=None)
