"""Every registered SAE variant (and baseline) is deterministic on the default model across thread counts: the same
codes, rankings and ROC-AUC on 1 and 2 torch threads, node scores equal to 1e-4 relative, ties ordered by head
index (never by rounding noise). IOI, 6 pairs, the last 4 of SmolLM2's 30 layers (36 heads), 60 SAE epochs: the
thread-dependence lives in the forward pass and the SAE's matrix products, which this covers at a size that takes
seconds per variant."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from headscope.circuits import patching, scoring
from headscope.circuits.sae import SAEConfig, train_sae
from headscope.circuits.tasks import make_task
from headscope.circuits.variants import VARIANTS
from headscope.circuits.variants_fit import latent_acts, node_scores, order, train_rows
from headscope.circuits.variants_read import READS, head_scaling, read_heads
from headscope.circuits.variants_score import baseline_stored, sae_stored
from headscope.models import ModelHandle

pytestmark = pytest.mark.default_model
LAYERS = [26, 27, 28, 29]


@pytest.fixture(scope="module")
def setup(default_model: ModelHandle) -> Iterator[dict]:
    """Head reads and every variant's scores on 1 and 2 threads (one SAE per training key and thread count:
    variants that only score differently share it, as in the study)."""
    before = torch.get_num_threads()
    prep = patching.prepare(default_model, make_task("ioi", default_model.tokenizer, n=6, seed=0))
    truth = patching.activation_patching(default_model, prep, None, LAYERS)
    mask = scoring.threshold_truth(
        truth.effects.numpy(), truth.clean_metric - truth.corrupt_metric, 0.03, LAYERS
    )
    out: dict = {"truth": mask[LAYERS].ravel(), "reads": {}, "scores": {}}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out["reads"][threads] = reads = read_heads(default_model, prep, READS, LAYERS)
            out["scores"][threads] = _all_variants(reads)
    finally:
        torch.set_num_threads(before)
    yield out


def _all_variants(reads: dict[str, torch.Tensor]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    acts: dict[tuple, torch.Tensor] = {}
    scores = {}
    for name, v in VARIANTS.items():
        r = v.resolve("mean", 6, SAEConfig(epochs=60))
        x = head_scaling(reads[r.read], r.norm, 9).apply(reads[r.read])
        if not v.uses_sae:
            stored = baseline_stored(x, 6, True)
        else:
            key = (r.read, r.norm, r.n_train, r.sae)
            if key not in acts:
                rows = train_rows(x.shape[0], r.n_train, 1)
                acts[key] = latent_acts(train_sae(x[rows].reshape(-1, x.shape[-1]), r.sae, 1, l1=0.02), x)
            stored = sae_stored(acts[key], 6, True, r.code, r.k)
        scores[name] = (node_scores(v, stored), stored.codes)
    return scores


@pytest.mark.parametrize("name", list(VARIANTS))
def test_one_and_two_threads_agree(setup: dict, name: str) -> None:
    (node1, codes1), (node2, codes2) = setup["scores"][1][name], setup["scores"][2][name]
    if codes1 is not None:
        assert codes2 is not None and np.array_equal(codes1, codes2)
    np.testing.assert_allclose(node2, node1, rtol=1e-4, atol=1e-12)
    assert order(node1).tolist() == order(node2).tolist()
    assert scoring.roc_auc(node1, setup["truth"]) == scoring.roc_auc(node2, setup["truth"])
    for value in np.unique(node1):  # tied heads come out in head order
        heads = np.flatnonzero(node1 == value)
        assert [h for h in order(node1) if h in heads] == sorted(heads.tolist())


def test_reads_differ_only_by_rounding(setup: dict) -> None:
    for read in READS:
        a, b = setup["reads"][1][read], setup["reads"][2][read]
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # head outputs reach ~40 in norm
