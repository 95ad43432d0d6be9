"""The λ sweep on a tiny model: rows, an independent recomputation of every column, validation, truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headscope.attention import LocalityDial, dial_hooks
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.probes import SweepConfig, eval_tokens, sweep_locality

TEXT = "A small text. It has two sentences, and a clause; then it ends here."


def oracle_row(handle: ModelHandle, tokens: torch.Tensor, dial: LocalityDial) -> dict[str, float]:
    """Every sweep column from a plain `run_with_cache` of the full patterns, in float64 numpy."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(handle.facts.n_layers)]
    logits, cache = handle.run_with_cache(tokens, names, fwd_hooks=dial_hooks(handle, tokens, dial))
    base = torch.log_softmax(handle.forward(tokens)[0].double(), -1).numpy()
    p = np.stack([cache[n][0].double().numpy() for n in names])
    ids = tokens[0].numpy()
    n = len(ids)
    ent = -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0).sum(-1)
    local = np.array([p[..., i, i] + p[..., i, i - 1] for i in range(1, n)])
    logp = torch.log_softmax(logits[0].double(), -1).numpy()
    return {
        "mean_entropy_bits": ent.mean(),
        "pointer_fidelity": local.mean(),
        "perplexity": float(np.exp(-np.mean([logp[i, ids[i + 1]] for i in range(n - 1)]))),
        "accuracy": float(np.mean([logp[i].argmax() == ids[i + 1] for i in range(n - 1)])),
        "kl": float((np.exp(base) * (base - logp)).sum(-1).mean()),
    }


@pytest.mark.parametrize("with_zero", [True, False])
def test_sweep_columns_match_oracle(tiny_llama: ModelHandle, with_zero: bool) -> None:
    tokens = tiny_llama.tokenize(TEXT)
    lams = (0.5, 0.0, 1.0) if with_zero else (0.5, 1.0)
    dial = LocalityDial(schedule="progressive", beta=2.0, strength=2.0)
    done: list[tuple[str, float]] = []
    res = sweep_locality(
        tiny_llama, tokens, SweepConfig(lams, dial), progress=lambda d, t: done.append((d, t))
    )
    assert [r.lam for r in res.rows] == list(lams)  # the caller's order
    assert done[-1] == (f"λ point {len(lams)}/{len(lams)}", 1.0)  # (stage, fraction)
    for row in res.rows:
        expect = oracle_row(tiny_llama, tokens, dial.with_lambda(row.lam))
        for key, value in expect.items():
            assert getattr(row, key) == pytest.approx(value, rel=1e-5, abs=1e-6), (row.lam, key)
    zero = [r for r in res.rows if r.lam == 0.0]
    assert all(r.kl == 0.0 for r in zero)
    out = res.to_json()
    assert set(out["rows"][0]) >= {
        "lambda",
        "mean_entropy_bits",
        "pointer_fidelity",
        "perplexity",
        "accuracy",
        "kl",
    }
    assert out["token_ids"] == tokens[0].tolist() and out["target"] == "local"


def test_sweep_on_a_head_subset_keeps_the_other_heads(tiny_llama: ModelHandle) -> None:
    """Only head 1.3 is dialed: the sweep's λ = 1 row equals the oracle of that dial, and differs from λ = 0 by
    exactly what head 1.3's rows change (layer 1 has 4 heads, so its mean moves by a quarter of that head's)."""
    tokens = tiny_llama.tokenize(TEXT)
    dial = LocalityDial(heads="1.3", strength=2.0)
    res = sweep_locality(tiny_llama, tokens, SweepConfig((0.0, 1.0), dial))
    expect = oracle_row(tiny_llama, tokens, dial.with_lambda(1.0))
    assert res.rows[1].mean_entropy_bits == pytest.approx(expect["mean_entropy_bits"], rel=1e-5)
    assert res.rows[1].mean_entropy_bits < res.rows[0].mean_entropy_bits
    assert res.to_json()["dial"]["heads"] == "1.3"


def test_block_mode_uses_block_target(tiny_gpt2: ModelHandle) -> None:
    tokens = tiny_gpt2.tokenize(TEXT)
    res = sweep_locality(tiny_gpt2, tokens, SweepConfig((0.0, 1.0), LocalityDial(mode="block")))
    assert res.target == "block"
    assert res.rows[1].pointer_fidelity > res.rows[0].pointer_fidelity  # 10 nats off-block: mass moves inside


def test_sweep_config_validation() -> None:
    with pytest.raises(InputError, match="1 to 21 values"):
        SweepConfig(tuple(k / 30 for k in range(22)))
    with pytest.raises(InputError, match="1 to 21 values"):
        SweepConfig(())
    with pytest.raises(InputError, match="each lambda"):
        SweepConfig((0.0, float("nan")))
    with pytest.raises(InputError, match=r"each lambda must be in \[0, 1\]"):
        SweepConfig((0.0, 1.2))
    with pytest.raises(InputError, match="each lambda must be a number"):
        SweepConfig((0.0, "x"))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="dial must be a LocalityDial"):
        SweepConfig(dial="distance")  # type: ignore[arg-type]
    assert SweepConfig(("0.5", 1)).lambdas == (0.5, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="target must be one of"):
        SweepConfig(target="anything")


def test_eval_tokens(tiny_llama: ModelHandle) -> None:
    tokens, cut = eval_tokens(tiny_llama, max_tokens=64)  # the shipped excerpt, cut
    assert tokens.shape == (1, 64) and cut is not None and cut > 64
    tokens, cut = eval_tokens(tiny_llama, TEXT)
    assert cut is None and tokens[0].tolist() == tiny_llama.tokenize(TEXT)[0].tolist()
    with pytest.raises(InputError, match="empty"):
        eval_tokens(tiny_llama, " \n")
    with pytest.raises(InputError, match="at least 2 tokens"):
        eval_tokens(tiny_llama, "a")
    with pytest.raises(InputError, match="max_tokens must be an integer in"):
        eval_tokens(tiny_llama, TEXT, max_tokens=100_000)
    with pytest.raises(InputError, match="max_tokens must be an integer in"):
        eval_tokens(tiny_llama, TEXT, max_tokens=12.5)  # type: ignore[arg-type]
