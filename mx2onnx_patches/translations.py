"""Replacement op translations for MXNet's exporter, installed into ``MXNetGraph.registry_``.

MXNet looks a translation up from the requested opset down to 12 and takes the first it finds.
A replacement registered with ``@translation("Op", since=S)`` is therefore written into every
registry key >= S (and S itself), so it wins at every opset from S on; the previous entries are
remembered so that :func:`uninstall` restores the stock exporter exactly.
"""
from __future__ import annotations

from typing import Callable, Iterable, Union

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


_SAVED: "dict[tuple[int, str], object] | None" = None
_MISSING = object()


def originals(op_name: str) -> list[TranslationFn]:
    """MXNet's own translations that the installed replacements for ``op_name`` stand in front of."""
    if _SAVED is None:
        return []
    return [fn for (version, name), fn in sorted(_SAVED.items(), key=lambda kv: kv[0][0])
            if name == op_name and fn is not _MISSING]


def is_installed() -> bool:
    return _SAVED is not None


def install() -> None:
    """Write every replacement into MXNet's registry (idempotent)."""
    global _SAVED
    if _SAVED is not None:
        return
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    reg = MXNetGraph.registry_
    saved: dict[tuple[int, str], object] = {}
    for name, since, fn in sorted(_REPLACEMENTS, key=lambda r: r[1]):
        for version in range(since, MAX_OPSET + 1):
            if version != since and version not in reg:
                continue
            table = reg.setdefault(version, {})
            key = (version, name)
            if key not in saved:
                saved[key] = table.get(name, _MISSING)
            table[name] = fn
    _SAVED = saved


def uninstall() -> None:
    global _SAVED
    if _SAVED is None:
        return
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    reg = MXNetGraph.registry_
    for (version, name), old in _SAVED.items():
        if old is _MISSING:
            reg.get(version, {}).pop(name, None)
        else:
            reg[version][name] = old
    for version in [v for v, table in reg.items() if not table]:
        del reg[version]
    _SAVED = None
