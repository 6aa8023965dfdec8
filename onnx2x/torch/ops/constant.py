"""Constant (every attribute form) and Identity.

Constants become tensors known at conversion time, so whatever consumes them folds; scalars stay
0-d tensors of the exact ONNX dtype (float32 for ``value_float``, int64 for ``value_int``). String
constants stay numpy object arrays of ``str`` (torch has no string tensor). ``sparse_value`` is
made dense before conversion (``onnx2x/torch/sparse.py``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..builder import Handle, NodeContext, numpy_to_handle
from ..runtime import strings as rt_strings
from ..registry import converter


def array_to_tensor(ctx: NodeContext, arr: np.ndarray) -> "torch.Tensor | np.ndarray":
    """A torch tensor for an attribute's array (a numpy object array for strings), or a clear
    error when torch has no such dtype."""
    try:
        return numpy_to_handle(np.asarray(arr))
    except Exception as exc:
        raise ctx.unsupported(f"{arr.dtype.name} tensors have no PyTorch dtype") from exc


@converter("Constant", since=1)
def constant(ctx: NodeContext) -> Handle:
    if ctx.has_attr("value"):
        return array_to_tensor(ctx, ctx.attr("value"))
    if ctx.has_attr("value_float"):
        return torch.tensor(float(ctx.attr("value_float")), dtype=torch.float32)
    if ctx.has_attr("value_floats"):
        return torch.tensor([float(v) for v in ctx.attr("value_floats")], dtype=torch.float32)
    if ctx.has_attr("value_int"):
        return torch.tensor(int(ctx.attr("value_int")), dtype=torch.int64)
    if ctx.has_attr("value_ints"):
        return torch.tensor([int(v) for v in ctx.attr("value_ints")], dtype=torch.int64)
    if ctx.has_attr("value_string"):
        return rt_strings.string_constant([_text(ctx.attr("value_string"))], ())
    if ctx.has_attr("value_strings"):
        items = [_text(v) for v in ctx.attr("value_strings")]
        return rt_strings.string_constant(items, (len(items),))
    if ctx.has_attr("sparse_value"):
        raise ctx.unsupported("sparse_value constants must be densified first (onnx2x.torch.sparse)")
    raise ctx.fail("Constant has none of the attributes value, value_float(s), value_int(s)")


def _text(v: object) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


@converter("Identity", since=1)
def identity(ctx: NodeContext) -> Handle:
    """The input itself (a sequence is copied so later sequence ops cannot alias it)."""
    x = ctx.input(0)
    return list(x) if isinstance(x, list) else x
