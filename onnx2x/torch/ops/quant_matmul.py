"""com.microsoft matrix products with quantized operands: MatMulIntegerToFloat,
DynamicQuantizeMatMul (what onnxruntime's optimizer fuses ``quantize_dynamic`` output into) and
MatMulNBits (the 2/4/8-bit block-quantized weights of LLM builders).

MatMulNBits keeps its weights packed in the module (see :mod:`..runtime.quant_matmul`).
"""
from __future__ import annotations

import torch

from ..registry import converter
from ..runtime import quant_matmul as rt
from ..runtime import quantize as rt_quantize

MS = "com.microsoft"
_NBITS = (2, 4, 8)


@converter("MatMulIntegerToFloat", since=1, domain=MS)
def matmul_integer_to_float(ctx):
    return ctx.call(rt_quantize.matmul_integer_to_float, *[ctx.input(i) for i in range(7)])


@converter("DynamicQuantizeMatMul", since=1, domain=MS)
def dynamic_quantize_matmul(ctx):
    """A is quantized to uint8 per tensor as DynamicQuantizeLinear does, then multiplied exactly."""
    if ctx.dtype(0) not in (None, torch.float32):
        raise ctx.unsupported(f"{ctx.dtype(0)} input A (onnxruntime takes float32)")
    q = ctx.call(rt_quantize.dynamic_quantize, ctx.input(0))
    return ctx.call(rt_quantize.matmul_integer_to_float, ctx.getitem(q, 0), ctx.input(1), ctx.getitem(q, 1), ctx.input(2),
                    ctx.getitem(q, 2), ctx.input(3), ctx.input(4))


@converter("MatMulNBits", since=1, domain=MS)
def matmul_nbits(ctx):
    k, n = int(ctx.attr("K")), int(ctx.attr("N"))
    bits = int(ctx.attr("bits", 4))
    block_size = int(ctx.attr("block_size"))
    if bits not in _NBITS:
        raise ctx.unsupported(f"bits={bits} (supported: {', '.join(map(str, _NBITS))})")
    if block_size < 16 or block_size & (block_size - 1):
        raise ctx.fail(f"block_size={block_size} must be a power of two >= 16")
    k_blocks = (k + block_size - 1) // block_size
    b_shape = ctx.shape(1)
    blob = block_size * bits // 8
    if b_shape is not None and None not in b_shape and b_shape[0] * (b_shape[1] if len(b_shape) > 1 else 1) * (
            b_shape[2] if len(b_shape) > 2 else 1) != n * k_blocks * blob:
        raise ctx.fail(f"B has shape {list(b_shape)}; K={k}, N={n}, bits={bits}, block_size={block_size} "
                       f"need [{n}, {k_blocks}, {blob}]")
    packed_zp = ctx.has_input(3) and ctx.dtype(3) == torch.uint8
    a_dtype = ctx.dtype(0)
    if a_dtype is not None and not a_dtype.is_floating_point:
        raise ctx.unsupported(f"{a_dtype} input A")
    # onnxruntime's CPU kernel quantizes A to int8 for accuracy_level 4 when its packed int8 kernel
    # applies (float32 A, 4/8-bit codes, no g_idx, zero points absent or packed uint8)
    int8_a = (int(ctx.attr("accuracy_level", 0)) == 4 and bits in (4, 8) and a_dtype in (None, torch.float32)
              and not ctx.has_input(4) and (not ctx.has_input(3) or packed_zp))
    return ctx.call(rt.matmul_nbits, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4),
                    ctx.input(5), k, n, bits, block_size, packed_zp, int8_a)
