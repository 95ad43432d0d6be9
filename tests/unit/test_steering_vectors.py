"""Vector files: round trips (directory and bytes) and refusals (another model, wrong shapes, malformed files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.steering import vectors
from headscope.steering.contrastive import ContrastiveConfig, SteerConfig, contrastive_vector
from headscope.steering.lofit import HeadOffsets

pytestmark = pytest.mark.usefixtures("one_thread")


def _offsets(handle: ModelHandle) -> HeadOffsets:
    # rows in ranking order (1.3 first), not the canonical order the file uses
    return HeadOffsets(((1, 3), (0, 1)), torch.randn(2, handle.facts.d_head))


def test_lofit_directory_round_trip(tiny_llama: ModelHandle, tmp_path: Path) -> None:
    off = _offsets(tiny_llama)
    vectors.save(tmp_path, *vectors.lofit_meta(tiny_llama, off, "abc123"))
    sidecar = json.loads((tmp_path / vectors.SIDECAR).read_text())
    assert sidecar["model"]["name"] == "tiny-llama" and sidecar["heads"] == "0.1, 1.3"  # HeadSet grammar
    assert sidecar["hook_sites"] == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]
    assert sidecar["data_hash"] == "abc123" and sidecar["method"] == "lofit"
    meta, tensors = vectors.load(tmp_path)
    back = vectors.to_offsets(meta, tensors, tiny_llama)
    assert back.heads == ((0, 1), (1, 3)) and torch.equal(back.biases, off.biases[[1, 0]])
    tokens = tiny_llama.tokenize("round trip")
    n = tiny_llama.facts.n_heads
    assert torch.equal(
        tiny_llama.forward(tokens, fwd_hooks=back.hooks(n)),
        tiny_llama.forward(tokens, fwd_hooks=off.hooks(n)),
    )


@pytest.mark.parametrize("site", ["layer", "heads"])
def test_vector_bytes_round_trip_applies_identically(tiny_gpt2: ModelHandle, site: str) -> None:
    heads = tiny_gpt2.head_set("1.*, 0.2") if site == "heads" else None
    cfg = ContrastiveConfig(None if heads else 1, "last", heads)
    sv = contrastive_vector(tiny_gpt2, ["yes good"], ["no bad"], cfg)
    blob = vectors.to_bytes(*vectors.vector_meta(tiny_gpt2, sv, SteerConfig(3.5, "all")))
    meta, tensors = vectors.from_bytes(blob)
    back, steer = vectors.to_vector(meta, tensors, tiny_gpt2)
    assert torch.equal(back.direction, sv.direction) and torch.equal(back.ref_norm, sv.ref_norm)
    assert back.hook == sv.hook and back.heads == sv.heads and back.source == sv.source
    assert steer == SteerConfig(3.5, "all") and meta.data_hash == sv.source["data_hash"]
    assert meta.to_json()["heads"] == (None if heads is None else "0.2, 1.*")
    ids = tiny_gpt2.tokenize("round trip")
    assert torch.equal(
        tiny_gpt2.forward(ids, fwd_hooks=back.hooks(steer, 0)),
        tiny_gpt2.forward(ids, fwd_hooks=sv.hooks(steer, 0)),
    )
    where = "5heads" if heads else "L1"  # 0.2 and layer 1's four heads
    assert vectors.file_name(meta) == f"contrastive-tiny-gpt2-{where}.safetensors"


def test_format_1_lofit_loads_and_format_1_contrastive_is_refused(tiny_llama: ModelHandle) -> None:
    meta, tensors = vectors.lofit_meta(tiny_llama, _offsets(tiny_llama), "h")
    old = {**meta.to_json(), "format": vectors.OLD_FORMAT, "heads": [[1, 3], [0, 1]]}
    for key in ("source", "restricted_to"):  # fields format 1 did not have
        old.pop(key)
    back = vectors.to_offsets(
        vectors.VectorMeta.from_json(old), {"biases": tensors["biases"][[1, 0]]}, tiny_llama
    )
    assert back.heads == ((1, 3), (0, 1))
    with pytest.raises(InputError, match="raw α; make them again"):
        vectors.VectorMeta.from_json({**old, "method": "contrastive"})


def test_refuses_another_model(tiny_llama: ModelHandle, tiny_gpt2: ModelHandle) -> None:
    meta, tensors = vectors.from_bytes(
        vectors.to_bytes(*vectors.lofit_meta(tiny_llama, _offsets(tiny_llama), "h"))
    )
    with pytest.raises(
        InputError, match=r"made for model tiny-llama .* refusing to load them onto tiny-gpt2"
    ):
        vectors.to_offsets(meta, tensors, tiny_gpt2)


def test_refuses_other_weights_of_the_same_name(tiny_llama: ModelHandle) -> None:
    meta, tensors = vectors.lofit_meta(tiny_llama, _offsets(tiny_llama), "h")
    forged = vectors.VectorMeta.from_json({**meta.to_json(), "model": {**meta.model, "sha256": "f" * 64}})
    with pytest.raises(InputError, match="refusing"):
        vectors.to_offsets(forged, tensors, tiny_llama)


def test_refuses_mismatched_shapes_and_wrong_method(tiny_llama: ModelHandle) -> None:
    meta, tensors = vectors.lofit_meta(tiny_llama, _offsets(tiny_llama), "h")
    with pytest.raises(InputError, match="shape"):
        vectors.to_offsets(meta, {"biases": torch.zeros(2, 7)}, tiny_llama)
    with pytest.raises(InputError, match="LoFiT head offsets"):
        vectors.to_vector(meta, tensors, tiny_llama)
    with pytest.raises(InputError, match=r"head 9 in '1\.9' is out of range"):
        vectors.VectorMeta.from_json({**meta.to_json(), "heads": "0.1, 1.9"})
    with pytest.raises(InputError, match="expected LoFiT"):
        sv = contrastive_vector(tiny_llama, ["yes good"], ["no bad"], ContrastiveConfig(1))
        vectors.to_offsets(*vectors.vector_meta(tiny_llama, sv, SteerConfig()), tiny_llama)
    nan = {"biases": torch.full_like(tensors["biases"], float("nan"))}
    with pytest.raises(InputError, match="non-finite"):
        vectors.to_offsets(meta, nan, tiny_llama)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "too short"),
        (b"\xff" * 16, "bad header length"),
        (b"x" * (vectors.MAX_FILE_BYTES + 1), "limit"),
    ],
)
def test_malformed_bytes_are_refused(blob: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        vectors.from_bytes(blob)


def test_plain_safetensors_without_metadata_is_refused() -> None:
    from safetensors.torch import save

    with pytest.raises(InputError, match="no headscope steering metadata"):
        vectors.from_bytes(save({"x": torch.zeros(3)}))


def test_bad_sidecar_and_missing_directory(tiny_llama: ModelHandle, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a vectors directory"):
        vectors.load(tmp_path / "nowhere")
    vectors.save(tmp_path, *vectors.lofit_meta(tiny_llama, _offsets(tiny_llama), "h"))
    (tmp_path / vectors.SIDECAR).write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not a headscope steering file"):
        vectors.load(tmp_path)
    (tmp_path / vectors.SIDECAR).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        vectors.load(tmp_path)


def test_recorded_selection_is_checked_against_the_files_model(tiny_llama: ModelHandle) -> None:
    meta, _ = vectors.lofit_meta(tiny_llama, _offsets(tiny_llama), "h", tiny_llama.head_set("1.*, 0.1"))
    assert vectors.VectorMeta.from_json(meta.to_json()).restricted_to == "0.1, 1.*"
    with pytest.raises(InputError, match="layer 7"):
        vectors.VectorMeta.from_json({**meta.to_json(), "restricted_to": "7.1"})
