"""Turning a catalog entry into a Hugging Face model + tokenizer, offline.

GGUF sources are dequantised to fp32 once and kept as a safetensors folder in the user cache
(`$HEADSCOPE_CACHE`, default `~/.cache/headscope`); later loads read that folder (well under a second).
The cache folder is written under a temporary name and renamed into place, so a crash leaves no half-written
cache; a cache that fails to load is deleted and re-created from the source.
Only safetensors or GGUF are read: a folder that holds only pickled weights is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from headscope.errors import ModelUnavailableError, UnsafeCheckpointError
from headscope.models.catalog import CatalogEntry
from headscope.models.tiny import TINY_BUILDERS, byte_tokenizer

CACHE_FORMAT = 1
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class Loaded:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # where the weights came from, for reports
    sha256: str | None  # of the source file (GGUF) when there is one
    revision: str | None  # package version or hub revision
    from_cache: bool
    seconds: float


def cache_root() -> Path:
    return Path(os.environ.get("HEADSCOPE_CACHE", Path.home() / ".cache" / "headscope"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _cache_dir(entry: CatalogEntry, source: Path) -> Path:
    # Keyed by package version and file size: cheap to compute, and a new release gets a new folder.
    key = f"{entry.package_version() or 'unknown'}-{source.stat().st_size}"
    return cache_root() / "models" / entry.name / key


def cached_models() -> list[str]:
    root = cache_root() / "models"
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/*/meta.json"))


def _from_pretrained(folder: Path, **kwargs) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        dtype=torch.float32,
        attn_implementation="eager",
        use_safetensors=True,
        trust_remote_code=False,
        **kwargs,
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **kwargs)
    return model.eval(), tokenizer


def _gguf_source(entry: CatalogEntry) -> Path:
    if entry.kind == "gguf-chunks":
        return _assemble_chunks(entry)
    path = entry.source_path()
    if path is None:
        raise ModelUnavailableError(
            f"model {entry.name!r} needs the package {entry.package!r}, which is not installed "
            f"(install with: {entry.install_hint})"
        )
    return path


def _assemble_chunks(entry: CatalogEntry) -> Path:
    """Gemma's GGUF ships as four chunk packages; its parent package assembles and checks them."""
    import importlib

    try:
        mod = importlib.import_module(entry.module or "")
        target = cache_root() / "gguf" / entry.name / (entry.filename or "model.gguf")
        return Path(mod.assemble(output_path=target))
    except ModuleNotFoundError as e:
        raise ModelUnavailableError(
            f"model {entry.name!r} needs its GGUF packages (install with: {entry.install_hint})"
        ) from e
    except (FileNotFoundError, ValueError, FileExistsError) as e:
        raise ModelUnavailableError(
            f"model {entry.name!r}: its GGUF chunks are incomplete or corrupt ({e})"
        ) from e


def _convert_gguf(entry: CatalogEntry, source: Path, dest: Path) -> None:
    """Dequantise the GGUF to fp32 and put a safetensors folder at `dest`, atomically.

    The folder is written under a temporary name and renamed into place. If another process got there first
    (the rename finds `dest` already there), ours is discarded and theirs is used: a loader only ever sees no
    folder or a complete one."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32, attn_implementation="eager"
        )
    except Exception as e:  # the gguf reader raises many kinds on a damaged file
        raise ModelUnavailableError(
            f"model {entry.name!r}: cannot read its GGUF file {source.name} ({e})"
        ) from e
    # The dequantised weights are plain fp32; without this the saved config claims GGUF quantisation.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # pyright: ignore[reportAttributeAccessIssue,reportArgumentType]
    model.config.architectures = [type(model).__name__]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {
            "format": CACHE_FORMAT,
            "name": entry.name,
            "source": source.name,
            "sha256": _sha256(source),
            "package": entry.package,
            "package_version": entry.package_version(),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        publish(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, dest: Path) -> bool:
    """Rename a complete folder into place; False (and `tmp` left for the caller to delete) when a concurrent
    writer published first — its folder is as good as ours."""
    try:
        tmp.rename(dest)
    except OSError:
        return False
    return True


def _discard(dest: Path) -> None:
    """Move a bad cache folder out of the way atomically, then delete it (no window with a half-deleted folder;
    readers that memory-mapped its files keep them until they close)."""
    if not dest.exists():
        return
    trash = dest.parent / f".trash-{dest.name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        dest.rename(trash)
    except OSError:  # someone else moved or replaced it already
        return
    shutil.rmtree(trash, ignore_errors=True)


_META_FIELDS = {"format": int, "name": str, "source": str, "sha256": str}


def read_meta(dest: Path) -> dict | None:
    """The cache folder's meta.json if it is complete and of this format, else None (the folder is rebuilt)."""
    try:
        meta = json.loads((dest / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(meta, dict) and all(isinstance(meta.get(k), t) for k, t in _META_FIELDS.items())
    return meta if ok and meta["format"] == CACHE_FORMAT else None


def _load_cached(dest: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict] | None:
    meta = read_meta(dest)
    if meta is None:
        return None
    try:
        model, tokenizer = _from_pretrained(dest, local_files_only=True)
    except Exception:  # a damaged cache is ours to rebuild, not the user's problem
        return None
    return model, tokenizer, meta


def _load_gguf(entry: CatalogEntry) -> Loaded:
    t0 = time.perf_counter()
    source = _gguf_source(entry)
    dest = _cache_dir(entry, source)
    got = _load_cached(dest)
    from_cache = got is not None
    if got is None:
        _discard(dest)
        _convert_gguf(entry, source, dest)
        got = _load_cached(dest)
        if got is None:
            raise ModelUnavailableError(f"model {entry.name!r}: the converted cache in {dest} does not load")
    model, tokenizer, meta = got
    return Loaded(
        model, tokenizer, f"{entry.package}:{source.name}", meta["sha256"], meta.get("package_version"),
        from_cache, time.perf_counter() - t0,
    )  # fmt: skip


def _load_tiny(entry: CatalogEntry) -> Loaded:
    t0 = time.perf_counter()
    model = TINY_BUILDERS[entry.name]()
    return Loaded(
        model,
        byte_tokenizer(),
        f"random init (seeded) {entry.name}",
        None,
        None,
        False,
        time.perf_counter() - t0,
    )


def check_folder_is_safe(folder: Path) -> None:
    names = [p.name for p in folder.iterdir()]
    if any(n.endswith(".safetensors") for n in names):
        return
    pickled = [n for n in names if n.endswith(_PICKLE_SUFFIXES)]
    if pickled:
        raise UnsafeCheckpointError(
            f"{folder} holds only pickled weights ({', '.join(sorted(pickled)[:3])}); headscope reads safetensors "
            "or GGUF only — convert the checkpoint to safetensors first"
        )
    raise ModelUnavailableError(f"{folder} holds no safetensors weights")


def _load_hf(entry: CatalogEntry) -> Loaded:
    t0 = time.perf_counter()
    ident = entry.hf_id or entry.name
    folder = Path(ident)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if folder.is_dir():
        check_folder_is_safe(folder)
        kwargs: dict = {"local_files_only": True}
    else:
        kwargs = {"local_files_only": offline}
    try:
        model, tokenizer = _from_pretrained(folder if folder.is_dir() else ident, **kwargs)  # type: ignore[arg-type]
    except OSError as e:
        msg = str(e)
        if "safetensors" in msg.lower() or ".bin" in msg:
            raise UnsafeCheckpointError(
                f"{ident} has no safetensors weights; headscope does not unpickle checkpoints"
            ) from e
        where = "offline and not in the local cache" if offline or not folder.is_dir() else "not loadable"
        raise ModelUnavailableError(
            f"model {ident!r} is {where}: {msg.splitlines()[0] if msg else type(e).__name__}"
        ) from e
    except ValueError as e:
        raise ModelUnavailableError(f"model {ident!r} cannot be loaded: {str(e).splitlines()[0]}") from e
    rev = getattr(model.config, "_commit_hash", None)
    return Loaded(model, tokenizer, ident, None, rev, False, time.perf_counter() - t0)


def load_hf(entry: CatalogEntry) -> Loaded:
    """The HF model and tokenizer for a catalog entry, fp32, eager attention, on CPU (the handle moves it)."""
    if entry.kind in ("gguf-package", "gguf-chunks"):
        return _load_gguf(entry)
    if entry.kind == "tiny":
        return _load_tiny(entry)
    return _load_hf(entry)
