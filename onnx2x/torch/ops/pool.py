"""MaxPool, AveragePool, LpPool, the Global* pools, MaxUnpool, MaxRoiPool and RoiAlign.

The common cases (symmetric pads of at most half the kernel) become one ``F.max_pool2d`` /
``F.avg_pool2d`` call with static arguments; everything else (asymmetric pads, dilated average
pooling, run-time SAME padding) goes through :mod:`..runtime.pool`, which pads explicitly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import converter
from ..runtime import pool as rt
from ..runtime import roi as rt_roi
from ._window import pool_dims, window_args

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _args(ctx):
    kernel = ctx.attr("kernel_shape", None)
    if not kernel:
        raise ctx.fail("kernel_shape is required")
    args = window_args(ctx, [int(k) for k in kernel], pool_dims(ctx))
    if args.rank not in (1, 2, 3):
        raise ctx.unsupported(f"{args.rank}-D pooling (PyTorch has 1-D, 2-D and 3-D)")
    return args, bool(ctx.attr("ceil_mode", 0))


def _torch_padding_ok(args) -> bool:
    """PyTorch pools accept symmetric pads of at most half the kernel."""
    return args.symmetric and all(0 <= p <= k // 2 for p, k in zip(args.begin, args.kernel))


def _end_pads_as_ceil_mode(args, spatial, ceil_mode: bool) -> bool:
    """Whether a max pool whose end pads exceed its begin pads is ``F.max_pool*d`` with padding =
    the begin pads and ``ceil_mode=True`` (:func:`runtime.pool.ceil_mode_covers`), which needs no
    padded copy of the input (1x64x112x112, 3x3 stride 2: 0.47 ms against 0.91 ms, one thread).
    On an axis of unknown size, only when the end pad is the begin pad plus stride - 1 (the
    output sizes agree for every size, floor((n + s - 1) / s) being ceil(n / s)) and smaller than
    the window (the last window starts inside the input)."""
    if not args.static:
        return False
    for i, (b, e, k, s, d) in enumerate(zip(args.begin, args.end, args.kernel, args.strides, args.dilations)):
        n = spatial[i] if spatial is not None and i < len(spatial) else None
        if isinstance(n, int):
            if not rt.ceil_mode_covers(n, k, s, d, b, e, ceil_mode):
                return False
        elif not (e - b == s - 1 and not ceil_mode and b <= k // 2 and e < (k - 1) * d + 1):
            return False
    return True


def _rt_pads(args):
    return (list(args.begin) if args.static else None, list(args.end) if args.static else None,
            args.auto_pad if not args.static else "NOTSET")


def _channels_last_2d(ctx, x, args):
    """``x`` channels-last for a 2-D pool over enough channels (:data:`runtime.pool.CHANNELS_LAST_MIN_CHANNELS`):
    PyTorch's channels-last pooling kernels are vectorized over channels, its NCHW ones are not
    (one thread, 3x3 average pooling of 1x192x28x28: 0.12 ms against 1.26 ms). Free where a
    convolution's output is channels-last already (its weights are, after fusion)."""
    shape = ctx.shape(0)
    if args.rank == 2 and shape is not None and isinstance(shape[1], int) and shape[1] >= rt.CHANNELS_LAST_MIN_CHANNELS:
        return ctx.method("contiguous", x, memory_format=torch.channels_last)
    return x


@converter("MaxPool", since=1)
def max_pool(ctx):
    args, ceil_mode = _args(ctx)
    want_indices = ctx.num_outputs > 1 and bool(ctx.node.outputs[1].name)
    storage_order = int(ctx.attr("storage_order", 0))
    x = ctx.input(0)
    dtype = ctx.dtype(0)
    float_input = dtype is not None and dtype.is_floating_point  # else the runtime (integers: exact, fast)
    spatial = pool_dims(ctx)
    static_spatial = spatial is not None and all(v is not None for v in spatial)
    if not _torch_padding_ok(args) and _end_pads_as_ceil_mode(args, spatial, ceil_mode):
        args.end, ceil_mode = list(args.begin), True
    if _torch_padding_ok(args) and float_input and (static_spatial or not want_indices):
        if not want_indices:
            x = _channels_last_2d(ctx, x, args)
        res = ctx.call(_MAX[args.rank], x, args.kernel, args.strides, list(args.begin), args.dilations,
                       ceil_mode, want_indices)
        if not want_indices:
            return res
        # torch indexes within each (n, c) plane; ONNX indexes the whole tensor
        idx = ctx.call(rt.onnx_indices, ctx.getitem(res, 1), spatial, [0] * args.rank, spatial, storage_order)
        return ctx.getitem(res, 0), idx
    begin, end, auto_pad = _rt_pads(args)
    res = ctx.call(rt.max_pool, x, args.kernel, args.strides, args.dilations, begin, end, auto_pad,
                   ceil_mode, storage_order, want_indices)
    if want_indices:
        return ctx.getitem(res, 0), ctx.getitem(res, 1)
    return res


@converter("AveragePool", since=1)
def average_pool(ctx):
    args, ceil_mode = _args(ctx)
    include_pad = bool(ctx.attr("count_include_pad", 0))
    x = ctx.input(0)
    if _torch_padding_ok(args) and all(d == 1 for d in args.dilations):
        x = _channels_last_2d(ctx, x, args)
        return ctx.call(_AVG[args.rank], x, args.kernel, args.strides, list(args.begin), ceil_mode, include_pad)
    begin, end, auto_pad = _rt_pads(args)
    return ctx.call(rt.avg_pool, x, args.kernel, args.strides, args.dilations, begin, end, auto_pad,
                    ceil_mode, include_pad)


@converter("LpPool", since=1)
def lp_pool(ctx):
    args, ceil_mode = _args(ctx)
    p = float(ctx.attr("p", 2))
    begin, end, auto_pad = _rt_pads(args)
    return ctx.call(rt.lp_pool, ctx.input(0), args.kernel, args.strides, args.dilations, begin, end, auto_pad,
                    ceil_mode, p)


def _spatial_axes(ctx) -> "list[int] | None":
    """Axes 2.. of input 0; None when its rank is known only at run time."""
    rank = ctx.rank(0)
    return None if rank is None else list(range(2, rank))


@converter("GlobalAveragePool", since=1)
def global_average_pool(ctx):
    axes = _spatial_axes(ctx)
    if axes is None:
        return ctx.call(rt.global_pool, ctx.input(0), "mean")
    return ctx.call(torch.mean, ctx.input(0), axes, True)


@converter("GlobalMaxPool", since=1)
def global_max_pool(ctx):
    axes = _spatial_axes(ctx)
    if axes is None:
        return ctx.call(rt.global_pool, ctx.input(0), "max")
    return ctx.call(torch.amax, ctx.input(0), axes, True)


@converter("GlobalLpPool", since=1)
def global_lp_pool(ctx):
    p = float(ctx.attr("p", 2))
    axes = _spatial_axes(ctx)
    if axes is None:
        return ctx.call(rt.global_pool, ctx.input(0), "lp", p)
    return ctx.call(torch.linalg.vector_norm, ctx.input(0), p, axes, True)


@converter("MaxUnpool", since=9)
def max_unpool(ctx):
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    r = len(kernel)
    strides = [int(v) for v in (ctx.attr("strides", None) or [1] * r)]
    pads = [int(v) for v in (ctx.attr("pads", None) or [0] * (2 * r))]
    spatial = pool_dims(ctx)
    if spatial is None or any(v is None for v in spatial):
        raise ctx.fail("MaxUnpool needs the input's spatial shape at conversion time")
    inferred = [(n - 1) * s - (pads[i] + pads[i + r]) + k
                for i, (n, s, k) in enumerate(zip(spatial, strides, kernel))]
    out_shape = ctx.const_ints(2) if ctx.has_input(2) else None
    out_arg = out_shape if out_shape is not None else ctx.input(2)
    return ctx.call(rt.max_unpool, ctx.input(0), ctx.input(1), inferred, out_arg)


@converter("MaxRoiPool", since=1)
def max_roi_pool(ctx):
    pooled = [int(v) for v in ctx.attr("pooled_shape")]
    scale = float(ctx.attr("spatial_scale", 1.0))
    return ctx.call(rt_roi.max_roi_pool, ctx.input(0), ctx.input(1), pooled, scale)


@converter("RoiAlign", since=10)
def roi_align(ctx):
    mode = ctx.attr("mode", "avg")
    default_ctm = "output_half_pixel" if ctx.opset < 16 else "half_pixel"
    ctm = ctx.attr("coordinate_transformation_mode", default_ctm)
    return ctx.call(rt_roi.roi_align, ctx.input(0), ctx.input(1), ctx.input(2),
                    int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1)),
                    int(ctx.attr("sampling_ratio", 0)), float(ctx.attr("spatial_scale", 1.0)),
                    mode, ctm == "half_pixel")
