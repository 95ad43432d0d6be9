"""The reference discrete-SAE method (`sae_node` / `sae_edge`, O'Neill & Bui as published) frozen: codes and scores
recorded on a tiny deterministic setup (both decoder norms) before any variant was added (tests/unit/golden/
circuits_sae_reference.json). A change that moves one code or one count fails here; the variants live beside the
reference and never change it.

Regenerate only on purpose (a deliberate change of the reference, said in the commit):
    PYTHONPATH=$PWD .venv/bin/python tests/unit/test_circuits_sae_golden.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from headscope.circuits import scoring
from headscope.circuits.sae import SAEConfig, codes, train_sae

GOLDEN = Path(__file__).parent / "golden" / "circuits_sae_reference.json"
REL = 1e-4  # floats (losses); codes and counts are exact


def synthetic(decoder_norm: str) -> dict[str, Any]:
    """Class-structured head outputs [20 examples, 12 heads, 16 dims]: heads 2 and 5 carry positive-only atoms,
    head 7 an atom on every other example (both classes)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(20, 12, 16, generator=g)
    atoms = torch.randn(3, 16, generator=g)
    x[:10, 2] += 3 * atoms[0]
    x[:10, 5] += 2 * atoms[1]
    x[::2, 7] += 2 * atoms[2]
    positive = torch.arange(20) < 10
    cfg = SAEConfig(n_latents=24, epochs=60, decoder_norm=decoder_norm)  # type: ignore[arg-type]
    trained = train_sae(x[[0, 3, 6, 9, 12, 15]].reshape(-1, 16), cfg, seed=3, l1=0.02)
    c = codes(trained.sae, x)
    return {
        "codes": c.tolist(),
        "node": scoring.node_scores(c, positive).tolist(),
        "edge": scoring.edge_scores(c, positive).tolist(),
        "pair_sum": int(scoring.pair_scores(c, positive).sum()),
        "mse_first": trained.mse_first,
        "mse_last": trained.mse_last,
        "w_enc_sum": float(trained.sae.w_enc.detach().sum()),
        "b_enc_sum": float(trained.sae.b_enc.detach().sum()),
    }


def _compare(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=REL), key
        else:
            assert got[key] == value, key


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.mark.parametrize("decoder_norm", ["reference_rows", "atoms"])
def test_codes_and_scores_are_frozen(golden: dict[str, Any], decoder_norm: str, one_thread: None) -> None:
    _compare(synthetic(decoder_norm), golden[decoder_norm])


def test_frozen_scores_follow_from_the_frozen_codes(golden: dict[str, Any]) -> None:
    """The frozen node scores are the paper's set differences of the frozen codes (recounted by hand here)."""
    for want in golden.values():
        c = torch.tensor(want["codes"])
        pos, neg = c[:10], c[10:]
        by_hand = [len(set(pos[:, h].tolist()) - set(neg[:, h].tolist())) for h in range(c.shape[1])]
        assert by_hand == want["node"]


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = {norm: synthetic(norm) for norm in ("reference_rows", "atoms")}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(out) + "\n", encoding="utf-8")
    print(json.dumps({k: {"node": v["node"], "edge": v["edge"]} for k, v in out.items()}))
