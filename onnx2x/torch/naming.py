"""Python-identifier names for ONNX tensor names (fx nodes, parameters, buffers).

A name that is already an identifier (MXNet's ``conv1_weight``) is kept as it is; others have
each character outside ``[0-9a-zA-Z_]`` replaced by ``_`` (and a ``_`` prefix before a digit, a
``_`` suffix after a keyword), and a clash gets ``_2``, ``_3``... Not reversible from the name
alone: the converted module's ``gm.onnx_param_names`` (attribute -> ONNX initializer) keeps the map.
"""
from __future__ import annotations

import keyword
import re
from typing import Any

_BAD = re.compile(r"[^0-9a-zA-Z_]")


def sanitize(name: str, fallback: str = "v") -> str:
    """A valid Python identifier close to ``name`` ('conv1/weight:0' -> 'conv1_weight_0')."""
    out = _BAD.sub("_", name or "") or fallback
    if out[0].isdigit():
        out = "_" + out
    if keyword.iskeyword(out):
        out += "_"
    return out


def onnx_initializer(gm: Any, onnx_name: str) -> Any:
    """The ONNX initializer ``onnx_name``'s value from a converted module's parameter.

    The default conversion may store a folded reshape or transpose of an initializer under its
    name (a PReLU slope as ``(C, 1, 1)``, a transposed weight); ``gm.onnx_param_permuted`` and
    ``gm.onnx_param_reshaped`` say how: ``param.permute(perm).reshape(shape)`` undoes it.
    """
    attr = next((a for a, n in gm.onnx_param_names.items() if n == onnx_name), None)
    if attr is None:
        raise KeyError(f"{onnx_name!r} is not a parameter of the converted module")
    tensor = getattr(gm, attr).detach()
    perm = getattr(gm, "onnx_param_permuted", {}).get(onnx_name)
    if perm is not None:
        tensor = tensor.permute(perm)
    shape = getattr(gm, "onnx_param_reshaped", {}).get(onnx_name)
    return tensor.reshape(shape) if shape is not None else tensor
