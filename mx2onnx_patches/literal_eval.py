"""Parse tuple attributes with ``ast.literal_eval`` instead of ``eval``.

MXNet's ``parse_helper`` (both translation modules) runs ``eval`` on attribute strings taken from
the model's JSON. The regular expression in front of it only admits digits, ``L``, ``|``, commas
and spaces inside parentheses, but a model file is untrusted input and must never reach ``eval``.
The replacement accepts the same tuples (MXNet's legacy ``2L`` long suffix included) and raises on
anything else.
"""
from __future__ import annotations

import ast
import re
from typing import Any

from ._patching import Patch

_TUPLE = re.compile(r"\([0-9L|,| ]+\)")
_patch = Patch()


def parse_helper(attrs: Any, attrs_name: str, alt_value: Any = None) -> Any:
    """Same contract as MXNet's ``parse_helper``: a tuple attribute, or ``alt_value``."""
    if not attrs:
        return alt_value
    value = attrs.get(attrs_name)
    if value is None:
        return alt_value
    text = str(value)
    match = _TUPLE.search(text)
    if match is None:
        return alt_value
    if match.span() != (0, len(text)):
        raise AttributeError(f"Malformed {attrs_name} dimensions: {text}")
    try:
        return ast.literal_eval(text.replace("L", ""))
    except (ValueError, SyntaxError) as exc:
        raise AttributeError(f"Malformed {attrs_name} dimensions: {text}") from exc


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
