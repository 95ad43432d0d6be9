"""Tasks adapt to the tokenizer; custom tasks refuse bad input; published circuits are used for a matching model.

The published-circuit path needs IOI prompts on a GPT-2-small-shaped model (12 layers × 12 heads); GPT-2 weights
are not available offline, so a tiny random GPT-2 of that shape with a word-level tokenizer stands in for it.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from headscope import ioi
from headscope.circuits.finder import CircuitConfig, find_circuit
from headscope.circuits.published import matching, published_circuits
from headscope.circuits.sae import SAEConfig
from headscope.circuits.tasks import custom_task, make_task, next_token
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.models.catalog import CatalogEntry
from headscope.models.loading import Loaded

GOOD = {
    "name": "t",
    "positive": [{"prompt": "abcab", "answer": "c", "wrong": "a"}],
    "negative": [{"prompt": "abcde"}],
}


def test_greater_than_on_a_digit_tokenizer(tiny_llama: ModelHandle) -> None:
    task = make_task("greater_than", tiny_llama.tokenizer, n=6, seed=1)
    assert task.aligned and len(task.positives) == 6 and "one_digit" in task.notes[0]
    tok = tiny_llama.tokenizer
    for ex, neg in zip(task.positives, task.negatives, strict=True):
        yy = int(ex.prompt.split(" to ")[0][-2:])
        assert neg.split(" to ")[0].endswith("01")
        assert {str(tok.decode([i])) for i in ex.answers} == {str(d) for d in range(yy // 10 + 1, 10)}
        assert {str(tok.decode([i])) for i in ex.wrongs} == {str(d) for d in range(yy // 10)}
    assert make_task("greater_than", tok, n=6, seed=1) == task  # seeded


def test_tasks_needing_whole_word_tokens_say_so(tiny_llama: ModelHandle) -> None:
    with pytest.raises(InputError, match="names are single tokens"):
        make_task("ioi", tiny_llama.tokenizer, n=4, seed=0)
    with pytest.raises(InputError, match="variable names are single tokens"):
        make_task("docstring", tiny_llama.tokenizer, n=4, seed=0)
    with pytest.raises(InputError, match="unknown task"):
        make_task("nope", tiny_llama.tokenizer, n=4, seed=0)


def test_custom_task_parses_and_pairs(tiny_llama: ModelHandle) -> None:
    task = custom_task(json.dumps(GOOD).encode(), tiny_llama.tokenizer)
    assert task.name == "custom" and task.title == "t" and task.aligned
    assert task.positives[0].answers == (next_token(tiny_llama.tokenizer, "abcab", "c"),)
    unpaired = custom_task(dict(GOOD, negative=[{"prompt": "x"}]), tiny_llama.tokenizer)
    assert not unpaired.aligned


@pytest.mark.parametrize(
    "spec, match",
    [
        (dict(GOOD, positive=[]), "'positive' must be a non-empty list"),
        ({"name": "t", "negative": [{"prompt": "a"}]}, "'positive' must be a non-empty list"),
        (dict(GOOD, positive=[{"prompt": "abc", "answer": "cd", "wrong": "a"}]), "answer 'cd' is 2 tokens"),
        (dict(GOOD, positive=[{"prompt": "abc", "answer": "c"}]), "needs a non-empty string 'wrong'"),
        ("{not json", "not valid JSON"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_custom_task_bad_input(tiny_llama: ModelHandle, spec, match: str) -> None:
    with pytest.raises(InputError, match=match):
        custom_task(spec, tiny_llama.tokenizer)


def test_published_lists_load_with_sources() -> None:
    found = {(c.task, c.variant): c for c in published_circuits()}
    assert len(found[("ioi", "acdc")].heads) == 26 and "9.0" in found[("ioi", "acdc")].heads
    assert "11.3" in found[("ioi", "oneill")].heads and "9.0" not in found[("ioi", "oneill")].heads
    assert "1.2" in found[("docstring", "acdc")].heads and "1.0" in found[("docstring", "oneill")].heads
    assert {v for t, v in found if t == "greater_than"} == {"acdc", "oneill", "hanna-code"}
    assert all(c.source for c in found.values())
    assert [c.variant for c in matching(("openai-community/gpt2",), 12, 12, "ioi")] == ["acdc", "oneill"]
    assert matching(("gpt2",), 4, 8, "ioi") == [] and matching(("smollm2-135m",), 12, 12, "ioi") == []


def _word_tokenizer() -> PreTrainedTokenizerFast:
    """Whole-word tokens for every word the IOI templates can produce."""
    pre = pre_tokenizers.Whitespace()
    texts = [*ioi.BABA_TEMPLATES, " ".join(ioi.NAMES), " ".join(ioi.PLACES + ioi.OBJECTS)]
    vocab = {"[UNK]": 0}
    for t in texts:
        for w, _ in pre.pre_tokenize_str(t):
            vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[UNK]")


@pytest.fixture(scope="module")
def fake_gpt2() -> ModelHandle:
    tok = _word_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=48, n_layer=12, n_head=12)
    cfg._attn_implementation = "eager"
    cfg.architectures = ["GPT2LMHeadModel"]
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).float().eval()
    loaded = Loaded(model, tok, "test: random GPT-2-small-shaped model", None, None, False, 0.0)
    return ModelHandle(loaded, CatalogEntry("gpt2", "tiny", "GPT-2 small stand-in", "n/a"), "cpu")


def test_ioi_on_a_gpt2_small_shape_uses_the_published_circuits(fake_gpt2: ModelHandle) -> None:
    # Only the last two layers are analysed (patching 144 heads would cost minutes on a loaded 2-core machine).
    cfg = CircuitConfig(
        task="ioi", n_examples=4, n_train=4, sae=SAEConfig(epochs=5), layers=(10, 12), faithfulness=False
    )
    said: list[tuple[str, float]] = []
    report = find_circuit(fake_gpt2, cfg, progress=lambda stage, frac: said.append((stage, frac))).to_json()
    stages = [s for s, _ in said]  # the SAE stage counts its epochs; the overall fraction never goes back
    assert (
        stages.index("SAE: epoch 0/5") < stages.index("SAE: epoch 5/5") < stages.index("attribution patching")
    )
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(said))
    assert report["task"]["example_positive"].endswith(" to")
    published = {p["variant"]: p for p in report["published"]}
    assert set(published) == {"acdc", "oneill"}
    assert len(published["acdc"]["heads"]) == 26
    # each method against the ACDC heads of the analysed layers, recomputed as a brute-force pair count
    truth = np.zeros((12, 12), dtype=bool)
    for h in published["acdc"]["heads"]:
        truth[tuple(int(v) for v in h.split("."))] = True
    for m, metrics in published["acdc"]["metrics"].items():
        s = np.asarray(report["methods"][m]["scores"], dtype=float)[10:]
        s = np.abs(s) if m in ("attribution_patching", "eap_ig") else s
        t = truth[10:]
        wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in s[t] for b in s[~t])
        assert metrics["roc_auc"] == pytest.approx(wins / (t.sum() * (~t).sum()))
    assert "activation_patching" not in published["acdc"]["metrics"]  # the ground truth is not scored
    assert len(report["methods"]["sae_node"]["scores"]) == 12
    assert all(h.split(".")[0] in ("10", "11") for h in report["ranked"]) and len(report["ranked"]) == 24
    assert not any(report["ground_truth"]["effects"][0])  # layers outside the range stay 0
    assert report["ground_truth"]["layers"] == [10, 11]


def test_ioi_prompts_pair_and_answer(fake_gpt2: ModelHandle) -> None:
    task = make_task("ioi", fake_gpt2.tokenizer, n=8, seed=3)
    tok = fake_gpt2.tokenizer
    for ex, neg in zip(task.positives, task.negatives, strict=True):
        io, s = tok.decode(list(ex.answers)).strip(), tok.decode(list(ex.wrongs)).strip()
        assert ex.prompt.count(s) == 2 and ex.prompt.count(io) == 1  # S twice, IO once; the final IO dropped
        assert ex.answers[0] not in tok(neg).input_ids
        assert len(tok(ex.prompt).input_ids) == len(tok(neg).input_ids)


def test_induction_task_repeats_a_random_sequence(tiny_gpt2: ModelHandle) -> None:
    task = make_task("induction", tiny_gpt2.tokenizer, n=5, seed=2)
    tok = tiny_gpt2.tokenizer
    assert task.aligned and len(task.positives) == 5
    for ex, neg in zip(task.positives, task.negatives, strict=True):
        a = ex.prompt[:8]
        assert ex.prompt == a + a[:-1] and len(set(a)) == 8
        assert neg.endswith(a[:-1]) and not set(neg[:8]) & set(a)  # the first copy replaced by fresh letters
        assert tok.decode(list(ex.answers)) == a[-1]
        assert sorted(tok.decode([w]) for w in ex.wrongs) == sorted(a[:-1])
    assert make_task("induction", tok, n=5, seed=2) == task
