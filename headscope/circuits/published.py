"""Published head-level circuits (assets/circuits/*.json; papers.md §3), used when a matching model is loaded.

A file names the models it applies to (catalog names / hub ids, compared case-insensitively) and their shape;
a model matches when its name or source is one of those names and its layers × heads agree.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headscope import assets
from headscope.errors import InputError

CIRCUITS_DIR = assets.path("circuits")


@dataclass(frozen=True)
class PublishedCircuit:
    task: str
    variant: str
    heads: tuple[str, ...]  # "layer.head"
    source: str
    model_names: tuple[str, ...]
    n_layers: int
    n_heads: int

    def mask(self) -> np.ndarray:
        """Boolean [n_layers, n_heads] ground truth."""
        m = np.zeros((self.n_layers, self.n_heads), dtype=bool)
        for layer, head in (parse_head(h) for h in self.heads):
            m[layer, head] = True
        return m


def parse_head(text: str) -> tuple[int, int]:
    try:
        layer, head = text.split(".")
        return int(layer), int(head)
    except ValueError:
        raise InputError(f"not a head name 'layer.head': {text!r}") from None


@functools.cache
def published_circuits(folder: Path = CIRCUITS_DIR) -> tuple[PublishedCircuit, ...]:
    found = []
    for path in sorted(folder.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        model = raw["model"]
        for variant, v in raw["variants"].items():
            found.append(
                PublishedCircuit(
                    raw["task"],
                    variant,
                    tuple(v["heads"]),
                    v["source"],
                    tuple(n.lower() for n in model["names"]),
                    int(model["n_layers"]),
                    int(model["n_heads"]),
                )
            )
    return tuple(found)


def matching(names: tuple[str, ...], n_layers: int, n_heads: int, task: str) -> list[PublishedCircuit]:
    """The published variants for this task whose model is one of `names` (name, hub id, source) and shape."""
    wanted = {n.lower() for n in names if n}
    return [
        c
        for c in published_circuits()
        if c.task == task and wanted & set(c.model_names) and (c.n_layers, c.n_heads) == (n_layers, n_heads)
    ]
