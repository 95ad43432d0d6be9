"""Triton attention+entropy kernel, plain-torch reference, chunked CPU path, dispatch."""
