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
from headscope.codec import JsonCodec, jfield
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


@dataclass(frozen=True)
class EntropyReport(JsonCodec):
    """`headscope entropy --json` (`entropy_report` returns its JSON; `EntropyReport.from_json` reads it back).
    Grids are [layer][head] means (entropy over every query row, the normalised entropy over rows 1..n−1);
    floats to 6 digits; `n_tokens` is derived."""

    model: str
    token_ids: tuple[int, ...]
    str_tokens: tuple[str, ...]
    backend: str
    entropy_bits: tuple[tuple[float, ...], ...] = jfield(digits=6)
    normalised_entropy: tuple[tuple[float, ...], ...] = jfield(digits=6)
    mean_entropy_bits: float = jfield(digits=6)
    uniform_ceiling_bits: float = jfield(digits=6)
    token_entropy_bits: tuple[float, ...] = jfield(digits=6)
    dial: LocalityDial | None = None

    json_extra = ("n_tokens",)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


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
    return entropy_result(handle, tokens, ent, used, dial).to_json()


def entropy_result(
    handle: ModelHandle,
    tokens: torch.Tensor,
    ent: torch.Tensor,
    backend: str,
    dial: LocalityDial | None = None,
) -> EntropyReport:
    """The report of per-query entropies `ent` [layer, head, pos] (bits) of `tokens`."""
    ids = tuple(int(i) for i in tokens[0].tolist())
    n = len(ids)
    rest = slice(1, None) if n > 1 else slice(None)
    ceiling = np.log2(np.arange(1, n + 1, dtype=np.float64))
    ent = ent.double()
    return EntropyReport(
        handle.identity.name, ids, tuple(handle.str_tokens(ids)), backend, _grid(ent.mean(-1)),
        _grid(normalised_entropy(ent)[..., rest].mean(-1)), float(ent.mean()), float(ceiling.mean()),
        tuple(ent.mean((0, 1)).tolist()), dial,
    )  # fmt: skip


def _grid(t: torch.Tensor) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(row) for row in t.tolist())
