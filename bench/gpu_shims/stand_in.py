"""Stand-ins for `datasets`, `pandas` and `wandb` on a GPU machine that lacks them: bench/gpu_run.sh puts this folder
on the path only for a package whose import fails there, writing `<package>/__init__.py` as
`from stand_in import fill; fill(__name__, globals())`. TransformerLens and sae-lens import names from these
packages at import time; headscope never calls them (tiny models are built in code, SAEs train from our own
activation iterator). Any name resolves to a class whose construction raises ImportError, so a use that slipped
through fails loudly, never silently."""

import importlib.abc
import importlib.machinery
import sys
import types


def _names(package: str):
    class Missing:
        def __init__(self, *args, **kwargs):
            raise ImportError(
                f"{package} is not installed on this machine (bench/gpu_shims stands in for its imports)"
            )

    def getattr_(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (Missing,), {})

    return getattr_


class _Submodules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import <package>.anything` gives a module of the same stand-ins."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname, path, target=None):
        if fullname.startswith(self.package + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__getattr__ = _names(self.package)
        module.__path__ = []
        return module

    def exec_module(self, module):
        return None


def fill(package: str, namespace: dict) -> None:
    """Make the package whose globals are `namespace` a stand-in: every name and every submodule."""
    namespace["__getattr__"] = _names(package)
    sys.meta_path.append(_Submodules(package))
