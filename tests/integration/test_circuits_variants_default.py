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
from headscope.circuits.sae import SAEConfig, task_l1
from headscope.circuits.tasks import make_task
from headscope.circuits.variants import VARIANTS
from headscope.circuits.variants_fit import fit_variant, order
from headscope.circuits.variants_read import READS, read_heads
from headscope.models import ModelHandle

pytestmark = pytest.mark.default_model
LAYERS = [26, 27, 28, 29]


@pytest.fixture(scope="module")
def setup(default_model: ModelHandle) -> Iterator[dict]:
    before = torch.get_num_threads()
    prep = patching.prepare(default_model, make_task("ioi", default_model.tokenizer, n=6, seed=0))
    truth = patching.activation_patching(default_model, prep, None, LAYERS)
    mask = scoring.threshold_truth(
        truth.effects.numpy(), truth.clean_metric - truth.corrupt_metric, 0.03, LAYERS
    )
    reads = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        reads[threads] = read_heads(default_model, prep, READS, LAYERS)
    torch.set_num_threads(before)
    yield {"prep": prep, "truth": mask[LAYERS].ravel(), "reads": reads}
    torch.set_num_threads(before)


def _fit(setup: dict, name: str, threads: int) -> tuple[np.ndarray, np.ndarray | None]:
    v = VARIANTS[name]
    r = v.resolve("mean", 6, SAEConfig(epochs=60))
    torch.set_num_threads(threads)
    x = setup["reads"][threads][r.read]
    run = fit_variant(x, r, n_positive=6, paired=True, seed=1, l1=task_l1("ioi"), n_heads=9)
    return run.node, run.stored.codes


@pytest.mark.parametrize("name", list(VARIANTS))
def test_one_and_two_threads_agree(setup: dict, name: str) -> None:
    before = torch.get_num_threads()
    try:
        (node1, codes1), (node2, codes2) = _fit(setup, name, 1), _fit(setup, name, 2)
    finally:
        torch.set_num_threads(before)
    if codes1 is not None:
        assert codes2 is not None and np.array_equal(codes1, codes2)
    np.testing.assert_allclose(node2, node1, rtol=1e-4, atol=1e-12)
    assert order(node1).tolist() == order(node2).tolist()
    assert scoring.roc_auc(node1, setup["truth"]) == scoring.roc_auc(node2, setup["truth"])
    ties = np.unique(node1, return_counts=True)[1].max()
    if ties > 1:  # tied heads come out in head order
        for value in np.unique(node1):
            heads = np.flatnonzero(node1 == value)
            ranked = [h for h in order(node1) if h in heads]
            assert ranked == sorted(heads.tolist())


def test_reads_differ_only_by_rounding(setup: dict) -> None:
    for read in READS:
        a, b = setup["reads"][1][read], setup["reads"][2][read]
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
