"""Converter registry: ``@converter("Conv", since=11)`` maps an ONNX op to PyTorch code.

For a model whose opset for the op's domain is N, the newest registration with
``since <= N`` is used, so one converter serves every later opset until the op changes again
(unlike exact-version lookups, models at opset 7 or 21+ keep working).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Union

from common.errors import UnsupportedOpError

ConverterFn = Callable[..., object]

_ONNX_DOMAINS = ("", "ai.onnx")


def _canon_domain(domain: str) -> str:
    return "" if domain in _ONNX_DOMAINS else domain


@dataclass
class _OpEntry:
    versions: list[int] = field(default_factory=list)
    fns: list[ConverterFn] = field(default_factory=list)
    foldable: list[bool] = field(default_factory=list)


@dataclass(frozen=True)
class Converter:
    """A resolved converter: the function plus what the builder needs to know about it."""

    fn: ConverterFn
    since: int
    foldable: bool


_REGISTRY: dict[tuple[str, str], _OpEntry] = {}


def converter(
    op_types: Union[str, Iterable[str]], *, since: int = 1, domain: str = "", foldable: bool = True
) -> Callable[[ConverterFn], ConverterFn]:
    """Register ``fn(ctx)`` for ``op_types`` from opset ``since`` on.

    ``foldable=False`` marks ops whose result must not be computed at conversion time even
    when every input is constant (random generators).
    """
    names = [op_types] if isinstance(op_types, str) else list(op_types)

    def register(fn: ConverterFn) -> ConverterFn:
        for name in names:
            entry = _REGISTRY.setdefault((_canon_domain(domain), name), _OpEntry())
            if since in entry.versions:
                raise ValueError(f"converter for {domain or 'ai.onnx'}::{name} since {since} registered twice")
            pos = bisect.bisect(entry.versions, since)
            entry.versions.insert(pos, since)
            entry.fns.insert(pos, fn)
            entry.foldable.insert(pos, foldable)
        return fn

    return register


def lookup(op_type: str, opset: int, *, domain: str = "", node_name: Optional[str] = None) -> Converter:
    """The converter for ``op_type`` at ``opset``, or :class:`UnsupportedOpError`."""
    _ensure_loaded()
    entry = _REGISTRY.get((_canon_domain(domain), op_type))
    if entry is None:
        raise UnsupportedOpError(op_type, opset, node_name, domain=domain)
    pos = bisect.bisect_right(entry.versions, opset) - 1
    if pos < 0:
        raise UnsupportedOpError(
            op_type, opset, node_name, domain=domain, supported_versions=entry.versions
        )
    return Converter(entry.fns[pos], entry.versions[pos], entry.foldable[pos])


def supported_ops() -> dict[tuple[str, str], list[int]]:
    """{(domain, op_type): [since versions]} for docs and the README table."""
    _ensure_loaded()
    return {key: list(entry.versions) for key, entry in sorted(_REGISTRY.items())}


_LOADED = False


def _ensure_loaded() -> None:
    """Import every module of ``onnx2x.torch.ops`` once: each registers its op family."""
    global _LOADED
    if _LOADED:
        return
    import importlib
    import pkgutil

    from . import ops

    for info in sorted(pkgutil.iter_modules(ops.__path__), key=lambda i: i.name):
        importlib.import_module(f"{ops.__name__}.{info.name}")
    _LOADED = True
