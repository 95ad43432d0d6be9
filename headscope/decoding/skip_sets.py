"""Layer-skip sets searched once per (model, task) and reused across prompts and steps — the search paid once.

SWIFT searches its skip set during generation and reuses it for a task. Searching per prompt (what `layer_skip`
does without a task) costs window forwards that a 64-token answer never earns back on a CPU; with
`DecodeConfig.task` set, the first prompt of a task pays for one thorough, cost-aware search and every later
prompt of that task (in this process, or later ones through the user cache) drafts with the stored set at once.

The search (`search_skip_set`) scores candidate sets by the speed-up they would give, not by matchness alone:
- data: the last `2 · search_window` positions of the prompt, the full model's argmax there (one forward);
- candidates: the `n` sublayers that change the residual stream least (`layer_skip.contribution_ranking`), for
  growing n, then `search_steps` neighbour swaps around the best (one window forward each);
- for a set S: α = agreement of the skipped model's argmax with the full model's on the window, c = 1 − S's share
  of a one-token forward's multiply-adds (the draft forward's cost; measured costs sit within a few points), and
  the expected speed-up of drafting γ tokens per step, E = (1 + α + … + α^γ) / (1 + γ·c + γ·v), with v =
  `VERIFY_TOKEN_COST` the extra cost of each verified token (a forward over k tokens costs ≈ 1 + 0.1·(k − 1)
  one-token forwards on a 2-core CPU for SmolLM2); the best γ ≤ max_draft is kept with the set.
If no set reaches E > 1, the stored choice is the empty set — "no skip set pays on this model" — and layer skip
then decodes as greedy does (no draft, no search), which is what it should do where skipping cannot pay.
The cache key is the model (name and weights hash), the task, the search window and max_draft; the file is
`$HEADSCOPE_CACHE/decoding/skip_sets.json`.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass

import torch

from headscope.codec import JsonCodec, jfield
from headscope.decoding.cache import CachedModel
from headscope.decoding.config import DecodeConfig
from headscope.errors import InputError
from headscope.models import ModelHandle, hooks
from headscope.models.handle import HookFn
from headscope.models.skip import Sublayer, skippable, sublayer_macs

VERIFY_TOKEN_COST = 0.1
SIZES = (2, 4, 6, 8, 12, 16, 20, 24, 32, 40)  # candidate set sizes (capped at 90 % of the skip space)
_KIND = {"a": "attn", "m": "mlp"}
_MEMORY: dict[str, SkipChoice] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class SkipChoice(JsonCodec):
    skip_layers: str  # "" = no set pays: draft nothing
    agreement: float = jfield(digits=4)  # α on the search window
    draft_cost: float = jfield(digits=4)  # c = 1 − skipped compute share
    draft_length: int = 0  # γ with the best expected speed-up
    expected_speedup: float = jfield(digits=4, default=1.0)
    search_forwards: int = 0
    window: int = 0  # prompt positions the search scored
    # the best non-empty candidate scored, kept even where it does not pay (then the choice is "")
    best_tried: str = ""
    best_tried_agreement: float = jfield(digits=4, default=0.0)
    best_tried_speedup: float = jfield(digits=4, default=0.0)


def expected_speedup(alpha: float, cost: float, gamma: int, verify: float = VERIFY_TOKEN_COST) -> float:
    """Tokens per step over the step's cost, in one-token forwards, for a γ-token draft accepted per token with
    probability α (the acceptance of token i needs every earlier one: 1 + α + … + α^γ tokens)."""
    tokens = sum(alpha**i for i in range(gamma + 1))
    return tokens / (1.0 + gamma * (cost + verify))


def best_length(alpha: float, cost: float, cap: int) -> tuple[int, float]:
    return max(((g, expected_speedup(alpha, cost, g)) for g in range(1, cap + 1)), key=lambda t: t[1])


def cache_key(handle: ModelHandle, cfg: DecodeConfig) -> str:
    ident = handle.identity
    weights = ident.sha256 or ident.revision or ident.source
    return f"{ident.name}|{weights}|task={cfg.task}|window={cfg.search_window}|max_draft={cfg.max_draft}"


def _file():
    from headscope.models.loading import cache_root

    return cache_root() / "decoding" / "skip_sets.json"


def lookup(key: str) -> SkipChoice | None:
    """The stored choice for `key` (this process first, then the user cache), None if never searched."""
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
        path = _file()
        try:
            stored = json.loads(path.read_text()).get(key) if path.is_file() else None
            found = SkipChoice.from_json(stored) if stored is not None else None
        except (OSError, ValueError):  # an unreadable cache is a cache miss (the search runs again)
            found = None
        if found is not None:
            _MEMORY[key] = found
        return found


def store(key: str, choice: SkipChoice) -> None:
    with _LOCK:
        _MEMORY[key] = choice
        path = _file()
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            data = {}
        data[key] = choice.to_json()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=1) + "\n")
        except OSError:  # a read-only home: the set still serves this process
            pass


def forget() -> None:
    """Drop the in-process copies (tests; the file stays)."""
    with _LOCK:
        _MEMORY.clear()


def parse_skip(text: str, n_layers: int) -> frozenset[Sublayer]:
    """'a3, m5' → {("attn", 3), ("mlp", 5)}; every item must be in the skip space."""
    space = set(skippable(n_layers))
    out = set()
    for item in (s.strip() for s in text.split(",") if s.strip()):
        kind, num = _KIND.get(item[:1]), item[1:]
        if kind is None or not num.isdigit() or (kind, int(num)) not in space:
            raise InputError(
                f"skip_layers: {item!r} is not a skippable sublayer (a<layer> or m<layer>, layers 1..{n_layers - 2})"
            )
        out.add((kind, int(num)))
    return frozenset(out)


def format_skip(skip: frozenset[Sublayer]) -> str:
    return ",".join(f"{kind[0]}{layer}" for kind, layer in sorted(skip, key=lambda s: (s[1], s[0])))


def contribution_ranking(
    target: CachedModel, context: list[int], space: list[Sublayer], w: int
) -> list[Sublayer]:
    """Sublayers by mean ‖branch output‖ / ‖residual in‖ on the last `w` context positions, smallest first."""
    layers = sorted({layer for _, layer in space})
    names = [hooks.resid(layer, site) for layer in layers for site in ("pre", "mid", "post")]
    store: dict[str, torch.Tensor] = {}

    def saver(name: str) -> HookFn:
        def save(act: torch.Tensor, hook: object) -> torch.Tensor:
            store[name] = act[0].float()  # keyed by the name asked for (an alias reports its canonical name)
            return act

        return save

    start = max(0, len(context) - w)
    target.logits_aside(context, start, hooks=[(n, saver(n)) for n in names])

    def score(s: Sublayer) -> float:
        kind, layer = s
        a, b = ("pre", "mid") if kind == "attn" else ("mid", "post")
        x, y = store[hooks.resid(layer, a)], store[hooks.resid(layer, b)]
        return float(((y - x).norm(dim=-1) / x.norm(dim=-1).clamp_min(1e-6)).mean())

    return sorted(space, key=score)


class _Scorer:
    """Agreement of skipped models with the full one on a fixed window of the context."""

    def __init__(self, target: CachedModel, context: list[int], width: int):
        self.target, self.context = target, context
        self.start = max(1, len(context) - width)
        self.want = target.logits_aside(context, self.start).argmax(-1)
        self.forwards = 1

    def agreement(self, skip: frozenset[Sublayer]) -> float:
        self.forwards += 1
        got = self.target.logits_aside(self.context, self.start, skip=skip).argmax(-1)
        return float((got == self.want).float().mean())


def search_skip_set(
    handle: ModelHandle, target: CachedModel, context: list[int], cfg: DecodeConfig
) -> SkipChoice:
    """The cost-aware search of the module docstring, on `context` (the prompt), leaving the cache as it was."""
    space = skippable(handle.facts.n_layers)
    scorer = _Scorer(target, context, 2 * cfg.search_window)
    ranked = contribution_ranking(target, context, space, 2 * cfg.search_window)
    macs, total = sublayer_macs(handle, len(context))
    best = (1.0, frozenset[Sublayer](), 0.0, 1.0, 0)  # (speed-up, set, α, c, γ)
    tried = (0.0, frozenset[Sublayer](), 0.0)  # the best candidate, paying or not: (speed-up, set, α)

    def score(skip: frozenset[Sublayer]) -> None:
        nonlocal best, tried
        alpha, cost = scorer.agreement(skip), 1.0 - sum(macs[s] for s in skip) / total
        gamma, speedup = best_length(alpha, cost, cfg.max_draft)
        if speedup > best[0]:
            best = (speedup, skip, alpha, cost, gamma)
        if speedup > tried[0]:
            tried = (speedup, skip, alpha)

    for n in (n for n in SIZES if n <= 0.9 * len(space)):
        score(frozenset(ranked[:n]))
    rng = random.Random(cfg.seed)
    for _ in range(cfg.search_steps if tried[1] else 0):  # neighbours of the best set: one sublayer swapped
        around = best[1] or tried[1]
        kept = [s for s in space if s not in around]
        score((around - {rng.choice(sorted(around))}) | {rng.choice(kept)})
    _, skip, alpha, cost, gamma = best
    extra = {
        "best_tried": format_skip(tried[1]),
        "best_tried_agreement": tried[2],
        "best_tried_speedup": tried[0],
    }
    return SkipChoice(
        format_skip(skip),
        alpha,
        cost,
        gamma,
        best[0],
        scorer.forwards + 1,
        len(context) - scorer.start,
        **extra,
    )
