"""The result and config types moved to headscope/codec.py: each writes the JSON keys it always wrote (the app, the
batch results and the reports read them) and reads its own JSON back to an equal value."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from headscope.attention import BlockSpec, LocalityDial
from headscope.batch.execute import Outcome
from headscope.circuits.config import CircuitConfig
from headscope.circuits.known import KnownAnswerSummary
from headscope.circuits.sae import SAEConfig
from headscope.circuits.tasks import Example, TaskData
from headscope.features.attribution import Attribution, AttributionCheck, FeatureAttribution
from headscope.features.views import Context, FeaturePage, FiresOn, TopFeatures
from headscope.localist.train_eval import EvalResult
from headscope.localist.train_sweep import SweepTable
from headscope.localist.training import TrainConfig, TrainResult
from headscope.models.device_map import Placement
from headscope.probes.report import EntropyConfig
from headscope.probes.sweep import SweepConfig, SweepResult, SweepRow
from headscope.selection import HeadSet

DIAL = LocalityDial(lam=0.5, mode="block", schedule="explicit", layer_weights=(0.25, 1.0), heads="*.1, 0.0",
                    strength=2.5, blocks=BlockSpec(source="spans", spans=((0, 3), (3, 9))))  # fmt: skip
EVAL = EvalResult(12.5, 0.25, 1.5, (1.25, 1.75), 3.0, 0.5, 0.375, (0.125, 0.0625), 4, 100)
SWEEP = SweepResult("tiny-llama", (1, 2, 3), "local", DIAL.with_lambda(0.0), (SweepRow(0.5, 1.25, 0.5, 0.25, 9.5, 0.75, 0.001),), 7)  # fmt: skip
PAGE = FeaturePage("res6", "blocks.6.hook_resid_post", 3, 0.0125, 2.5, (Context(("a", "b"), (0.5, 1.25), 1, 1.25),),
                   ((0.0, 0.5, 1.0), (3, 1)), (("cat", 1.5),), (("dog", -0.25),), 512)  # fmt: skip
CASES: list[tuple[Any, set[str]]] = [
    (DIAL, {"lambda", "mode", "schedule", "beta", "layer_weights", "heads", "strength", "blocks"}),
    (SWEEP, {"model", "n_tokens", "token_ids", "truncated_from", "target", "dial", "rows"}),
    (Outcome(True, '{"x": 1}\n', None, 0, 1.5, "bar"), {"ok", "stdout", "error", "exit_code", "seconds", "stderr_tail"}),
    (Placement("cuda:0", ("cuda:0", "cpu", "disk"), "/tmp/off"), {"main", "blocks", "offload_dir"}),
    (CircuitConfig(task="induction", layers=(0, 2), sae=SAEConfig(n_latents=64)), set()),
    (EntropyConfig("fused", DIAL), {"backend", "dial"}),
    (SweepConfig((0.0, 0.5), DIAL.with_lambda(0.0), "block"), {"lambdas", "dial", "target"}),
    (EVAL, set()),
    (TrainConfig(lam=0.5, schedule="progressive", beta=3.0), set()),
    (TrainResult("out", TrainConfig(), 10, 1.25, ((1, 2.5, 0.5),), EVAL), {"out_dir", "config", "steps_done", "seconds", "loss_history", "metrics"}),
    (SweepTable(({"run": "a"},), ({"run": "b"},), {"s": 1}, 12.5, "m", {"c": 2}), {"rows", "aila", "progressive", "summary", "paper", "wall_seconds", "machine", "config"}),
    (TaskData("ioi", (Example("p", (1,), (2,)),), ("n",), True, 3, ("note",), "IOI"), set()),
    (KnownAnswerSummary("m/x", ("0.1",), ("1.2",), {"eap": 0.75}, {"eap": None}, ("1.2",)), set()),
    (HeadSet.parse("1.*, 0.2", 2, 3), {"heads", "n_layers", "n_heads", "text", "count"}),
    (Attribution("res6", "logit", 1.25, ("a",), (FeatureAttribution(3, 0.5, 2.25, 0),)), {"sae", "metric", "value", "tokens", "features"}),
    (AttributionCheck((1, 2), (0.5, -0.25), (0.25, -0.5), 1.0, 0.5), {"features", "estimated", "ablated", "sign_agreement", "spearman"}),
    (TopFeatures(("a", "b"), (5, 6), (((3, 1.5), (4, 0.5)), ()), None, (FiresOn(3, (" x", "y")),)), {"tokens", "token_ids", "top", "explained_variance", "fires_on"}),
    (PAGE, {"sae", "hook", "feature", "frequency", "max_activation", "contexts", "histogram", "promoted", "suppressed", "indexed_positions"}),
]  # fmt: skip


@pytest.mark.parametrize(("value", "keys"), CASES, ids=[type(v).__name__ for v, _ in CASES])
def test_round_trip_and_keys(value: Any, keys: set[str]) -> None:
    data = json.loads(json.dumps(value.to_json(), allow_nan=False))
    assert type(value).from_json(data) == value
    if keys:
        assert set(data) == keys


def test_shapes_the_readers_rely_on() -> None:
    dial = DIAL.to_json()
    assert dial["heads"] == "*.1, 0.0" and dial["blocks"] == {
        "source": "spans",
        "size": 16,
        "spans": [[0, 3], [3, 9]],
    }
    sweep = SWEEP.to_json()
    assert "lambda" not in sweep["dial"] and sweep["rows"][0]["lambda"] == 0.5 and sweep["n_tokens"] == 3
    top = TopFeatures(("a",), (5,), (((3, 1.234567),),), 0.1234567).to_json()
    assert top["top"] == [[{"feature": 3, "activation": 1.23457}]] and top["explained_variance"] == 0.12346
    page = PAGE.to_json()
    assert page["histogram"] == {"edges": [0.0, 0.5, 1.0], "counts": [3, 1]}
    assert page["promoted"] == [{"token": "cat", "logit": 1.5}]
    cfg = CircuitConfig(task="induction").to_json()
    cfg["added_later"], cfg["sae"]["removed_since"] = 1, 2  # reports from other versions still load
    assert CircuitConfig.from_json(cfg) == CircuitConfig(task="induction")
    assert HeadSet.from_json(HeadSet.parse("1.*", 2, 3).to_json()).heads == ((1, 0), (1, 1), (1, 2))


def test_probe_summary_rounds_and_reads_back_arrays() -> None:
    from headscope.probes.probe import AttentionProbes, ProbeSummary

    ent = np.full((2, 3, 4), 1.23456789, dtype=np.float32)
    probes = AttentionProbes("m", (1, 2, 3, 4), ("a", "b", "c", "d"), "local", ent, ent, ent, ent, ent)
    data = json.loads(json.dumps(probes.to_json()))
    assert (
        data["entropy_bits"][1][2] == 1.234568 and data["n_tokens"] == 4 and data["induction_score"] is None
    )
    back = ProbeSummary.from_json(data)
    assert back.entropy_bits.shape == (2, 3) and back.token_entropy_bits.shape == (4,)


def test_entropy_report_json_reads_back(tiny_gpt2) -> None:
    from headscope.probes.report import EntropyReport, entropy_report

    payload = entropy_report(
        tiny_gpt2, "The cat sat. The dog sat.", backend="eager", dial=DIAL.with_lambda(0.3)
    )
    data = json.loads(json.dumps(payload))
    back = EntropyReport.from_json(data)
    assert back.to_json() == data and back.n_tokens == len(data["token_ids"]) == data["n_tokens"]
    assert back.dial == DIAL.with_lambda(0.3) and len(back.entropy_bits) == tiny_gpt2.facts.n_layers
