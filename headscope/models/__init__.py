"""Model layer: the catalog, offline loading, and `ModelHandle` (see README.md)."""

from headscope.models import hooks
from headscope.models.catalog import CATALOG, DEFAULT_MODEL, CatalogEntry, register_model, resolve
from headscope.models.handle import ModelFacts, ModelHandle, ModelIdentity, default_device
from headscope.models.loading import cache_root, cached_models, load_hf

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "CatalogEntry",
    "ModelFacts",
    "ModelHandle",
    "ModelIdentity",
    "cache_root",
    "cached_models",
    "default_device",
    "hooks",
    "load_hf",
    "register_model",
    "resolve",
]
