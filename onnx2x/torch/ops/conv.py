"""Conv, ConvTranspose, ConvInteger, DeformConv and Col2Im.

Conv is on the hot path of every CNN, so the converter resolves padding at conversion time and
emits one plain ``F.conv{1,2,3}d`` call with static arguments; only asymmetric (or run-time SAME)
padding adds an explicit ``F.pad`` in front.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..registry import converter
from ..runtime import conv as rt
from ..runtime import quantize as rt_quantize
from ._window import apply_pads, conv_fn, pool_dims, torch_pad_list, window_args


def _kernel(ctx, weight_index: int = 1) -> list[int]:
    kernel = ctx.attr("kernel_shape", None)
    if kernel:
        return [int(k) for k in kernel]
    wshape = ctx.shape(weight_index)
    if wshape is not None and all(v is not None for v in wshape[2:]):
        return [int(v) for v in wshape[2:]]
    raise ctx.fail("kernel_shape is needed when the weight shape is not known at conversion time")


def _conv(ctx, x, w, b, kernel: list[int]):
    """Emit an ONNX-semantics convolution of ``x`` by ``w`` (padding from ``ctx``'s attributes)."""
    args = window_args(ctx, kernel, pool_dims(ctx))
    fn = conv_fn(args.rank)
    if fn is None:
        raise ctx.unsupported(f"{args.rank}-D convolution (PyTorch has 1-D, 2-D and 3-D)")
    group = int(ctx.attr("group", 1))
    if args.symmetric:
        padding = list(args.begin)
    else:
        x = apply_pads(ctx, x, args)
        padding = [0] * args.rank
    return ctx.call(fn, x, w, b, args.strides, padding, args.dilations, group)


@converter("Conv", since=1)
def conv(ctx):
    return _conv(ctx, ctx.input(0), ctx.input(1), ctx.input(2), _kernel(ctx))


@converter("ConvTranspose", since=1)
def conv_transpose(ctx):
    x, w, b = ctx.input(0), ctx.input(1), ctx.input(2)
    kernel = _kernel(ctx)
    r = len(kernel)
    fn = conv_fn(r, transpose=True)
    if fn is None:
        raise ctx.unsupported(f"{r}-D transposed convolution (PyTorch has 1-D, 2-D and 3-D)")
    strides = [int(v) for v in (ctx.attr("strides", None) or [1] * r)]
    dilations = [int(v) for v in (ctx.attr("dilations", None) or [1] * r)]
    out_pad = [int(v) for v in (ctx.attr("output_padding", None) or [0] * r)]
    group = int(ctx.attr("group", 1))
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    output_shape = ctx.attr("output_shape", None)
    pads = ctx.attr("pads", None)
    spatial = pool_dims(ctx)
    same = auto_pad in ("SAME_UPPER", "SAME_LOWER")

    if output_shape is not None or (same and pads is None):
        if spatial is None or any(v is None for v in spatial):
            raise ctx.fail("output_shape / SAME padding needs the input's spatial shape at conversion time")
        full = [s * (n - 1) + (k - 1) * d + 1 for n, k, s, d in zip(spatial, kernel, strides, dilations)]
        if output_shape is None:
            target = [n * s for n, s in zip(spatial, strides)]
        else:
            target = [int(v) for v in list(output_shape)[-r:]]
        if same:
            begin = []
            for f, op, t in zip(full, out_pad, target):
                total = f + op - t
                begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        else:
            begin = [int(v) for v in (pads or [0] * (2 * r))[:r]]
        end = [f - t - bg for f, t, bg in zip(full, target, begin)]  # output_padding folded in
        out_pad_eff = [0] * r
    else:
        p = [int(v) for v in (pads or [0] * (2 * r))] if auto_pad != "VALID" else [0] * (2 * r)
        begin, end = p[:r], p[r:]
        out_pad_eff = out_pad

    fast = (begin == end and all(v >= 0 for v in begin)
            and all(0 <= op < max(s, d) for op, s, d in zip(out_pad_eff, strides, dilations)))
    if fast:
        return ctx.call(fn, x, w, b, strides, begin, out_pad_eff, group, dilations)
    y = ctx.call(fn, x, w, None, strides, 0, 0, group, dilations)
    crop_end = [op - e for op, e in zip(out_pad_eff, end)]
    y = ctx.call(F.pad, y, torch_pad_list([-v for v in begin], crop_end))
    if b is not None:
        bias = ctx.method("reshape", b, [-1] + [1] * r)
        y = ctx.call(torch.add, y, bias)
    return y


def _zero_point_shifted(ctx, i: int, zp_index: int, per_channel_shape: Optional[list[int]]):
    """Input ``i`` minus its zero point, as float64 (exact for 8/16-bit integer products)."""
    v = ctx.method("to", ctx.input(i), torch.float64)
    if not ctx.has_input(zp_index):
        return v
    zp = ctx.method("to", ctx.input(zp_index), torch.float64)
    zshape = ctx.shape(zp_index)
    if per_channel_shape is not None and zshape is not None and len(zshape) == 1 and zshape[0] != 1:
        zp = ctx.method("reshape", zp, per_channel_shape)
    return ctx.call(torch.sub, v, zp)


@converter("ConvInteger", since=10)
def conv_integer(ctx):
    """The exact runtime (float32 convolutions where their bound holds) when the padding is known
    now; a float64 convolution otherwise (SAME padding of an input of unknown size)."""
    kernel = _kernel(ctx)
    args = window_args(ctx, kernel, pool_dims(ctx))
    if args.static and args.rank in (1, 2, 3):
        zx = ctx.input(2) if ctx.has_input(2) else None
        zw = ctx.input(3) if ctx.has_input(3) else None
        return ctx.call(rt_quantize.conv_integer, ctx.input(0), ctx.input(1), zx, zw, args.strides,
                        list(args.begin) + list(args.end), args.dilations, int(ctx.attr("group", 1)))
    x = _zero_point_shifted(ctx, 0, 2, None)
    w = _zero_point_shifted(ctx, 1, 3, [-1] + [1] * (len(kernel) + 1))
    y = _conv(ctx, x, w, None, kernel)
    return ctx.method("to", ctx.call(torch.round, y), torch.int32)


@converter("DeformConv", since=19)
def deform_conv(ctx):
    kernel = _kernel(ctx)
    if len(kernel) != 2:
        raise ctx.unsupported(f"{len(kernel)}-D DeformConv (2-D only)")
    strides = [int(v) for v in (ctx.attr("strides", None) or [1, 1])]
    dilations = [int(v) for v in (ctx.attr("dilations", None) or [1, 1])]
    pads = [int(v) for v in (ctx.attr("pads", None) or [0, 0, 0, 0])]
    return ctx.call(rt.deform_conv2d, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4),
                    kernel, strides, pads, dilations, int(ctx.attr("group", 1)), int(ctx.attr("offset_group", 1)))


@converter("Col2Im", since=18)
def col2im(ctx):
    image = ctx.const_ints(1)
    block = ctx.const_ints(2)
    shape = ctx.shape(1)
    if image is not None:
        r = len(image)
    elif shape is not None and shape[0] is not None:
        r = int(shape[0])
    else:
        raise ctx.fail("the number of spatial axes (length of image_shape) is unknown")
    image = ctx.input(1) if image is None else image
    block = ctx.input(2) if block is None else block
    dilations = [int(v) for v in (ctx.attr("dilations", None) or [1] * r)]
    pads = [int(v) for v in (ctx.attr("pads", None) or [0] * (2 * r))]
    strides = [int(v) for v in (ctx.attr("strides", None) or [1] * r)]
    return ctx.call(rt.col2im, ctx.input(0), image, block, dilations, pads, strides)
