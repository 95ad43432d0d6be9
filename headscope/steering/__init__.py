"""LoFiT head offsets, contrastive (GLOV / CAA) vectors, steering costs, vector files."""

from headscope.steering.comparison import SideBySide, SideBySideConfig, side_by_side
from headscope.steering.contrastive import (
    Comparison,
    ContrastiveConfig,
    alpha_sweep,
    compare,
    compare_vector,
    contrastive_vector,
    default_layer,
)
from headscope.steering.cost import Cost, steering_cost
from headscope.steering.direction import (
    SteerConfig,
    SteeringVector,
    from_direction,
    readout_effect,
    reference_norm,
    reference_texts,
)
from headscope.steering.generate import GenConfig, Generation, generate
from headscope.steering.heldout import HeldOut
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
    "Cost",
    "GenConfig",
    "Generation",
    "HeadOffsets",
    "HeldOut",
    "LofitConfig",
    "LofitResult",
    "Metrics",
    "Pair",
    "SideBySide",
    "SideBySideConfig",
    "SteerConfig",
    "SteeringVector",
    "TaskData",
    "VectorMeta",
    "alpha_sweep",
    "compare",
    "compare_vector",
    "contrastive_vector",
    "default_layer",
    "evaluate",
    "from_direction",
    "generate",
    "load_pairs_file",
    "load_task",
    "lofit",
    "rank_heads",
    "readout_effect",
    "reference_norm",
    "reference_texts",
    "side_by_side",
    "steering_cost",
    "train_biases",
    "train_scales",
]
