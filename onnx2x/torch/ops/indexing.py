"""Indexing ops: Gather*, Scatter*, Slice, Concat, Split, Compress, NonZero, Unique, TopK,
ReverseSequence, TensorScatter.

Constant indices and slice bounds are normalised here (negative indices wrapped, out-of-range
bounds clamped) so the forward pass gets plain torch indexing; run-time helpers take over only
when those values are computed by the model.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..builder import NodeContext
from ..registry import converter
from ..runtime import indexing as rt
from ._shape_values import shape_values
from .shape import norm_axis

INT64_MAX = (1 << 63) - 1


def _axis(ctx: NodeContext, i: int, default: int = 0, name: str = "axis") -> int:
    """Attribute axis made non-negative when the rank of input ``i`` is known."""
    axis = int(ctx.attr(name, default))
    rank = ctx.rank(i)
    return norm_axis(axis, rank) if rank is not None else axis


def _dim(ctx: NodeContext, i: int, axis: int) -> Optional[int]:
    shape = ctx.shape(i)
    if shape is None or axis < 0 or axis >= len(shape):
        return None
    return shape[axis]


# --- gather ------------------------------------------------------------------------------------
@converter("Gather", since=1)
def gather(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    axis = _axis(ctx, 0)
    idx = ctx.const(1)
    if idx is None or axis < 0:
        return ctx.call(rt.gather, x, ctx.input(1), axis)
    idx = np.asarray(idx).astype(np.int64)
    dim = _dim(ctx, 0, axis)
    if dim is not None:
        idx = np.where(idx < 0, idx + dim, idx)
    if idx.ndim == 0:
        return ctx.call(torch.select, x, axis, int(idx))
    if idx.ndim == 1 and idx.size > 0 and (idx >= 0).all() and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return ctx.getitem(x, (slice(None),) * axis + (slice(int(idx[0]), int(idx[0]) + idx.size),))
    return ctx.getitem(x, (slice(None),) * axis + (torch.from_numpy(idx),))


@converter("GatherElements", since=11)
def gather_elements(ctx: NodeContext) -> Any:
    axis = _axis(ctx, 0)
    idx = ctx.const(1)
    dim = _dim(ctx, 0, axis)
    if idx is not None and dim is not None:
        idx = np.asarray(idx).astype(np.int64)
        return ctx.call(torch.gather, ctx.input(0), axis, torch.from_numpy(np.where(idx < 0, idx + dim, idx)))
    return ctx.call(rt.gather_elements, ctx.input(0), ctx.input(1), axis)


@converter("GatherND", since=11)
def gather_nd(ctx: NodeContext) -> Any:
    return ctx.call(rt.gather_nd, ctx.input(0), ctx.input(1), int(ctx.attr("batch_dims", 0)))


# --- scatter -----------------------------------------------------------------------------------
@converter("Scatter", since=9)
@converter("ScatterElements", since=11)
def scatter_elements(ctx: NodeContext) -> Any:
    axis = _axis(ctx, 0)
    reduction = ctx.attr("reduction", "none")
    return ctx.call(rt.scatter_elements, ctx.input(0), ctx.input(1), ctx.input(2), axis, reduction)


@converter("ScatterND", since=11)
def scatter_nd(ctx: NodeContext) -> Any:
    return ctx.call(rt.scatter_nd, ctx.input(0), ctx.input(1), ctx.input(2), ctx.attr("reduction", "none"))


@converter("TensorScatter", since=24)
def tensor_scatter(ctx: NodeContext) -> Any:
    axis = _axis(ctx, 0, -2)
    circular = ctx.attr("mode", "linear") == "circular"
    return ctx.call(rt.tensor_scatter, ctx.input(0), ctx.input(1), ctx.input(2), axis, circular)


# --- slice -------------------------------------------------------------------------------------
def _slice_params(ctx: NodeContext) -> Optional[tuple[list[int], list[int], list[int], list[int]]]:
    if ctx.opset < 10:
        starts = [int(v) for v in ctx.attr("starts")]
        ends = [int(v) for v in ctx.attr("ends")]
        axes = ctx.attr("axes", None)
        axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
        return starts, ends, axes, [1] * len(starts)
    starts, ends = ctx.const_ints(1), ctx.const_ints(2)
    starts = shape_values(ctx, 1) if starts is None else starts
    ends = shape_values(ctx, 2) if ends is None else ends
    axes = ctx.const_ints(3) if ctx.has_input(3) else None
    steps = ctx.const_ints(4) if ctx.has_input(4) else None
    if starts is None or ends is None or (ctx.has_input(3) and axes is None) or (ctx.has_input(4) and steps is None):
        return None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    return starts, ends, axes, steps


def _clamp(v: int, dim: int, lo: int, hi: int) -> int:
    if v < 0:
        v += dim
    return max(lo, min(hi, v))


@converter("Slice", since=1)
def slice_op(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    params = _slice_params(ctx)
    if params is None:
        return ctx.call(rt.slice_dynamic, x, ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4))
    starts, ends, axes, steps = params
    shape = ctx.shape(0)
    if shape is None and any(a < 0 for a in axes):
        return ctx.call(rt.slice_static, x, starts, ends, axes, steps)
    rank = len(shape) if shape is not None else max(axes) + 1
    axes = [norm_axis(a, rank) for a in axes]
    index: list[Any] = [slice(None)] * rank
    flips: list[int] = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise ctx.fail("Slice step must not be 0")
        dim = shape[axis] if shape is not None else None
        if not (isinstance(start, int) and isinstance(end, int)):  # sizes known only at run time
            if step < 0:
                return ctx.call(rt.slice_dynamic, x, ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4))
            index[axis] = slice(start, end if not isinstance(end, int) or end < INT64_MAX else None,
                                None if step == 1 else step)
            continue
        if step > 0:
            if dim is not None:
                start, end = _clamp(start, dim, 0, dim), _clamp(end, dim, 0, dim)
                if start == 0 and end == dim and step == 1:
                    continue
            else:
                start = None if start == 0 else start
                end = None if end >= INT64_MAX else end
            index[axis] = slice(start, end, None if step == 1 else step)
        else:
            if dim is None:
                return ctx.call(rt.slice_static, x, starts, ends, axes, steps)
            start, end = _clamp(start, dim, -1, dim - 1), _clamp(end, dim, -1, dim - 1)
            if start <= end:
                index[axis] = slice(0, 0)
                continue
            flips.append(axis)
            lo, hi = dim - 1 - start, dim - 1 - end
            index[axis] = slice(lo if lo else None, hi if hi < dim else None, None if step == -1 else -step)
    if flips:
        x = ctx.call(torch.flip, x, flips)
    while index and index[-1] == slice(None):
        index.pop()
    if not index:
        return x
    return ctx.getitem(x, tuple(index))


# --- concat / split ----------------------------------------------------------------------------
@converter("Concat", since=1)
def concat(ctx: NodeContext) -> Any:
    axis = _axis(ctx, 0, 1 if ctx.opset < 4 else 0)
    parts = [ctx.input(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    if len(parts) == 1:
        return parts[0]
    return ctx.call(torch.cat, parts, axis)


@converter("Split", since=1)
def split(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    axis = _axis(ctx, 0)
    n = ctx.num_outputs
    sizes: Optional[list[int]] = None
    if ctx.opset < 13:
        sizes = ctx.attr("split", None)
        if sizes is None and ctx.opset < 2 and ctx.has_input(1):
            sizes = ctx.const_ints(1)
    elif ctx.has_input(1):
        sizes = ctx.const_ints(1)
        if sizes is None:
            parts = ctx.call(rt.split, x, ctx.input(1), axis)
            return tuple(ctx.getitem(parts, j) for j in range(n))
    if sizes is not None:
        sizes = [int(s) for s in sizes]
        parts = ctx.call(torch.split, x, sizes, axis)
    else:
        n = int(ctx.attr("num_outputs", n))
        dim = _dim(ctx, 0, axis)
        if dim is None:
            parts = ctx.call(rt.split_even, x, n, axis)
        else:
            chunk = -(-dim // n)
            parts = ctx.call(torch.split, x, chunk, axis)
    return tuple(ctx.getitem(parts, j) for j in range(ctx.num_outputs))


# --- selection ---------------------------------------------------------------------------------
@converter("Compress", since=9)
def compress(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    axis = ctx.attr("axis", None)
    cond = ctx.const(1)
    rank = ctx.rank(0)
    if axis is not None and rank is not None:
        axis = norm_axis(int(axis), rank)
    if cond is None or (axis is not None and axis < 0):
        return ctx.call(rt.compress, x, ctx.input(1), axis)
    keep = np.nonzero(np.asarray(cond).reshape(-1).astype(bool))[0].astype(np.int64)
    if axis is None:
        x = ctx.call(torch.reshape, x, (-1,))
        axis = 0
    dim = _dim(ctx, 0, axis) if ctx.attr("axis", None) is not None else None
    if dim is not None:
        keep = keep[keep < dim]
    return ctx.call(torch.index_select, x, axis, torch.from_numpy(keep))


@converter("NonZero", since=9)
def nonzero(ctx: NodeContext) -> Any:
    return ctx.call(rt.nonzero, ctx.input(0))


@converter("Unique", since=11)
def unique(ctx: NodeContext) -> Any:
    axis = ctx.attr("axis", None)
    rank = ctx.rank(0)
    if axis is not None and rank is not None:
        axis = norm_axis(int(axis), rank)
    res = ctx.call(rt.unique, ctx.input(0), axis, int(ctx.attr("sorted", 1)))
    return tuple(ctx.getitem(res, j) for j in range(4))


@converter("TopK", since=1)
def top_k(ctx: NodeContext) -> Any:
    axis = _axis(ctx, 0, -1)
    largest = int(ctx.attr("largest", 1))
    sorted_ = int(ctx.attr("sorted", 1))
    if ctx.opset < 10:
        k: Any = int(ctx.attr("k"))
    else:
        ks = ctx.const_ints(1)
        if ks is None:
            res = ctx.call(rt.top_k_dynamic, ctx.input(0), ctx.input(1), axis, largest, sorted_)
            return ctx.getitem(res, 0), ctx.getitem(res, 1)
        k = ks[0]
    res = ctx.call(rt.top_k, ctx.input(0), k, axis, largest, sorted_)
    return ctx.getitem(res, 0), ctx.getitem(res, 1)


@converter("ReverseSequence", since=10)
def reverse_sequence(ctx: NodeContext) -> Any:
    return ctx.call(rt.reverse_sequence, ctx.input(0), ctx.input(1),
                    int(ctx.attr("batch_axis", 1)), int(ctx.attr("time_axis", 0)))


@converter("ArrayFeatureExtractor", since=1, domain="ai.onnx.ml")
def array_feature_extractor(ctx: NodeContext) -> Any:
    return ctx.call(rt.array_feature_extractor, ctx.input(0), ctx.input(1))
