"""The one owner of attention maths: patterns (entropy, targets, per-row statistics), blocks (what "block" means
everywhere) and the locality model (schedules, modes, head selection, eager hooks, the kernels' bias)."""

from headscope.attention.blocks import BLOCK_SOURCES, BlockSpec, block_ids, sentence_starts
from headscope.attention.locality import (
    BLOCK_NATS,
    MODES,
    SCHEDULES,
    LayerSchedule,
    LocalityDial,
    dial_hooks,
    window_width,
)
from headscope.attention.patterns import (
    TARGETS,
    RowStats,
    normalised_entropy,
    row_entropy_bits,
    row_stats,
    same_block,
    target_mask,
)

__all__ = [
    "BLOCK_NATS",
    "BLOCK_SOURCES",
    "MODES",
    "SCHEDULES",
    "TARGETS",
    "BlockSpec",
    "LayerSchedule",
    "LocalityDial",
    "RowStats",
    "block_ids",
    "dial_hooks",
    "normalised_entropy",
    "row_entropy_bits",
    "row_stats",
    "same_block",
    "sentence_starts",
    "target_mask",
    "window_width",
]
