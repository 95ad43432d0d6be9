"""Oracle: the dial through the kernels' bias (fused path, chunked CPU backend) equals the dial through eager hooks
on `hook_attn_scores`, per query, for every mode, with a head subset and a per-layer schedule."""

from __future__ import annotations

import json

import pytest
import torch

from headscope.attention import LocalityDial, dial_hooks
from headscope.cli import main
from headscope.kernels import fused_entropy_bits, fused_run
from headscope.models import ModelHandle
from headscope.probes import entropy_bits, entropy_report

pytestmark = pytest.mark.usefixtures("one_thread")
TEXT = "The cat sat on the mat. It was warm, so it slept; later it woke. Then it ate! Was it full? Yes."


def eager_oracle(handle: ModelHandle, tokens: torch.Tensor, dial: LocalityDial) -> torch.Tensor:
    """Entropy from the full patterns of a run with the dial's score hooks, in float64."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(handle.facts.n_layers)]
    _, cache = handle.run_with_cache(tokens, names, fwd_hooks=dial_hooks(handle, tokens, dial))
    pats = [cache[n][0].double() for n in names]
    return torch.stack([-torch.special.xlogy(p, p).sum(-1) for p in pats]).float() / torch.log(
        torch.tensor(2.0)
    )


@pytest.mark.parametrize("mode", ["distance", "block", "window"])
@pytest.mark.parametrize("chunk", [None, 11])
def test_fused_dial_equals_eager_dial(tiny: ModelHandle, mode: str, chunk: int | None) -> None:
    tokens = tiny.tokenize(TEXT)
    n = tokens.shape[1]
    assert n & (n - 1) and n > 16  # not a power of 2
    dial = LocalityDial(
        lam=0.8, mode=mode, schedule="progressive", beta=1.0, heads="0.1, 1.0, 1.2", strength=0.7
    )
    if mode == "block":
        assert int(dial.token_blocks(tiny, tokens).max()) >= 3  # sentence blocks, several of them
    want = eager_oracle(tiny, tokens, dial)
    run = fused_run(tiny, tokens, dial=dial, chunk=chunk)
    torch.testing.assert_close(run.entropy_bits, want, atol=1e-4, rtol=0)
    plain = eager_oracle(tiny, tokens, LocalityDial())
    torch.testing.assert_close(want[0], plain[0], atol=1e-6, rtol=0)  # progressive: layer 0 has λ_0 = 0
    assert (want[1, 0] - plain[1, 0]).abs().max() > 0.05  # the dial does something where it acts
    logits = tiny.forward(tokens, fwd_hooks=dial_hooks(tiny, tokens, dial))
    torch.testing.assert_close(run.logits, logits, atol=1e-4, rtol=1e-4)


def test_fused_dial_at_lambda_zero_is_the_plain_fused_run(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(TEXT)
    plain = fused_entropy_bits(tiny_llama, tokens)
    assert torch.equal(
        fused_entropy_bits(tiny_llama, tokens, dial=LocalityDial(lam=0.0, mode="window")), plain
    )


def test_entropy_backends_agree_under_a_dial(tiny_gpt2: ModelHandle) -> None:
    tokens = tiny_gpt2.tokenize(TEXT)
    dial = LocalityDial(lam=0.6, mode="distance", heads="*.2")
    eager, used_e = entropy_bits(tiny_gpt2, tokens, backend="eager", dial=dial)
    fused, used_f = entropy_bits(tiny_gpt2, tokens, backend="fused", dial=dial)
    assert (used_e, used_f) == ("eager", "fused")
    torch.testing.assert_close(fused, eager, atol=1e-4, rtol=0)
    report = entropy_report(tiny_gpt2, TEXT, backend="fused", dial=dial)
    assert report["dial"]["heads"] == "*.2" and report["dial"]["lambda"] == 0.6


def test_cli_entropy_under_a_dial_fused_equals_eager(capsys: pytest.CaptureFixture[str]) -> None:
    base = [
        "entropy",
        "--model",
        "tiny-llama",
        "--text",
        TEXT,
        "--lambda",
        "0.6",
        "--mode",
        "distance",
        "--json",
    ]
    out = {}
    for backend in ("eager", "fused"):
        assert main([*base, "--backend", backend]) == 0
        out[backend] = json.loads(capsys.readouterr().out)
    assert out["fused"]["backend"] == "fused" and out["fused"]["dial"]["mode"] == "distance"
    torch.testing.assert_close(
        torch.tensor(out["fused"]["entropy_bits"]),
        torch.tensor(out["eager"]["entropy_bits"]),
        atol=1e-4,
        rtol=0,
    )
    assert main(["entropy", "--model", "tiny-llama", "--text", TEXT, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["mean_entropy_bits"] > out["eager"]["mean_entropy_bits"] + 0.1
