"""The locality dial: exact identity at λ = 0, bias oracles on real scores, head sets, schedules shared with
training, blocks, KV-cached steps (q < k), validation."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import DynamicCache

from headscope.attention import BLOCK_NATS, BlockSpec, LayerSchedule, LocalityDial, block_ids, dial_hooks
from headscope.attention.locality import window_width
from headscope.errors import InputError
from headscope.localist.training import TrainConfig
from headscope.models import ModelHandle
from headscope.probes import entropy_bits
from headscope.selection import HeadSet

pytestmark = pytest.mark.usefixtures("one_thread")
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
        assert dial.to_kernel_bias(tiny, tokens) == {}
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
    ("mode", "heads"), [("distance", None), ("block", None), ("window", None), ("distance", "1.1, 1.3")]
)
def test_dial_equals_softmax_of_biased_scores(tiny: ModelHandle, mode: str, heads: str | None) -> None:
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
        assert b.max() >= 2  # three sentences
        bias = -1.5 * BLOCK_NATS * 0.6 * (b[:, None] != b[None, :]).double()
    else:
        bias = torch.where(dist >= round(n**0.4), -math.inf, 0.0)
    sel = torch.zeros(tiny.facts.n_heads, dtype=torch.bool)
    sel[[1, 3] if heads else slice(None)] = True
    expect = torch.softmax(torch.where(sel[:, None, None], s + bias, s), -1)
    assert torch.allclose(dialed[PATTERN.format(last)][0].double(), expect, atol=1e-6)


def test_one_head_dialed_leaves_every_other_head_exact(tiny_llama: ModelHandle) -> None:
    """`--heads 1.2`: every head of layer 0 and the other heads of layer 1 keep their entropy exactly."""
    tokens = tiny_llama.tokenize(TEXT * 2)
    plain, _ = entropy_bits(tiny_llama, tokens, backend="eager")
    dialed, _ = entropy_bits(tiny_llama, tokens, backend="eager", dial=LocalityDial(lam=1.0, heads="1.2"))
    assert torch.equal(dialed[0], plain[0])
    for head in (0, 1, 3):
        assert torch.equal(dialed[1, head], plain[1, head])
    assert dialed[1, 2].mean() < plain[1, 2].mean() - 0.5
    assert len(dial_hooks(tiny_llama, tokens, LocalityDial(lam=1.0, heads="1.2"))) == 1  # layer 0: no hook


@pytest.mark.parametrize("mode", ["distance", "block"])
def test_hooks_serve_kv_cached_steps(tiny_llama: ModelHandle, mode: str) -> None:
    """Decoding with a KV cache: scores of a step are [.., q, k] with q < k; the last logits must equal a full
    dialed forward's."""
    tokens = tiny_llama.tokenize(TEXT)
    n, m = tokens.shape[1], 3
    dial = LocalityDial(lam=0.7, mode=mode, heads="*.1, 1.*")
    full = tiny_llama.forward(tokens, fwd_hooks=dial_hooks(tiny_llama, tokens, dial))
    cache = DynamicCache()
    prefix = tokens[:, : n - m]
    tiny_llama.run(prefix, cache=cache, fwd_hooks=dial_hooks(tiny_llama, prefix, dial))
    hooks = dial_hooks(tiny_llama, tokens, dial)  # block ids for every position the step will see
    step = tiny_llama.run(tokens[:, n - m :], cache=cache, fwd_hooks=hooks)
    torch.testing.assert_close(step[0], full[0, n - m :], atol=1e-4, rtol=1e-4)


def test_window_hooks_follow_the_key_count(tiny_llama: ModelHandle) -> None:
    """A KV-cached window step keys its band on k (the run's key count), as a full run over k tokens does; at
    λ = 1 (w = 1 at any length) the cached prefix agrees too, so the step's logits equal the full run's."""
    tokens = tiny_llama.tokenize(TEXT)
    n = tokens.shape[1]
    dial = LocalityDial(lam=1.0, mode="window")  # w = 1 at any length: the prefix agrees with the full run
    full = tiny_llama.forward(tokens, fwd_hooks=dial_hooks(tiny_llama, tokens, dial))
    cache = DynamicCache()
    tiny_llama.run(tokens[:, : n - 2], cache=cache, fwd_hooks=dial_hooks(tiny_llama, tokens, dial))
    step = tiny_llama.run(tokens[:, n - 2 :], cache=cache, fwd_hooks=dial_hooks(tiny_llama, tokens, dial))
    torch.testing.assert_close(step[0], full[0, n - 2 :], atol=1e-4, rtol=1e-4)


def test_block_hooks_refuse_a_run_longer_than_their_blocks(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(TEXT)
    hooks = dial_hooks(tiny_llama, tokens[:, :5], LocalityDial(lam=0.5, mode="block"))
    with pytest.raises(InputError, match="blocks cover 5 tokens"):
        tiny_llama.forward(tokens, fwd_hooks=hooks)


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
    ("lam", "schedule", "beta", "n_layers"),
    [
        (0.6, "uniform", 1.0, 2),
        (1.0, "progressive", 3.0, 6),
        (0.35, "progressive", 5.0, 24),
        (1, "uniform", 1, 1),
    ],
)
def test_training_and_dial_share_the_schedule(lam: float, schedule: str, beta: float, n_layers: int) -> None:
    """The localist objective's λ_l and the inference dial's λ_l are the same numbers, exactly."""
    train = TrainConfig(lam=lam, schedule=schedule, beta=beta, n_layers=n_layers, d_model=64, n_heads=4)
    dial = LocalityDial(lam=lam, schedule=schedule, beta=beta)
    assert (
        train.lambdas == dial.layer_lambdas(n_layers) == LayerSchedule(schedule, beta).lambdas(lam, n_layers)
    )
    if schedule == "progressive" and n_layers > 1:
        assert train.lambdas[0] == 0.0 and train.lambdas[-1] == lam
        assert train.lambdas[2] == lam * (2 / (n_layers - 1)) ** beta


def test_heads_take_the_headset_grammar(tiny_llama: ModelHandle) -> None:
    f = tiny_llama.facts
    assert LocalityDial(heads="1.2,  0.*").heads == "1.2, 0.*"
    assert LocalityDial(heads=[(1, 2), (0, 3)]).heads == "1.2, 0.3"
    hs = HeadSet.parse("*.1", f.n_layers, f.n_heads)
    dial = LocalityDial(lam=0.5, heads=hs)
    assert dial.check(tiny_llama) == hs and dial.head_set(f.n_layers, f.n_heads).names() == ["0.1", "1.1"]
    assert len(LocalityDial().check(tiny_llama)) == f.n_layers * f.n_heads
    with pytest.raises(InputError, match=r"a bare head index now reads '\*\.3'"):
        LocalityDial(heads="3")
    with pytest.raises(InputError, match=r"head 3 of every layer is '\*\.3'"):
        LocalityDial(heads=(3,))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="selects no head"):
        LocalityDial(heads=" , ")
    tokens = tiny_llama.tokenize(TEXT)
    with pytest.raises(InputError, match=r"head 4 in '0\.4' is out of range"):
        dial_hooks(tiny_llama, tokens, LocalityDial(lam=0.5, heads="0.1, 0.4"))
    with pytest.raises(InputError, match="layer 2 in"):
        LocalityDial(lam=0.5, heads="2.*").check(tiny_llama)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam": float("nan")}, r"lambda must be in \[0, 1\]"),
        ({"lam": -0.1}, r"lambda must be in \[0, 1\]"),
        ({"lam": 5}, r"lambda must be in \[0, 1\], got 5"),
        ({"lam": "5"}, r"lambda must be in \[0, 1\]"),
        ({"lam": "abc"}, "lambda must be a number"),
        ({"lam": None}, "lambda must be a number"),
        ({"lam": True}, "lambda must be a number"),
        ({"beta": 0.5}, "beta must be in"),
        ({"beta": float("nan")}, "beta must be in"),
        ({"beta": "x"}, "beta must be a number"),
        ({"strength": 0.0}, "strength must be in"),
        ({"strength": float("inf")}, "strength must be in"),
        ({"mode": "global"}, "mode must be one of"),
        ({"mode": 3}, "mode must be one of"),
        ({"schedule": "cosine"}, "schedule must be one of"),
        ({"schedule": "explicit"}, "layer_weights are given exactly when"),
        ({"schedule": "explicit", "layer_weights": (0.5, 2.0)}, "each layer weight"),
        ({"schedule": "explicit", "layer_weights": "0.5"}, "layer_weights must be a list"),
        ({"heads": "1.x"}, "is not L.H"),
        ({"heads": 7}, "heads must be text"),
        ({"heads": [(1.5, 2)]}, "heads index must be an integer"),
        ({"blocks": "sentence"}, "blocks must be a BlockSpec"),
    ],
)
def test_dial_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        LocalityDial(**kwargs)


def test_validators_clean_what_they_accept() -> None:
    dial = LocalityDial(lam="0.25", beta="3", strength=2)  # type: ignore[arg-type]
    assert (dial.lam, dial.beta, dial.strength) == (0.25, 3.0, 2.0)
    assert isinstance(dial.lam, float)
    assert BlockSpec("fixed", size=4.0).size == 4  # type: ignore[arg-type]
    assert dial.to_json()["lambda"] == 0.25 and dial.to_json()["heads"] is None


def test_model_dependent_validation(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(TEXT)
    with pytest.raises(InputError, match="layer_weights has 3 entries"):
        dial_hooks(
            tiny_llama, tokens, LocalityDial(lam=0.5, schedule="explicit", layer_weights=(1.0, 1.0, 1.0))
        )
    with pytest.raises(InputError, match="one id per token"):
        dial_hooks(tiny_llama, tokens, LocalityDial(lam=0.5, mode="block"), block_ids=torch.zeros(3).long())


def test_blocks_from_token_strings() -> None:
    toks = ["The", " cat", ".", " It", " cost", " 3", ".", "5", ",", " ok", "!", "\n", "Yes"]
    assert block_ids(toks, BlockSpec("sentence")).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    assert block_ids(toks, BlockSpec("clause")).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3]
    assert block_ids(toks, BlockSpec("fixed", size=5)).tolist() == [0] * 5 + [1] * 5 + [2] * 3
    spans = BlockSpec("spans", spans=((2, 4), (4, 6)))
    assert block_ids(toks[:8], spans).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    abbrev = ["See", " e", ".", "g", ".", " the", " list", ".", " Dr", ".", " Smith", " came", "."]
    assert block_ids(abbrev, BlockSpec()).tolist() == [0] * 8 + [1, 1, 2, 2, 2]
    with pytest.raises(InputError, match="spans reach token 6, but the text has 5 tokens"):
        block_ids(toks[:5], spans)
    with pytest.raises(InputError, match="sorted, disjoint"):
        BlockSpec("spans", spans=((3, 5), (4, 6)))
    with pytest.raises(InputError, match="needs at least one span"):
        BlockSpec("spans")
    with pytest.raises(InputError, match=r"blocks\.size"):
        BlockSpec("fixed", size=0)
    with pytest.raises(InputError, match=r"blocks\.size must be an integer"):
        BlockSpec("fixed", size=2.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"blocks\.source must be one of"):
        BlockSpec("paragraph")


def test_sentence_rule_is_the_corpus_rule() -> None:
    """The dial's sentence blocks on token strings and the training corpus's on text use one rule."""
    from headscope.localist.corpus import sentence_starts as corpus_starts

    text = 'Cats purr. Dogs bark loudly! Birds sing? Yes. It costs 3.5 (e.g. here). "Quoted." End'
    assert corpus_starts(text) == [0, 11, 29, 41, 46, 72, 82]
    chars = list(text)  # one "token" per character: blocks start exactly at those offsets
    ids = block_ids(chars, BlockSpec()).tolist()
    assert [i for i in range(len(chars)) if i == 0 or ids[i] != ids[i - 1]] == [0, 11, 29, 41, 46, 72, 82]
