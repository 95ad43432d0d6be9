"""Ablating a head selection on a task: the one pipeline behind `headscope circuits ablate` and the Circuits tab.

The task's prompt pairs are built (`tasks.make_task`), prepared once (`patching.prepare`), and the task metric is
read with four masks in one batched run (`faithfulness.ablate`): nothing ablated, the selection, everything but the
selection, every head. The result is the ablation plus the task and model it ran on (flat JSON, as the CLI prints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headscope import checks
from headscope.circuits import patching
from headscope.circuits.faithfulness import Ablation, ablate
from headscope.circuits.tasks import TASKS, make_task
from headscope.codec import JsonCodec
from headscope.errors import InputError
from headscope.models.handle import ModelHandle
from headscope.progress import Progress, part
from headscope.selection import HeadSet


@dataclass(frozen=True)
class AblationConfig(JsonCodec):
    """The task's prompt pairs: `n_examples` positive/negative pairs drawn with `seed` (a custom task's pairs
    come from its spec)."""

    task: str = "ioi"
    n_examples: int = 24
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", checks.choice(self.task, "task", [*TASKS, "custom"]))
        object.__setattr__(self, "n_examples", checks.integer(self.n_examples, "n_examples", 2, 512))
        object.__setattr__(self, "seed", checks.integer(self.seed, "seed", 0, 2**31 - 1))


@dataclass(frozen=True)
class AblationResult(Ablation):  # Ablation is a JsonCodec type
    """`Ablation`'s fields, then the task (its name: "custom" for a custom task) and the model."""

    task: str
    model: str


def ablate_selection(
    handle: ModelHandle,
    heads: HeadSet,
    *,
    cfg: AblationConfig = AblationConfig(),
    spec: Any = None,
    progress: Progress | None = None,
) -> AblationResult:
    """The task metric with `heads` mean-ablated, and with every other head ablated. `spec`: a custom task's
    JSON (cfg.task "custom")."""
    if not heads:
        raise InputError("no head is selected: ablating nothing measures nothing")
    if (heads.n_layers, heads.n_heads) != (handle.facts.n_layers, handle.facts.n_heads):
        raise InputError(f"the heads ({heads}) are of a {heads.n_layers}×{heads.n_heads} model, not this one")
    say = part(progress, 0.0, 1.0)
    say("preparing prompts", 0.0)
    task = make_task(cfg.task, handle.tokenizer, n=cfg.n_examples, seed=cfg.seed, spec=spec)
    prep = patching.prepare(handle, task)
    say(f"4 ablation runs of {len(task.positives)} prompt pairs", 0.3)
    res = ablate(handle, prep, heads)
    say("done", 1.0)
    return AblationResult(**vars(res), task=task.name, model=handle.identity.name)
