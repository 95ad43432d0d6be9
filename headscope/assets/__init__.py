"""Shipped files — schemas, published circuits, localist checkpoints, prompt sets, steering tasks, the text excerpt —
as package data of `headscope`, found through this one module (importlib.resources), so a non-editable
`pip install .` (what Hugging Face Spaces does) carries them. See README.md in this folder for the file map."""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from pathlib import Path
from typing import Any


@functools.cache
def root() -> Path:
    """The assets folder on disk (a wheel installs package data as plain files, so this is a real path)."""
    return Path(str(files(__name__)))


def path(*parts: str) -> Path:
    """The path of a shipped file or folder, e.g. `path("schemas", "circuit_report.schema.json")`."""
    return root().joinpath(*parts)


def read_text(*parts: str) -> str:
    return path(*parts).read_text(encoding="utf-8")


def read_json(*parts: str) -> Any:
    return json.loads(read_text(*parts))
