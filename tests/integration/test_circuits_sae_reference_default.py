"""The reference discrete-SAE method on the default model, frozen: `circuits run --task ioi`'s SAE step at the CLI
defaults (24 pairs, seed 0, 10 training examples, 200 latents, 500 epochs, mean over positions) recorded before any
variant existed (golden/circuits_sae_reference_ioi.json): the codes (a digest of all 48 × 270, and their
distribution), both score vectors and the reconstruction losses.

Regenerate only on purpose (a deliberate change of the reference, said in the commit):
    PYTHONPATH=$PWD .venv/bin/python tests/integration/test_circuits_sae_reference_default.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from headscope.circuits import patching
from headscope.circuits.config import CircuitConfig
from headscope.circuits.finder import sae_methods
from headscope.circuits.tasks import make_task
from headscope.models import ModelHandle

GOLDEN = Path(__file__).parent / "golden" / "circuits_sae_reference_ioi.json"


def ioi_reference(handle: ModelHandle) -> dict[str, Any]:
    cfg = CircuitConfig(task="ioi", sae_variant="reference")  # pinned, whatever the default is
    prep = patching.prepare(handle, make_task("ioi", handle.tokenizer, n=cfg.n_examples, seed=cfg.seed))
    run = sae_methods(handle, prep, cfg, "ioi")
    c = run.codes.numpy().astype(np.int64)
    return {
        "codes_sha256": hashlib.sha256(c.tobytes()).hexdigest(),
        "code_counts": np.bincount(c.ravel(), minlength=cfg.sae.n_latents).tolist(),
        "node": run.scores["sae_node"].tolist(),
        "edge": run.scores["sae_edge"].tolist(),
        "pair_sum": int(run.pair_scores.sum()),
        "n_distinct_codes": run.info.n_distinct_codes,
        "mse_first": run.info.mse_first_epoch,
        "mse_last": run.info.mse_final,
    }


@pytest.mark.default_model
def test_ioi_reference_is_frozen(default_model: ModelHandle, one_thread: None) -> None:
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = ioi_reference(default_model)
    for key in ("code_counts", "node", "edge", "pair_sum", "n_distinct_codes", "codes_sha256"):
        assert got[key] == want[key], key
    for key in ("mse_first", "mse_last"):
        assert got[key] == pytest.approx(want[key], rel=1e-4), key


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = ioi_reference(ModelHandle.load("smollm2-135m", device="cpu"))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(out) + "\n", encoding="utf-8")
    print(json.dumps({k: out[k] for k in ("node", "n_distinct_codes", "mse_last")}))
