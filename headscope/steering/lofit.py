"""LoFiT (Yin, Ye, Durrett 2024): pick a few attention heads, then learn one offset vector per picked head.

Step 1 trains a scale A on every head (z ← (1+A)⊙z on `hook_z`) with an L1 penalty and ranks heads by ‖A‖₂.
Step 2 discards A and trains a bias v (z ← z + v) on the top-K heads only. The base model stays frozen (the handle
freezes its weights at load), so gradients reach only A or v, through `handle.run(tokens, grad=True)`. Each step
holds the model only for its forward pass (the backward pass walks the autograd graph, with the hooks already
removed), so in the app other visitors' cheap views run between two training steps.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from headscope import checks
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.models.batch import pad_id
from headscope.models.handle import Hooks, ModelHandle
from headscope.progress import Progress, part
from headscope.selection import HeadSet
from headscope.steering import stats
from headscope.steering.chance import MIN_RANDOM_SETS, ChanceTest
from headscope.steering.chance import verdict as chance_verdict
from headscope.steering.comparison import (
    MAX_PROMPTS,
    NONE,
    STEERING,
    SideBySide,
    SideBySideConfig,
    side_by_side,
)
from headscope.steering.generate import MAX_NEW_TOKENS, GenConfig, HookFactory
from headscope.steering.heldout import HeldOut
from headscope.steering.hooks import Head, check_heads, head_bias_hooks, head_scale_hooks
from headscope.steering.scoring import (
    Encoded,
    Metrics,
    collate,
    completion_loss,
    encode_pairs,
    evaluate,
)
from headscope.steering.tasks import Pair, TaskData

# progress(stage, fraction) (headscope/progress.py): "<phase> step i/n (loss x)" after each training step, and the
# held-out evaluations as stages. The CLI draws a bar with it, the app relays it to a job (whose Cancel raises).
DEFAULT_HEAD_SHARE = 0.03


def default_k(n_layers: int, n_heads: int) -> int:
    return max(1, round(DEFAULT_HEAD_SHARE * n_layers * n_heads))


@dataclass(frozen=True)
class LofitConfig:
    """k: heads to tune (None: 3 % of all heads, at least 1, at most the selection's size).
    heads: restrict LoFiT to this selection — step 1 scales and ranks only these heads (None: every head).
    random_sets: as many random heads trained with step 2's budget, for the permutation test (`chance.py`).
    eval_prompts / eval_tokens / resamples: the held-out comparison (`comparison.side_by_side`)."""

    k: int | None = None
    scale_steps: int = 30
    bias_steps: int = 30
    batch_size: int = 8
    scale_lr: float = 1e-2
    bias_lr: float = 0.1  # higher than the paper's 1e-2: ~30 CPU steps here, not 5 epochs
    l1: float = 1e-3
    init_std: float = 1e-3
    seed: int = 0
    random_sets: int = MIN_RANDOM_SETS  # random head sets for the permutation test (0: no test)
    heads: HeadSet | None = None
    eval_prompts: int = 8  # held-out prompts generated from, for the cost rows
    eval_tokens: int = 8  # tokens per continuation
    resamples: int = stats.DEFAULT_RESAMPLES

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "k", checks.optional_integer(self.k, "k (heads to tune)", 1, 100_000))
        for name in ("scale_steps", "bias_steps"):
            set_(self, name, checks.integer(getattr(self, name), name, 1, 5000))
        set_(self, "batch_size", checks.integer(self.batch_size, "batch_size", 1, 256))
        set_(self, "seed", checks.integer(self.seed, "seed", 0, 2**31))
        for name in ("scale_lr", "bias_lr"):
            set_(self, name, checks.number(getattr(self, name), name, 0.0, 1.0, lo_open=True))
        set_(self, "l1", checks.number(self.l1, "l1", 0.0, 1.0))
        set_(self, "init_std", checks.number(self.init_std, "init_std", 0.0, 0.1))
        set_(self, "random_sets", checks.integer(self.random_sets, "random_sets", 0, 1000))
        set_(self, "eval_prompts", checks.integer(self.eval_prompts, "eval_prompts", 1, MAX_PROMPTS))
        set_(self, "eval_tokens", checks.integer(self.eval_tokens, "eval_tokens", 1, MAX_NEW_TOKENS))
        set_(self, "resamples", checks.integer(self.resamples, "resamples", 100, stats.MAX_RESAMPLES))
        if self.heads is not None and (not isinstance(self.heads, HeadSet) or not self.heads):
            raise InputError("heads must be a non-empty head selection")

    def resolve_k(self, n_layers: int, n_heads: int) -> int:
        pool = len(self.heads) if self.heads is not None else n_layers * n_heads
        what = "the selection's size" if self.heads is not None else "the model's head count"
        if self.k is None:
            return min(pool, default_k(n_layers, n_heads))
        if self.k > pool:
            raise InputError(f"k (heads to tune) must be at most {pool}, {what}; got {self.k}")
        return self.k


def _batches(
    encoded: list[Encoded], steps: int, batch_size: int, rng: random.Random
) -> Iterator[list[Encoded]]:
    """`steps` minibatches from seeded reshuffled epochs."""
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            fresh = list(range(len(encoded)))
            rng.shuffle(fresh)
            order += fresh
        yield [encoded[i] for i in order[:batch_size]]
        order = order[batch_size:]


def _train(
    handle: ModelHandle,
    encoded: list[Encoded],
    param: Tensor,
    make_hooks: Callable[[], Hooks],
    penalty: Callable[[], Tensor],
    *,
    steps: int,
    lr: float,
    cfg: LofitConfig,
    phase: str,
    progress: Progress | None,
) -> list[float]:
    """Adam on `param` alone; returns the task loss per step (without the penalty)."""
    opt = torch.optim.Adam([param], lr=lr)
    rng = random.Random(cfg.seed)
    losses: list[float] = []
    with torch.enable_grad():
        for step, chunk in enumerate(_batches(encoded, steps, cfg.batch_size, rng)):
            batch = collate(chunk, pad_id(handle.tokenizer), handle.device)
            loss = completion_loss(handle.run(batch.tokens, fwd_hooks=make_hooks(), grad=True), batch)
            opt.zero_grad()
            (loss + penalty()).backward()
            opt.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(f"{phase} step {step + 1}/{steps} (loss {losses[-1]:.3f})", (step + 1) / steps)
    return losses


def _init(shape: tuple[int, ...], std: float, seed: int, device: torch.device) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen) * std).to(device).requires_grad_(True)


def _selection_mask(handle: ModelHandle, heads: HeadSet | None) -> Tensor | None:
    if heads is None:
        return None
    f = handle.facts
    if (heads.n_layers, heads.n_heads) != (f.n_layers, f.n_heads):
        raise InputError(f"the head selection is for a {heads.n_layers}×{heads.n_heads} model")
    return torch.from_numpy(heads.mask()).float().unsqueeze(-1).to(handle.device)


def train_scales(
    handle: ModelHandle, pairs: Sequence[Pair], cfg: LofitConfig, progress: Progress | None = None
) -> tuple[Float[Tensor, "layer head d_head"], list[float]]:
    """Step 1: per-head scale vectors A, L1-penalised, on every head or only on `cfg.heads`.

    Heads outside the selection start at exactly 0 and, masked out of the hook, get no gradient; torch's
    subgradient of |0| is 0 and Adam's update from zero moments is 0, so they stay exactly 0 and rank last."""
    f = handle.facts
    mask = _selection_mask(handle, cfg.heads)
    scales = _init((f.n_layers, f.n_heads, f.d_head), cfg.init_std, cfg.seed, handle.device)
    if mask is not None:
        scales = (scales.detach() * mask).requires_grad_(True)
    losses = _train(
        handle, encode_pairs(handle, pairs), scales, lambda: head_scale_hooks(scales, mask),
        lambda: cfg.l1 * scales.abs().sum(), steps=cfg.scale_steps, lr=cfg.scale_lr, cfg=cfg,
        phase="scales", progress=progress,
    )  # fmt: skip
    return scales.detach(), losses


def rank_heads(
    scales: Float[Tensor, "layer head d_head"], heads: HeadSet | None = None
) -> list[tuple[Head, float]]:
    """Heads by ‖A‖₂, largest first (ties broken by position, so the order is deterministic); only the
    selection's heads when one is given."""
    norms = scales.norm(dim=-1)
    n_heads = norms.shape[1]
    flat = sorted(range(norms.numel()), key=lambda i: (-float(norms.flatten()[i]), i))
    ranked = [((i // n_heads, i % n_heads), float(norms.flatten()[i])) for i in flat]
    return ranked if heads is None else [(h, s) for h, s in ranked if h in heads]


def train_biases(
    handle: ModelHandle,
    pairs: Sequence[Pair],
    heads: Sequence[Head],
    cfg: LofitConfig,
    progress: Progress | None = None,
    *,
    phase: str = "biases",
) -> tuple[Float[Tensor, "k d_head"], list[float]]:
    """Step 2: bias vectors v on the given heads only, no penalty."""
    f = handle.facts
    check_heads(heads, f.n_layers, f.n_heads)
    biases = _init((len(heads), f.d_head), cfg.init_std, cfg.seed + 1, handle.device)
    losses = _train(
        handle, encode_pairs(handle, pairs), biases, lambda: head_bias_hooks(heads, biases, f.n_heads),
        lambda: biases.new_zeros(()), steps=cfg.bias_steps, lr=cfg.bias_lr, cfg=cfg, phase=phase,
        progress=progress,
    )  # fmt: skip
    return biases.detach(), losses


def random_heads(n_layers: int, n_heads: int, k: int, seed: int) -> list[Head]:
    picks = random.Random(seed).sample(range(n_layers * n_heads), k)
    return [(i // n_heads, i % n_heads) for i in sorted(picks)]


@dataclass(frozen=True)
class HeadOffsets:
    """A trained LoFiT result that can be applied: bias vectors on heads."""

    heads: tuple[Head, ...]
    biases: Float[Tensor, "k d_head"]

    def hooks(self, n_heads: int) -> Hooks:
        return head_bias_hooks(self.heads, self.biases, n_heads)


@dataclass(frozen=True)
class LofitResult(JsonCodec):
    """Both steps, the held-out table none / prompting / LoFiT / LoFiT + prompting (`evaluation`, accuracy over
    every held-out item and the cost of short continuations) and the permutation test against random heads."""

    task: str
    data_hash: str
    heads: str  # the tuned heads, HeadSet grammar
    restricted_to: str | None  # the selection LoFiT was restricted to (None: every head)
    shape: tuple[int, int]  # (n_layers, n_heads) of the model
    heldout_before: Metrics
    heldout_after: Metrics
    evaluation: SideBySide
    chance: ChanceTest | None
    trainable_parameters: int
    step1_parameters: int
    full_finetune_parameters: int
    head_ranking: tuple[tuple[Head, float], ...] = jfield(digits=5)  # every head (or the selection's) by ‖A‖₂
    scale_losses: tuple[float, ...] = jfield(digits=4)
    bias_losses: tuple[float, ...] = jfield(digits=4)
    seconds: float = jfield(digits=2)
    offsets: HeadOffsets | None = jfield(skip=True, default=None, compare=False)

    json_extra: ClassVar[tuple[str, ...]] = ("selected_heads", "train_loss", "verdict")

    @property
    def selected_heads(self) -> list[dict[str, Any]]:
        k = len(HeadSet.parse(self.heads, *self.shape)) if self.heads else 0
        return [{"layer": h[0], "head": h[1], "importance": round(s, 5)} for h, s in self.head_ranking[:k]]

    def importance_grid(self) -> list[list[float | None]]:
        """‖A‖₂ per [layer][head] from `head_ranking`; None for a head LoFiT did not rank (outside a selection)."""
        grid: list[list[float | None]] = [[None] * self.shape[1] for _ in range(self.shape[0])]
        for (layer, head), importance in self.head_ranking:
            grid[layer][head] = importance
        return grid

    @property
    def train_loss(self) -> dict[str, float]:
        ends = {"scales": self.scale_losses, "biases": self.bias_losses}
        return {f"{n}_{w}": round(v[i], 4) for n, v in ends.items() for w, i in (("first", 0), ("last", -1))}

    @property
    def verdict(self) -> str:
        return chance_verdict(None if self.chance is None else self.chance.p_value)

    @property
    def trained_offsets(self) -> HeadOffsets:
        """The offsets themselves (tensors: not in the JSON, so a result read back from JSON has none)."""
        if self.offsets is None:
            raise InputError("this LoFiT result was read from JSON: its trained offsets are not in it")
        return self.offsets


@dataclass(frozen=True)
class OffsetsComparison(SideBySide):
    """`side_by_side` for LoFiT offsets applied to a prompt."""

    heads: str


def offsets_factory(offsets: HeadOffsets, n_heads: int) -> HookFactory:
    """LoFiT acts at every position (prompt and continuation alike), wherever the prompt ends."""
    return lambda _start: offsets.hooks(n_heads)


def apply_offsets(
    handle: ModelHandle,
    offsets: HeadOffsets,
    prompts: Sequence[str],
    sbs: SideBySideConfig | None = None,
    *,
    texts: HeldOut | None = None,
    items: Sequence[Pair] = (),
    progress: Progress | None = None,
) -> OffsetsComparison:
    """`side_by_side` with the offsets; `items` (a task's held-out pairs) add the accuracy rows."""
    f = handle.facts
    res = side_by_side(
        handle, offsets_factory(offsets, f.n_heads), prompts, sbs, texts=texts, items=items, progress=progress
    )
    return OffsetsComparison(**res.parts(), heads=str(HeadSet.of(offsets.heads, f.n_layers, f.n_heads)))


def _random_sets(
    handle: ModelHandle, task: TaskData, k: int, cfg: LofitConfig, progress: Progress | None
) -> tuple[list[str], list[float]]:
    """R random head sets, each trained with step 2's budget and scored on the held-out items."""
    f, names, accs = handle.facts, [], []
    for i in range(cfg.random_sets):
        heads = random_heads(f.n_layers, f.n_heads, k, cfg.seed + i)
        say = part(progress, i / cfg.random_sets, (i + 1) / cfg.random_sets)
        phase = f"random heads {i + 1}/{cfg.random_sets}"
        biases, _ = train_biases(handle, task.train, heads, cfg, part(say, 0.0, 0.8), phase=phase)
        say(f"held-out accuracy, {phase}", 0.8)
        accs.append(
            evaluate(
                handle, task.heldout, fwd_hooks=HeadOffsets(tuple(heads), biases).hooks(f.n_heads)
            ).accuracy
        )
        names.append(str(HeadSet.of(heads, f.n_layers, f.n_heads)))
    return names, accs


def _evaluation(
    handle: ModelHandle, task: TaskData, offsets: HeadOffsets, cfg: LofitConfig, progress: Progress
) -> SideBySide:
    sbs = SideBySideConfig(GenConfig(cfg.eval_tokens), task.instruction, cfg.resamples, cfg.seed)
    prompts = [p.prompt for p in task.heldout[: cfg.eval_prompts]]
    return side_by_side(
        handle, offsets_factory(offsets, handle.facts.n_heads), prompts, sbs, items=task.heldout,
        progress=lambda s, frac: progress(f"held-out evaluation: {s}", frac),
    )  # fmt: skip


def _metrics(ev: SideBySide, condition: str) -> Metrics:
    m = ev.evaluation.row(condition).measures
    return Metrics(m["accuracy"].value, m["target_logprob"].value, ev.evaluation.n_items)


def _shares(cfg: LofitConfig, progress: Progress | None) -> dict[str, Progress]:
    """Each part of `lofit` as its share of the whole call (a training step weighs 1, the held-out evaluation
    as much as 20 steps, each random set its steps plus 5 for its evaluation)."""
    weights = {"scales": cfg.scale_steps, "biases": cfg.bias_steps, "evaluation": 20.0,
               "random": cfg.random_sets * (cfg.bias_steps + 5)}  # fmt: skip
    total, acc, out = sum(weights.values()), 0.0, {}
    for name, w in weights.items():
        out[name] = part(progress, acc / total, (acc + w) / total)
        acc += w
    return out


def lofit(
    handle: ModelHandle,
    task: TaskData,
    cfg: LofitConfig = LofitConfig(),
    progress: Progress | None = None,
) -> LofitResult:
    """Both LoFiT steps on `task.train`; the held-out comparison on `task.heldout` (none / prompting / LoFiT /
    both); and, with `random_sets`, the permutation test against as many random head sets."""
    t0 = time.perf_counter()
    f = handle.facts
    _selection_mask(handle, cfg.heads)  # a selection for another model shape is refused before any work
    k = cfg.resolve_k(f.n_layers, f.n_heads)
    at = _shares(cfg, progress)
    scales, scale_losses = train_scales(handle, task.train, cfg, at["scales"])
    ranking = rank_heads(scales, cfg.heads)
    top = [h for h, _ in ranking[:k]]
    biases, bias_losses = train_biases(handle, task.train, top, cfg, at["biases"])
    offsets = HeadOffsets(tuple(top), biases)
    ev = _evaluation(handle, task, offsets, cfg, at["evaluation"])
    chance = None
    if cfg.random_sets:
        names, accs = _random_sets(handle, task, k, cfg, at["random"])
        budget = {"bias_steps": cfg.bias_steps, "batch_size": cfg.batch_size, "bias_lr": cfg.bias_lr,
                  "init_std": cfg.init_std, "seed": cfg.seed}  # fmt: skip
        chance = ChanceTest.of(ev.evaluation.row(STEERING).measures["accuracy"], accs, names, k, budget)
    return LofitResult(
        task.name, task.data_hash, str(HeadSet.of(top, f.n_layers, f.n_heads)),
        None if cfg.heads is None else str(cfg.heads), (f.n_layers, f.n_heads), _metrics(ev, NONE),
        _metrics(ev, STEERING), ev, chance, k * f.d_head, len(ranking) * f.d_head,
        sum(p.numel() for p in handle.hf_model.parameters()), tuple(ranking), tuple(scale_losses),
        tuple(bias_losses), time.perf_counter() - t0, offsets,
    )  # fmt: skip
