"""Read a small int64 "shape tensor" as a list of Python ints and run-time dim sizes.

Exported models compute target shapes with chains like ``Shape -> Gather -> Unsqueeze -> Concat
-> Reshape``. Run literally, that turns a symbolic batch size into a tensor and back
(``.tolist()``), which ``torch.export`` cannot follow. Walking the ONNX producers instead gives
``[x.size(0), 64, -1]``: static entries become ints and symbolic ones ``x.size(i)`` calls, which
stay symbolic (SymInt) under ``torch.export`` and cost nothing in eager mode.
"""
from __future__ import annotations

import operator
from typing import Any, Optional

import torch
from torch import fx

from common import ir as cir
from common.ir import onnx_ir as ir

from ..builder import NodeContext

MAX_DEPTH = 16
MAX_LEN = 16  # shape vectors only; longer int vectors are data, not shapes
_INT_TYPES = {ir.DataType.INT64, ir.DataType.INT32, ir.DataType.INT16, ir.DataType.INT8,
              ir.DataType.UINT8, ir.DataType.UINT16, ir.DataType.UINT32, ir.DataType.UINT64}
_ARITH = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul, "Div": operator.floordiv}
_ARITY = {"Equal": 2, "Where": 3, **{op: 2 for op in _ARITH}}  # a malformed node is not evaluated

Elem = Any  # int, or an fx node producing an int at run time


def shape_values(ctx: NodeContext, index: int) -> Optional[list[Elem]]:
    """Elements of input ``index`` (a 0-d/1-d int tensor) when derivable from shapes, else None."""
    if not ctx.has_input(index):
        return None
    return _eval(ctx, ctx.node.inputs[index], 0)


def _const(ctx: NodeContext, value: ir.Value) -> Optional[list[Any]]:
    handle = ctx.builder.lookup(value)
    if isinstance(handle, torch.Tensor) and handle.dim() <= 1 and not handle.dtype.is_floating_point \
            and not handle.dtype.is_complex and handle.numel() <= MAX_LEN:
        if handle.dtype == torch.bool:  # a Where condition
            return [bool(v) for v in handle.reshape(-1).tolist()]
        return [int(v) for v in handle.reshape(-1).tolist()]
    return None


def _eval(ctx: NodeContext, value: Optional[ir.Value], depth: int) -> Optional[list[Elem]]:
    if value is None:
        return None
    const = _const(ctx, value) if _defined(ctx, value) else None
    if const is not None:
        return const
    if depth > MAX_DEPTH:
        return None
    node = value.producer()
    if node is None or (node.domain or "") not in ("", "ai.onnx"):
        return None
    attrs = cir.attributes(node)
    op = node.op_type
    if op == "Shape":
        return _shape_dims(ctx, node.inputs[0], attrs)
    if op in ("Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten"):
        out_shape = cir.static_shape(node.outputs[0])
        if out_shape is None or len(out_shape) > 1:
            return None
        return _eval(ctx, node.inputs[0], depth + 1)
    if op == "Cast":
        if attrs.get("to") not in {int(t) for t in _INT_TYPES}:
            return None
        return _eval(ctx, node.inputs[0], depth + 1)
    if op == "Concat":
        out: list[Elem] = []
        for v in node.inputs:
            part = _eval(ctx, v, depth + 1)
            if part is None:
                return None
            out.extend(part)
        return out if len(out) <= MAX_LEN else None
    if op == "Gather":
        if int(attrs.get("axis", 0)) != 0 or len(node.inputs) < 2 or not _defined(ctx, node.inputs[1]):
            return None
        data = _eval(ctx, node.inputs[0], depth + 1)
        idx = _const(ctx, node.inputs[1])
        if data is None or idx is None:
            return None
        try:
            return [data[i] for i in idx]
        except IndexError:
            return None
    if op == "Slice":
        return _slice(ctx, node, attrs, depth)
    if len(node.inputs) != _ARITY.get(op, len(node.inputs)):
        return None
    if op == "Equal":
        pair = _broadcast(*(_eval(ctx, v, depth + 1) for v in node.inputs[:2]))
        if pair is None:
            return None
        same = [_equal(x, y) for x, y in zip(*pair)]
        return None if any(b is None for b in same) else same
    if op == "Where":
        parts = _broadcast(*(_eval(ctx, v, depth + 1) for v in node.inputs[:3]))
        if parts is None or not all(isinstance(c, bool) for c in parts[0]):
            return None
        return [x if c else y for c, x, y in zip(*parts)]
    if op in _ARITH:
        pair = _broadcast(*(_eval(ctx, v, depth + 1) for v in node.inputs[:2]))
        if pair is None:
            return None
        a, b = pair
        fn = _ARITH[op]
        res = []
        for x, y in zip(a, b):
            if isinstance(x, int) and isinstance(y, int):
                if op == "Div" and (y == 0 or (x < 0) != (y < 0)):
                    return None  # ONNX truncates, floordiv floors: only same-sign is safe
                res.append(fn(x, y))
            else:
                res.append(ctx.call(fn, x, y))
        return res
    return None


def _broadcast(*parts: Optional[list[Elem]]) -> Optional[list[list[Elem]]]:
    """Element lists at one length, as ONNX broadcasting of 1-d vectors makes them; None when one
    is unknown or the lengths do not broadcast."""
    if any(p is None for p in parts):
        return None
    n = max(len(p) for p in parts)
    if any(len(p) not in (1, n) for p in parts):
        return None
    return [p * n if len(p) == 1 else p for p in parts]


def _equal(x: Elem, y: Elem) -> Optional[bool]:
    """``x == y`` when it is known at conversion time: between ints, or a size against a negative
    int (exporters compare target shapes with -1 to replace it); else None."""
    if isinstance(x, int) and isinstance(y, int):
        return bool(x == y)
    if isinstance(y, int) and y < 0 and _non_negative(x):
        return False
    if isinstance(x, int) and x < 0 and _non_negative(y):
        return False
    return None


def _non_negative(elem: Elem) -> bool:
    """Whether a run-time element is a dim size, or a sum, product or quotient of such and
    non-negative ints: it can never equal a negative int."""
    if isinstance(elem, int):
        return elem >= 0
    if not isinstance(elem, fx.Node):
        return False
    if elem.op == "call_method" and elem.target == "size":
        return True
    if elem.op == "call_function" and elem.target in (operator.add, operator.mul, operator.floordiv):
        return all(_non_negative(a) for a in elem.args)
    return False


def _defined(ctx: NodeContext, value: ir.Value) -> bool:
    try:
        ctx.builder.lookup(value)
        return True
    except Exception:
        return False


def _shape_dims(ctx: NodeContext, x: ir.Value, attrs: dict) -> Optional[list[Elem]]:
    shape = cir.static_shape(x)
    if shape is None or not _defined(ctx, x):
        return None
    handle = ctx.builder.lookup(x)
    if isinstance(handle, torch.Tensor):
        shape = tuple(handle.shape)
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    idx = list(range(len(shape)))[start:None if end is None else int(end)]
    names = cir.dim_names(x) or (None,) * len(shape)
    return [int(shape[i]) if shape[i] is not None else _size(ctx, handle, i, names[i]) for i in idx]


# fx meta key: the ONNX name of the dim a ``size`` node reads (see :func:`same_size`).
DIM_NAME = "onnx_dim_name"


def _size(ctx: NodeContext, handle: Any, axis: int, name: Optional[str]) -> Elem:
    """``handle.size(axis)``, remembering the ONNX name of that dim."""
    size = ctx.method("size", handle, axis)
    if name and isinstance(size, fx.Node):
        size.meta[DIM_NAME] = name
    return size


def same_size(size: Elem, name: Optional[str]) -> bool:
    """``size`` (an element from :func:`shape_values`) is a dim named ``name``: equal at run time."""
    return bool(name) and isinstance(size, fx.Node) and size.meta.get(DIM_NAME) == name


def _slice(ctx: NodeContext, node: ir.Node, attrs: dict, depth: int) -> Optional[list[Elem]]:
    data = _eval(ctx, node.inputs[0], depth + 1)
    if data is None:
        return None
    if "starts" in attrs:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        steps = [1]
    else:
        ins = list(node.inputs) + [None] * (5 - len(node.inputs))
        starts = _const(ctx, ins[1]) if ins[1] is not None and _defined(ctx, ins[1]) else None
        ends = _const(ctx, ins[2]) if ins[2] is not None and _defined(ctx, ins[2]) else None
        steps = _const(ctx, ins[4]) if ins[4] is not None and ins[4].name and _defined(ctx, ins[4]) else [1]
        if starts is None or ends is None or steps is None:
            return None
    if len(starts) != 1 or len(ends) != 1 or len(steps) != 1:
        return None
    n = len(data)
    start, end, step = int(starts[0]), int(ends[0]), int(steps[0])
    if step > 0:
        start = max(0, min(n, start + n if start < 0 else start))
        end = max(0, min(n, end + n if end < 0 else end))
    else:
        start = max(-1, min(n - 1, start + n if start < 0 else start))
        end = max(-1, min(n - 1, end + n if end < 0 else end))
    return [data[i] for i in range(start, end, step)]
