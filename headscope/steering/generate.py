"""A small generation loop with steering hooks: full recompute each step (exact, no KV cache), greedy or sampled.

Kept here on purpose (not the decoding lab's strategies): steering needs only greedy/temperature sampling with
hooks attached, and a full recompute is what GLOV does (the vector is re-added at every step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from headscope import checks
from headscope.codec import JsonCodec, jfield
from headscope.models.handle import Hooks, ModelHandle
from headscope.progress import StepCounter

MAX_NEW_TOKENS = 128
# start (the prompt length) → hooks for this step; lets position-aware hooks know where the prompt ends.
HookFactory = Callable[[int], Hooks]


@dataclass(frozen=True)
class GenConfig:
    max_new_tokens: int = 24
    temperature: float = 0.0  # 0: greedy
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "max_new_tokens", checks.integer(self.max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS))
        set_(self, "temperature", checks.number(self.temperature, "temperature", 0.0, 5.0))
        set_(self, "seed", checks.integer(self.seed, "seed", 0, 2**53))


@dataclass(frozen=True)
class Generation(JsonCodec):
    text: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    probs: tuple[float, ...] = jfield(digits=5)  # p of each generated token under the (steered) model, T = 1


def generate(
    handle: ModelHandle,
    prompt_ids: Int[Tensor, "batch pos"],
    cfg: GenConfig,
    hooks: HookFactory | None = None,
    *,
    on_token: StepCounter | None = None,
) -> Generation:
    """on_token(done, total) after each token (progress; a job's Cancel raises from it)."""
    ids = prompt_ids.to(handle.device)
    start = ids.shape[1] - 1
    gen = torch.Generator().manual_seed(cfg.seed)
    out: list[int] = []
    probs: list[float] = []
    for _ in range(cfg.max_new_tokens):
        logits = handle.forward(ids, fwd_hooks=hooks(start) if hooks else ())[0, -1].float().cpu()
        nxt = _pick(logits, cfg.temperature, gen)
        out.append(nxt)
        probs.append(float(logits.softmax(-1)[nxt]))
        if on_token is not None:
            on_token(len(out), cfg.max_new_tokens)
        if nxt == handle.tokenizer.eos_token_id:
            break
        ids = torch.cat([ids, ids.new_tensor([[nxt]])], dim=1)
    return Generation(handle.decode(out), tuple(out), tuple(handle.str_tokens(out)), tuple(probs))


def _pick(logits: Tensor, temperature: float, gen: torch.Generator) -> int:
    if temperature == 0.0:
        return int(logits.argmax())
    return int(torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen))
