"""Steering hooks on tiny models, each against an independent recomputation: the activation seen behind the hook,\nbatched vs one-at-a-time scoring, the generation loop vs the handle's greedy decode."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.models.batch import pad_id
from headscope.models.hooks import z as z_name
from headscope.steering.generate import GenConfig, generate
from headscope.steering.hooks import head_add_hooks, head_bias_hooks, head_scale_hooks, resid_add_hook
from headscope.steering.scoring import collate, encode_pairs, evaluate, target_logprob
from headscope.steering.tasks import Pair

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "The cat sat on the"
POS = ["I love this, it is wonderful", "great and happy times", "what a lovely day"]
NEG = ["I hate this, it is awful", "terrible and sad times"]


def _z_outputs(handle: ModelHandle, tokens: torch.Tensor, steer: list) -> dict[str, torch.Tensor]:
    """hook_z of every layer as seen after the steering hooks (a saver registered behind them)."""
    seen: dict[str, torch.Tensor] = {}

    def saver(name: str) -> Any:
        def save(z: torch.Tensor, hook: Any) -> torch.Tensor:
            seen[name] = z.detach().clone()
            return z

        return save

    names = [z_name(layer) for layer in range(handle.facts.n_layers)]
    handle.forward(tokens, fwd_hooks=[*steer, *((n, saver(n)) for n in names)])
    return seen


def test_bias_hooks_change_exactly_the_selected_heads(tiny: ModelHandle) -> None:
    f = tiny.facts
    heads = [(1, 2), (1, 0)]
    biases = torch.randn(2, f.d_head)
    tokens = tiny.tokenize(PROMPT)
    plain = _z_outputs(tiny, tokens, [])
    steered = _z_outputs(tiny, tokens, head_bias_hooks(heads, biases, f.n_heads))
    for layer in range(f.n_layers):
        for head in range(f.n_heads):
            a, b = plain[z_name(layer)][..., head, :], steered[z_name(layer)][..., head, :]
            if (layer, head) in heads:
                assert torch.allclose(b - a, biases[heads.index((layer, head))].expand_as(a), atol=1e-5)
            else:
                assert torch.equal(a, b), (layer, head)


def test_zero_bias_zero_scale_and_zero_alpha_leave_logits_unchanged(tiny: ModelHandle) -> None:
    f = tiny.facts
    tokens = tiny.tokenize(PROMPT)
    base = tiny.forward(tokens)
    zero_bias = head_bias_hooks([(0, 1), (1, 3)], torch.zeros(2, f.d_head), f.n_heads)
    zero_scale = head_scale_hooks(torch.zeros(f.n_layers, f.n_heads, f.d_head))
    v = torch.randn(f.d_model)
    for hooks in (zero_bias, zero_scale, [resid_add_hook(0, v, 0.0, "all", 0)]):
        assert torch.equal(tiny.forward(tokens, fwd_hooks=hooks), base)
    moved = tiny.forward(tokens, fwd_hooks=[resid_add_hook(0, v, 1.0, "all", 0)])
    assert not torch.allclose(moved, base)


def test_last_position_steering_leaves_earlier_positions_alone(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(PROMPT)
    start = tokens.shape[1] - 1
    base = tiny_llama.forward(tokens)
    v = torch.randn(tiny_llama.facts.d_model) * 5
    out = tiny_llama.forward(tokens, fwd_hooks=[resid_add_hook(0, v, 2.0, "last", start)])
    assert torch.equal(out[:, :start], base[:, :start])
    assert not torch.allclose(out[:, start], base[:, start])


def test_batched_padded_scoring_equals_one_pair_at_a_time(tiny: ModelHandle) -> None:
    pairs = [Pair("Hello there", " friend"), Pair("A much longer prompt here", " x"), Pair("Hi", " you all")]
    enc = encode_pairs(tiny, pairs)
    batch = collate(enc, pad_id(tiny.tokenizer), tiny.device)
    batched = target_logprob(tiny.forward(batch.tokens), batch)
    for i, e in enumerate(enc):
        ids = torch.tensor([e.prompt_ids + e.target_ids])
        logp = tiny.forward(ids)[0].log_softmax(-1)
        n = len(e.prompt_ids)
        expected = sum(float(logp[n - 1 + j, t]) for j, t in enumerate(e.target_ids))
        assert math.isclose(float(batched[i]), expected, rel_tol=1e-4, abs_tol=1e-4)
    metrics = evaluate(tiny, pairs, batch_size=2)
    assert metrics.n == 3 and math.isclose(metrics.mean_target_logprob, float(batched.mean()), abs_tol=1e-4)


def test_generation_without_hooks_is_handle_greedy(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(PROMPT)
    gen = generate(tiny_llama, tokens, GenConfig(max_new_tokens=6))
    assert list(gen.token_ids) == tiny_llama.greedy(tokens, 6)
    assert all(0.0 < p <= 1.0 for p in gen.probs) and len(gen.tokens) == len(gen.token_ids)


def test_scale_mask_leaves_unselected_heads_exactly_alone(tiny_llama: ModelHandle) -> None:
    f = tiny_llama.facts
    scales = torch.randn(f.n_layers, f.n_heads, f.d_head)
    mask = torch.zeros(f.n_layers, f.n_heads, 1)
    mask[1, 2] = 1.0
    tokens = tiny_llama.tokenize(PROMPT)
    plain = _z_outputs(tiny_llama, tokens, [])
    scaled = _z_outputs(tiny_llama, tokens, head_scale_hooks(scales, mask))
    for layer in range(f.n_layers):
        for head in range(f.n_heads):
            a, b = plain[z_name(layer)][..., head, :], scaled[z_name(layer)][..., head, :]
            if (layer, head) == (1, 2):
                assert torch.allclose(b, a * (1 + scales[1, 2]), atol=1e-6)
            else:
                assert torch.equal(a, b), (layer, head)


def test_head_additions_respect_the_position_rule(tiny_llama: ModelHandle) -> None:
    f = tiny_llama.facts
    tokens = tiny_llama.tokenize(PROMPT)
    start = tokens.shape[1] - 2
    v = torch.randn(1, f.d_head)
    plain = _z_outputs(tiny_llama, tokens, [])[z_name(1)]
    got = _z_outputs(tiny_llama, tokens, head_add_hooks([(1, 3)], v, f.n_heads, "last", start))[z_name(1)]
    assert torch.equal(got[:, :start], plain[:, :start])
    assert torch.allclose(got[:, start:, 3] - plain[:, start:, 3], v.expand(2, -1), atol=1e-6)
    assert torch.equal(got[:, start:, :3], plain[:, start:, :3])


def test_head_out_of_range_is_refused(tiny_llama: ModelHandle) -> None:
    from headscope.steering.lofit import LofitConfig, train_biases

    cases = (([(0, 4)], "head 4 in '0.4' is out of range"), ([(2, 0)], "layer 2 in '2.0' is out of range"),
             ([(0, 1), (0, 1)], "selected twice"))  # fmt: skip
    for heads, msg in cases:
        with pytest.raises(InputError, match=msg):
            train_biases(tiny_llama, [Pair("a", " b")], heads, LofitConfig(bias_steps=1))
