"""Decoding strategies with one trace format, and their comparison (see README.md)."""

from headscope.decoding.awrs import Choice, awrs_choice, mask_choice
from headscope.decoding.compare import Comparison, Divergence, StrategyResult, compare, compare_prompt
from headscope.decoding.config import MAX_NEW_TOKENS, DecodeConfig
from headscope.decoding.constrained import GRAMMARS, Constraint
from headscope.decoding.sampling import verify_greedy, verify_sampled, warp
from headscope.decoding.strategies import STRATEGIES, StrategySpec, decode, get_strategy, register_strategy
from headscope.decoding.trace import SmcStep, Step, Trace
from headscope.decoding.tree import TokenTree, verify_tree

__all__ = [
    "GRAMMARS",
    "MAX_NEW_TOKENS",
    "STRATEGIES",
    "Choice",
    "Comparison",
    "Constraint",
    "DecodeConfig",
    "Divergence",
    "SmcStep",
    "Step",
    "StrategyResult",
    "StrategySpec",
    "TokenTree",
    "Trace",
    "awrs_choice",
    "compare",
    "compare_prompt",
    "decode",
    "get_strategy",
    "mask_choice",
    "register_strategy",
    "verify_greedy",
    "verify_sampled",
    "verify_tree",
    "warp",
]
