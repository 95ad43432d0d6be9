"""Attention metrics: entropy (bits), pointer fidelity, previous-token, induction, mean distance."""

from headscope.probes.backends import BACKENDS, entropy_bits, resolve_backend
from headscope.probes.patterns import TARGETS, normalised_entropy, row_entropy_bits, target_mask
from headscope.probes.probe import (
    MAX_PATTERN_TOKENS,
    AttentionProbes,
    ProbeConfig,
    head_pattern,
    induction_scores,
    probe_attention,
)

__all__ = [
    "BACKENDS",
    "MAX_PATTERN_TOKENS",
    "TARGETS",
    "AttentionProbes",
    "ProbeConfig",
    "entropy_bits",
    "head_pattern",
    "induction_scores",
    "normalised_entropy",
    "probe_attention",
    "resolve_backend",
    "row_entropy_bits",
    "target_mask",
]
