"""headscope: an interpretability workbench. Public API, re-exported explicitly.

Imports are lazy (PEP 562): `import headscope.kernels` must work where TransformerLens is not installed
(the GPU benchmark machine), and `headscope --help` should not pay for loading torch + transformers.
"""

from __future__ import annotations

import importlib
import os as _os
from typing import TYPE_CHECKING, Any

# transformer-lens pulls wandb in; nothing here ever logs to it.
_os.environ.setdefault("WANDB_MODE", "disabled")

__version__ = "0.1.0"
_EXPORTS = {
    "HeadscopeError": "headscope.errors",
    "InputError": "headscope.errors",
    "ModelUnavailableError": "headscope.errors",
    "UnknownModelError": "headscope.errors",
    "UnsafeCheckpointError": "headscope.errors",
    "CATALOG": "headscope.models",
    "DEFAULT_MODEL": "headscope.models",
    "ModelHandle": "headscope.models",
    "resolve": "headscope.models",
}
__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "HeadscopeError",
    "InputError",
    "ModelHandle",
    "ModelUnavailableError",
    "UnknownModelError",
    "UnsafeCheckpointError",
    "__version__",
    "resolve",
]

if TYPE_CHECKING:
    from headscope.errors import (
        HeadscopeError,
        InputError,
        ModelUnavailableError,
        UnknownModelError,
        UnsafeCheckpointError,
    )
    from headscope.models import CATALOG, DEFAULT_MODEL, ModelHandle, resolve


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'headscope' has no attribute {name!r}")
