"""`headscope decode compare` end to end on the tiny models, and its clear errors."""

from __future__ import annotations

import json

import pytest

from headscope.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["decode", "compare", "--model", "tiny-llama", *args])
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "greedy,warp"], "unknown strategy 'warp'"),
        (["--max-new-tokens", "257"], "max_new_tokens must be in"),
        (["--strategies", "constrained", "--regex", "[0-9"], "invalid regex"),
        (["--strategies", "speculative"], "needs --draft-model"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, args: list[str], message: str) -> None:
    code, _, err = run(capsys, "--prompt", "hello", *args)
    last = err.strip().splitlines()[-1]  # (a progress bar may precede it on stderr)
    assert code == 2 and last.startswith("headscope: error:") and message in last
