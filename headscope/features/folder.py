"""An SAE folder on disk: its file names, its card, and `load_folder` (SAELens's `SAE.load_from_disk` with every
failure as one line).

Kept apart from `saes.py` (binding to a model) and `catalog.py` (names) so that both, and the circuit SAE's
`discrete.py`, read folders without importing each other (no import cycle). `discrete.py` registers its
architecture with sae-lens when imported; `saes.py` imports it, so a folder loaded through `saes` can be a circuit SAE.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from headscope.errors import InputError
from headscope.files import JSON_LIMIT, check_file, read_json

# The files of an SAE folder (SAELens's two, then headscope's card and dashboards).
CFG, WEIGHTS, CARD, DASHBOARDS = "cfg.json", "sae_weights.safetensors", "card.json", "dashboards.safetensors"
MAX_SAE_BYTES = 512 * 1024 * 1024


def read_card(folder: Path) -> dict[str, Any]:
    path = folder / CARD
    if not path.is_file():
        return {}
    card = read_json(path, "SAE card", limit=JSON_LIMIT)
    if not isinstance(card, dict):
        raise InputError(f"{path} is not a JSON object (a corrupted SAE card)")
    return card


def write_card(folder: Path, card: dict[str, Any]) -> None:
    (folder / CARD).write_text(json.dumps(card, indent=1), encoding="utf-8")


def load_folder(folder: str | Path, device: str = "cpu") -> Any:
    """`SAE.load_from_disk` with every failure as one line: missing files, corrupted weights, unreadable config."""
    from sae_lens import SAE

    path = Path(folder)
    for name in (CFG, WEIGHTS):
        if not (path / name).is_file():
            raise InputError(f"{path} is not an SAELens SAE folder (no {name})")
    check_file(path / WEIGHTS, "SAE weights", MAX_SAE_BYTES)
    read_json(path / CFG, "SAE config", limit=JSON_LIMIT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sae = SAE.load_from_disk(path, device=device, dtype="float32")
    except KeyError as e:
        raise InputError(
            f"the SAE in {path} has an unknown architecture or a missing config field: {e}"
        ) from None
    except Exception as e:  # safetensors / torch / sae-lens errors on a damaged file
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise InputError(
            f"the SAE in {path} could not be read (corrupted or incompatible file): {first}"
        ) from None
    return sae.eval().requires_grad_(False)  # headscope reads SAEs; only training (train.py) needs gradients
