"""Decoding strategies with one trace format, and their comparison (see README.md)."""

from headscope.decoding.compare import Comparison, StrategyResult, compare
from headscope.decoding.config import MAX_NEW_TOKENS, DecodeConfig
from headscope.decoding.constrained import GRAMMARS, Constraint, awrs_choice, mask_choice
from headscope.decoding.sampling import verify_greedy, verify_sampled, warp
from headscope.decoding.strategies import STRATEGIES, StrategySpec, decode, get_strategy, register_strategy
from headscope.decoding.trace import Step, Trace

__all__ = [
    "GRAMMARS",
    "MAX_NEW_TOKENS",
    "STRATEGIES",
    "Comparison",
    "Constraint",
    "DecodeConfig",
    "Step",
    "StrategyResult",
    "StrategySpec",
    "Trace",
    "awrs_choice",
    "compare",
    "decode",
    "get_strategy",
    "mask_choice",
    "register_strategy",
    "verify_greedy",
    "verify_sampled",
    "warp",
]
