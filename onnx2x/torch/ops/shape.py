"""Shape and layout ops: Shape, Size, Reshape, Flatten, Transpose, (Un)Squeeze, Expand, Tile,
ConstantOfShape, Range, EyeLike, Trilu, OneHot.

Whatever can be resolved from static shapes and constant inputs is resolved here, at conversion
time, so the generated forward only carries the data movement itself (e.g. ``torch.reshape(x,
(1, 64, 7, 7))`` instead of shape arithmetic); symbolic dims keep run-time code.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Optional, Sequence

import numpy as np
import torch

from common import ir as cir

from ..builder import NodeContext, numpy_to_torch
from ..dtypes import torch_dtype
from ..registry import converter
from ..runtime import shape as rt
from ..runtime import strings as rt_strings
from ._shape_values import same_size, shape_values

FOLD_LIMIT = 1 << 16  # constant results bigger than this are built at run time, not stored


def static_dims(shape: Optional[Sequence[Optional[int]]]) -> Optional[tuple[int, ...]]:
    """``shape`` as ints when every dim is known, else None."""
    if shape is None or any(d is None for d in shape):
        return None
    return tuple(int(d) for d in shape)


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def emit(ctx: NodeContext, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Emit a call even when every argument is known (for large generated constants)."""
    saved = ctx.fold
    ctx.fold = False
    try:
        return ctx.call(fn, *args, **kwargs)
    finally:
        ctx.fold = saved


def dim_handle(ctx: NodeContext, i: int, axis: int) -> Any:
    """Size of dim ``axis`` of input ``i``: an int when static, else a run-time ``x.size(axis)``."""
    shape = ctx.shape(i)
    if shape is not None and axis < len(shape) and shape[axis] is not None:
        return int(shape[axis])
    return ctx.method("size", ctx.input(i), axis)


def axes_input(ctx: NodeContext, attr_before: int, index: int = 1) -> Optional[list[int]]:
    """Axes given as an attribute before opset ``attr_before`` and as input ``index`` from then on."""
    if ctx.opset < attr_before:
        axes = ctx.attr("axes", None)
        return None if axes is None else [int(a) for a in axes]
    if not ctx.has_input(index):
        return None
    return ctx.const_ints(index)


# --- Shape / Size ------------------------------------------------------------------------------
@converter("Shape", since=1)
def shape_op(ctx: NodeContext) -> Any:
    start = int(ctx.attr("start", 0))
    end = ctx.attr("end", None)
    end = None if end is None else int(end)
    dims = static_dims(ctx.shape(0))
    if dims is not None:
        return torch.tensor(dims[start:end], dtype=torch.int64)
    shape = ctx.shape(0)
    if shape is not None:  # the requested slice may still be all static
        part = shape[start:end]
        if all(d is not None for d in part):
            return torch.tensor([int(d) for d in part], dtype=torch.int64)
    return ctx.call(rt.shape_of, ctx.input(0), start, end)


@converter("Size", since=1)
def size_op(ctx: NodeContext) -> Any:
    dims = static_dims(ctx.shape(0))
    if dims is not None:
        return torch.tensor(math.prod(dims), dtype=torch.int64)
    return ctx.call(rt.size_of, ctx.input(0))


# --- Reshape / Flatten / Transpose -------------------------------------------------------------
@converter("Reshape", since=1)
def reshape(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    allowzero = int(ctx.attr("allowzero", 0))
    target = [int(s) for s in ctx.attr("shape")] if ctx.opset < 5 else ctx.const_ints(1)
    if ctx.is_string(0):  # a numpy object array at run time
        return ctx.call(rt_strings.reshape_strings, x, target if target is not None else ctx.input(1), allowzero)
    if target is None:
        out = static_dims(ctx.output_shape(0))
        if out is not None:
            return ctx.call(torch.reshape, x, out)
        target = shape_values(ctx, 1)
        if target is None:
            return ctx.call(rt.reshape, x, ctx.input(1), allowzero)
    dims: list[Any] = []
    for i, s in enumerate(target):
        dims.append(dim_handle(ctx, 0, i) if isinstance(s, int) and s == 0 and not allowzero else s)
    if any(isinstance(d, int) and d == -1 for d in dims):  # resolve -1 when the count is known
        in_dims = static_dims(ctx.shape(0))
        known = [d for d in dims if not (isinstance(d, int) and d == -1)]
        if in_dims is not None and all(isinstance(d, int) for d in known):
            rest = math.prod(known)
            if rest != 0:
                dims[[isinstance(d, int) and d == -1 for d in dims].index(True)] = math.prod(in_dims) // rest
    return ctx.call(torch.reshape, x, tuple(dims))


@converter("Flatten", since=1)
def flatten(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    shape = ctx.shape(0)
    axis = int(ctx.attr("axis", 1))
    if ctx.is_string(0):
        return ctx.call(rt_strings.flatten_strings, x, axis)
    if shape is None:
        return ctx.call(rt.flatten, x, axis)
    axis = norm_axis(axis, len(shape))
    outer, inner = shape[:axis], shape[axis:]
    a = math.prod(outer) if all(d is not None for d in outer) else None
    b = math.prod(inner) if all(d is not None for d in inner) else None
    if a is not None and b is not None:
        return ctx.call(torch.reshape, x, (a, b))
    if a is not None:
        return ctx.call(torch.reshape, x, (a, -1)) if a != 0 else ctx.call(rt.flatten, x, axis)
    if b is not None and b != 0:
        return ctx.call(torch.reshape, x, (-1, b))
    return ctx.call(rt.flatten, x, axis)


@converter("Transpose", since=1)
def transpose(ctx: NodeContext) -> Any:
    perm = ctx.attr("perm", None)
    if perm is None:
        rank = ctx.rank(0)
        if rank is None:
            return ctx.call(rt.reverse_dims, ctx.input(0))
        perm = list(range(rank))[::-1]
    perm = [int(p) for p in perm]
    if perm == sorted(perm):
        return ctx.input(0)
    return ctx.call(torch.permute, ctx.input(0), perm)


# --- Squeeze / Unsqueeze -----------------------------------------------------------------------
@converter("Squeeze", since=1)
def squeeze(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    axes = axes_input(ctx, 13)
    shape = ctx.shape(0)
    if axes is None and ctx.opset >= 13 and ctx.has_input(1):
        return ctx.call(rt.squeeze, x, ctx.input(1))
    if axes is None:
        dims = static_dims(shape)
        if dims is None:
            return ctx.call(rt.squeeze_all, x)
        axes = [i for i, d in enumerate(dims) if d == 1]
    if shape is not None:
        axes = sorted(norm_axis(a, len(shape)) for a in axes)
        out = [d for i, d in enumerate(shape) if i not in axes]
        if static_dims(out) is not None:
            return ctx.call(torch.reshape, x, tuple(out))
    if not axes:
        return x
    return ctx.call(torch.squeeze, x, tuple(axes))


@converter("Unsqueeze", since=1)
def unsqueeze(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    axes = axes_input(ctx, 13)
    if axes is None:
        return ctx.call(rt.unsqueeze_dynamic, x, ctx.input(1))
    shape = ctx.shape(0)
    if shape is not None:
        rank = len(shape) + len(axes)
        axes = sorted(norm_axis(a, rank) for a in axes)
        out = list(shape)
        for a in axes:
            out.insert(a, 1)
        if static_dims(out) is not None:
            return ctx.call(torch.reshape, x, tuple(out))
        # One op, however many axes (each op costs 1.5 us of dispatch at batch 1): a reshape when
        # one size is unknown (-1 stands for it unless a known size is 0), else indexing with None.
        unknown = [i for i, d in enumerate(out) if not isinstance(d, int)]
        if len(unknown) == 1 and 0 not in out:
            return ctx.call(torch.reshape, x, tuple(-1 if i in unknown else d for i, d in enumerate(out)))
        if len(axes) == 1:
            return ctx.call(torch.unsqueeze, x, axes[0])
        return ctx.call(operator.getitem, x, tuple(None if i in axes else slice(None) for i in range(rank)))
    return ctx.call(rt.unsqueeze, x, axes)


# --- Expand / Tile -----------------------------------------------------------------------------
@converter("Expand", since=8)
def expand(ctx: NodeContext) -> Any:
    x = ctx.input(0)
    target = ctx.const_ints(1)
    shape = ctx.shape(0)
    if target is None and shape is not None:
        target = shape_values(ctx, 1)
    if target is None or shape is None:
        out = static_dims(ctx.output_shape(0))
        if out is not None and shape is not None and len(shape) <= len(out):
            return ctx.method("expand", x, *out) if out != tuple(shape) else x
        return ctx.call(rt.expand, x, ctx.input(1))
    rank = max(len(target), len(shape))
    target = [1] * (rank - len(target)) + list(target)
    src = [1] * (rank - len(shape)) + list(shape)
    names = cir.dim_names(ctx.node.inputs[0]) or (None,) * len(shape)
    src_names = [None] * (rank - len(shape)) + list(names)
    out: list[Any] = []
    undecided = False  # a size read at run time may be 1 against an input dim of unknown size
    for t, s, name in zip(target, src, src_names):
        if not isinstance(t, int):  # run-time size: it must equal the input dim unless either is 1
            out.append(s if s is not None and s != 1 else t)
            undecided = undecided or (s is None and not same_size(t, name))
        elif t == 1:
            out.append(s if s is not None else -1)
        else:
            out.append(t)
    if len(shape) == rank and all(isinstance(o, int) and (o == -1 or o == s) for o, s in zip(out, shape)):
        return x
    if undecided:  # that size may be 1 at run time, keeping a larger input dim: only known then
        return ctx.call(rt.expand_to, x, out)
    return ctx.method("expand", x, *out)


@converter("Tile", since=6)
def tile(ctx: NodeContext) -> Any:
    repeats = ctx.const_ints(1)
    if repeats is None:
        repeats = shape_values(ctx, 1)
    if repeats is None:
        return ctx.call(rt.tile, ctx.input(0), ctx.input(1))
    if all(isinstance(r, int) and r == 1 for r in repeats):
        return ctx.input(0)
    return ctx.method("repeat", ctx.input(0), *repeats)


# --- generators --------------------------------------------------------------------------------
@converter("ConstantOfShape", since=9)
def constant_of_shape(ctx: NodeContext) -> Any:
    value = ctx.attr("value", None)
    value = numpy_to_torch(np.zeros(1, dtype=np.float32) if value is None else np.asarray(value))
    scalar = value.reshape(-1)[0].item()
    shape = ctx.const_ints(0)
    if shape is None:
        dims = shape_values(ctx, 0)
        if dims is not None:
            return ctx.call(torch.full, dims, scalar, dtype=value.dtype)
        return ctx.call(rt.constant_of_shape, ctx.input(0), value.reshape(-1)[:1].clone())
    if math.prod(shape) > FOLD_LIMIT:
        return emit(ctx, torch.full, tuple(shape), scalar, dtype=value.dtype)
    return torch.full(tuple(shape), scalar, dtype=value.dtype)


@converter("Range", since=11)
def range_op(ctx: NodeContext) -> Any:
    start, limit, delta = ctx.const(0), ctx.const(1), ctx.const(2)
    dtype = ctx.dtype(0)
    if (start is None or limit is None or delta is None) and dtype is not None and not dtype.is_floating_point:
        vals = [shape_values(ctx, i) for i in range(3)]
        if all(v is not None and len(v) == 1 for v in vals):  # sizes read from shapes: stay symbolic
            return ctx.call(torch.arange, vals[0][0], vals[1][0], vals[2][0], dtype=dtype)
    if start is not None and limit is not None and delta is not None:
        n = max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)
        if n > FOLD_LIMIT:
            return emit(ctx, rt.arange, ctx.input(0), ctx.input(1), ctx.input(2))
    return ctx.call(rt.arange, ctx.input(0), ctx.input(1), ctx.input(2))


@converter("EyeLike", since=9)
def eye_like(ctx: NodeContext) -> Any:
    k = int(ctx.attr("k", 0))
    dtype = ctx.attr("dtype", None)
    dtype = ctx.dtype(0) if dtype is None else torch_dtype(dtype)
    if dtype is None:
        raise ctx.fail("EyeLike output type has no PyTorch equivalent")
    dims = static_dims(ctx.shape(0))
    if dims is not None:
        rows = torch.arange(dims[0]).unsqueeze(1)
        cols = torch.arange(dims[1]).unsqueeze(0)
        return (cols - rows == k).to(dtype)
    return ctx.call(rt.eye_like, ctx.input(0), k, dtype)


@converter("Trilu", since=14)
def trilu(ctx: NodeContext) -> Any:
    upper = int(ctx.attr("upper", 1))
    k = 0
    if ctx.has_input(1):
        ks = ctx.const_ints(1)
        if ks is None:
            return ctx.call(rt.trilu, ctx.input(0), ctx.input(1), upper)
        k = ks[0]
    return ctx.call(torch.triu if upper else torch.tril, ctx.input(0), k)


@converter("OneHot", since=9)
def one_hot(ctx: NodeContext) -> Any:
    axis = int(ctx.attr("axis", -1))
    depth = ctx.const(1)
    depth_arg = int(np.asarray(depth).reshape(-1)[0]) if depth is not None else ctx.input(1)
    rank = ctx.rank(0)
    if rank is not None and axis < 0:
        axis += rank + 1
    return ctx.call(rt.one_hot, ctx.input(0), depth_arg, ctx.input(2), axis)
