"""The entropy report shared by `headscope entropy` and the app: per layer × head means, per token, ceilings —
of the model as is, or under a locality dial."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from headscope import checks
from headscope.attention.locality import LocalityDial
from headscope.attention.patterns import normalised_entropy
from headscope.codec import JsonCodec
from headscope.errors import InputError
from headscope.models.handle import ModelHandle
from headscope.probes.backends import BACKENDS, entropy_bits


@dataclass(frozen=True)
class EntropyConfig(JsonCodec):
    """`headscope entropy`: the backend and the dial (λ = 0: the model as is)."""

    backend: str = "auto"
    dial: LocalityDial = field(default_factory=LocalityDial)

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend", checks.choice(self.backend, "backend", BACKENDS))
        if not isinstance(self.dial, LocalityDial):
            raise InputError(f"dial must be a LocalityDial, got {type(self.dial).__name__}")


def entropy_report(
    handle: ModelHandle, text: str, *, backend: str = "auto", dial: LocalityDial | None = None
) -> dict[str, Any]:
    """`entropy_bits[l][h]`: mean over every query position of that head's row entropy (bits); `token_ids`: exactly
    the ids the model ran on (a BOS only where the tokenizer adds one). Texts up to the fused limit are tokenised;
    the eager backend refuses more than its own limit with a hint."""
    tokens = handle.tokenize(text, max_tokens=handle.max_tokens_fused)
    if dial is not None:
        dial.check(handle)  # head indices and layer count before any work
    ent, used = entropy_bits(handle, tokens, backend=backend, dial=dial)
    payload = entropy_payload(handle, tokens, ent, used)
    payload["dial"] = dial.to_json() if dial is not None else None
    return payload


def entropy_payload(
    handle: ModelHandle, tokens: torch.Tensor, ent: torch.Tensor, backend: str
) -> dict[str, Any]:
    ids = [int(i) for i in tokens[0].tolist()]
    n = len(ids)
    rest = slice(1, None) if n > 1 else slice(None)
    ceiling = np.log2(np.arange(1, n + 1, dtype=np.float64))
    return {
        "model": handle.identity.name,
        "token_ids": ids,
        "str_tokens": handle.str_tokens(ids),
        "n_tokens": n,
        "backend": backend,
        "entropy_bits": _r(ent.mean(-1)),
        "normalised_entropy": _r(normalised_entropy(ent)[..., rest].mean(-1)),
        "mean_entropy_bits": round(float(ent.mean()), 6),
        "uniform_ceiling_bits": round(float(ceiling.mean()), 6),
        "token_entropy_bits": _r(ent.mean((0, 1))),
    }


def _r(t: torch.Tensor) -> Any:
    return np.round(t.double().numpy(), 6).tolist()
