"""Python-identifier names for ONNX tensor names (fx nodes, parameters, buffers).

A name that is already an identifier (MXNet's ``conv1_weight``) is kept as it is; others have
each character outside ``[0-9a-zA-Z_]`` replaced by ``_`` (and a ``_`` prefix before a digit, a
``_`` suffix after a keyword), and a clash gets ``_2``, ``_3``... Not reversible from the name
alone: the converted module's ``gm.onnx_param_names`` (attribute -> ONNX initializer) keeps the map.
"""
from __future__ import annotations

import keyword
import re

_BAD = re.compile(r"[^0-9a-zA-Z_]")


def sanitize(name: str, fallback: str = "v") -> str:
    """A valid Python identifier close to ``name`` ('conv1/weight:0' -> 'conv1_weight_0')."""
    out = _BAD.sub("_", name or "") or fallback
    if out[0].isdigit():
        out = "_" + out
    if keyword.iskeyword(out):
        out += "_"
    return out
