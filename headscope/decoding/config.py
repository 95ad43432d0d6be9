"""The one configuration every strategy reads (each uses the fields that concern it); validated on creation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from headscope.errors import InputError

MAX_NEW_TOKENS = 256  # CLI/library limit; the app enforces a lower one
CONSTRAINT_METHODS = ("awrs", "mask")


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise InputError(f"{name} must be in [{lo}, {hi}]; got {value}")


@dataclass(frozen=True)
class DecodeConfig:
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
    min_draft_confidence: float = (
        0.8  # model drafts stop once the draft's top-1 probability is below this (SWIFT ε)
    )
    draft_model: str | None = None  # speculative: a model sharing the target's tokenizer
    skip_ratio: float = 0.45  # layer_skip: fraction of skippable sublayers skipped (SWIFT's r)
    search_steps: int = 12  # layer_skip: matchness-search iterations (one per decoding step)
    search_window: int = 32  # layer_skip: matchness is measured on the last this-many context tokens
    ngram_max: int = 3  # ngram: longest suffix matched in the context (prompt lookup)
    window: int = 6  # jacobi: tokens guessed in parallel
    regex: str | None = None  # constrained: the constraint (partial matches allowed while generating)
    grammar: str | None = None  # constrained: a named JSON-ish grammar instead of a regex ("json_object")
    constraint_method: str = "awrs"
    max_rejections: int = 2048  # constrained: give up (clear error) after this many rejections in one step

    def __post_init__(self) -> None:
        _check_range("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS)
        _check_range("temperature", self.temperature, 0.0, 5.0)
        _check_range("top_k", self.top_k, 0, 1_000_000)
        _check_range("top_p", self.top_p, 1e-6, 1.0)
        _check_range("seed", self.seed, 0, 2**31 - 1)
        _check_range("max_draft", self.max_draft, 1, 16)
        _check_range("min_draft_confidence", self.min_draft_confidence, 0.0, 1.0)
        _check_range("skip_ratio", self.skip_ratio, 0.0, 0.9)
        _check_range("search_steps", self.search_steps, 0, 200)
        _check_range("search_window", self.search_window, 4, 128)
        _check_range("ngram_max", self.ngram_max, 1, 6)
        _check_range("window", self.window, 1, 16)
        _check_range("max_rejections", self.max_rejections, 1, 1_000_000)
        if self.constraint_method not in CONSTRAINT_METHODS:
            raise InputError(f"constraint_method must be one of {', '.join(CONSTRAINT_METHODS)}")
        if self.regex is not None and len(self.regex) > 500:
            raise InputError("regex is too long (limit 500 characters)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
