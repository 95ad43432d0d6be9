"""Decoding strategies on the tiny models, against independent oracles (plain transformers, hooks, recompute)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import regex
import torch

from headscope.decoding import GRAMMARS, DecodeConfig, compare, decode
from headscope.decoding.cache import CachedModel
from headscope.decoding.layer_skip import skip_hooks
from headscope.models import ModelHandle
from headscope.models.tiny import TINY_BUILDERS

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["the cat sat on the mat; the cat sat on the", "abc abc abd abe"]
LOSSLESS = ("layer_skip", "ngram", "jacobi", "speculative")


def ids_of(handle: ModelHandle, text: str) -> list[int]:
    return handle.tokenize(text)[0].tolist()


def other(tiny: ModelHandle, tiny_llama: ModelHandle, tiny_gpt2: ModelHandle) -> ModelHandle:
    return tiny_gpt2 if tiny is tiny_llama else tiny_llama


def test_cached_logits_equal_full_recompute(tiny: ModelHandle) -> None:
    ids = ids_of(tiny, PROMPTS[0])
    full = tiny.forward(torch.tensor([ids]))[0]
    model = CachedModel(tiny)
    first = model.logits_last(ids[:10], 10)
    chunk = model.logits_last(ids[:16], 6)
    model.truncate(12)  # roll back, then continue from the shorter prefix
    rest = model.logits_last(ids, len(ids) - 12)
    got = torch.cat([first, chunk[:2], rest])
    assert got.shape == full.shape and float((got - full).abs().max()) < 1e-4
    assert model.forwards == 3


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_transformers_generate(tiny: ModelHandle, prompt: str) -> None:
    plain = TINY_BUILDERS[tiny.identity.name]()  # a fresh model: the handle's is rewired by the bridge
    ids = ids_of(tiny, prompt)
    ref = plain.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False, pad_token_id=0)  # pyright: ignore[reportCallIssue]
    trace = decode(tiny, ids, "greedy", DecodeConfig(max_new_tokens=20))
    assert list(trace.token_ids) == ref[0, len(ids) :].tolist()[: len(trace.token_ids)]
    assert trace.target_forwards == len(trace.token_ids)


@pytest.mark.parametrize("strategy", LOSSLESS)
@pytest.mark.parametrize("max_draft", [3])
def test_lossless_strategies_equal_greedy(tiny, tiny_llama, tiny_gpt2, strategy: str, max_draft: int) -> None:
    draft = other(tiny, tiny_llama, tiny_gpt2)
    for prompt in PROMPTS:
        ids = ids_of(tiny, prompt)
        cfg = DecodeConfig(
            max_new_tokens=24,
            max_draft=max_draft,
            window=max_draft + 1,
            search_steps=4,
            min_draft_confidence=0.0,
        )
        greedy = decode(tiny, ids, "greedy", cfg)
        trace = decode(tiny, ids, strategy, cfg, draft)
        assert trace.token_ids == greedy.token_ids, strategy
        assert sum(len(s.accepted) for s in trace.steps) == len(trace.token_ids)
        assert all(len(s.draft_tokens) <= max_draft + 1 for s in trace.steps)


def test_greedy_ignores_distinct_random_output(tiny_llama: ModelHandle) -> None:
    """The tiny models repeat themselves under greedy; sampling shows the lossless paths on varied text."""
    ids = ids_of(tiny_llama, PROMPTS[1])
    cfg = DecodeConfig(max_new_tokens=24, temperature=1.0, seed=3)
    a = decode(tiny_llama, ids, "sample", cfg)
    b = decode(tiny_llama, ids, "sample", cfg)
    assert a.token_ids == b.token_ids and len(set(a.token_ids)) > 3  # seeded, and not degenerate


@pytest.mark.parametrize(
    "strategy", ["greedy", "layer_skip", "ngram", "jacobi", "speculative", "constrained"]
)
def test_forward_counters_equal_hooked_runs(tiny_llama, tiny_gpt2, strategy: str) -> None:
    counts = {"target": 0, "draft": 0}

    def counter(key: str):
        def hook(act, hook):
            counts[key] += 1
            return act

        return hook

    cfg = DecodeConfig(
        max_new_tokens=16, search_steps=3, regex="[a-z ]+" if strategy == "constrained" else None
    )
    ids = ids_of(tiny_llama, PROMPTS[0])
    with (
        tiny_llama.hooks([("hook_embed", counter("target"))]),
        tiny_gpt2.hooks([("hook_embed", counter("draft"))]),
    ):
        trace = decode(tiny_llama, ids, strategy, cfg, tiny_gpt2)
    if strategy == "speculative":
        assert (trace.target_forwards, trace.draft_forwards) == (counts["target"], counts["draft"])
    else:  # layer_skip drafts with the target model itself
        assert trace.target_forwards + trace.draft_forwards == counts["target"] and counts["draft"] == 0
    assert trace.target_forwards >= 1


def test_skipping_a_sublayer_passes_the_residual_through(tiny_llama: ModelHandle) -> None:
    ids = torch.tensor([ids_of(tiny_llama, PROMPTS[0])])
    _, acts = tiny_llama.run_with_cache(
        ids, ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"],
        fwd_hooks=skip_hooks(frozenset({("attn", 1), ("mlp", 1)})),
    )  # fmt: skip
    assert torch.allclose(acts["blocks.1.hook_resid_pre"], acts["blocks.1.hook_resid_post"])


def test_speculative_sampling_runs_and_is_seeded(tiny_llama, tiny_gpt2) -> None:
    ids = ids_of(tiny_llama, PROMPTS[0])
    cfg = DecodeConfig(max_new_tokens=16, temperature=1.0, seed=5, max_draft=3)
    a = decode(tiny_llama, ids, "speculative", cfg, tiny_gpt2)
    b = decode(tiny_llama, ids, "speculative", cfg, tiny_gpt2)
    assert a.token_ids == b.token_ids and len(a.token_ids) > 0
    assert all(0 < p <= 1 for s in a.steps for p in s.verifier_probs)


@pytest.mark.parametrize("method", ["awrs", "mask"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("pattern", [r"[0-9]{3}-[0-9]{4}", None])
def test_constrained_output_satisfies_constraint(tiny, method: str, temperature: float, pattern) -> None:
    cfg = DecodeConfig(
        max_new_tokens=40, temperature=temperature, seed=1, regex=pattern,
        grammar=None if pattern else "json_object", constraint_method=method,
    )  # fmt: skip
    trace = decode(tiny, ids_of(tiny, PROMPTS[0]), "constrained", cfg)
    eos = tiny.tokenizer.eos_token_id
    body = [t for t in trace.token_ids if t != eos]
    compiled = regex.compile(cfg.regex or GRAMMARS["json_object"])
    text = tiny.decode(body)
    assert compiled.fullmatch(text, partial=True) is not None
    if trace.token_ids and trace.token_ids[-1] == eos:
        assert compiled.fullmatch(text) is not None
    assert all(s.constraint_evals >= 1 for s in trace.steps)
    if temperature > 0:
        assert all(s.log_weight is not None and s.log_weight <= 1e-9 for s in trace.steps)


def test_awrs_needs_fewer_evaluations_than_masking(tiny) -> None:
    base = DecodeConfig(max_new_tokens=12, regex=r"[0-9]{3}-[0-9]{4}", temperature=1.0)
    ids = ids_of(tiny, PROMPTS[1])
    awrs = decode(tiny, ids, "constrained", base)
    mask = decode(tiny, ids, "constrained", dataclasses.replace(base, constraint_method="mask"))
    assert awrs.constraint_evals_per_token < mask.constraint_evals_per_token  # type: ignore[operator]
    greedy = dataclasses.replace(base, temperature=0.0)
    g_awrs = decode(tiny, ids, "constrained", greedy)
    g_mask = decode(tiny, ids, "constrained", dataclasses.replace(greedy, constraint_method="mask"))
    assert g_awrs.token_ids == g_mask.token_ids  # both are the constrained argmax


def test_compare_marks_divergence_and_reports_the_issue_fields(tiny_llama, tiny_gpt2) -> None:
    ids = ids_of(tiny_llama, PROMPTS[0])
    cfg = DecodeConfig(max_new_tokens=12, temperature=0.0)
    result = compare(tiny_llama, ids, "greedy,ngram,jacobi,speculative", cfg, draft=tiny_gpt2)
    rows = result.to_json()["strategies"]
    assert [r["name"] for r in rows] == ["greedy", "ngram", "jacobi", "speculative"]
    keys = {"name", "token_ids", "text", "target_forwards", "draft_forwards", "acceptance_rate",
            "tokens_per_second", "identical_to_greedy", "steps"}  # fmt: skip
    for r in rows:
        assert keys <= set(r) and r["identical_to_greedy"] and r["diverges_at"] is None
    sampled = compare(tiny_llama, ids, ["sample"], dataclasses.replace(cfg, temperature=1.5, seed=2))
    row = sampled.results[0]
    assert not row.identical_to_greedy and row.diverges_at is not None
    assert row.matches_greedy[row.diverges_at] is False


def test_draft_model_with_another_tokenizer_is_refused(tiny_llama: ModelHandle) -> None:
    from headscope.decoding.drafters import check_same_tokenizer
    from headscope.errors import InputError
    from headscope.models.tiny import byte_tokenizer

    tok = byte_tokenizer()
    tok.add_tokens(["<extra>"])
    impostor = copy.copy(tiny_llama)
    impostor.tokenizer = tok
    with pytest.raises(InputError, match="does not share the tokenizer"):
        check_same_tokenizer(tiny_llama, impostor)
    with pytest.raises(InputError, match="unknown strategy"):
        decode(tiny_llama, [1, 2], "warp", DecodeConfig())
    with pytest.raises(InputError, match="max_new_tokens"):
        DecodeConfig(max_new_tokens=300)
