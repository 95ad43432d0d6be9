"""Attention metrics over a text, optionally under a locality dial: entropy (bits), pointer fidelity,
previous-token, induction, mean distance; the λ sweep. Definitions: `headscope.attention`."""

from headscope.probes.backends import BACKENDS, entropy_bits, resolve_backend, token_limit
from headscope.probes.probe import (
    MAX_PATTERN_TOKENS,
    AttentionProbes,
    ProbeConfig,
    head_patterns,
    induction_scores,
    model_induction_scores,
    probe_attention,
)
from headscope.probes.report import entropy_report
from headscope.probes.sweep import SweepConfig, SweepResult, SweepRow, eval_tokens, sweep_locality

__all__ = [
    "BACKENDS",
    "MAX_PATTERN_TOKENS",
    "AttentionProbes",
    "ProbeConfig",
    "SweepConfig",
    "SweepResult",
    "SweepRow",
    "entropy_bits",
    "entropy_report",
    "eval_tokens",
    "head_patterns",
    "induction_scores",
    "model_induction_scores",
    "probe_attention",
    "resolve_backend",
    "sweep_locality",
    "token_limit",
]
