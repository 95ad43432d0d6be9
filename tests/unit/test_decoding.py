"""Decoding strategies on the tiny models, against independent oracles (plain transformers, hooks, recompute)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import regex
import torch

from headscope.decoding import GRAMMARS, DecodeConfig, compare, decode
from headscope.decoding.cache import CachedModel, session
from headscope.decoding.layer_skip import CALIBRATION_ROUNDS, parse_skip
from headscope.decoding.loop import DraftBudget
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.models.tiny import TINY_BUILDERS

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["the cat sat on the mat; the cat sat on the", "abc abc abd abe"]
LOSSLESS = ("layer_skip", "ngram", "jacobi", "lookahead", "speculative")


def ids_of(handle: ModelHandle, text: str) -> list[int]:
    return handle.tokenize(text)[0].tolist()


def draft_depth(step) -> int:
    if step.draft_parents is None:
        return len(step.draft_tokens)
    depth: list[int] = []
    for p in step.draft_parents:
        depth.append(1 if p < 0 else depth[p] + 1)
    return max(depth, default=0)


def other(tiny: ModelHandle, tiny_llama: ModelHandle, tiny_gpt2: ModelHandle) -> ModelHandle:
    return tiny_gpt2 if tiny is tiny_llama else tiny_llama


def test_cached_logits_equal_full_recompute(tiny: ModelHandle) -> None:
    ids = ids_of(tiny, PROMPTS[0])
    full = tiny.forward(torch.tensor([ids]))[0]
    with session(tiny) as sess:
        model = CachedModel(tiny, sess)
        first = model.logits_last(ids[:10], 10)
        chunk = model.logits_last(ids[:16], 6)
        model.truncate(12)  # roll back, then continue from the shorter prefix
        rest = model.logits_last(ids, len(ids) - 12)
        aside = model.logits_aside(ids[:20], 15)  # scoring a variant leaves the cache as it was
        after = model.logits_last(ids, 1)
    got = torch.cat([first, chunk[:2], rest])
    assert got.shape == full.shape and float((got - full).abs().max()) < 1e-4
    assert float((aside - full[15:20]).abs().max()) < 1e-4 and float((after[0] - full[-1]).abs().max()) < 1e-4
    assert model.forwards == 5


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_transformers_generate(tiny: ModelHandle, prompt: str) -> None:
    plain = TINY_BUILDERS[tiny.identity.name]()  # a fresh model: the handle's is rewired by the bridge
    plain.config._attn_implementation = "sdpa"  # what `generate` uses by default, and what greedy here runs
    ids = ids_of(tiny, prompt)
    ref = plain.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False, pad_token_id=0)  # pyright: ignore[reportCallIssue]
    trace = decode(tiny, ids, "greedy", DecodeConfig(max_new_tokens=20))
    assert list(trace.token_ids) == ref[0, len(ids) :].tolist()  # the whole continuation, not a prefix of it
    assert len(trace.token_ids) == 20 or trace.token_ids[-1] == tiny.tokenizer.eos_token_id
    assert trace.target_forwards == len(trace.token_ids)


@pytest.mark.parametrize("strategy", LOSSLESS)
def test_lossless_strategies_equal_greedy(tiny, tiny_llama, tiny_gpt2, strategy: str) -> None:
    draft = other(tiny, tiny_llama, tiny_gpt2)
    for prompt in PROMPTS:
        ids = ids_of(tiny, prompt)
        cfg = DecodeConfig(max_new_tokens=24, max_draft=3, window=4, search_steps=4, min_draft_confidence=0.0)
        greedy = decode(tiny, ids, "greedy", cfg)
        trace = decode(tiny, ids, strategy, cfg, draft)
        assert trace.token_ids == greedy.token_ids, strategy
        assert sum(len(s.accepted) for s in trace.steps) == len(trace.token_ids)
        assert all(draft_depth(s) <= 4 for s in trace.steps)  # a tree's depth, a chain's length


def test_sampling_is_seeded_and_varied(tiny_llama: ModelHandle) -> None:
    ids = ids_of(tiny_llama, PROMPTS[1])
    cfg = DecodeConfig(max_new_tokens=24, temperature=1.0, seed=3)
    a = decode(tiny_llama, ids, "sample", cfg)
    b = decode(tiny_llama, ids, "sample", cfg)
    assert a.token_ids == b.token_ids and len(set(a.token_ids)) > 3  # seeded, and not degenerate


@pytest.mark.parametrize(
    "strategy", ["greedy", "layer_skip", "ngram", "jacobi", "lookahead", "speculative", "constrained"]
)
def test_forward_counters_equal_the_runs_made(tiny_llama, tiny_gpt2, strategy: str, monkeypatch) -> None:
    """Every model forward goes through `handle.run`: count those calls per model, independently of the trace."""
    counts = {"tiny-llama": 0, "tiny-gpt2": 0}
    original = ModelHandle.run

    def counted(self: ModelHandle, *args, **kwargs):
        counts[self.identity.name] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ModelHandle, "run", counted)
    cfg = DecodeConfig(
        max_new_tokens=16, search_steps=3, regex="[a-z ]+" if strategy == "constrained" else None
    )
    trace = decode(tiny_llama, ids_of(tiny_llama, PROMPTS[0]), strategy, cfg, tiny_gpt2)
    if strategy == "speculative":
        assert (trace.target_forwards, trace.draft_forwards) == (counts["tiny-llama"], counts["tiny-gpt2"])
    else:  # layer_skip drafts (and searches) with the target model itself, then times 2 × rounds forwards
        calibration = 2 * CALIBRATION_ROUNDS if trace.draft_cost is not None else 0
        assert trace.target_forwards + trace.draft_forwards + calibration == counts["tiny-llama"]
        assert counts["tiny-gpt2"] == 0
    assert trace.target_forwards >= 1


def test_layer_skip_reports_its_skip_set_and_draft_cost(tiny_llama: ModelHandle) -> None:
    ids = ids_of(tiny_llama, PROMPTS[0])
    cfg = DecodeConfig(max_new_tokens=16, search_steps=2, min_draft_confidence=0.0)
    trace = decode(tiny_llama, ids, "layer_skip", cfg)
    report = trace.layer_skip
    assert report is not None and trace.draft_cost is not None and trace.draft_cost > 0
    assert parse_skip(report.skip_layers, tiny_llama.facts.n_layers)  # reusable as skip_layers
    assert 0 < report.compute_share < 1 and report.sublayers == 2 * tiny_llama.facts.n_layers
    fixed = decode(tiny_llama, ids, "layer_skip", dataclasses.replace(cfg, skip_layers=report.skip_layers))
    assert fixed.token_ids == trace.token_ids and fixed.layer_skip is not None
    assert fixed.layer_skip.search_forwards == 0 and fixed.layer_skip.skip_layers == report.skip_layers
    with pytest.raises(InputError, match="not a skippable sublayer"):
        decode(tiny_llama, ids, "layer_skip", dataclasses.replace(cfg, skip_layers="a0"))


def test_draft_budget_follows_acceptance() -> None:
    b = DraftBudget(cap=8, start=4)
    b.update(4, 4)
    assert b.k == 6
    b.update(6, 6)
    b.update(8, 8)
    assert b.k == 8  # capped
    b.update(3, 8)  # partly accepted: one shorter
    assert b.k == 7
    b.update(0, 7)  # nothing accepted: rest for one step, then try one token
    assert b.k == 0
    b.update(0, 0)
    assert b.k == 1
    b.update(0, 1)  # a second miss in a row: rest for 2 steps
    for _ in range(2):
        assert b.k == 0
        b.update(0, 0)
    assert b.k == 1
    b.update(1, 1)  # accepted: back to drafting, and the misses are forgiven
    assert (b.k, b.misses) == (3, 0)
    costly = DraftBudget(cap=8, start=2)
    costly.cost = 0.7  # each drafted token costs 0.7 of a forward: worth it only above 0.8 acceptance
    costly.update(2, 2)
    costly.update(3, 4)
    assert costly.k == 3  # 5 of 6 accepted (0.83): it pays, one shorter after a partial accept
    costly.update(1, 4)
    assert costly.k == 0  # 6 of 10 (0.6): it no longer pays, so it rests


def test_speculative_sampling_runs_and_is_seeded(tiny_llama, tiny_gpt2) -> None:
    ids = ids_of(tiny_llama, PROMPTS[0])
    cfg = DecodeConfig(max_new_tokens=16, temperature=1.0, seed=5, max_draft=3)
    a = decode(tiny_llama, ids, "speculative", cfg, tiny_gpt2)
    b = decode(tiny_llama, ids, "speculative", cfg, tiny_gpt2)
    assert a.token_ids == b.token_ids and len(a.token_ids) > 0
    assert all(0 < p <= 1 for s in a.steps for p in s.verifier_probs)


def test_lookahead_refuses_sampling(tiny_llama: ModelHandle) -> None:
    with pytest.raises(InputError, match="temperature 0"):
        decode(tiny_llama, [1, 2, 3], "lookahead", DecodeConfig(temperature=1.0))


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


def test_phone_regex_succeeds_for_twenty_seeds(tiny_llama: ModelHandle) -> None:
    """No rejection cap: at temperature 1 every seed ends in a full match (the old 2048 cap failed here)."""
    pattern = regex.compile(r"[0-9]{3}-[0-9]{4}")
    ids = ids_of(tiny_llama, PROMPTS[0])
    eos = tiny_llama.tokenizer.eos_token_id
    for seed in range(20):
        cfg = DecodeConfig(max_new_tokens=12, temperature=1.0, seed=seed, regex=pattern.pattern)
        trace = decode(tiny_llama, ids, "constrained", cfg)
        assert trace.token_ids[-1] == eos and pattern.fullmatch(tiny_llama.decode(trace.token_ids[:-1]))


def test_smc_keeps_weights_in_the_trace_and_satisfies_the_constraint(tiny_llama: ModelHandle) -> None:
    pattern = r"[0-9]{3}-[0-9]{4}"
    cfg = DecodeConfig(max_new_tokens=12, temperature=1.0, seed=4, regex=pattern, particles=4)
    trace = decode(tiny_llama, ids_of(tiny_llama, PROMPTS[0]), "constrained", cfg)
    assert trace.smc and all(len(r.log_weights) == 4 for r in trace.smc)
    assert regex.fullmatch(pattern, tiny_llama.decode(trace.token_ids[:-1]))
    for r in trace.smc:
        if r.resampled:
            assert r.ess < 0.5 * 4 and len(r.ancestors) == 4
    payload = trace.to_json()
    assert payload["smc"][0]["log_weights"] and all(s["log_weight"] is not None for s in payload["steps"])
    with pytest.raises(InputError, match="SMC needs temperature"):
        decode(tiny_llama, [1, 2], "constrained", dataclasses.replace(cfg, temperature=0.0))


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
    result = compare(tiny_llama, ids, "greedy,ngram,jacobi,lookahead,speculative", cfg, draft=tiny_gpt2)
    rows = result.to_json()["strategies"]
    assert [r["name"] for r in rows] == ["greedy", "ngram", "jacobi", "lookahead", "speculative"]
    keys = {"name", "token_ids", "text", "target_forwards", "draft_forwards", "acceptance_rate",
            "tokens_per_second", "identical_to_greedy", "steps", "divergence"}  # fmt: skip
    for r in rows:
        assert keys <= set(r) and r["identical_to_greedy"] and r["diverges_at"] is None
    sampled = compare(tiny_llama, ids, ["sample"], dataclasses.replace(cfg, temperature=1.5, seed=2))
    row = sampled.results[0]
    assert not row.identical_to_greedy and row.diverges_at is not None
    assert row.matches_greedy[row.diverges_at] is False
    assert row.divergence is not None and row.divergence.position == row.diverges_at


def test_draft_model_with_another_tokenizer_is_refused(tiny_llama: ModelHandle) -> None:
    from headscope.decoding.drafters import check_same_tokenizer
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


def test_comparison_goes_to_json_and_back_through_the_codec(tiny_llama) -> None:
    import json

    from headscope.attention import LocalityDial
    from headscope.batch.execute import without_timings
    from headscope.decoding import Comparison

    ids = ids_of(tiny_llama, PROMPTS[0])
    cfg = DecodeConfig(max_new_tokens=10, attention_entropy=True, dial=LocalityDial(lam=0.5, heads="1.0"))
    result = compare(tiny_llama, ids, ["greedy", "token_recycling", "layer_skip"], cfg)
    text = json.dumps(result.to_json(), allow_nan=False)
    back = Comparison.from_json(json.loads(text))
    # what a job returns redraws the same way (tokens/s is recomputed from the rounded wall time)
    assert without_timings(back.to_json()) == without_timings(json.loads(text))
    assert back.config == cfg and back.greedy.token_ids == result.greedy.token_ids
    assert back.results[1].steps[0].attention_bits is not None and back.intervention == result.intervention
    assert back.results[2].layer_skip is not None
    with pytest.raises(InputError, match="unknown field"):
        Comparison.from_json({**json.loads(text), "extra": 1})


def test_layer_skip_searches_once_per_task_and_reuses_the_set(tiny_llama, tmp_path, monkeypatch) -> None:
    from headscope.decoding import skip_sets

    monkeypatch.setenv("HEADSCOPE_CACHE", str(tmp_path))
    skip_sets.forget()
    cfg = DecodeConfig(max_new_tokens=16, task="summarization", search_window=8, min_draft_confidence=0.0)
    first = decode(tiny_llama, ids_of(tiny_llama, PROMPTS[0]), "layer_skip", cfg)
    second = decode(tiny_llama, ids_of(tiny_llama, PROMPTS[1]), "layer_skip", cfg)
    assert first.layer_skip is not None and second.layer_skip is not None
    assert (
        "searched for task 'summarization'" in first.layer_skip.source
        and first.layer_skip.search_forwards > 0
    )
    assert (
        second.layer_skip.source == "cached for task 'summarization'"
        and second.layer_skip.search_forwards == 0
    )
    assert second.layer_skip.skip_layers == first.layer_skip.skip_layers
    skip_sets.forget()  # a new process reads the stored choice back from the user cache
    third = decode(tiny_llama, ids_of(tiny_llama, PROMPTS[1]), "layer_skip", cfg)
    assert third.layer_skip is not None and third.layer_skip.source.startswith("cached")
    for trace, prompt in ((first, PROMPTS[0]), (second, PROMPTS[1])):
        assert trace.token_ids == decode(tiny_llama, ids_of(tiny_llama, prompt), "greedy", cfg).token_ids
    choice = skip_sets.lookup(skip_sets.cache_key(tiny_llama, cfg))
    assert choice is not None and (choice.skip_layers == "") == (choice.expected_speedup <= 1.0)
    skip_sets.forget()


def test_expected_speedup_model() -> None:
    from headscope.decoding.skip_sets import best_length, expected_speedup

    assert expected_speedup(1.0, 0.0, 3, verify=0.0) == 4.0  # free drafts, always accepted
    assert expected_speedup(0.0, 0.5, 2, verify=0.0) == 0.5  # never accepted: the drafts are pure cost
    gamma, best = best_length(0.9, 0.2, 8)
    assert best == max(expected_speedup(0.9, 0.2, g) for g in range(1, 9)) and 1 < gamma <= 8


def test_a_model_drafting_for_itself_shares_its_decoding_session(tiny_gpt2, monkeypatch) -> None:
    """Two sessions on one model each set its attention up and put it back on their own time slices, so under
    load one put it back while the other still decoded: the target recorded no entropy (KeyError, seen in the app
    test). One model, one session: the entropy is recorded for every token, and the tokens are greedy's."""
    from headscope.decoding import strategies

    opened = []
    real = strategies.session

    def counting(handle):
        opened.append(handle)
        return real(handle)

    monkeypatch.setattr(strategies, "session", counting)
    cfg = DecodeConfig(max_new_tokens=8, attention_entropy=True)
    trace = decode(tiny_gpt2, [5, 6, 7, 5, 6], "speculative", cfg, tiny_gpt2)
    assert opened == [tiny_gpt2]
    assert (
        trace.attention_entropy is not None and trace.attention_entropy.shape[0] == len(trace.token_ids) == 8
    )
    assert trace.token_ids == decode(tiny_gpt2, [5, 6, 7, 5, 6], "greedy", cfg).token_ids
