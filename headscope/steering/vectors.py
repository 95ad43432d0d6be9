"""Vector files: `vectors.safetensors` (tensors) + `vectors.json` (the sidecar: model identity, method, hook sites,
heads (HeadSet grammar) or layer, α, position, training-data hash). The sidecar JSON is also embedded in the safetensors header metadata, so a
single uploaded .safetensors file (the app takes bytes, never a path) carries everything.

Loading checks the model (name and weights hash), its shape facts and every tensor's shape; a mismatch is refused
with one line. No pickle anywhere.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from headscope.errors import InputError
from headscope.files import read_bytes, read_json
from headscope.models import hooks
from headscope.models.handle import ModelHandle
from headscope.selection import HeadSet
from headscope.steering.direction import SteerConfig, SteeringVector
from headscope.steering.hooks import POSITIONS, Head, check_heads
from headscope.steering.lofit import HeadOffsets

FORMAT = "headscope-steering/2"
OLD_FORMAT = (
    "headscope-steering/1"  # LoFiT files of format 1 still load; its contrastive α was a raw multiplier
)
WEIGHTS, SIDECAR = "vectors.safetensors", "vectors.json"
MAX_FILE_BYTES = 2_000_000  # a LoFiT or contrastive file is a few kB; the app refuses anything larger
_FACT_KEYS = ("n_layers", "n_heads", "d_head", "d_model")


@dataclass(frozen=True)
class VectorMeta:
    """The sidecar. heads: the heads carrying tensor rows, in row order (canonical order when written; the file
    stores them in the HeadSet grammar, e.g. "9.4, 12.1"). alpha: relative to the activation norm at the site
    (`direction.py`); 1.0 for LoFiT offsets, which are applied as trained."""

    method: str  # "lofit" | "contrastive" | "feature" | ...
    model: dict[str, Any]  # ModelIdentity as a dict
    facts: dict[str, int]
    hook_sites: tuple[str, ...]
    heads: tuple[Head, ...] | None
    layer: int | None
    alpha: float
    position: str | None
    data_hash: str
    source: dict[str, Any] = field(default_factory=dict)
    restricted_to: str | None = None  # LoFiT: the selection it was restricted to
    format: str = FORMAT

    def head_set(self) -> HeadSet | None:
        return (
            None
            if self.heads is None
            else HeadSet.of(self.heads, self.facts["n_layers"], self.facts["n_heads"])
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        hs = self.head_set()
        d["heads"] = None if hs is None else str(hs)
        d["hook_sites"] = list(self.hook_sites)
        return d

    @classmethod
    def from_json(cls, d: Any) -> VectorMeta:
        try:
            fmt = d.get("format")
            if fmt not in (FORMAT, OLD_FORMAT):
                raise InputError(f"not a headscope steering file (format {fmt!r}, expected {FORMAT!r})")
            if fmt == OLD_FORMAT and d["method"] != "lofit":
                raise InputError(
                    f"{d['method']} vectors of format {OLD_FORMAT} used a raw α; make them again with this version"
                )
            facts = {k: int(d["facts"][k]) for k in _FACT_KEYS}
            return cls(
                str(d["method"]), dict(d["model"]), facts, tuple(str(s) for s in d["hook_sites"]),
                _heads(d["heads"], facts), None if d["layer"] is None else int(d["layer"]),
                float(d["alpha"]), d["position"], str(d["data_hash"]), dict(d.get("source") or {}),
                _selection_text(d.get("restricted_to"), facts),
            )  # fmt: skip
        except InputError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError):
            raise InputError(
                "the steering sidecar JSON is malformed (missing or wrong-typed fields)"
            ) from None


def _heads(raw: Any, facts: dict[str, int]) -> tuple[Head, ...] | None:
    """Format 2 writes the HeadSet grammar (rows in canonical order); format 1 wrote [[layer, head], ...]."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return HeadSet.parse(raw, facts["n_layers"], facts["n_heads"]).heads
    return tuple((int(a), int(b)) for a, b in raw)


def _selection_text(raw: Any, facts: dict[str, int]) -> str | None:
    """A recorded selection, checked against the file's model shape and written canonically."""
    return None if raw is None else str(HeadSet.parse(raw, facts["n_layers"], facts["n_heads"]))


def _facts(handle: ModelHandle) -> dict[str, int]:
    return {k: int(getattr(handle.facts, k)) for k in _FACT_KEYS}


def lofit_meta(
    handle: ModelHandle, offsets: HeadOffsets, data_hash: str, restricted_to: HeadSet | None = None
) -> tuple[VectorMeta, dict[str, Tensor]]:
    """LoFiT offsets, rows reordered to the canonical head order the sidecar's grammar implies."""
    order = sorted(range(len(offsets.heads)), key=lambda i: offsets.heads[i])
    heads = tuple(offsets.heads[i] for i in order)
    sites = tuple(sorted({hooks.z(layer) for layer, _ in heads}))
    meta = VectorMeta("lofit", asdict(handle.identity), _facts(handle), sites, heads, None, 1.0, None, data_hash,
                      {}, None if restricted_to is None else str(restricted_to))  # fmt: skip
    return meta, {"biases": offsets.biases.detach()[order].float().cpu().contiguous()}


def vector_meta(
    handle: ModelHandle, sv: SteeringVector, steer: SteerConfig
) -> tuple[VectorMeta, dict[str, Tensor]]:
    """A steering vector (contrastive, feature, ...) with the α and position it was used at."""
    source = {k: v for k, v in sv.source.items() if k != "data_hash"}
    heads = None if sv.heads is None else sv.heads.heads
    meta = VectorMeta(sv.method, asdict(handle.identity), _facts(handle), sv.sites, heads, sv.layer, steer.alpha,
                      steer.position, str(sv.source.get("data_hash", "")), source)  # fmt: skip
    tensors = {"direction": sv.direction, "ref_norm": sv.ref_norm}
    return meta, {k: t.detach().float().cpu().contiguous() for k, t in tensors.items()}


def file_name(meta: VectorMeta) -> str:
    """A download name: method, model, site (no user text)."""
    where = f"L{meta.layer}" if meta.layer is not None else f"{len(meta.heads or ())}heads"
    model = "".join(c if c.isalnum() or c in "-." else "_" for c in str(meta.model.get("name", "model")))
    return f"{meta.method}-{model}-{where}.safetensors"


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
    sidecar = read_json(folder / SIDECAR, "vectors sidecar", limit=MAX_FILE_BYTES)
    _, tensors = from_bytes(read_bytes(folder / WEIGHTS, "vectors", limit=MAX_FILE_BYTES))
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


def to_vector(
    meta: VectorMeta, tensors: dict[str, Tensor], handle: ModelHandle
) -> tuple[SteeringVector, SteerConfig]:
    """A saved steering vector and the α / position it was saved with."""
    check_model(meta, handle)
    if meta.method == "lofit":
        raise InputError("this file holds LoFiT head offsets; apply them with `steer lofit apply`")
    f = handle.facts
    if meta.position not in POSITIONS:
        raise InputError("the vector file names an unknown position")
    hs = meta.head_set()
    if hs is not None:
        shape, ref_shape, hook = (len(hs), f.d_head), (len(hs),), None
    else:
        if len(meta.hook_sites) != 1:
            raise InputError("the vector file must name exactly one hook site")
        shape, ref_shape, hook = (f.d_model,), (), meta.hook_sites[0]
        handle.check_hook_names([hook])
    direction = _expect_shape(tensors, "direction", shape).to(handle.device)
    ref = _expect_shape(tensors, "ref_norm", ref_shape).to(handle.device)
    source = {**meta.source, "data_hash": meta.data_hash}
    sv = SteeringVector(direction, ref, meta.method, hook=hook, heads=hs, source=source)
    return sv, SteerConfig(meta.alpha, meta.position)  # type: ignore[arg-type]
