"""`circuits.ablate_selection`: the task's pairs built and prepared, then the four-mask ablation — equal to doing
those steps by hand, flat JSON that reads back, and bad selections refused before any work."""

from __future__ import annotations

import json

import pytest

from headscope.circuits import patching
from headscope.circuits.ablate import AblationConfig, AblationResult, ablate_selection
from headscope.circuits.faithfulness import ablate
from headscope.circuits.tasks import make_task
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.selection import HeadSet


def test_equals_the_steps_by_hand(tiny_gpt2: ModelHandle) -> None:
    heads = tiny_gpt2.head_set("0.1, 1.*")
    cfg = AblationConfig("induction", n_examples=4, seed=3)
    stages: list[tuple[str, float]] = []
    res = ablate_selection(tiny_gpt2, heads, cfg=cfg, progress=lambda s, f: stages.append((s, f)))
    task = make_task("induction", tiny_gpt2.tokenizer, n=4, seed=3)
    want = ablate(tiny_gpt2, patching.prepare(tiny_gpt2, task), heads)
    assert {k: v for k, v in vars(res).items() if k not in ("task", "model")} == vars(want)
    assert (res.task, res.model) == ("induction", tiny_gpt2.identity.name)
    assert [f for _, f in stages] == sorted(f for _, f in stages) and stages[-1][1] == 1.0
    data = json.loads(json.dumps(res.to_json()))
    assert data["heads"] == "0.1, 1.*" and AblationResult.from_json(data) == res


def test_bad_selections_and_configs_are_refused(tiny_gpt2: ModelHandle) -> None:
    with pytest.raises(InputError, match="no head is selected"):
        ablate_selection(tiny_gpt2, HeadSet.empty(tiny_gpt2.facts.n_layers, tiny_gpt2.facts.n_heads))
    with pytest.raises(InputError, match="of a 3×3 model"):
        ablate_selection(tiny_gpt2, HeadSet.parse("0.0", 3, 3))
    with pytest.raises(InputError, match="n_examples must be"):
        AblationConfig(n_examples=1)
