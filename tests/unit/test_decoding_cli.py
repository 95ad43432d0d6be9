"""`headscope decode compare` end to end on the tiny models, and its clear errors."""

from __future__ import annotations

import json

import pytest

from headscope.cli import main

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
