"""The locality dial (bias/mask builders, layer schedules, hooks) and localist training."""

from headscope.localist.blocks import BLOCK_SOURCES, BlockSpec, block_ids
from headscope.localist.dial import MODES, SCHEDULES, LocalityDial, dial_hooks, score_transforms, window_width
from headscope.localist.sweep import SweepConfig, SweepResult, SweepRow, eval_tokens, sweep_locality

__all__ = [
    "BLOCK_SOURCES",
    "MODES",
    "SCHEDULES",
    "BlockSpec",
    "LocalityDial",
    "SweepConfig",
    "SweepResult",
    "SweepRow",
    "block_ids",
    "dial_hooks",
    "eval_tokens",
    "score_transforms",
    "sweep_locality",
    "window_width",
]
