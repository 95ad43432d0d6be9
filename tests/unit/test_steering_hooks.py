"""Steering hooks and contrastive vectors on tiny models, each against an independent recomputation."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.models.batch import pad_id
from headscope.models.hooks import z as z_name
from headscope.models.tiny import TINY_BUILDERS
from headscope.steering.contrastive import (
    ContrastiveConfig,
    SteerConfig,
    alpha_sweep,
    compare,
    contrastive_vector,
)
from headscope.steering.generate import GenConfig, generate
from headscope.steering.hooks import head_bias_hooks, head_scale_hooks, resid_add_hook
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


@pytest.mark.parametrize("pooling", ["mean", "last"])
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_contrastive_vector_equals_independent_mean_difference(name: str, pooling: str) -> None:
    """Oracle: plain Hugging Face hidden states (same seeded weights, no bridge, no hooks)."""
    handle = ModelHandle.load(name, device="cpu")
    layer = 0  # hidden_states[layer + 1] is the block output (the last one has the final norm applied)
    cv = contrastive_vector(handle, POS, NEG, ContrastiveConfig(layer, pooling))  # type: ignore[arg-type]
    hf = TINY_BUILDERS[name]()

    def pooled(texts: list[str]) -> torch.Tensor:
        rows = []
        for t in texts:
            ids = torch.tensor([handle.tokenizer(t).input_ids])
            with torch.no_grad():
                h = hf(ids, output_hidden_states=True).hidden_states[layer + 1][0]
            rows.append(h.mean(0) if pooling == "mean" else h[-1])
        return torch.stack(rows).mean(0)

    expected = pooled(POS) - pooled(NEG)
    assert torch.allclose(cv.vector, expected, atol=1e-4, rtol=1e-4)
    assert cv.n_positive == 3 and cv.n_negative == 2


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


def test_compare_and_sweep(tiny_llama: ModelHandle) -> None:
    cv = contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(1))
    zero = compare(tiny_llama, cv, PROMPT, POS, NEG, SteerConfig(0.0), GenConfig(max_new_tokens=4))
    assert zero.effect == pytest.approx(0.0, abs=1e-6) and zero.steered == zero.unsteered
    big = compare(tiny_llama, cv, PROMPT, POS, NEG, SteerConfig(8.0, "all"), GenConfig(max_new_tokens=4))
    assert set(big.to_json()) == {"layer", "alpha", "unsteered", "steered", "effect"}
    assert big.effect != 0.0
    rows = alpha_sweep(tiny_llama, cv, PROMPT, [0.0, 2.0], (" a", " b"), gen=GenConfig(max_new_tokens=3))
    assert rows[0].change == pytest.approx(0.0, abs=1e-6) and len(rows) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positives": [], "negatives": NEG}, "positive list is empty"),
        ({"positives": POS, "negatives": ["  ", ""]}, "negative list is empty"),
        ({"positives": POS, "negatives": NEG, "layer": 2}, "out of range"),
        ({"positives": POS, "negatives": NEG, "layer": -1}, "non-negative"),
    ],
)
def test_contrastive_bad_input(tiny_llama: ModelHandle, kwargs: dict, message: str) -> None:
    layer = kwargs.pop("layer", 0)
    with pytest.raises(InputError, match=message):
        contrastive_vector(tiny_llama, kwargs["positives"], kwargs["negatives"], ContrastiveConfig(layer))


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -float("inf"), 101.0, -1e9])
def test_alpha_must_be_finite_and_in_range(alpha: float) -> None:
    with pytest.raises(InputError, match="alpha"):
        SteerConfig(alpha)


def test_head_out_of_range_is_refused(tiny_llama: ModelHandle) -> None:
    from headscope.steering.lofit import LofitConfig, train_biases

    for heads, msg in (([(0, 4)], "head 4 is out of range"), ([(2, 0)], "layer 2 is out of range")):
        with pytest.raises(InputError, match=msg):
            train_biases(tiny_llama, [Pair("a", " b")], heads, LofitConfig(bias_steps=1))
