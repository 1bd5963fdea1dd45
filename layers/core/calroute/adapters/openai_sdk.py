"""Import the OpenAI SDK's client without the ~1,000 response/eval/grader models its packages load.

``import openai`` runs ``openai/__init__.py``, which imports ``openai.types`` (every model of
every endpoint: evals, graders, the Responses API's ~300 event types), ``openai.lib`` (tools →
``openai.types.responses``) and more: 600-900 ms and ~400 modules on these machines, before the
LLM fallback can ask its first question. The fallback needs one call, ``chat.completions.create``,
and the ~150 modules behind it.

:func:`load_sdk` imports ``openai._client`` (and ``openai._exceptions``) with the SDK's *package*
modules made lazy: ``openai``, ``openai.types``, ``openai.types.chat``, ``openai.types.responses``,
``openai.lib``, ``openai.lib.streaming`` and ``openai.lib.streaming.chat`` are registered from
their real import specs but their ``__init__`` is not run. A submodule import (``from .types.chat
import ChatCompletion`` imports ``openai/types/chat/chat_completion.py``) works as usual; the
first access to any other attribute of a lazy package runs its real ``__init__`` (compiled
bytecode, via the spec's own loader) into the module, after which it is the module ``import
openai`` gives. This is what PEP 810 (explicit lazy imports, Python 3.15) makes a language
feature. Nothing of the SDK is copied or patched: the code that runs is the SDK's, module by module.

If the SDK is already imported (a test, a SnapStart init that imported it whole) nothing is made
lazy. If the lazy import fails for any reason (an SDK release that reorganised its packages), every
``openai`` module it registered is dropped and the SDK is imported whole: slower, never broken
(``tests/unit/test_openai_sdk.py`` checks both paths against the pinned SDK and a real HTTP server).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import NamedTuple

#: The SDK packages whose ``__init__`` waits until something other than a submodule is asked of it.
LAZY_PACKAGES = ("openai", "openai.types", "openai.types.chat", "openai.types.responses", "openai.lib",
                 "openai.lib.streaming", "openai.lib.streaming.chat")

_lock = threading.RLock()


class Sdk(NamedTuple):
    """What the adapter uses: the client class and the module of the SDK's exceptions."""

    OpenAI: type
    errors: ModuleType
    lazy: bool  # True when the packages' __init__ were deferred


def _has_submodule(path: str, name: str) -> bool:
    return os.path.isfile(os.path.join(path, name + ".py")) or os.path.isfile(
        os.path.join(path, name, "__init__.py"))


def _lazy_package(name: str, search_path) -> ModuleType:
    """Register package ``name`` from its real spec without running its ``__init__``."""
    spec = importlib.machinery.PathFinder.find_spec(name, search_path)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        raise ImportError(f"{name} is not a package here")
    module = importlib.util.module_from_spec(spec)
    pkg_dir = list(spec.submodule_search_locations)[0]
    state = {"initialised": False}

    def __getattr__(attr: str):
        # a submodule (``from . import _exceptions``): import just that module
        if not attr.startswith("__") and _has_submodule(pkg_dir, attr):
            return importlib.import_module(f"{name}.{attr}")
        with _lock:
            if state["initialised"] or attr.startswith("__"):
                raise AttributeError(f"module {name!r} has no attribute {attr!r}")
            state["initialised"] = True
            del module.__dict__["__getattr__"]
            spec.loader.exec_module(module)  # the package's real __init__ (may define its own __getattr__)
        return getattr(module, attr)

    module.__getattr__ = __getattr__
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def _import_whole() -> Sdk:
    import openai

    return Sdk(openai.OpenAI, sys.modules["openai._exceptions"], False)


def _drop_openai_modules() -> None:
    for key in [k for k in sys.modules if k == "openai" or k.startswith("openai.")]:
        del sys.modules[key]


def load_sdk() -> Sdk:
    """The SDK's ``OpenAI`` class and exceptions, importing as little of the SDK as the client needs."""
    with _lock:
        if "openai" in sys.modules:
            from openai import _exceptions
            from openai._client import OpenAI

            return Sdk(OpenAI, _exceptions, not hasattr(sys.modules["openai"], "__all__"))
        try:
            for name in LAZY_PACKAGES:
                parent = name.rpartition(".")[0]
                search = list(sys.modules[parent].__path__) if parent else None
                _lazy_package(name, search)
            from openai import _exceptions
            from openai._client import OpenAI
            from openai.resources.chat.completions import completions  # noqa: F401 - what create() runs

            return Sdk(OpenAI, _exceptions, True)
        except Exception:  # any surprise in an SDK release: import it whole instead
            _drop_openai_modules()
            return _import_whole()
