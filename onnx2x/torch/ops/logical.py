"""Comparison, boolean and bitwise element-wise ops, and Where.

Comparisons always return bool; unsigned 16/32/64-bit inputs (which torch cannot compare) go
through the dtype-dispatching helpers of ``runtime/elementwise.py``.
"""
from __future__ import annotations

import torch

from ..builder import Handle, NodeContext
from ..registry import converter
from ..runtime import elementwise as rt
from ..runtime import strings as rt_strings
from .arithmetic import binary_inputs, plain_dtype, unary_by_dtype

_COMPARISONS = {
    "Equal": ("eq", torch.eq),
    "Less": ("lt", torch.lt),
    "LessOrEqual": ("le", torch.le),
    "Greater": ("gt", torch.gt),
    "GreaterOrEqual": ("ge", torch.ge),
}


@converter(tuple(_COMPARISONS), since=1)
def compare(ctx: NodeContext) -> Handle:
    """Element-wise comparison with numpy broadcasting; the result is bool."""
    if ctx.is_string(0) or ctx.is_string(1):
        if ctx.op_type != "Equal":
            raise ctx.unsupported("only Equal compares string tensors")
        return ctx.call(rt_strings.string_equal, ctx.input(0), ctx.input(1))
    op, fn = _COMPARISONS[ctx.op_type]
    a, b = binary_inputs(ctx)
    if plain_dtype(ctx.dtype(0)):
        return ctx.call(fn, a, b)
    return ctx.call(rt.compare, op, a, b)


_LOGICAL = {"And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor}


@converter(tuple(_LOGICAL), since=1)
def logical(ctx: NodeContext) -> Handle:
    a, b = binary_inputs(ctx)
    return ctx.call(_LOGICAL[ctx.op_type], a, b)


@converter("Not", since=1)
def logical_not(ctx: NodeContext) -> Handle:
    return ctx.call(torch.logical_not, ctx.input(0))


_BITWISE = {"BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or, "BitwiseXor": torch.bitwise_xor}


@converter(tuple(_BITWISE), since=18)
def bitwise(ctx: NodeContext) -> Handle:
    """torch's bitwise and/or/xor kernels cover every integer dtype, the unsigned ones included."""
    return ctx.call(_BITWISE[ctx.op_type], ctx.input(0), ctx.input(1))


@converter("BitwiseNot", since=18)
def bitwise_not(ctx: NodeContext) -> Handle:
    return unary_by_dtype(ctx, torch.bitwise_not, rt.bitwise_not)


@converter("Where", since=9)
def where(ctx: NodeContext) -> Handle:
    """Select from X where the condition holds, else from Y (all three broadcast)."""
    if ctx.is_string(1) or ctx.is_string(2):
        return ctx.call(rt_strings.string_where, ctx.input(0), ctx.input(1), ctx.input(2))
    if plain_dtype(ctx.dtype(1)):
        return ctx.call(torch.where, ctx.input(0), ctx.input(1), ctx.input(2))
    return ctx.call(rt.where, ctx.input(0), ctx.input(1), ctx.input(2))
