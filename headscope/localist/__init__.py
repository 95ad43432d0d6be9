"""Localist training only: the corpus, the objective (Ω), training runs, the AILA sweep table, shipped checkpoints.
The locality model it trains towards (schedules, blocks, entropy) is `headscope.attention`'s; the inference-time
dial and the λ sweep of a loaded model are in `headscope.attention` and `headscope.probes`."""

from headscope.localist.train_eval import EvalResult, evaluate
from headscope.localist.train_objective import PENALTIES, penalty, pointer_stats
from headscope.localist.training import TrainConfig, TrainResult, train

__all__ = [
    "PENALTIES",
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "penalty",
    "pointer_stats",
    "train",
]
