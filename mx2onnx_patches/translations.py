"""Replacement op translations for MXNet's exporter, installed into ``MXNetGraph.registry_``.

MXNet looks a translation up from the requested opset down to 12 and takes the first it finds.
A replacement registered with ``@translation("Op", since=S)`` is therefore written into every
registry key >= S (and S itself), so it wins at every opset from S on; the previous entries are
remembered so that :func:`uninstall` restores the stock exporter exactly.
"""
from __future__ import annotations

from typing import Callable, Iterable, Union

from ._patching import Patch

TranslationFn = Callable[..., object]

# (op name, since) -> function, in registration order
_REPLACEMENTS: list[tuple[str, int, TranslationFn]] = []
MAX_OPSET = 30


def translation(op_names: Union[str, Iterable[str]], *, since: int = 12) -> Callable[[TranslationFn], TranslationFn]:
    """Register ``fn(node, **kwargs)`` with MXNet's translation signature for ``op_names``."""
    names = [op_names] if isinstance(op_names, str) else list(op_names)

    def register(fn: TranslationFn) -> TranslationFn:
        for name in names:
            _REPLACEMENTS.append((name, since, fn))
        return fn

    return register


def registered() -> list[tuple[str, int, TranslationFn]]:
    return list(_REPLACEMENTS)


_patch = Patch()
# (registry version, op name) -> MXNet's own translation that an installed replacement stands in front of
_STOCK: dict[tuple[int, str], TranslationFn] = {}


def originals(op_name: str) -> list[TranslationFn]:
    """MXNet's own translations that the installed replacements for ``op_name`` stand in front of."""
    return [fn for (version, name), fn in sorted(_STOCK.items(), key=lambda kv: kv[0][0]) if name == op_name]


def is_installed() -> bool:
    return _patch.active


def install() -> None:
    """Write every replacement into MXNet's registry (idempotent)."""
    if _patch.active:
        return
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    reg = MXNetGraph.registry_
    seen: set[tuple[int, str]] = set()
    for name, since, fn in sorted(_REPLACEMENTS, key=lambda r: r[1]):
        for version in range(since, MAX_OPSET + 1):
            if version != since and version not in reg:
                continue
            if version not in reg:
                _patch.set_item(reg, version, {})
            table = reg[version]
            if (version, name) not in seen:  # the first look at an entry sees MXNet's own, if any
                seen.add((version, name))
                if name in table:
                    _STOCK[(version, name)] = table[name]
            _patch.set_item(table, name, fn)


def uninstall() -> None:
    """Put MXNet's registry back as it was (tables added for a ``since`` opset are removed again)."""
    _patch.undo()
    _STOCK.clear()
