"""Fill in attributes that MXNet's JSON omits, where MXNet's translations assume another default,
and write every attribute in the one form translations expect.

MXNet writes an attribute into a symbol's JSON only when it was given; gluon exports give every
attribute, Module-era symbols (MTCNN and other pre-gluon models) usually do not. Several of
MXNet's own translations read a missing attribute with a default that differs from the
operator's real one (FullyConnected ``flatten`` is True, Deconvolution ``no_bias`` is True,
LRN ``knorm`` is 2), so such models convert to a different network. This repair compares, per
translation, every literal default it reads (``attrs.get(name, default)``,
``get_boolean_attribute_value``, ``parse_helper``) with MXNet's own operator definition
(``MXSymbolGetAtomicSymbolInfo``) and, before a node is converted, writes MXNet's default into
the node for exactly those attributes whose assumed default is wrong. Before that, every
declared attribute is rewritten the way Python-3 MXNet writes its value (:func:`canonical_attrs`):
MXNet reads ``(8L, 3L)``, ``TRUE`` or `` 8`` (Python-2 and hand-written symbols), translations
compare strings with ``"True"`` or parse them with Python.
"""
from __future__ import annotations

import ast
import functools
import inspect
import logging
import math
import textwrap
from typing import Any, Callable, Optional

from common.mxnet_attrs import AttrParseError, canonical, parse_bool, parse_float, parse_tuple

from ._patching import Patch

log = logging.getLogger(__name__)

_patch = Patch()
_NO_DEFAULT = object()
_BOOL_HELPERS = {"get_boolean_attribute_value"}
# Translations whose differing default is a sentinel meaning "MXNet's default behaviour":
# writing MXNet's default there would send them down another branch (checked by hand).
SENTINELS: dict[tuple[str, str], str] = {
    ("_linalg_gemm2", "axis"): "'None' means MXNet's default -2; an explicit -2 is refused",
    ("_contrib_AdaptiveAvgPooling2D", "output_size"): "'1' means MXNet's () (1x1); () does not parse",
    ("_sample_multinomial", "shape"): "'1' stands for MXNet's (); () gives an empty sample size",
    ("_contrib_BilinearResize2D", "height"): "0 means 'use scale_height', which MXNet also prefers when given",
    ("_contrib_BilinearResize2D", "width"): "0 means 'use scale_width', which MXNet also prefers when given",
    ("_contrib_ROIAlign", "sample_ratio"): "0 (ONNX) and MXNet's -1 both mean adaptive sampling",
}


@functools.lru_cache(maxsize=None)
def mxnet_defaults(op_name: str) -> dict[str, Optional[str]]:
    """``{attribute: default}`` from MXNet's registry; ``None`` for required ones; {} if unknown."""
    out: dict[str, Optional[str]] = {}
    for name, type_text in mxnet_types(op_name).items():
        _, sep, default = type_text.rpartition("default=")
        out[name] = _mxnet_string(default, type_text) if sep else None
    return out


@functools.lru_cache(maxsize=None)
def mxnet_types(op_name: str) -> dict[str, str]:
    """``{attribute: MXNet's declared type text}`` for an operator ({} if MXNet does not know it)."""
    from mxnet.operator import get_operator_arguments

    try:
        args = get_operator_arguments(op_name)
    except Exception:  # noqa: BLE001 - not an MXNet operator (e.g. "null")
        return {}
    return {n: t for n, t in zip(args.names, args.types) if not t.startswith(("NDArray", "Symbol"))}


def _mxnet_string(default: str, type_text: str) -> str:
    """MXNet's documented default, written the way MXNet writes attribute values in JSON."""
    default = default.strip()
    if len(default) >= 2 and default[0] == default[-1] == "'":
        default = default[1:-1]
    if type_text.startswith("boolean"):
        return {"1": "True", "0": "False"}.get(default, default)
    if type_text.startswith("Shape") and default == "[]":
        return "()"
    return default


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _NO_DEFAULT


def translation_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """Literal defaults a translation assumes for missing attributes, read from its source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return {}
    found: dict[str, Any] = {}
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        func = call.func
        args = call.args
        if isinstance(func, ast.Attribute) and func.attr == "get" and isinstance(func.value, ast.Name) \
                and func.value.id == "attrs" and len(args) == 2:
            name, default = _literal(args[0]), _literal(args[1])
        elif isinstance(func, ast.Name) and func.id in _BOOL_HELPERS and len(args) == 2:
            name, default = _literal(args[1]), False
        elif isinstance(func, ast.Name) and func.id == "parse_helper" and len(args) == 3:
            name, default = _literal(args[1]), _literal(args[2])
        else:
            continue
        if isinstance(name, str) and default is not _NO_DEFAULT and name not in found:
            found[name] = default
    return found


def _as_bool(value: Any) -> Optional[bool]:
    text = str(value).strip()
    if text == "":
        return False
    try:
        return parse_bool(text)
    except AttrParseError:
        return None


def _as_float(value: Any) -> Optional[float]:
    try:
        return parse_float(str(value))
    except AttrParseError:
        return None


def _as_tuple(value: Any) -> Optional[tuple]:
    text = str(value).strip()
    if text[:1] in "([" and text[-1:] in ")]":
        try:
            return parse_tuple(text)
        except AttrParseError:
            return None
    return None


def same_default(assumed: Any, mxnet: str) -> bool:
    """Whether a translation's assumed default means the same as MXNet's (typed comparison)."""
    if mxnet in ("None", ""):  # MXNet's "not set": translations decide what that means
        return True
    if assumed is None or assumed == "None":  # "absent" in the translation: fine for empty/false
        return mxnet in ("()", "False")
    if isinstance(assumed, bool) or _as_bool(mxnet) is not None and _as_bool(assumed) is not None \
            and mxnet in ("True", "False"):
        return _as_bool(assumed) == _as_bool(mxnet)
    a, m = _as_float(assumed), _as_float(mxnet)
    if a is not None and m is not None:
        return math.isclose(a, m, rel_tol=1e-6, abs_tol=0.0)
    a_t, m_t = _as_tuple(assumed), _as_tuple(mxnet)
    if m_t is not None:
        return a_t == m_t or (a_t is None and assumed in (None, "") and not m_t)
    return str(assumed) == mxnet


def wrong_defaults(op_name: str, fn: Callable[..., Any]) -> dict[str, str]:
    """``{attribute: MXNet default}`` for every attribute ``fn`` reads with the wrong default."""
    mx = mxnet_defaults(op_name)
    out = {}
    for name, assumed in translation_defaults(fn).items():
        if (op_name, name) in SENTINELS:
            continue
        if name in mx and mx[name] is not None and not same_default(assumed, mx[name]):
            out[name] = mx[name]
    return out


def registered_translation(op_name: str, opset: int) -> Optional[Callable[..., Any]]:
    """The translation MXNet's exporter would use for ``op_name`` at ``opset``."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    for version in range(opset, 11, -1):
        fn = MXNetGraph.registry_.get(version, {}).get(op_name)
        if fn is not None:
            return fn
    return None


def candidate_translations(op_name: str, opset: int) -> tuple[Callable[..., Any], ...]:
    """The translation in use plus every one it may hand the node to (replacements delegate to
    other replacements and to MXNet's own): MXNet's default must suit all of them."""
    from . import translations

    fns: list[Callable[..., Any]] = []
    current = registered_translation(op_name, opset)
    if current is not None:
        fns.append(current)
    fns += [fn for name, since, fn in translations.registered() if name == op_name and since <= opset]
    fns += translations.originals(op_name)
    return tuple(dict.fromkeys(fns))


@functools.lru_cache(maxsize=None)
def _fills_for(op_name: str, fns: tuple[Callable[..., Any], ...]) -> tuple[tuple[str, str], ...]:
    wrong: dict[str, str] = {}
    for fn in fns:
        wrong.update(wrong_defaults(op_name, fn))
    return tuple(sorted(wrong.items()))


def canonical_attrs(node: dict) -> list[str]:
    """Rewrite every declared attribute of ``node`` the way Python-3 MXNet writes its value
    (``(8L, 3L)`` -> ``(8, 3)``, ``TRUE`` -> ``True``, `` 8`` -> ``8``), as MXNet itself reads it,
    so that no translation has to know MXNet's more lenient readers. Returns the names rewritten."""
    types = mxnet_types(str(node.get("op")))
    changed = []
    for table in ("attrs", "attr", "param"):
        attrs = node.get(table)
        for key, value in (attrs or {}).items():
            if key in types and isinstance(value, str):
                text = canonical(value, types[key])
                if text != value:
                    attrs[key] = text
                    changed.append(key)
    return changed


def fill_defaults(node: dict, opset: int) -> list[str]:
    """Write MXNet's default into ``node['attrs']`` where the translation would assume another.

    Returns the names of the attributes filled in.
    """
    op = node.get("op")
    if op in (None, "null"):
        return []
    fns = candidate_translations(op, opset)
    if not fns:
        return []
    attrs = node.setdefault("attrs", {})
    filled = []
    for name, value in _fills_for(op, fns):
        if name not in attrs:
            attrs[name] = value
            filled.append(name)
    if filled:
        log.debug("%s (%s): filled MXNet defaults for %s", node.get("name"), op, filled)
    return filled


def audit(opset: int = 13) -> dict[str, dict[str, str]]:
    """Every registered translation whose assumed default disagrees with MXNet: op -> {attr: default}."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    ops = sorted({op for version in MXNetGraph.registry_.values() for op in version})
    report = {}
    for op in ops:
        wrong = dict(_fills_for(op, candidate_translations(op, opset)))
        if wrong:
            report[op] = wrong
    return report


def _wrap_convert_layer(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def convert_layer(node, **kwargs):
        if not kwargs.get("is_input"):
            canonical_attrs(node)
            fill_defaults(node, max(12, int(kwargs.get("opset_version") or 13)))
        return original(node, **kwargs)

    return convert_layer


def is_installed() -> bool:
    return _patch.active


def install() -> None:
    if _patch.active:
        return
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    _patch.set(MXNetGraph, "convert_layer", staticmethod(_wrap_convert_layer(MXNetGraph.convert_layer)))


def uninstall() -> None:
    _patch.undo()
    _fills_for.cache_clear()
