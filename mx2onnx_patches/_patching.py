"""Reversible attribute and mapping-entry replacement, the one mechanism every repair module uses."""
from __future__ import annotations

from typing import Any, Callable, MutableMapping

_MISSING = object()


class Patch:
    """Set attributes on objects (or entries of mappings, such as MXNet's translation registry)
    and put the originals back, or remove what was not there before, on :meth:`undo`."""

    def __init__(self) -> None:
        self._restore: list[Callable[[], None]] = []
        self.active = False

    def set(self, obj: Any, attr: str, value: Any) -> None:
        old = getattr(obj, "__dict__", {}).get(attr, _MISSING)

        def restore() -> None:
            if old is _MISSING:
                if attr in getattr(obj, "__dict__", {}):
                    delattr(obj, attr)
            else:
                setattr(obj, attr, old)

        self._restore.append(restore)
        setattr(obj, attr, value)
        self.active = True

    def set_item(self, mapping: MutableMapping, key: Any, value: Any) -> None:
        old = mapping.get(key, _MISSING)

        def restore() -> None:
            if old is _MISSING:
                mapping.pop(key, None)
            else:
                mapping[key] = old

        self._restore.append(restore)
        mapping[key] = value
        self.active = True

    def undo(self) -> None:
        for restore in reversed(self._restore):
            restore()
        self._restore.clear()
        self.active = False
