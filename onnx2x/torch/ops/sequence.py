"""Sequence and Optional ops.

A sequence whose length is known at conversion time is a Python list of handles, so these ops
are resolved entirely here (no run-time code); a sequence produced at run time (a Loop output,
a graph input) is an fx node and goes through ``runtime/sequence.py``. An optional is ``None``
(empty) or its value.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.fx as fx

from ..builder import NodeContext
from ..registry import converter
from ..runtime import sequence as rt
from .shape import norm_axis


def _const_pos(ctx: NodeContext, i: int) -> Optional[int]:
    """Position input ``i`` as an int when known (None when omitted or dynamic)."""
    if not ctx.has_input(i):
        return None
    vals = ctx.const_ints(i)
    return None if vals is None else vals[0]


def _static(ctx: NodeContext, i: int) -> bool:
    """True when input ``i`` is a list at conversion time and its position input is known."""
    return isinstance(ctx.input(0), list) and (not ctx.has_input(i) or ctx.const_ints(i) is not None)


@converter("SequenceEmpty", since=11)
def sequence_empty(ctx: NodeContext) -> Any:
    return []


@converter("SequenceConstruct", since=11)
def sequence_construct(ctx: NodeContext) -> Any:
    return [ctx.input(i) for i in range(ctx.num_inputs)]


@converter("SequenceInsert", since=11)
def sequence_insert(ctx: NodeContext) -> Any:
    seq = ctx.input(0)
    if _static(ctx, 2):
        out = list(seq)
        pos = _const_pos(ctx, 2)
        pos = len(out) if pos is None else (pos + len(out) if pos < 0 else pos)
        out.insert(pos, ctx.input(1))
        return out
    return ctx.call(rt.insert, seq, ctx.input(1), ctx.input(2))


@converter("SequenceErase", since=11)
def sequence_erase(ctx: NodeContext) -> Any:
    seq = ctx.input(0)
    if _static(ctx, 1):
        out = list(seq)
        pos = _const_pos(ctx, 1)
        del out[len(out) - 1 if pos is None else pos]
        return out
    return ctx.call(rt.erase, seq, ctx.input(1))


@converter("SequenceAt", since=11)
def sequence_at(ctx: NodeContext) -> Any:
    seq = ctx.input(0)
    if _static(ctx, 1):
        return seq[_const_pos(ctx, 1)]
    return ctx.call(rt.at, seq, ctx.input(1))


@converter("SequenceLength", since=11)
def sequence_length(ctx: NodeContext) -> Any:
    seq = ctx.input(0)
    if isinstance(seq, list):
        return torch.tensor(len(seq), dtype=torch.int64)
    return ctx.call(rt.length, seq)


@converter("ConcatFromSequence", since=11)
def concat_from_sequence(ctx: NodeContext) -> Any:
    seq = ctx.input(0)
    axis = int(ctx.attr("axis"))
    new_axis = int(ctx.attr("new_axis", 0))
    if isinstance(seq, list):
        if len(seq) == 1 and not new_axis:
            return seq[0]
        return ctx.call(torch.stack if new_axis else torch.cat, seq, axis)
    return ctx.call(rt.concat, seq, axis, new_axis)


@converter("SplitToSequence", since=11)
def split_to_sequence(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    axis = int(ctx.attr("axis", 0))
    keepdims = int(ctx.attr("keepdims", 1))
    shape = ctx.shape(0)
    if shape is not None:
        axis = norm_axis(axis, len(shape))
    dim = shape[axis] if shape is not None and axis >= 0 else None
    split = ctx.const(1) if ctx.has_input(1) else None
    if dim is None or (ctx.has_input(1) and split is None):
        return ctx.call(rt.split, x, ctx.input(1), axis, keepdims)
    if split is None:
        parts = [ctx.call(torch.select, x, axis, k) if not keepdims else
                 ctx.getitem(x, (slice(None),) * axis + (slice(k, k + 1),)) for k in range(dim)]
        return parts
    if split.ndim == 0:
        size = int(split)
        sizes = [min(size, dim - k) for k in range(0, dim, size)]
    else:
        sizes = [int(s) for s in split.reshape(-1)]
    out, start = [], 0
    for s in sizes:
        out.append(ctx.getitem(x, (slice(None),) * axis + (slice(start, start + s),)))
        start += s
    return out


@converter("Optional", since=15)
def optional(ctx: NodeContext) -> Any:
    return ctx.input(0) if ctx.has_input(0) else None


@converter("OptionalHasElement", since=15)
def optional_has_element(ctx: NodeContext) -> Any:
    value = ctx.input(0)
    if value is None:
        return torch.tensor(False)
    if isinstance(value, fx.Node):
        return ctx.call(rt.has_element, value)
    return torch.tensor(True)


@converter("OptionalGetElement", since=15)
def optional_get_element(ctx: NodeContext) -> Any:
    value = ctx.input(0)
    if value is None:
        raise ctx.fail("OptionalGetElement of an empty optional")
    if isinstance(value, fx.Node) and _is_optional(ctx, 0):
        return ctx.call(rt.get_element, value)
    return value


def _is_optional(ctx: NodeContext, i: int) -> bool:
    import onnx_ir as ir

    v = ctx.node.inputs[i]
    return v is not None and isinstance(v.type, ir.OptionalType)
