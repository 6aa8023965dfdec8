"""Python-identifier names for ONNX tensor names (fx nodes, parameters, buffers)."""
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
