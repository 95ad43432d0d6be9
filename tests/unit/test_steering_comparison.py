"""`side_by_side`, every number against an independent recomputation on the plain Hugging Face model (no bridge, no
TransformerLens hooks): the held-out margin effect over several prompts with the prompting rows, the judge, the
cost columns; and the one-implementation contract — the CLI, LoFiT and feature steering all run through it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from headscope.cli import main
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.models.tiny import TINY_BUILDERS
from headscope.steering import comparison
from headscope.steering.comparison import SideBySideConfig, distinct_n, side_by_side
from headscope.steering.contrastive import ContrastiveConfig, compare_vector, contrastive_vector
from headscope.steering.direction import SteerConfig
from headscope.steering.generate import GenConfig
from headscope.steering.heldout import HeldOut, Judge, loo_accuracy
from headscope.steering.lofit import HeadOffsets, apply_offsets

pytestmark = pytest.mark.usefixtures("one_thread")

POS = ["I love this, it is wonderful", "great and happy times", "what a lovely day"]
NEG = ["I hate this, it is awful", "terrible and sad times"]
HELD = HeldOut(
    ("a fine and sunny morning", "so glad and proud"), ("a grim and rainy morning", "so sad and bitter")
)
PROMPTS = ["The cat sat on the", "Yesterday we went"]
INSTRUCTION = "Be cheerful."


@pytest.fixture(scope="module")
def hf() -> Any:
    return TINY_BUILDERS["tiny-llama"]()


@contextmanager
def _resid_add(hf: Any, layer: int, vector: torch.Tensor, start: int) -> Iterator[None]:
    """Block `layer`'s output hidden state + vector at positions start…, with a plain torch hook."""

    def post(_m: Any, _i: Any, out: Any) -> Any:
        h = (out[0] if isinstance(out, tuple) else out).clone()
        h[:, start:] += vector
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = hf.model.layers[layer].register_forward_hook(post)
    try:
        yield
    finally:
        handle.remove()


def _ids(handle: ModelHandle, text: str) -> list[int]:
    return handle.tokenizer(text).input_ids


def _logprob(hf: Any, handle: ModelHandle, prompt: str, text: str, add: Callable[[int], Any] | None) -> float:
    p_ids = _ids(handle, prompt)
    t_ids = handle.tokenizer(" " + text.strip(), add_special_tokens=False).input_ids
    with torch.no_grad(), add(len(p_ids) - 1) if add else _nothing():
        logp = hf(torch.tensor([p_ids + t_ids])).logits[0].float().log_softmax(-1)
    return sum(float(logp[len(p_ids) - 1 + j, tok]) for j, tok in enumerate(t_ids))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_margin_rows_over_prompts_and_prompting_equal_independent_values(
    tiny_llama: ModelHandle, hf: Any
) -> None:
    sv = contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(1))
    cfg = SteerConfig(2.0, "last")
    sbs = SideBySideConfig(GenConfig(3), INSTRUCTION, resamples=200)
    res = compare_vector(tiny_llama, sv, PROMPTS, cfg, sbs, texts=HELD)
    added = sv.added(cfg.alpha)

    def margin(prompt: str, steered: bool) -> float:
        def add(start: int) -> Any:
            return _resid_add(hf, 1, added, start)

        lp = [_logprob(hf, tiny_llama, prompt, t, add if steered else None) for t in HELD.texts]
        return float(np.mean(lp[:2]) - np.mean(lp[2:]))

    prefixed = [INSTRUCTION + "\n" + p for p in PROMPTS]
    want = {
        "none": np.mean([margin(p, False) for p in PROMPTS]),
        "prompting": np.mean([margin(p, False) for p in prefixed]),
        "steering": np.mean([margin(p, True) for p in PROMPTS]),
        "steering + prompting": np.mean([margin(p, True) for p in prefixed]),
    }
    ev = res.evaluation
    for condition, value in want.items():
        m = ev.row(condition).measures
        assert m["margin"].value == pytest.approx(value, abs=1e-3)
        assert m["margin_effect"].value == pytest.approx(value - want["none"], abs=1e-3)
        assert m["margin"].low <= m["margin"].value <= m["margin"].high
    assert res.effect == pytest.approx(want["steering"] - want["none"], abs=1e-3)
    assert res.effect_measure == "margin_effect" and ev.held_out is True and ev.n_positive == 2


def test_cost_columns_and_continuations_equal_independent_values(tiny_llama: ModelHandle, hf: Any) -> None:
    sv = contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(1))
    cfg = SteerConfig(3.0, "last")
    res = compare_vector(
        tiny_llama, sv, PROMPTS, cfg, SideBySideConfig(GenConfig(4), INSTRUCTION, resamples=200)
    )
    added = sv.added(cfg.alpha)
    ppl: dict[str, list[float]] = {c: [] for c in comparison.CONDITIONS}
    for run in res.evaluation.prompts:
        p_ids = _ids(tiny_llama, run.prompt)
        for c, gen in run.continuations.items():
            shown = _ids(tiny_llama, (INSTRUCTION + "\n" if "prompting" in c else "") + run.prompt)
            ids = list(shown)
            for _ in range(4):  # greedy, full recompute, the vector from the shown prompt's last position on
                with (
                    torch.no_grad(),
                    _resid_add(hf, 1, added, len(shown) - 1) if "steering" in c else _nothing(),
                ):
                    ids.append(int(hf(torch.tensor([ids])).logits[0, -1].argmax()))
            assert list(gen.token_ids) == ids[len(shown) :], (run.prompt, c)
            with torch.no_grad():  # read by the unsteered model after the prompt alone
                logp = hf(torch.tensor([p_ids + list(gen.token_ids)])).logits[0].float().log_softmax(-1)
            lp = [float(logp[len(p_ids) - 1 + j, t]) for j, t in enumerate(gen.token_ids)]
            ppl[c].append(math.exp(-sum(lp) / len(lp)))
            assert run.values[c]["distinct_2"] == pytest.approx(distinct_n(gen.token_ids, 2), abs=1e-4)
    for c, values in ppl.items():
        m = res.evaluation.row(c).measures
        assert m["perplexity"].value == pytest.approx(float(np.mean(values)), rel=1e-3)
        ratios = np.array(values) / np.array(ppl["none"])
        assert m["perplexity_ratio"].value == pytest.approx(float(ratios.mean()), rel=1e-3)
    assert distinct_n([1, 2, 1, 2], 2) == 2 / 3 and distinct_n([5], 2) == 1.0


def test_judge_is_the_nearest_held_out_centroid_of_the_unsteered_model(
    tiny_llama: ModelHandle, hf: Any
) -> None:
    sbs = SideBySideConfig(GenConfig(4), judge_layer=0, resamples=200)
    res = side_by_side(tiny_llama, lambda _s: (), PROMPTS, sbs, texts=HELD)

    def embed(ids: list[int]) -> torch.Tensor:  # block 0's output, positions 1…, no hook anywhere
        with torch.no_grad():
            return hf(torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0, 1:].float().mean(0)

    emb = torch.stack([embed(_ids(tiny_llama, t)) for t in HELD.texts])
    labels = torch.tensor([True, True, False, False])
    pos, neg = emb[labels].mean(0), emb[~labels].mean(0)
    for run in res.evaluation.prompts:
        ids = list(run.continuations["none"].token_ids)
        e = embed(ids)
        want = float((e - pos).norm() < (e - neg).norm()) if len(ids) > 1 else 0.0
        assert run.values["none"]["judged_positive"] == want
    mine = Judge(tiny_llama, HELD, 0)  # the held-out texts themselves, read by the judge and by the oracle
    calls = [mine.positive(_ids(tiny_llama, t)) for t in HELD.texts]
    want_calls = [bool((e - pos).norm() < (e - neg).norm()) for e in emb]
    assert calls == want_calls and True in want_calls and False in want_calls
    judge = res.evaluation.judge
    assert judge is not None and judge.layer == 0 and "weak" in judge.note
    assert judge.heldout_accuracy == pytest.approx(loo_accuracy(emb, labels))


def test_lofit_offsets_and_items_run_through_side_by_side(tiny_llama: ModelHandle) -> None:
    f = tiny_llama.facts
    gen = torch.Generator().manual_seed(0)
    offsets = HeadOffsets(((1, 2),), torch.randn(1, f.d_head, generator=gen))
    from headscope.steering.scoring import evaluate
    from headscope.steering.tasks import Pair

    items = [Pair(f"{w} is", " z") for w in ("apple", "river", "stone")]
    res = apply_offsets(
        tiny_llama, offsets, ["apple is"], SideBySideConfig(GenConfig(2), resamples=100), items=items
    )
    m = res.evaluation.row("steering").measures
    want = evaluate(tiny_llama, items, fwd_hooks=offsets.hooks(f.n_heads))
    assert m["accuracy"].value == pytest.approx(want.accuracy) and m["accuracy"].n == 3
    assert m["target_logprob"].value == pytest.approx(want.mean_target_logprob, abs=1e-5)
    assert res.heads == "1.2" and res.evaluation.n_items == 3


def test_bad_prompts_are_one_line(tiny_llama: ModelHandle) -> None:
    for prompts, message in (([], "at least one prompt"), ("one", "at least one prompt"), ([" "], "empty"),
                             (["x"] * 65, "limit is 64")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            side_by_side(tiny_llama, lambda _s: (), prompts)  # type: ignore[arg-type]


def test_cli_and_features_run_through_the_one_side_by_side(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tiny_llama: ModelHandle,
) -> None:
    """Every comparison the CLI prints (contrastive, its apply, LoFiT's held-out rows and LoFiT apply) is made by
    `comparison._Runner`: a spy on it sees each run, so no second copy of "unsteered vs steered" remains (feature
    steering's goes the same way: tests/unit/test_features.py reads its rows)."""
    seen: list[str] = []
    original = comparison._Runner.prompt

    def spy(self: Any, i: int, prompt: str, n: int) -> Any:
        seen.append(prompt)
        return original(self, i, prompt, n)

    monkeypatch.setattr(comparison._Runner, "prompt", spy)
    (tmp_path / "p.txt").write_text("\n".join(POS))
    (tmp_path / "n.txt").write_text("\n".join(NEG))
    common = ["--model", "tiny-llama", "--max-new-tokens", "2", "--resamples", "100", "--json"]
    argv = ["steer", "contrastive", "--pos", str(tmp_path / "p.txt"), "--neg", str(tmp_path / "n.txt"), "--layer",
            "1", "--prompt", "A", "--out", str(tmp_path / "v"), *common]  # fmt: skip
    assert main(argv) == 0
    assert (
        main(["steer", "contrastive", "apply", "--vectors", str(tmp_path / "v"), "--prompt", "B", *common])
        == 0
    )
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"w{i} is", "target": " z"}) + "\n" for i in range(4)))
    assert main(["steer", "lofit", "train", "--data", str(data), "--k", "1", "--scale-steps", "1", "--bias-steps",
                 "1", "--random-sets", "0", "--eval-prompts", "1", "--eval-tokens", "1", "--out",
                 str(tmp_path / "o"), "--model", "tiny-llama", "--json"]) == 0  # fmt: skip
    assert main(["steer", "lofit", "apply", "--vectors", str(tmp_path / "o"), "--prompt", "C", *common]) == 0
    capsys.readouterr()
    assert len(seen) == 4 and seen[:2] == ["A", "B"] and seen[2].endswith(" is") and seen[3] == "C"
