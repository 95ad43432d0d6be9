"""What the attention does while decoding, and the forward switches, against independent recomputations:
per-step entropy vs the full-recompute `hook_pattern`; ablation vs TransformerLens `hook_z` hooks; the dial vs
its own `hook_attn_scores` hooks on a full recompute; a skipped sublayer vs zeroing its output; plain runs vs the
bridge."""

from __future__ import annotations

import pytest
import torch

from headscope.attention import LocalityDial, dial_hooks
from headscope.attention.patterns import row_entropy_bits
from headscope.decoding import DecodeConfig, compare, decode
from headscope.models import ModelHandle, hooks
from headscope.models.skip import crop_cache, forward_switch, sublayer_macs
from headscope.models.tiny import TINY_BUILDERS

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "the cat sat on the mat; the cat sat on the"


def ids_of(handle: ModelHandle, text: str = PROMPT) -> list[int]:
    return handle.tokenize(text)[0].tolist()


def recomputed_entropy(handle: ModelHandle, seq: list[int], n_new: int, fwd_hooks=()) -> torch.Tensor:
    """[n_new, layer, head]: the entropy of the rows that produced the last n_new tokens, from full patterns."""
    names = [hooks.pattern(layer) for layer in range(handle.facts.n_layers)]
    _, cache = handle.run_with_cache(torch.tensor([seq[:-1]]), names, fwd_hooks=fwd_hooks)
    rows = torch.stack([row_entropy_bits(cache[n][0].float()) for n in names])  # [layer, head, pos]
    return rows[:, :, -n_new:].permute(2, 0, 1)


def full_greedy(handle: ModelHandle, ids: list[int], n: int, fwd_hooks=()) -> list[int]:
    seq = list(ids)
    for _ in range(n):
        seq.append(int(handle.run(torch.tensor([seq]), fwd_hooks=fwd_hooks)[0, -1].argmax()))
    return seq[len(ids) :]


@pytest.mark.parametrize("strategy", ["greedy", "ngram", "lookahead"])
def test_step_entropy_equals_the_full_recompute_pattern(tiny: ModelHandle, strategy: str) -> None:
    """Oracle: for every generated token, the per-head entropy recorded in the cached forward (q·K of that row
    only, multi-token verification rows included) equals the entropy of that row of a full eager recompute."""
    ids = ids_of(tiny)
    trace = decode(tiny, ids, strategy, DecodeConfig(max_new_tokens=12, attention_entropy=True))
    got, n = trace.attention_entropy, len(trace.token_ids)
    assert got is not None and got.shape == (n, tiny.facts.n_layers, tiny.facts.n_heads)
    want = recomputed_entropy(tiny, ids + list(trace.token_ids), n)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    plain = decode(tiny, ids, strategy, DecodeConfig(max_new_tokens=12))
    assert plain.token_ids == trace.token_ids and plain.attention_entropy is None


def test_dialled_heads_match_the_dial_hooks_on_a_full_recompute(tiny_llama: ModelHandle) -> None:
    ids = ids_of(tiny_llama)
    dial = LocalityDial(lam=1.0, mode="distance", heads="1.0, 1.2")
    cfg = DecodeConfig(max_new_tokens=10, dial=dial, attention_entropy=True)
    trace = decode(tiny_llama, ids, "greedy", cfg)
    seq = ids + list(trace.token_ids)
    fwd = dial_hooks(tiny_llama, torch.tensor([seq]), dial)
    assert trace.token_ids == tuple(full_greedy(tiny_llama, ids, 10, fwd))
    want = recomputed_entropy(tiny_llama, seq, 10, fwd)
    torch.testing.assert_close(trace.attention_entropy, want, atol=1e-4, rtol=0)
    clean = recomputed_entropy(tiny_llama, seq, 10)
    same = torch.ones_like(clean, dtype=torch.bool)
    same[:, 1, [0, 2]] = False  # only the dialled heads change; layer 0 and heads 1.1, 1.3 keep their entropy
    torch.testing.assert_close(want[same], clean[same], atol=1e-4, rtol=0)
    assert (want[~same] - clean[~same]).abs().max() > 0.1


@pytest.mark.parametrize("ablation", ["mean", "zero"])
def test_ablated_heads_match_hook_z_ablation(tiny: ModelHandle, ablation: str) -> None:
    """Oracle: the same ablation made with TransformerLens hooks on hook_z in full recomputes, with the mean
    taken from a clean run's hook_z over the prompt."""
    ids = ids_of(tiny)
    cfg = DecodeConfig(max_new_tokens=10, ablate_heads="0.1, 1.*", ablation=ablation)
    trace = decode(tiny, ids, "greedy", cfg)
    _, clean = tiny.run_with_cache(torch.tensor([ids]), [hooks.z(0), hooks.z(1)])
    chosen = {0: [1], 1: list(range(tiny.facts.n_heads))}

    def ablate(layer: int):
        mean = clean[hooks.z(layer)][0, :, chosen[layer]].mean(0)

        def hook(z: torch.Tensor, hook: object) -> torch.Tensor:
            z = z.clone()
            z[:, :, chosen[layer]] = mean if ablation == "mean" else 0.0
            return z

        return hook

    fwd = [(hooks.z(layer), ablate(layer)) for layer in chosen]
    assert trace.token_ids == tuple(full_greedy(tiny, ids, 10, fwd))
    how = "mean over the prompt" if ablation == "mean" else "zero"
    assert trace.intervention == f"ablate heads 0.1, 1.* ({how})"


def test_compare_under_intervention_uses_the_clean_greedy_as_reference(tiny_gpt2: ModelHandle) -> None:
    # (the random tiny models mostly ignore even all their heads; this prompt is one where they do not)
    ids = ids_of(tiny_gpt2, "hello world")
    cfg = DecodeConfig(max_new_tokens=16, ablate_heads="*.*", ablation="zero", attention_entropy=True)
    result = compare(tiny_gpt2, ids, ["greedy", "ngram"], cfg)
    clean = decode(tiny_gpt2, ids, "greedy", DecodeConfig(max_new_tokens=16))
    assert result.greedy.token_ids == clean.token_ids and result.greedy.intervention is None
    ablated = {r.trace.strategy: r for r in result.results}
    # lossless under the ablation too
    assert ablated["greedy"].trace.token_ids == ablated["ngram"].trace.token_ids
    row = ablated["greedy"]
    assert row.trace.intervention == "ablate heads 0.*, 1.* (zero)"
    assert not row.identical_to_greedy and row.divergence is not None
    d = row.divergence
    assert d.token == row.trace.token_ids[d.position] and d.greedy_token == clean.token_ids[d.position]
    assert d.entropy_bits is not None and d.entropy_bits.shape == (2, tiny_gpt2.facts.n_heads)
    assert d.greedy_entropy_bits is not None and not torch.equal(d.entropy_bits, d.greedy_entropy_bits)
    assert result.to_json()["intervention"] == row.trace.intervention


def test_skipped_sublayers_equal_zeroed_outputs_and_keep_the_cache_croppable(tiny: ModelHandle) -> None:
    ids = torch.tensor([ids_of(tiny)])
    skip = frozenset({("attn", 1), ("mlp", 1)})
    zero = [(hooks.sublayer_out(1, kind), lambda a, hook: torch.zeros_like(a)) for kind in ("attn", "mlp")]
    want = tiny.run(ids, fwd_hooks=zero)
    with forward_switch(tiny) as switch, switch.setting(skip=skip, plain=True):
        got = tiny.run(ids)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    from transformers import DynamicCache

    cache = DynamicCache(config=tiny.hf_model.config)
    with forward_switch(tiny) as switch:
        tiny.run(ids[:, :10], cache=cache)
        with switch.setting(skip=frozenset({("attn", 1)})):
            tiny.run(ids[:, 10:12], cache=cache)
    lengths = [layer.get_seq_length() for layer in cache.layers]
    assert lengths == [12, 10]  # the skipped attention wrote nothing
    crop_cache(cache, 10)
    assert [layer.get_seq_length() for layer in cache.layers] == [10, 10]


def test_plain_runs_equal_bridge_runs_and_leave_no_patch(tiny: ModelHandle) -> None:
    ids = torch.tensor([ids_of(tiny)])
    want = tiny.run(ids)
    with forward_switch(tiny) as switch, switch.setting(plain=True):
        got = tiny.run(ids)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    inner = [m for m in tiny.hf_model.modules() if isinstance(m, GeneralizedComponent)]
    # the bridge is back in the model: its components are reachable again
    assert len(inner) > 4 * tiny.facts.n_layers
    seen_in = []
    with tiny.hooks([(hooks.resid(1, "pre"), lambda a, hook: seen_in.append(1))]):
        tiny.run(ids)
    assert seen_in == [1]
    seen = []
    with tiny.hooks([(hooks.resid(0, "post"), lambda a, hook: seen.append(1))]):
        decode(tiny, ids[0].tolist(), "greedy", DecodeConfig(max_new_tokens=3))
    assert len(seen) == 3  # a hook attached by a caller still fires: plain runs are off for that session


def test_sublayer_costs_follow_the_weights(tiny_llama: ModelHandle) -> None:
    macs, total = sublayer_macs(tiny_llama, n_keys=10)
    plain = TINY_BUILDERS["tiny-llama"]()
    layer = plain.model.layers[0]
    attn = sum(p.numel() for p in layer.self_attn.parameters())
    mlp = sum(p.numel() for p in layer.mlp.parameters())
    f = tiny_llama.facts
    assert macs[("attn", 0)] == attn + 2 * f.n_heads * f.d_head * 10 and macs[("mlp", 0)] == mlp
    assert total == sum(macs.values()) + f.d_model * f.d_vocab


def test_the_session_hands_the_model_back_between_slices(tiny_llama: ModelHandle, monkeypatch) -> None:
    """With a zero-length slice, between two decoding steps the model is the unchanged bridge: a hooked run there
    (what another visitor's view would do) sees its attention hooks fire and the same logits as ever."""
    import headscope.decoding.cache as cache_mod

    monkeypatch.setattr(cache_mod, "SLICE_S", 0.0)
    ids = ids_of(tiny_llama)
    want = tiny_llama.run(torch.tensor([ids]))
    seen: list[int] = []

    def view_between_steps(done: int, total: int) -> None:
        fired = []
        hook = (hooks.pattern(0), lambda a, hook: fired.append(1))
        got = tiny_llama.run(torch.tensor([ids]), fwd_hooks=[hook])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        seen.append(len(fired))

    trace = decode(tiny_llama, ids, "ngram", DecodeConfig(max_new_tokens=6), on_step=view_between_steps)
    assert seen == [1] * len(trace.steps)


def test_an_error_in_a_step_callback_stops_the_run_and_restores_the_model(tiny_llama: ModelHandle) -> None:
    class Stop(Exception):
        pass

    def stop_at_three(done: int, total: int) -> None:
        if done >= 3:
            raise Stop

    ids = ids_of(tiny_llama)
    with pytest.raises(Stop):
        decode(tiny_llama, ids, "layer_skip", DecodeConfig(max_new_tokens=12), on_step=stop_at_three)
    fired = []
    tiny_llama.run(torch.tensor([ids]), fwd_hooks=[(hooks.pattern(1), lambda a, hook: fired.append(1))])
    assert fired == [1]
