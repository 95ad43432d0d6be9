"""LoFiT head offsets, contrastive (GLOV / CAA) vectors, vector files."""

from headscope.steering.contrastive import (
    Comparison,
    ContrastiveConfig,
    ContrastiveVector,
    SteerConfig,
    alpha_sweep,
    compare,
    contrastive_vector,
)
from headscope.steering.generate import GenConfig, Generation, generate
from headscope.steering.lofit import (
    HeadOffsets,
    LofitConfig,
    LofitResult,
    lofit,
    rank_heads,
    train_biases,
    train_scales,
)
from headscope.steering.scoring import Metrics, evaluate
from headscope.steering.tasks import TASKS, Pair, TaskData, load_pairs_file, load_task
from headscope.steering.vectors import VectorMeta

__all__ = [
    "TASKS",
    "Comparison",
    "ContrastiveConfig",
    "ContrastiveVector",
    "GenConfig",
    "Generation",
    "HeadOffsets",
    "LofitConfig",
    "LofitResult",
    "Metrics",
    "Pair",
    "SteerConfig",
    "TaskData",
    "VectorMeta",
    "alpha_sweep",
    "compare",
    "contrastive_vector",
    "evaluate",
    "generate",
    "load_pairs_file",
    "load_task",
    "lofit",
    "rank_heads",
    "train_biases",
    "train_scales",
]
