"""Import a library without the modules it imports at start-up but rarely uses.

Why: onnx-ir 1.1 imports sympy (0.4 s and about 25 MB, more than onnx-ir itself) when it is
imported, for the arithmetic of symbolic dimensions (``SymbolicDim("N") + 1``), which this project
never does. Every process that reads an ONNX graph paid for it: ``onnx2x --help`` took 0.7 s, a
conversion's start-up too. :func:`deferring` lets such an import bind placeholders instead; a
placeholder imports the real module the first time one of its attributes is read, so nothing
changes for code that does use it. Only the modules imported inside the ``with`` block see the
placeholders: afterwards ``sys.modules`` is as before, and anyone else's ``import sympy`` is the
ordinary one.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Iterator, Optional


class _Placeholder(types.ModuleType):
    """Stands for module ``name`` until an attribute is read, then forwards to the real one."""

    def __init__(self, name: str, spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(name)
        self.__spec__ = spec  # the import system reads it on every ``import name``: present, loads nothing

    def __getattr__(self, attr: str) -> object:  # only for attributes this placeholder lacks
        name = object.__getattribute__(self, "__name__")
        real = sys.modules.get(name)
        if real is None or real is self:
            sys.modules.pop(name, None)
            real = importlib.import_module(name)
        return getattr(real, attr)


def _spec(name: str) -> Optional[importlib.machinery.ModuleSpec]:
    """Where ``name`` would be loaded from, without importing it or (for a submodule) its package."""
    package, _, _ = name.rpartition(".")
    if not package:
        return importlib.util.find_spec(name)
    parent = importlib.util.find_spec(package)
    if parent is None or not parent.submodule_search_locations:
        return None
    return importlib.machinery.PathFinder.find_spec(name, list(parent.submodule_search_locations))


@contextlib.contextmanager
def deferring(*names: str) -> Iterator[None]:
    """Inside the block, ``import NAME`` (for each of ``names`` not imported yet) binds a
    placeholder that imports the real module on first use. A module that cannot be found is
    left alone (its import fails or succeeds as it would have)."""
    placed = {}
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = _spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            placed[name] = sys.modules[name] = _Placeholder(name, spec)
    try:
        yield
    finally:
        for name, placeholder in placed.items():
            if sys.modules.get(name) is placeholder:
                del sys.modules[name]
