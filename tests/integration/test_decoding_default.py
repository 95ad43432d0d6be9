"""Lossless strategies on the real default model (SmolLM2-135M): identical to greedy, greedy identical to the
uncached full recompute."""

from __future__ import annotations

import pytest
import torch

from headscope.decoding import DecodeConfig, decode
from headscope.decoding.prompts import load_prompt_set, render
from headscope.errors import InputError
from headscope.models import ModelHandle

pytestmark = [pytest.mark.default_model, pytest.mark.usefixtures("one_thread")]
N_NEW = 24


@pytest.fixture(scope="module")
def prompt_and_greedy(default_model: ModelHandle) -> tuple[list[int], tuple[int, ...]]:
    item = next(p for p in load_prompt_set("input_grounded") if p.id == "edit-krypton")
    ids = default_model.tokenize(render(default_model, item.user_text))[0].tolist()
    trace = decode(default_model, ids, "greedy", DecodeConfig(max_new_tokens=N_NEW))
    return ids, trace.token_ids


def test_cached_greedy_equals_full_recompute(default_model: ModelHandle, prompt_and_greedy) -> None:
    ids, greedy = prompt_and_greedy
    reference = default_model.greedy(torch.tensor([ids]), N_NEW)  # no KV cache: every step from scratch
    assert list(greedy) == reference


@pytest.mark.parametrize("strategy", ["ngram", "jacobi", "layer_skip"])
def test_lossless_strategies_equal_greedy(
    default_model: ModelHandle, prompt_and_greedy, strategy: str
) -> None:
    ids, greedy = prompt_and_greedy
    cfg = DecodeConfig(max_new_tokens=N_NEW, max_draft=6, window=4, search_steps=1)
    trace = decode(default_model, ids, strategy, cfg)
    assert trace.token_ids == greedy
    assert trace.target_forwards <= len(greedy)


def test_no_catalog_draft_model_shares_the_default_tokenizer(default_model, tiny_llama) -> None:
    with pytest.raises(InputError, match="use layer_skip"):
        decode(default_model, [1, 2, 3], "speculative", DecodeConfig(max_new_tokens=4), tiny_llama)
