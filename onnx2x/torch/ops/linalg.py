"""MatMul, Gemm, Einsum, Det and MatMulInteger (QLinearMatMul lives in quantize.py)."""
from __future__ import annotations

import torch

from ..registry import converter
from ..runtime import linalg as rt
from ..runtime import quantize as rt_quantize


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@converter("MatMul", since=1)
def matmul(ctx):
    a, b = ctx.input(0), ctx.input(1)
    dt = ctx.dtype(0)
    if dt is not None and not dt.is_floating_point and not dt.is_complex:
        # torch's integer matmul does not exist on every device; accumulate in int64 then narrow
        y = ctx.call(torch.matmul, ctx.method("to", a, torch.int64), ctx.method("to", b, torch.int64))
        return ctx.method("to", y, dt)
    shape_a, shape_b = ctx.shape(0), ctx.shape(1)
    if shape_a is not None and shape_b is not None and len(shape_a) >= 3 and len(shape_b) >= 3 and shape_b[-1] == 1:
        return ctx.call(rt.matrix_vector_products, a, b)
    return ctx.call(torch.matmul, a, b)


@converter("Gemm", since=1)
def gemm(ctx):
    return ctx.call(rt.gemm, ctx.input(0), ctx.input(1), ctx.input(2),
                    float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0)),
                    bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0)))


@converter("Einsum", since=12)
def einsum(ctx):
    equation = "".join(_text(ctx.attr("equation")).split())
    return ctx.call(torch.einsum, equation, *[ctx.input(i) for i in range(ctx.num_inputs)])


@converter("Det", since=11)
def det(ctx):
    return ctx.call(torch.linalg.det, ctx.input(0))


@converter("MatMulInteger", since=10)
def matmul_integer(ctx):
    return ctx.call(rt_quantize.matmul_integer, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3))
