"""The draft-then-verify loop every lossless strategy shares (greedy and sample are the no-draft case).

Each step: the drafter proposes ≤k tokens; one target forward over [pending token, draft] gives the verifier's
distribution at every drafted position; the verifier accepts a prefix and adds one token of its own. The target's
KV cache is rolled back to the accepted prefix, so each forward feeds only new tokens.
"""

from __future__ import annotations

import time

import torch

from headscope.decoding.cache import CachedModel
from headscope.decoding.config import DecodeConfig
from headscope.decoding.drafters import EMPTY, Drafter
from headscope.decoding.sampling import entropy_bits, verify, warp
from headscope.decoding.trace import Step, Trace
from headscope.errors import InputError
from headscope.models import ModelHandle


def check_room(handle: ModelHandle, prompt: list[int], cfg: DecodeConfig) -> None:
    if not prompt:
        raise InputError("the prompt is empty")
    need = len(prompt) + cfg.max_new_tokens + cfg.max_draft + cfg.window
    if need > handle.facts.n_ctx:
        raise InputError(
            f"prompt ({len(prompt)} tokens) + max_new_tokens + draft window exceed the model's context "
            f"({handle.facts.n_ctx}); shorten the prompt or ask for fewer tokens"
        )


def speculative_loop(
    handle: ModelHandle,
    prompt: list[int],
    cfg: DecodeConfig,
    drafter: Drafter,
    target: CachedModel,
    gen: torch.Generator,
    *,
    name: str,
    lossless: bool,
    setup_forwards: int = 0,
    notes: tuple[str, ...] = (),
) -> Trace:
    check_room(handle, prompt, cfg)
    eos = handle.tokenizer.eos_token_id
    out: list[int] = []
    steps: list[Step] = []
    t_start = time.perf_counter()
    with handle.exclusive():
        while len(out) < cfg.max_new_tokens and not (out and out[-1] == eos):
            t0 = time.perf_counter()
            context = prompt + out
            room = cfg.max_new_tokens - len(out) - 1
            draft = drafter.propose(context, min(cfg.max_draft, room)) if room > 0 else EMPTY
            n = len(draft.tokens)
            p_rows = warp(target.logits_last(context + draft.tokens, n + 1), cfg)
            n_acc, nxt = verify(draft.tokens, draft.q_rows, p_rows, cfg, gen)
            drafter.observe(p_rows, n_acc, draft)
            new = [*draft.tokens[:n_acc], nxt]
            if eos in new:
                new = new[: new.index(eos) + 1]
            out += new
            steps.append(
                _step(len(steps), draft.tokens, draft.source, new, n_acc, p_rows, draft.forwards, t0)
            )
    return Trace(
        strategy=name,
        lossless=lossless,
        prompt_ids=tuple(prompt),
        token_ids=tuple(out),
        text=handle.decode(out),
        steps=tuple(steps),
        wall_s=time.perf_counter() - t_start,
        setup_forwards=setup_forwards,
        notes=notes,
    )


def _step(
    index: int,
    draft: list[int],
    source: str,
    new: list[int],
    n_acc: int,
    p_rows: torch.Tensor,
    draft_forwards: int,
    t0: float,
) -> Step:
    rows = p_rows[: len(new)]
    probs = rows.gather(1, torch.tensor(new, device=rows.device)[:, None])[:, 0].tolist()
    return Step(
        index=index,
        draft_tokens=tuple(draft),
        draft_source=source if draft else "none",
        accepted=tuple(new),
        n_draft_accepted=min(n_acc, len(new)),
        verifier_probs=tuple(probs),
        entropies_bits=tuple(entropy_bits(rows)),
        target_forwards=1,
        draft_forwards=draft_forwards,
        wall_ms=(time.perf_counter() - t0) * 1e3,
    )
