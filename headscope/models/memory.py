"""Accelerator memory for callers that hold no tensors (the app): recognise an out-of-memory error and give the
allocator's cache back after one."""

from __future__ import annotations

import gc

import torch


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError)


def release_cached_memory() -> None:
    """Free what a failed request held (its hooks were already removed by `handle.hooks`' finally)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
