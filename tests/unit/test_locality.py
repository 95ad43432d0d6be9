"""The locality dial: exact identity at λ = 0, bias oracles on real scores, schedules, blocks, validation."""

from __future__ import annotations

import math

import pytest
import torch

from headscope.errors import InputError
from headscope.localist import BlockSpec, LocalityDial, block_ids, dial_hooks, window_width
from headscope.localist.dial import BLOCK_NATS
from headscope.models import ModelHandle

TEXT = "One two three. Four five, six seven! Eight nine ten."
SCORES = "blocks.{}.attn.hook_attn_scores"
PATTERN = "blocks.{}.attn.hook_pattern"


def last_layer_only(handle: ModelHandle, **kw: object) -> LocalityDial:
    weights = (0.0,) * (handle.facts.n_layers - 1) + (1.0,)
    return LocalityDial(schedule="explicit", layer_weights=weights, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["distance", "block", "window"])
def test_lambda_zero_is_bit_identical(tiny: ModelHandle, mode: str) -> None:
    tokens = tiny.tokenize(TEXT)
    for dial in [LocalityDial(mode=mode), LocalityDial(mode=mode, schedule="progressive", beta=3.0)]:
        assert dial_hooks(tiny, tokens, dial) == []
        assert torch.equal(
            tiny.forward(tokens, fwd_hooks=dial_hooks(tiny, tokens, dial)), tiny.forward(tokens)
        )


def test_softmax_of_scores_is_the_pattern(tiny: ModelHandle) -> None:
    """The dial's premise: scores are [batch, head, q, k], causally masked, and softmax(scores) is the pattern."""
    tokens = tiny.tokenize(TEXT)
    _, cache = tiny.run_with_cache(tokens, [SCORES.format(1), PATTERN.format(1)])
    scores = cache[SCORES.format(1)]
    n = tokens.shape[1]
    assert scores.shape == (1, tiny.facts.n_heads, n, n)
    assert torch.equal(torch.softmax(scores, -1), cache[PATTERN.format(1)])
    assert (scores[0, :, 0, 1:] < -1e30).all()  # the causal mask is already in


@pytest.mark.parametrize(
    ("mode", "heads"), [("distance", None), ("block", None), ("window", None), ("distance", (1, 3))]
)
def test_dial_equals_softmax_of_biased_scores(
    tiny: ModelHandle, mode: str, heads: tuple[int, ...] | None
) -> None:
    """Oracle: dial only the last layer; its pattern must be softmax(undialed scores + the documented bias)."""
    tokens = tiny.tokenize(TEXT)
    last = tiny.facts.n_layers - 1
    dial = last_layer_only(tiny, lam=0.6, mode=mode, heads=heads, strength=1.5)
    _, base = tiny.run_with_cache(tokens, [SCORES.format(last)])
    _, dialed = tiny.run_with_cache(tokens, [PATTERN.format(last)], fwd_hooks=dial_hooks(tiny, tokens, dial))
    s = base[SCORES.format(last)][0].double()
    n = tokens.shape[1]
    i = torch.arange(n)
    dist = (i[:, None] - i[None, :]).abs().double()
    if mode == "distance":
        bias = -1.5 * 0.6 * dist
    elif mode == "block":
        b = block_ids(tiny.str_tokens(tokens), BlockSpec())
        bias = -1.5 * BLOCK_NATS * 0.6 * (b[:, None] != b[None, :]).double()
    else:
        bias = torch.where(dist >= round(n**0.4), -math.inf, 0.0)
    sel = torch.zeros(tiny.facts.n_heads, dtype=torch.bool)
    sel[list(heads) if heads else slice(None)] = True
    expect = torch.softmax(torch.where(sel[:, None, None], s + bias, s), -1)
    assert torch.allclose(dialed[PATTERN.format(last)][0].double(), expect, atol=1e-6)


def test_window_at_one_attends_to_self_only(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(TEXT)
    dial = LocalityDial(lam=1.0, mode="window")
    _, cache = tiny_llama.run_with_cache(
        tokens, [PATTERN.format(0)], fwd_hooks=dial_hooks(tiny_llama, tokens, dial)
    )
    eye = torch.eye(tokens.shape[1]).expand(4, -1, -1)
    assert torch.allclose(cache[PATTERN.format(0)][0], eye)
    assert window_width(0.0, 100) == 100 and window_width(0.5, 100) == 10 and window_width(1.0, 100) == 1


def test_progressive_leaves_layer_zero_untouched(tiny: ModelHandle) -> None:
    tokens = tiny.tokenize(TEXT)
    dial = LocalityDial(lam=1.0, schedule="progressive", beta=3.0, strength=3.0)
    assert dial.layer_lambdas(tiny.facts.n_layers) == (0.0, 1.0)
    names = [PATTERN.format(0), PATTERN.format(1)]
    _, base = tiny.run_with_cache(tokens, names)
    _, dialed = tiny.run_with_cache(tokens, names, fwd_hooks=dial_hooks(tiny, tokens, dial))
    assert torch.equal(base[names[0]], dialed[names[0]])
    assert not torch.allclose(base[names[1]], dialed[names[1]])


def test_schedules() -> None:
    prog = LocalityDial(lam=0.5, schedule="progressive", beta=2.0).layer_lambdas(5)
    assert prog == pytest.approx([0.5 * (k / 4) ** 2 for k in range(5)])
    assert LocalityDial(lam=0.5).layer_lambdas(3) == (0.5, 0.5, 0.5)
    assert LocalityDial(lam=0.5, schedule="progressive").layer_lambdas(1) == (0.5,)
    explicit = LocalityDial(lam=0.5, schedule="explicit", layer_weights=(0.0, 1.0, 0.5))
    assert explicit.layer_lambdas(3) == (0.0, 0.5, 0.25)
    with pytest.raises(InputError, match="layer_weights has 3 entries; the model has 2 layers"):
        explicit.layer_lambdas(2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam": float("nan")}, "lambda must be a number in"),
        ({"lam": -0.1}, "lambda must be a number in"),
        ({"lam": 1.5}, "lambda must be a number in"),
        ({"beta": 0.5}, "beta must be in"),
        ({"beta": float("nan")}, "beta must be in"),
        ({"strength": 0.0}, "strength must be in"),
        ({"mode": "global"}, "mode must be one of"),
        ({"schedule": "cosine"}, "schedule must be one of"),
        ({"schedule": "explicit"}, "layer_weights are given exactly when"),
        ({"schedule": "explicit", "layer_weights": (0.5, 2.0)}, "each layer weight"),
        ({"heads": ()}, "heads must be a non-empty"),
        ({"heads": (-1,)}, "heads must be a non-empty"),
        ({"heads": (1, 1)}, "duplicates"),
    ],
)
def test_dial_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        LocalityDial(**kwargs)


def test_model_dependent_validation(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(TEXT)
    with pytest.raises(InputError, match="head index 4 out of range: the model has 4 heads"):
        dial_hooks(tiny_llama, tokens, LocalityDial(lam=0.5, heads=(0, 4)))
    with pytest.raises(InputError, match="layer_weights has 3 entries"):
        dial_hooks(
            tiny_llama, tokens, LocalityDial(lam=0.5, schedule="explicit", layer_weights=(1.0, 1.0, 1.0))
        )


def test_blocks_from_token_strings() -> None:
    toks = ["The", " cat", ".", " It", " cost", " 3", ".", "5", ",", " ok", "!", "\n", "Yes"]
    assert block_ids(toks, BlockSpec("sentence")).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3]
    assert block_ids(toks, BlockSpec("clause")).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4]
    assert block_ids(toks, BlockSpec("fixed", size=5)).tolist() == [0] * 5 + [1] * 5 + [2] * 3
    spans = BlockSpec("spans", spans=((2, 4), (4, 6)))
    assert block_ids(toks[:8], spans).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(InputError, match="spans reach token 6, but the text has 5 tokens"):
        block_ids(toks[:5], spans)
    with pytest.raises(InputError, match="sorted, disjoint"):
        BlockSpec("spans", spans=((3, 5), (4, 6)))
    with pytest.raises(InputError, match="needs at least one span"):
        BlockSpec("spans")
    with pytest.raises(InputError, match=r"blocks\.size"):
        BlockSpec("fixed", size=0)
