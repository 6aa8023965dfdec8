"""Reversible attribute replacement, the one mechanism every repair module uses."""
from __future__ import annotations

from typing import Any

_MISSING = object()


class Patch:
    """Set attributes on objects and put the originals back on :meth:`undo`."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []
        self.active = False

    def set(self, obj: Any, attr: str, value: Any) -> None:
        namespace = getattr(obj, "__dict__", {})
        self._saved.append((obj, attr, namespace.get(attr, _MISSING)))
        setattr(obj, attr, value)
        self.active = True

    def undo(self) -> None:
        for obj, attr, old in reversed(self._saved):
            if old is _MISSING:
                if attr in getattr(obj, "__dict__", {}):
                    delattr(obj, attr)
            else:
                setattr(obj, attr, old)
        self._saved.clear()
        self.active = False
