"""headscope: an interpretability workbench. Public API, re-exported explicitly."""

import os as _os

# transformer-lens pulls wandb in; nothing here ever logs to it.
_os.environ.setdefault("WANDB_MODE", "disabled")

from headscope.errors import (
    HeadscopeError,
    InputError,
    ModelUnavailableError,
    UnknownModelError,
    UnsafeCheckpointError,
)
from headscope.models import CATALOG, DEFAULT_MODEL, ModelHandle, resolve

__version__ = "0.1.0"
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
