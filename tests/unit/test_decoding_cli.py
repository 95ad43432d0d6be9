"""`headscope decode compare` end to end on the tiny models, and its clear errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from headscope.cli import main
from headscope.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    model = [] if "--model" in args else ["--model", "tiny-llama"]
    code = main(["decode", "compare", *model, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_prints_the_issue_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--prompt", "abc abc ab", "--strategies", "greedy,ngram,jacobi,speculative",
        "--draft-model", "tiny-gpt2", "--max-new-tokens", "10", "--json",
    )  # fmt: skip
    assert code == 0
    payload = json.loads(out)
    rows = {r["name"]: r for r in payload["strategies"]}
    assert set(rows) == {"greedy", "ngram", "jacobi", "speculative"}
    for r in rows.values():
        for key in ("name", "token_ids", "text", "target_forwards", "draft_forwards", "acceptance_rate",
                    "tokens_per_second", "identical_to_greedy", "steps"):  # fmt: skip
            assert key in r
        assert r["identical_to_greedy"] is True and len(r["token_ids"]) == 10
    assert rows["speculative"]["draft_forwards"] > 0


def test_compare_with_ablated_heads_shows_where_greedy_changes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--prompt", "hello world", "--model", "tiny-gpt2", "--strategies", "greedy,lookahead",
        "--heads", "*.*", "--heads-action", "ablate", "--ablation", "zero", "--attention-entropy",
        "--max-new-tokens", "16", "--json",
    )  # fmt: skip
    assert code == 0
    payload = json.loads(out)
    assert payload["intervention"] == "ablate heads 0.*, 1.* (zero)"
    rows = {r["name"]: r for r in payload["strategies"]}
    assert rows["greedy"]["token_ids"] == rows["lookahead"]["token_ids"]  # lossless on the ablated model
    assert rows["greedy"]["diverges_at"] is not None and not rows["greedy"]["identical_to_greedy"]
    assert payload["greedy_token_ids"] != rows["greedy"]["token_ids"]
    assert rows["greedy"]["divergence"]["entropy_bits"] is not None
    assert rows["greedy"]["steps"][0]["attention_entropy_bits"] is not None
    code, out, _ = run(capsys, "--prompt", "hello world", "--heads", "1.0", "--heads-action", "dial",
                       "--lambda", "0.5", "--max-new-tokens", "4")  # fmt: skip
    assert code == 0 and "intervention: dial heads 1.0 (λ = 0.5, distance)" in out
    assert "greedy + dial λ=0.50 of 1.0" in out  # each run named for the intervention, as in the app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "greedy,warp"], "unknown strategy 'warp'"),
        (["--max-new-tokens", "257"], "max_new_tokens must be"),
        (["--max-new-tokens", "3.5"], "max_new_tokens must be an integer"),
        (["--temperature", "nan"], "temperature must be in"),
        (["--heads", "9"], "not L.H"),
        (["--heads", "99.99"], "out of range"),
        (["--lambda", "5"], "lambda must be in"),
        (["--strategies", "constrained", "--regex", "[0-9"], "invalid regex"),
        (["--strategies", "speculative"], "needs --draft-model"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, args: list[str], message: str) -> None:
    code, _, err = run(capsys, "--prompt", "hello", *args)
    last = err.strip().splitlines()[-1]  # (a progress bar may precede it on stderr)
    assert code == 2 and last.startswith("headscope: error:") and message in last


def _commands():
    from headscope.attention import BlockSpec, LocalityDial
    from headscope.cli.decoding import CompareCommand
    from headscope.decoding import DecodeConfig

    dial = LocalityDial(lam=0.35, mode="block", schedule="progressive", beta=2.5, heads="1.0, 0.*", strength=3.0,
                        blocks=BlockSpec(source="fixed", size=5))  # fmt: skip
    explicit = LocalityDial(lam=1.0, schedule="explicit", layer_weights=(0.25, 1.0))
    return [
        CompareCommand(prompt="hi"),
        CompareCommand(prompt="a 'quoted' --prompt", strategies=("token_recycling",), chat=True, model="tiny-gpt2",
                       device="cpu", config=DecodeConfig(max_new_tokens=7, temperature=0.7, top_p=0.9, tree_size=40,
                       recycle_k=4, attention_entropy=True, adaptive_draft=False, task="summarization")),
        CompareCommand(prompt="x", strategies=("greedy", "constrained"),
                       config=DecodeConfig(grammar="json_object", particles=3, ess_threshold=0.25,
                                           ablate_heads="0.1,1.*", ablation="zero")),
        CompareCommand(prompt="x", config=DecodeConfig(dial=dial, skip_layers="a1", ngram_branches=2)),
        CompareCommand(prompt="x", config=DecodeConfig(dial=explicit, lookahead_guesses=1, min_draft_confidence=0.5)),
    ]  # fmt: skip


def test_to_argv_is_the_exact_inverse_of_the_parser() -> None:
    from headscope.cli.decoding import parse, to_argv
    from headscope.decoding import DecodeConfig

    for cmd in _commands():
        back = parse(to_argv(cmd))
        want = cmd if cmd.config is not None else dataclasses.replace(cmd, config=DecodeConfig())
        assert back == want, to_argv(cmd)


def test_to_argv_refuses_what_the_command_line_cannot_say() -> None:
    from headscope.attention import LocalityDial
    from headscope.cli.decoding import CompareCommand, to_argv
    from headscope.decoding import DecodeConfig

    both = DecodeConfig(ablate_heads="0.1", dial=LocalityDial(lam=0.5))
    with pytest.raises(InputError, match="ablates or dials, not both"):
        to_argv(CompareCommand(prompt="x", config=both))


def test_compare_json_has_speedups_against_the_same_greedy_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--prompt", "abc abc abc abc ab", "--strategies", "greedy,token_recycling,ngram",
                       "--max-new-tokens", "12", "--json")  # fmt: skip
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["strategies"]}
    g, tr = rows["greedy"], rows["token_recycling"]
    assert g["speedup_per_forward"] == 1.0 and g["speedup_wall"] == 1.0 and not g["below_1x_wall"]
    assert tr["speedup_per_forward"] == pytest.approx(
        tr["tokens_per_target_forward"] / g["tokens_per_target_forward"], abs=1e-3
    )
    assert tr["below_1x_wall"] == (tr["speedup_wall"] < 1.0) and tr["identical_to_greedy"]
    assert any(s["draft_parents"] for s in tr["steps"])  # the step trees travel with the result
