"""Attention metrics: entropy (bits), pointer fidelity, previous-token, induction, mean distance."""
