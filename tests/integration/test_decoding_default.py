"""The decoding lab on the real default model (SmolLM2-135M): every lossless strategy equals plain transformers
`generate` token for token on a sample of the category benchmark, per-step attention entropy equals the full
recompute, and AWRS satisfies the phone-number regex at temperature 1."""

from __future__ import annotations

import pytest
import regex
import torch

from headscope.attention.patterns import row_entropy_bits
from headscope.decoding import DecodeConfig, decode
from headscope.decoding.prompts import load_categories, render_messages
from headscope.errors import InputError
from headscope.models import ModelHandle, hooks, resolve
from headscope.models.loading import load_hf

pytestmark = [pytest.mark.default_model, pytest.mark.usefixtures("one_thread")]
N_NEW = 24
SAMPLE = (
    ("summarization", 1),
    ("rag", 0),
    ("code_edit", 0),
)  # (category, index): a sample; the bench runs all


@pytest.fixture(scope="module")
def generate_model():
    plain = load_hf(resolve("smollm2-135m")).model.eval()
    plain.config._attn_implementation = "sdpa"  # generate's default attention
    return plain


@pytest.fixture(scope="module", params=SAMPLE, ids=[c for c, _ in SAMPLE])
def prompt_and_reference(request, default_model: ModelHandle, generate_model) -> tuple[list[int], list[int]]:
    category, index = request.param
    item = load_categories()[category][index]
    ids = default_model.tokenize(render_messages(default_model, item.messages))[0].tolist()
    eos = default_model.tokenizer.eos_token_id
    with torch.inference_mode():
        out = generate_model.generate(
            torch.tensor([ids]), max_new_tokens=N_NEW, do_sample=False, pad_token_id=eos
        )
    return ids, out[0, len(ids) :].tolist()


@pytest.mark.parametrize(
    "strategy", ["greedy", "ngram", "jacobi", "lookahead", "layer_skip", "token_recycling"]
)
def test_lossless_strategies_equal_transformers_generate(
    prompt_and_reference, default_model, strategy
) -> None:
    ids, reference = prompt_and_reference
    cfg = DecodeConfig(max_new_tokens=N_NEW, max_draft=6, window=4, search_steps=2)
    trace = decode(default_model, ids, strategy, cfg)
    assert list(trace.token_ids) == reference
    assert trace.target_forwards <= len(reference)
    if strategy == "token_recycling":  # the recycled tree pays on the real model: > 1 token per forward
        assert trace.tokens_per_target_forward > 1.2 and any(s.draft_parents for s in trace.steps)


def test_cached_greedy_equals_full_recompute(default_model: ModelHandle) -> None:
    item = load_categories()["rag"][0]
    ids = default_model.tokenize(render_messages(default_model, item.messages))[0].tolist()
    trace = decode(default_model, ids, "greedy", DecodeConfig(max_new_tokens=12))
    assert list(trace.token_ids) == default_model.greedy(torch.tensor([ids]), 12)  # every step from scratch


def test_step_entropy_equals_full_recompute_on_the_default_model(default_model: ModelHandle) -> None:
    ids = default_model.tokenize(
        render_messages(default_model, [{"role": "user", "content": "Name three colours."}])
    )
    ids = ids[0].tolist()
    trace = decode(default_model, ids, "ngram", DecodeConfig(max_new_tokens=8, attention_entropy=True))
    seq = ids + list(trace.token_ids)
    names = [hooks.pattern(layer) for layer in range(default_model.facts.n_layers)]
    _, cache = default_model.run_with_cache(torch.tensor([seq[:-1]]), names)
    want = torch.stack([row_entropy_bits(cache[n][0].float()) for n in names])[:, :, -len(trace.token_ids) :]
    got = trace.attention_entropy
    assert got is not None
    torch.testing.assert_close(got, want.permute(2, 0, 1), atol=2e-3, rtol=0)


def test_awrs_phone_regex_at_temperature_one(default_model: ModelHandle) -> None:
    """A sample of seeds here; the benchmark checks 20 of 20."""
    pattern = r"[0-9]{3}-[0-9]{4}"
    msg = [{"role": "user", "content": "Make up a phone number for a pizza shop, written like 555-1234."}]
    ids = default_model.tokenize(render_messages(default_model, msg))[0].tolist()
    eos = default_model.tokenizer.eos_token_id
    for seed in range(3):
        cfg = DecodeConfig(max_new_tokens=16, temperature=1.0, seed=seed, regex=pattern)
        trace = decode(default_model, ids, "constrained", cfg)
        assert trace.token_ids[-1] == eos and regex.fullmatch(
            pattern, default_model.decode(trace.token_ids[:-1])
        )


def test_no_catalog_draft_model_shares_the_default_tokenizer(default_model, tiny_llama) -> None:
    with pytest.raises(InputError, match="use layer_skip"):
        decode(default_model, [1, 2, 3], "speculative", DecodeConfig(max_new_tokens=4), tiny_llama)
