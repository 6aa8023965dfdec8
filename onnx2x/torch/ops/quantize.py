"""QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearConv and QLinearMatMul.

Integer arithmetic is done in float64, which is exact for 8/16-bit operands and keeps the
forward pass on ordinary torch kernels (PyTorch has no integer convolution on CPU).
(MatMulInteger lives with the other matrix products in ``linalg.py``.)
"""
from __future__ import annotations

from typing import Optional

import torch

from ..dtypes import torch_dtype
from ..registry import converter
from ..runtime import quantize as rt
from ._window import pool_dims, window_args

_QUANT_TARGETS = (torch.uint8, torch.int8, torch.uint16, torch.int16, torch.int32,
                  torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)


def _onnx_type_attr(ctx, name: str) -> Optional[torch.dtype]:
    code = int(ctx.attr(name, 0) or 0)
    if not code:
        return None
    dtype = torch_dtype(code)
    if dtype is None:
        raise ctx.unsupported(f"{name}={code}: PyTorch has no such dtype")
    return dtype


def _zero_point(ctx, i: int):
    return ctx.input(i) if ctx.has_input(i) else None


@converter("QuantizeLinear", since=10)
def quantize_linear(ctx):
    out = ctx.dtype(2) if ctx.has_input(2) else None
    out = out or _onnx_type_attr(ctx, "output_dtype") or ctx.output_dtype(0) or torch.uint8
    if out not in _QUANT_TARGETS:
        raise ctx.unsupported(f"quantizing to {out}")
    zp = _zero_point(ctx, 2)
    if out.is_floating_point:
        zp = None  # float8 zero points are 0 by definition
    return ctx.call(rt.quantize, ctx.input(0), ctx.input(1), zp, int(ctx.attr("axis", 1)),
                    int(ctx.attr("block_size", 0)), out, bool(ctx.attr("saturate", 1)),
                    _onnx_type_attr(ctx, "precision"))


@converter("DequantizeLinear", since=10)
def dequantize_linear(ctx):
    in_dtype = ctx.dtype(0)
    if in_dtype is None and ctx.node.inputs[0].dtype is not None:
        raise ctx.unsupported(f"dequantizing {ctx.node.inputs[0].dtype}: PyTorch has no such dtype")
    out = _onnx_type_attr(ctx, "output_dtype") or ctx.dtype(1) or ctx.output_dtype(0) or torch.float32
    return ctx.call(rt.dequantize, ctx.input(0), ctx.input(1), _zero_point(ctx, 2), int(ctx.attr("axis", 1)),
                    int(ctx.attr("block_size", 0)), out)


@converter("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(ctx):
    res = ctx.call(rt.dynamic_quantize, ctx.input(0))
    return ctx.getitem(res, 0), ctx.getitem(res, 1), ctx.getitem(res, 2)


@converter("QLinearMatMul", since=10)
def qlinear_matmul(ctx):
    return ctx.call(rt.qlinear_matmul, *[ctx.input(i) for i in range(8)])


@converter("QLinearConv", since=10)
def qlinear_conv(ctx):
    kernel = ctx.attr("kernel_shape", None)
    if not kernel:
        wshape = ctx.shape(3)
        if wshape is None or any(v is None for v in wshape[2:]):
            raise ctx.fail("kernel_shape is needed when the weight shape is unknown")
        kernel = list(wshape[2:])
    args = window_args(ctx, [int(k) for k in kernel], pool_dims(ctx))
    if not args.static:
        raise ctx.fail("SAME padding needs the input's spatial shape at conversion time")
    if args.rank not in (1, 2, 3):
        raise ctx.unsupported(f"{args.rank}-D QLinearConv")
    return ctx.call(rt.qlinear_conv, *[ctx.input(i) for i in range(9)], args.strides,
                    list(args.begin) + list(args.end), args.dilations, int(ctx.attr("group", 1)))
