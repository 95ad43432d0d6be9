"""Vector files: `vectors.safetensors` (tensors) + `vectors.json` (the sidecar: model identity, method, hook sites,
heads or layer, α, training-data hash). The sidecar JSON is also embedded in the safetensors header metadata, so a
single uploaded .safetensors file (the app takes bytes, never a path) carries everything.

Loading checks the model (name and weights hash), its shape facts and every tensor's shape; a mismatch is refused
with one line. No pickle anywhere.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from headscope.errors import InputError
from headscope.models import hooks
from headscope.models.handle import ModelHandle
from headscope.steering.contrastive import POOLINGS, ContrastiveVector, SteerConfig, check_alpha, check_layer
from headscope.steering.hooks import POSITIONS, Head, check_heads
from headscope.steering.lofit import HeadOffsets

FORMAT = "headscope-steering/1"
WEIGHTS, SIDECAR = "vectors.safetensors", "vectors.json"
MAX_FILE_BYTES = 2_000_000  # a LoFiT or contrastive file is a few kB; the app refuses anything larger
Method = Literal["lofit", "contrastive"]
_FACT_KEYS = ("n_layers", "n_heads", "d_head", "d_model")


@dataclass(frozen=True)
class VectorMeta:
    method: Method
    model: dict[str, Any]  # ModelIdentity as a dict
    facts: dict[str, int]
    hook_sites: tuple[str, ...]
    heads: tuple[Head, ...] | None  # lofit
    layer: int | None  # contrastive
    alpha: float
    position: str | None  # contrastive: "last" | "all"
    pooling: str | None
    data_hash: str
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["heads"] = None if self.heads is None else [list(h) for h in self.heads]
        d["hook_sites"] = list(self.hook_sites)
        return d

    @classmethod
    def from_json(cls, d: Any) -> VectorMeta:
        try:
            if d.get("format") != FORMAT:
                raise InputError(
                    f"not a headscope steering file (format {d.get('format')!r}, expected {FORMAT!r})"
                )
            heads = None if d["heads"] is None else tuple((int(a), int(b)) for a, b in d["heads"])
            return cls(
                d["method"], dict(d["model"]), {k: int(d["facts"][k]) for k in _FACT_KEYS},
                tuple(str(s) for s in d["hook_sites"]), heads, None if d["layer"] is None else int(d["layer"]),
                float(d["alpha"]), d["position"], d["pooling"], str(d["data_hash"]),
            )  # fmt: skip
        except InputError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError):
            raise InputError(
                "the steering sidecar JSON is malformed (missing or wrong-typed fields)"
            ) from None


def _facts(handle: ModelHandle) -> dict[str, int]:
    return {k: int(getattr(handle.facts, k)) for k in _FACT_KEYS}


def lofit_meta(
    handle: ModelHandle, offsets: HeadOffsets, data_hash: str
) -> tuple[VectorMeta, dict[str, Tensor]]:
    sites = tuple(sorted({hooks.z(layer) for layer, _ in offsets.heads}))
    meta = VectorMeta("lofit", asdict(handle.identity), _facts(handle), sites, offsets.heads, None, 1.0, None,
                      None, data_hash)  # fmt: skip
    return meta, {"biases": offsets.biases.detach().float().cpu().contiguous()}


def contrastive_meta(
    handle: ModelHandle, cv: ContrastiveVector, steer: SteerConfig
) -> tuple[VectorMeta, dict[str, Tensor]]:
    meta = VectorMeta("contrastive", asdict(handle.identity), _facts(handle), (hooks.resid(cv.layer, "post"),), None,
                      cv.layer, steer.alpha, steer.position, cv.pooling, cv.data_hash)  # fmt: skip
    return meta, {"vector": cv.vector.detach().float().cpu().contiguous()}


def to_bytes(meta: VectorMeta, tensors: dict[str, Tensor]) -> bytes:
    return st_save(tensors, metadata={"headscope": json.dumps(meta.to_json())})


def save(directory: str | Path, meta: VectorMeta, tensors: dict[str, Tensor]) -> Path:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / WEIGHTS).write_bytes(to_bytes(meta, tensors))
    (out / SIDECAR).write_text(json.dumps(meta.to_json(), indent=1), encoding="utf-8")
    return out


def _header_metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's __metadata__ (8-byte little-endian length, then JSON)."""
    if len(data) < 8:
        raise InputError("not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 100_000:
        raise InputError("not a safetensors file (bad header length)")
    try:
        return dict(json.loads(data[8 : 8 + n]).get("__metadata__") or {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise InputError("not a safetensors file (unreadable header)") from None


def from_bytes(data: bytes) -> tuple[VectorMeta, dict[str, Tensor]]:
    """Read an uploaded file (bytes) whose header carries the sidecar."""
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"vector file is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
    meta_text = _header_metadata(data).get("headscope")
    if meta_text is None:
        raise InputError("this safetensors file carries no headscope steering metadata")
    try:
        tensors = st_load(data)
        meta = VectorMeta.from_json(json.loads(meta_text))
    except InputError:
        raise
    except Exception:
        raise InputError("the vector file is malformed") from None
    return meta, tensors


def load(directory: str | Path) -> tuple[VectorMeta, dict[str, Tensor]]:
    """A vectors directory written by `save` (CLI only). The sidecar is the authority on metadata."""
    folder = Path(directory)
    if not (folder / WEIGHTS).is_file() or not (folder / SIDECAR).is_file():
        raise InputError(f"{folder} is not a vectors directory (needs {WEIGHTS} and {SIDECAR})")
    if (folder / WEIGHTS).stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"{folder / WEIGHTS} is larger than {MAX_FILE_BYTES} bytes")
    try:
        sidecar = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{folder / SIDECAR} is not valid JSON") from None
    _, tensors = from_bytes((folder / WEIGHTS).read_bytes())
    return VectorMeta.from_json(sidecar), tensors


def check_model(meta: VectorMeta, handle: ModelHandle) -> None:
    """Refuse vectors trained on another model (name, weights hash) or with other shape facts."""
    ident = asdict(handle.identity)
    theirs = f"{meta.model.get('name')} (sha256 {str(meta.model.get('sha256'))[:12]})"
    ours = f"{ident['name']} (sha256 {str(ident['sha256'])[:12]})"
    if meta.model.get("name") != ident["name"] or meta.model.get("sha256") != ident["sha256"]:
        raise InputError(f"these vectors were made for model {theirs}; refusing to load them onto {ours}")
    if meta.facts != _facts(handle):
        raise InputError(f"these vectors expect model shape {meta.facts}; this model has {_facts(handle)}")


def _expect_shape(tensors: dict[str, Tensor], key: str, shape: tuple[int, ...]) -> Tensor:
    t = tensors.get(key)
    if t is None:
        raise InputError(f"the vector file has no tensor {key!r}")
    if tuple(t.shape) != shape:
        raise InputError(f"tensor {key!r} has shape {tuple(t.shape)}; expected {shape}")
    if not torch.isfinite(t).all():
        raise InputError(f"tensor {key!r} has non-finite values")
    return t.float()


def to_offsets(meta: VectorMeta, tensors: dict[str, Tensor], handle: ModelHandle) -> HeadOffsets:
    check_model(meta, handle)
    if meta.method != "lofit" or meta.heads is None:
        raise InputError(f"expected LoFiT vectors; this file holds {meta.method} vectors")
    check_heads(meta.heads, handle.facts.n_layers, handle.facts.n_heads)
    biases = _expect_shape(tensors, "biases", (len(meta.heads), handle.facts.d_head))
    return HeadOffsets(meta.heads, biases.to(handle.device))


def to_contrastive(
    meta: VectorMeta, tensors: dict[str, Tensor], handle: ModelHandle
) -> tuple[ContrastiveVector, SteerConfig]:
    check_model(meta, handle)
    if meta.method != "contrastive" or meta.layer is None:
        raise InputError(f"expected contrastive vectors; this file holds {meta.method} vectors")
    check_layer(meta.layer, handle.facts.n_layers)
    if meta.position not in POSITIONS or meta.pooling not in POOLINGS:
        raise InputError("the vector file names an unknown position or pooling")
    vec = _expect_shape(tensors, "vector", (handle.facts.d_model,))
    cv = ContrastiveVector(vec.to(handle.device), meta.layer, meta.pooling, 0, 0, meta.data_hash)  # type: ignore[arg-type]
    return cv, SteerConfig(check_alpha(meta.alpha), meta.position)  # type: ignore[arg-type]
