"""Import a library without paying for the parts of it a run never uses.

Some dependencies import heavy packages at load time that our use of them never touches:
onnxsim's package ``__init__`` imports torch (6 s of a 9 s import on a busy 2-core machine, for
``x2onnx mxnet``, which never runs torch), and ``import mxnet`` runs ``mxnet.test_utils`` and
``mxnet.contrib.quantization`` (scipy.stats, 2-3 s), and onnx-ir and onnxsim import sympy
(0.4 s, for symbolic-dimension arithmetic this project never does). :func:`deferring` lets such
an import proceed while the named modules are created *lazily*: the module object exists, and its
code runs when it is first used, if ever. A module already imported is not affected.

Two kinds of laziness. By default :class:`importlib.util.LazyLoader`'s: the code runs on *any*
attribute access, which includes the import system's own read of ``__spec__`` when the module is
imported a second time (Python 3.11); enough for modules imported once (MXNet's, and onnxsim's
torch: run from first use, torch crashed an MXNet round trip in one process). ``until_used=True``
runs the code only when an attribute other than those the import system sets (``__spec__``,
``__path__``, ...) is read, however often the module is imported (sympy: both onnx-ir and
onnxsim import it); for pure-Python packages.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Iterable, Iterator, Optional, Sequence

_LOCK = threading.RLock()  # a module run on first use may import other deferred ones


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Find the named modules (and their submodules) as usual, then wrap their loader lazily."""

    def __init__(self, names: Iterable[str], until_used: bool) -> None:
        self.names = tuple(names)
        self.until_used = until_used
        self._busy = threading.local()

    def _wanted(self, name: str) -> bool:
        return any(name == n or name.startswith(n + ".") for n in self.names)

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: object = None) -> Optional[importlib.machinery.ModuleSpec]:
        if not self._wanted(fullname) or getattr(self._busy, "on", False):
            return None
        self._busy.on = True  # let the other finders answer, without asking this one again
        try:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path) if path is not None else \
                importlib.util.find_spec(fullname)
        finally:
            self._busy.on = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _DeferredLoader(spec.loader) if self.until_used else importlib.util.LazyLoader(spec.loader)
        return spec


class _DeferredLoader(importlib.abc.Loader):
    """Create the module as ``loader`` would, and run its code when first used (:class:`_Deferred`)."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__["_deferred_loader"] = self.loader
        module.__class__ = _Deferred


class _Deferred(types.ModuleType):
    """A module whose code has not run: reading an attribute it lacks runs it (once), then reads."""

    def __getattr__(self, attr: str) -> object:
        with _LOCK:
            if type(self) is _Deferred:  # not run yet (another thread may just have run it)
                loader = self.__dict__.pop("_deferred_loader")
                self.__class__ = types.ModuleType
                try:
                    loader.exec_module(self)
                except BaseException:
                    sys.modules.pop(self.__name__, None)  # a failed import leaves no half module
                    raise
        return getattr(self, attr)


@contextlib.contextmanager
def deferring(names: Iterable[str], *, until_used: bool = False) -> Iterator[None]:
    """While the block runs, modules in ``names`` (with their submodules) that get imported are
    created without running their code; it runs on first use of an attribute (``until_used``:
    of an attribute other than those the import system sets; see the module's docstring)."""
    finder = _DeferringFinder(names, until_used)
    with _LOCK:
        sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        with _LOCK:
            sys.meta_path.remove(finder)


__all__ = ["deferring"]
