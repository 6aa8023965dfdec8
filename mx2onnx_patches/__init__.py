"""Run-time repairs of MXNet 1.9.1's own ONNX exporter (``mxnet.onnx``).

MXNet is retired and its exporter frozen, so repairs made at run time stay valid. Each repair is
its own module whose docstring names the MXNet behaviour it fixes, with ``install()``,
``uninstall()`` and ``is_installed()``. ``apply()`` installs them all (idempotent) and returns a
context manager that removes again what that call installed, so tests can compare the patched
and the stock exporter::

    with mx2onnx_patches.apply():
        ...   # patched
    # stock again (unless something else had applied the repairs before)

    with mx2onnx_patches.stock():
        ...   # stock exporter, whatever was applied before; restored afterwards

Op translations live in ``ops_*.py`` modules (imported automatically) and register with
``translations.translation``. The repaired graph builder (``graph_builder``) passes every
translation these extra keyword arguments besides MXNet's own:

- ``mx_shapes``: ``{internal output name: shape tuple}`` for every tensor of the symbol
  (``sym.get_internals()`` names, e.g. ``conv1_output``), from ``infer_shape`` at the export shapes;
- ``mx_dtypes``: the same names mapped to numpy dtypes;
- ``mx_node_outputs``: per JSON node index, the internal names of its outputs;
- ``node_index``: the node's index in the symbol JSON (``idx`` is only given to non-inputs by MXNet).
Use :func:`graph_builder.input_shape` / :func:`graph_builder.output_shape` to read them.
MXNet's JSON omits attributes that hold their default; the graph builder fills them in from
MXNet's own operator definitions before any translation sees the node, so ``attrs`` always
holds every declared attribute (as strings, the way MXNet writes them).

Importing this package restores numpy's removed aliases (MXNet needs them at import time).
"""
from __future__ import annotations

import contextlib
import importlib
import pkgutil
from types import ModuleType
from typing import Iterator, Sequence

from .numpy_compat import restore_numpy_aliases

restore_numpy_aliases()

# Compatibility with today's onnx/onnxruntime: enough to run the stock exporter at all.
COMPAT_REPAIRS: tuple[str, ...] = ("onnx_mapping", "literal_eval", "opset_stamp")
# Everything else, in install order (uninstalled in reverse).
REPAIRS: tuple[str, ...] = COMPAT_REPAIRS + ("attr_defaults", "raw_weights", "graph_builder")

_TRANSLATIONS = "translations"


def _repair(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def import_op_modules() -> list[str]:
    """Import every ``ops_*.py`` module of this package once (each registers its translations)."""
    names = sorted(i.name for i in pkgutil.iter_modules(__path__) if i.name.startswith("ops_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


def _import_mxnet_onnx() -> None:
    from .mxnet_import import import_mxnet

    import_mxnet()
    importlib.import_module("mxnet.onnx")


class Applied(contextlib.AbstractContextManager):
    """What one :func:`apply` call installed; leaving the ``with`` block removes exactly that."""

    def __init__(self, installed: Sequence[str]) -> None:
        self.installed = list(installed)

    def remove(self) -> None:
        for name in reversed(self.installed):
            if name == _TRANSLATIONS:
                from . import translations

                translations.uninstall()
            else:
                _repair(name).uninstall()
        self.installed = []

    def __exit__(self, *exc: object) -> None:
        self.remove()


def apply(*, only: "Sequence[str] | None" = None, translations: bool = True) -> Applied:
    """Install the repairs (all of them by default; ``only=COMPAT_REPAIRS`` for the shims alone).

    Idempotent: a repair already installed stays installed and is not removed by this call's
    context manager. Op translations are installed unless ``translations=False`` or ``only`` is given.
    """
    _import_mxnet_onnx()
    names = tuple(only) if only is not None else REPAIRS
    unknown = [n for n in names if n not in REPAIRS]
    if unknown:
        raise ValueError(f"unknown repairs: {unknown}; known: {list(REPAIRS)}")
    installed: list[str] = []
    for name in REPAIRS:  # keep the documented order whatever order ``only`` lists
        if name not in names:
            continue
        module = _repair(name)
        if not module.is_installed():
            module.install()
            installed.append(name)
    if translations and only is None:
        from . import translations as tr

        import_op_modules()
        if not tr.is_installed():
            tr.install()
            installed.append(_TRANSLATIONS)
    return Applied(installed)


def installed_repairs() -> list[str]:
    """Names of the repairs installed now (``translations`` included)."""
    from . import translations as tr

    names = [n for n in REPAIRS if _repair(n).is_installed()]
    if tr.is_installed():
        names.append(_TRANSLATIONS)
    return names


def remove() -> None:
    """Uninstall every repair, whoever installed it."""
    from . import translations as tr

    tr.uninstall()
    for name in reversed(REPAIRS):
        _repair(name).uninstall()


@contextlib.contextmanager
def stock() -> Iterator[None]:
    """Run a block against the stock exporter, then restore the repairs that were installed."""
    before = installed_repairs()
    remove()
    try:
        yield
    finally:
        compat = [n for n in before if n in REPAIRS]
        if compat:
            apply(only=compat)
        if _TRANSLATIONS in before:
            from . import translations as tr

            import_op_modules()
            tr.install()
