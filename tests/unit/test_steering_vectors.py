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
    return HeadOffsets(((0, 1), (1, 3)), torch.randn(2, handle.facts.d_head))


def test_lofit_directory_round_trip(tiny_llama: ModelHandle, tmp_path: Path) -> None:
    off = _offsets(tiny_llama)
    vectors.save(tmp_path, *vectors.lofit_meta(tiny_llama, off, "abc123"))
    sidecar = json.loads((tmp_path / vectors.SIDECAR).read_text())
    assert sidecar["model"]["name"] == "tiny-llama" and sidecar["heads"] == [[0, 1], [1, 3]]
    assert sidecar["hook_sites"] == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]
    assert sidecar["data_hash"] == "abc123" and sidecar["method"] == "lofit"
    meta, tensors = vectors.load(tmp_path)
    back = vectors.to_offsets(meta, tensors, tiny_llama)
    assert back.heads == off.heads and torch.equal(back.biases, off.biases)
    tokens = tiny_llama.tokenize("round trip")
    n = tiny_llama.facts.n_heads
    assert torch.equal(
        tiny_llama.forward(tokens, fwd_hooks=back.hooks(n)),
        tiny_llama.forward(tokens, fwd_hooks=off.hooks(n)),
    )


def test_contrastive_bytes_round_trip(tiny_gpt2: ModelHandle) -> None:
    cv = contrastive_vector(tiny_gpt2, ["yes good"], ["no bad"], ContrastiveConfig(1, "last"))
    blob = vectors.to_bytes(*vectors.contrastive_meta(tiny_gpt2, cv, SteerConfig(3.5, "all")))
    meta, tensors = vectors.from_bytes(blob)
    back, steer = vectors.to_contrastive(meta, tensors, tiny_gpt2)
    assert torch.equal(back.vector, cv.vector) and back.layer == 1 and back.pooling == "last"
    assert steer == SteerConfig(3.5, "all") and meta.data_hash == cv.data_hash


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
    with pytest.raises(InputError, match="expected contrastive"):
        vectors.to_contrastive(meta, tensors, tiny_llama)
    bad_head = vectors.VectorMeta.from_json({**meta.to_json(), "heads": [[0, 1], [1, 9]]})
    with pytest.raises(InputError, match="head 9 is out of range"):
        vectors.to_offsets(bad_head, tensors, tiny_llama)
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
