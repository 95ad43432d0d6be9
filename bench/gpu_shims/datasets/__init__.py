"""Stand-in for `datasets` on a GPU machine that lacks it (bench/gpu_run.sh puts bench/gpu_shims on the path only when
`import datasets` fails there). TransformerLens and sae-lens import names from it at import time; headscope never calls
them (tiny models are built in code, SAEs train from our own activation iterator). Any name resolves to a class
whose construction raises ImportError, so a use that slipped through fails loudly, never silently."""

import importlib.abc
import importlib.machinery
import sys
import types


class _Missing:
    def __init__(self, *args, **kwargs):
        raise ImportError(
            "datasets is not installed on this machine (bench/gpu_shims stands in for its imports)"
        )


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (_Missing,), {})


class _Submodules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import datasets.anything` gives a module of the same stand-ins."""

    def find_spec(self, fullname, path, target=None):
        if fullname.startswith("datasets."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__getattr__ = __getattr__
        module.__path__ = []
        return module

    def exec_module(self, module):
        return None


sys.meta_path.append(_Submodules())
