"""Import a library without paying for the parts of it a run never uses.

Some dependencies import heavy packages at load time that our use of them never touches:
onnxsim's package ``__init__`` imports torch (6 s of a 9 s import on a busy 2-core machine, for
``x2onnx mxnet``, which never runs torch), and ``import mxnet`` runs ``mxnet.test_utils`` and
``mxnet.contrib.quantization`` (scipy.stats, 2-3 s), and onnx-ir imports sympy (0.4 s, for
symbolic-dimension arithmetic this project never does). :func:`deferring` lets such an import
proceed while the named modules are created *lazily* (:class:`importlib.util.LazyLoader`): the
module object exists, and its code runs on first attribute access, if any. A module already
imported is not affected.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from typing import Iterable, Iterator, Optional, Sequence

_LOCK = threading.Lock()


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Find the named modules (and their submodules) as usual, then wrap their loader lazily."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
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
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


@contextlib.contextmanager
def deferring(names: Iterable[str]) -> Iterator[None]:
    """While the block runs, modules in ``names`` (with their submodules) that get imported are
    created without running their code; it runs on first use of an attribute."""
    finder = _DeferringFinder(names)
    with _LOCK:
        sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        with _LOCK:
            sys.meta_path.remove(finder)


__all__ = ["deferring"]
