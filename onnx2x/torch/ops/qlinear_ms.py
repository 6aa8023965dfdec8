"""onnxruntime's quantized operators in the com.microsoft domain (what ``quantize_static`` emits in
QOperator format): QLinearAdd/Mul/Sigmoid/LeakyRelu/Concat/Where/Softmax, the QLinear pools,
QGemm, and com.microsoft QuantizeLinear/DequantizeLinear.

Each computes what onnxruntime's CPU kernel computes (:mod:`..runtime.quantize`): integer
accumulation, float32 scale ratios, round half to even and saturation; the unary ops and the
requantizing ones go through a 256-entry lookup table, as in onnxruntime, which is built at
conversion time when the scales are constants. Only per-tensor scales are accepted where
onnxruntime accepts only those; other attribute combinations it lacks are refused here.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from ..registry import converter
from ..runtime import pool as rt_pool
from ..runtime import quantize as rt
from ._window import torch_pad_list, window_args
from .quantize import dequantize_linear, quantize_linear

log = logging.getLogger(__name__)
MS = "com.microsoft"
_EIGHT_BIT = (torch.uint8, torch.int8)


def _eight_bit(ctx, i: int = 0) -> torch.dtype:
    dtype = ctx.dtype(i)
    if dtype is not None and dtype not in _EIGHT_BIT:
        raise ctx.unsupported(f"{dtype} input (onnxruntime's kernel takes uint8 or int8)")
    return dtype or torch.uint8


def _per_tensor(ctx, *indices: int) -> None:
    """Refuse per-channel scales/zero points where onnxruntime's kernel takes one value only."""
    for i in indices:
        shape = ctx.shape(i) if ctx.has_input(i) else ()
        if shape is not None and any(d is not None for d in shape) and math.prod(d or 1 for d in shape) > 1:
            raise ctx.unsupported(f"input {i} has {math.prod(d or 1 for d in shape)} values: "
                                  "only per-tensor scales and zero points are supported")


@converter("QuantizeLinear", since=1, domain=MS)
def ms_quantize_linear(ctx):
    return quantize_linear(ctx)


@converter("DequantizeLinear", since=1, domain=MS)
def ms_dequantize_linear(ctx):
    return dequantize_linear(ctx)


@converter(["QLinearAdd", "QLinearMul"], since=1, domain=MS)
def qlinear_binary(ctx):
    _eight_bit(ctx, 0)
    _per_tensor(ctx, 1, 2, 4, 5, 6, 7)
    fn = rt.qlinear_add if ctx.op_type == "QLinearAdd" else rt.qlinear_mul
    return ctx.call(fn, *[ctx.input(i) for i in range(8)])


def _lookup(ctx, kind: str, alpha: float = 0.0):
    dtype = _eight_bit(ctx, 0)
    _per_tensor(ctx, 1, 2, 3, 4)
    table = ctx.call(rt.lookup_table, ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4), dtype, kind, alpha)
    return ctx.call(rt.apply_table, ctx.input(0), table)


@converter("QLinearSigmoid", since=1, domain=MS)
def qlinear_sigmoid(ctx):
    return _lookup(ctx, "sigmoid")


@converter("QLinearLeakyRelu", since=1, domain=MS)
def qlinear_leaky_relu(ctx):
    return _lookup(ctx, "leaky_relu", float(ctx.attr("alpha", 0.01)))


@converter("QLinearConcat", since=1, domain=MS)
def qlinear_concat(ctx):
    if (ctx.num_inputs - 2) % 3 or ctx.num_inputs < 5:
        raise ctx.fail(f"expected Y_scale, Y_zero_point and (X, X_scale, X_zero_point) triples, got {ctx.num_inputs} inputs")
    _eight_bit(ctx, 2)
    _per_tensor(ctx, 0, 1, *[i for i in range(3, ctx.num_inputs) if (i - 2) % 3])
    return ctx.call(rt.qlinear_concat, int(ctx.attr("axis")), *[ctx.input(i) for i in range(ctx.num_inputs)])


@converter("QLinearWhere", since=1, domain=MS)
def qlinear_where(ctx):
    _eight_bit(ctx, 1)
    _per_tensor(ctx, 2, 3, 5, 6, 7, 8)
    return ctx.call(rt.qlinear_where, *[ctx.input(i) for i in range(9)])


@converter("QLinearSoftmax", since=1, domain=MS)
def qlinear_softmax(ctx):
    """The exp table depends on the softmax length; built now when that is known, else per call.

    Without an ``axis`` attribute the axis is -1 for every ``opset``: the schema's default, which
    onnxruntime fills in before its kernel reads the attribute (its own opset-based default of 1
    for opset < 13 never applies). onnxruntime's quantizer writes no axis when the Softmax it
    replaces had none, so a quantized opset-11/12 Softmax over axis 1 of a rank > 2 tensor runs
    over the last axis instead: converted as onnxruntime runs it, with a warning.
    """
    dtype = _eight_bit(ctx, 0)
    _per_tensor(ctx, 1, 3, 4)
    opset = int(ctx.attr("opset"))
    axis = int(ctx.attr("axis", -1))
    shape = ctx.shape(0)
    rank = ctx.rank(0)
    if ctx.attr("axis", None) is None and opset < 13 and (rank is None or rank > 2):
        log.warning("%s: no axis attribute: onnxruntime applies the schema's default -1 (the "
                    "last axis%s), not axis 1 as the opset-%d Softmax it quantizes did (onnxruntime's quantizer "
                    "drops the axis); converted as onnxruntime computes it", ctx.where(),
                    ", of size 1 here: a softmax over one element" if shape is not None and shape[-1] == 1 else "", opset)
    table = None
    if shape is not None:
        axis = axis + len(shape) if axis < 0 else axis
        reduce_dims = shape[axis:] if opset < 13 else shape[axis:axis + 1]
        if None not in reduce_dims:
            table = ctx.call(rt.softmax_exp_table, ctx.input(1), math.prod(reduce_dims), dtype == torch.int8)
    return ctx.call(rt.qlinear_softmax, ctx.input(0), ctx.input(1), table, ctx.input(3), ctx.input(4),
                    axis, opset < 13)


@converter("QLinearGlobalAveragePool", since=1, domain=MS)
def qlinear_global_average_pool(ctx):
    _eight_bit(ctx, 0)
    _per_tensor(ctx, 1, 2, 3, 4)
    rank = ctx.rank(0)
    if rank is not None and rank < 3:
        raise ctx.fail(f"the input has rank {rank}; onnxruntime needs at least 3")
    return ctx.call(rt.qlinear_global_average_pool, *[ctx.input(i) for i in range(5)],
                    bool(ctx.attr("channels_last", 0)))


@converter("QLinearAveragePool", since=1, domain=MS)
def qlinear_average_pool(ctx):
    """Dequantize (float32), average as onnxruntime's float pool does, quantize (its rounding)."""
    dtype = _eight_bit(ctx, 0)
    _per_tensor(ctx, 1, 2, 3, 4)
    kernel = ctx.attr("kernel_shape", None)
    if not kernel:
        raise ctx.fail("kernel_shape is required")
    channels_last = bool(ctx.attr("channels_last", 0))
    shape = ctx.shape(0)
    spatial = None if shape is None else (list(shape[1:-1]) if channels_last else list(shape[2:]))
    args = window_args(ctx, [int(k) for k in kernel], spatial)
    if args.rank not in (1, 2, 3) or (spatial is not None and len(spatial) != args.rank):
        raise ctx.unsupported(f"{args.rank}-D kernel on a rank-{len(shape) if shape else '?'} input")
    if any(d != 1 for d in args.dilations):
        raise ctx.unsupported("dilations (onnxruntime's QLinearAveragePool has none)")
    x = ctx.call(rt.dequantize_f32, ctx.input(0), ctx.input(1), ctx.input(2))
    x = ctx.method("movedim", x, -1, 1) if channels_last else x
    ceil_mode, include_pad = bool(ctx.attr("ceil_mode", 0)), bool(ctx.attr("count_include_pad", 0))
    if ceil_mode and include_pad:
        y = _average_over_whole_kernel(ctx, x, args, spatial)
    else:
        begin = list(args.begin) if args.static else None
        end = list(args.end) if args.static else None
        y = ctx.call(rt_pool.avg_pool, x, args.kernel, args.strides, args.dilations, begin, end,
                     args.auto_pad if not args.static else "NOTSET", ceil_mode, include_pad)
    y = ctx.method("movedim", y, 1, -1) if channels_last else y
    return ctx.call(rt.quantize_pool, y, ctx.input(3), ctx.input(4), dtype)


def _average_over_whole_kernel(ctx, x, args, spatial):
    """onnxruntime divides by the whole kernel size with count_include_pad, also for the windows that
    ceil_mode lets run past the padded input (ONNX's AveragePool counts only what lies inside)."""
    if not args.static or spatial is None or None in spatial:
        raise ctx.unsupported("ceil_mode with count_include_pad needs the input's spatial shape at conversion time")
    begin, _, end_full, _ = rt_pool.resolve(spatial, args.kernel, args.strides, args.dilations, args.begin, args.end,
                                            "NOTSET", True)
    padded = ctx.call(F.pad, x, torch_pad_list(begin, end_full))
    total = ctx.call(rt_pool.window_sum, padded, args.kernel, args.strides, args.dilations)
    return ctx.call(torch.div, total, float(math.prod(args.kernel)))


@converter("QGemm", since=1, domain=MS)
def qgemm(ctx):
    _eight_bit(ctx, 0)
    _per_tensor(ctx, 1, 2, 7, 8)
    if ctx.has_input(8) and not ctx.has_input(7):
        raise ctx.fail("y_zero_point is given without y_scale")
    return ctx.call(rt.qgemm, *[ctx.input(i) for i in range(9)], float(ctx.attr("alpha", 1.0)),
                    bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0)))
