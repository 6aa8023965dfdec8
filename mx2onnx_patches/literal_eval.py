"""Parse tuple attributes as MXNet's C++ reader does instead of with ``eval``.

MXNet's ``parse_helper`` (both translation modules) runs ``eval`` on attribute strings taken from
the model's JSON. The regular expression in front of it only admits digits, ``L``, ``|``, commas
and spaces inside parentheses, but a model file is untrusted input and must never reach ``eval``.
The replacement reads tuples with :func:`common.mxnet_attrs.parse_tuple`, which accepts what
MXNet accepts (``[1,2]``, ``(8L, 3L)``, a bare ``3``) and raises on anything else.
"""
from __future__ import annotations

from typing import Any

from common.mxnet_attrs import AttrParseError, parse_tuple

from ._patching import Patch

_patch = Patch()


def parse_helper(attrs: Any, attrs_name: str, alt_value: Any = None) -> Any:
    """Same contract as MXNet's ``parse_helper``: a tuple attribute, or ``alt_value`` when it is
    missing, ``None`` or no tuple at all; a malformed tuple raises ``AttributeError``."""
    if not attrs:
        return alt_value
    value = attrs.get(attrs_name)
    if value is None:
        return alt_value
    text = str(value)
    try:
        parsed = parse_tuple(text)
    except AttrParseError as exc:
        if "(" not in text and "[" not in text:
            return alt_value  # not a tuple at all (MXNet's helper also answers alt_value)
        raise AttributeError(f"Malformed {attrs_name} dimensions: {text}") from exc
    return alt_value if parsed is None else parsed


def is_installed() -> bool:
    return _patch.active


def install() -> None:
    if _patch.active:
        return
    from mxnet.onnx.mx2onnx._op_translations import _op_translations_opset12 as op12
    from mxnet.onnx.mx2onnx._op_translations import _op_translations_opset13 as op13

    for module in (op12, op13):
        _patch.set(module, "parse_helper", parse_helper)


def uninstall() -> None:
    _patch.undo()
