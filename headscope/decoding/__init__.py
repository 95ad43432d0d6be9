"""Decoding strategies with one trace format, and their comparison."""
