"""onnxruntime ``com.microsoft`` activations and fused linear ops.

Gelu, FastGelu, BiasGelu, QuickGelu, BiasAdd, BiasSplitGelu, BiasSoftmax (transformer
optimizer and diffusion fusions) and FusedConv, FusedGemm, FusedMatMul/TransposeMatMul,
GemmFastGelu, NhwcMaxPool and Trilu (graph-level fusions onnxruntime saves into optimized
models). Each becomes plain torch calls; the fused activation comes after the linear op.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..builder import Handle, NodeContext
from ..registry import converter
from ..runtime import contrib_activation as rt
from ..runtime import elementwise as rt_elem
from ..runtime import linalg as rt_linalg
from ..runtime import pool as rt_pool
from ._window import same_pads, window_args
from .conv import _conv, _kernel
from .shape import trilu as onnx_trilu

MS = "com.microsoft"


def _text(value, default: str = "") -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _add_bias(ctx: NodeContext, x: Handle, index: int) -> Handle:
    return ctx.call(torch.add, x, ctx.input(index)) if ctx.has_input(index) else x


@converter("Gelu", since=1, domain=MS)
def gelu(ctx: NodeContext) -> Handle:
    return ctx.call(F.gelu, ctx.input(0))


@converter("BiasGelu", since=1, domain=MS)
def bias_gelu(ctx: NodeContext) -> Handle:
    return ctx.call(F.gelu, _add_bias(ctx, ctx.input(0), 1))


@converter("FastGelu", since=1, domain=MS)
def fast_gelu(ctx: NodeContext) -> Handle:
    """0.5 x (1 + tanh(0.797885 x + 0.035677 x^3)): torch's tanh-approximated gelu."""
    return ctx.call(F.gelu, _add_bias(ctx, ctx.input(0), 1), approximate="tanh")


@converter("QuickGelu", since=1, domain=MS)
def quick_gelu(ctx: NodeContext) -> Handle:
    """x * sigmoid(alpha * x)."""
    x = ctx.input(0)
    alpha = float(ctx.attr("alpha", 1.702))
    if alpha == 1.0:
        return ctx.call(F.silu, x)
    return ctx.call(torch.mul, x, ctx.call(torch.sigmoid, ctx.call(torch.mul, x, alpha)))


@converter("BiasAdd", since=1, domain=MS)
def bias_add(ctx: NodeContext) -> Handle:
    """X + bias + skip."""
    return ctx.call(torch.add, ctx.call(torch.add, ctx.input(0), ctx.input(1)), ctx.input(2))


@converter("BiasSplitGelu", since=1, domain=MS)
def bias_split_gelu(ctx: NodeContext) -> Handle:
    return ctx.call(rt.bias_split_gelu, ctx.input(0), ctx.input(1))


@converter("BiasSoftmax", since=1, domain=MS)
def bias_softmax(ctx: NodeContext) -> Handle:
    return ctx.call(rt.bias_softmax, ctx.input(0), ctx.input(1), int(ctx.attr("axis", 1)),
                    bool(ctx.attr("is_inner_broadcast")))


# --- fused activations ----------------------------------------------------------------------------
def _activation(ctx: NodeContext, name: str, params: list[float]) -> Optional[Callable[[Handle], Handle]]:
    """``y -> act(y)`` for onnxruntime's fused-activation names, None for no activation.

    ``params`` are the activation's parameters in onnxruntime's order (LeakyRelu: alpha;
    Clip: min, max; HardSigmoid: alpha, beta; Elu/Celu/ThresholdedRelu: alpha; Selu: alpha,
    gamma; ParametricSoftplus/ScaledTanh: alpha, beta); absent ones take the standard op's defaults.
    """
    def p(i: int, default: float) -> float:
        return float(params[i]) if i < len(params) and params[i] is not None else default

    table: dict[str, Callable[[Handle], Handle]] = {
        "Relu": lambda y: ctx.call(torch.relu, y),
        "Tanh": lambda y: ctx.call(torch.tanh, y),
        "Sigmoid": lambda y: ctx.call(torch.sigmoid, y),
        "Silu": lambda y: ctx.call(F.silu, y),
        "LeakyRelu": lambda y: ctx.call(F.leaky_relu, y, p(0, 0.01)),
        "Clip": lambda y: ctx.call(torch.clamp, y, p(0, float("-inf")), p(1, float("inf"))),
        "HardSigmoid": lambda y: ctx.call(rt_elem.hard_sigmoid, y, p(0, 0.2), p(1, 0.5)),
        "Elu": lambda y: ctx.call(F.elu, y, p(0, 1.0)),
        "Celu": lambda y: ctx.call(F.celu, y, p(0, 1.0)),
        "Selu": lambda y: ctx.call(rt_elem.selu, y, p(0, 1.67326319217681884765625),
                                   p(1, 1.05070102214813232421875)),
        "ThresholdedRelu": lambda y: ctx.call(rt_elem.thresholded_relu, y, p(0, 1.0)),
        "Softplus": lambda y: ctx.call(F.softplus, y),
        "Softsign": lambda y: ctx.call(F.softsign, y),
        "ParametricSoftplus": lambda y: ctx.call(torch.mul, ctx.call(F.softplus, ctx.call(torch.mul, y, p(1, 1.0))),
                                                 p(0, 1.0)),
        "ScaledTanh": lambda y: ctx.call(torch.mul, ctx.call(torch.tanh, ctx.call(torch.mul, y, p(1, 1.0))), p(0, 1.0)),
    }
    if not name:
        return None
    if name not in table:
        raise ctx.unsupported(f"attribute activation={name!r} (known: {', '.join(sorted(table))})")
    return table[name]


@converter("FusedConv", since=1, domain=MS)
def fused_conv(ctx: NodeContext) -> Handle:
    """Conv, plus the optional residual Z, then the activation (onnxruntime's MLAS set, with
    ``activation_params``)."""
    y = _conv(ctx, ctx.input(0), ctx.input(1), ctx.input(2), _kernel(ctx))
    y = _add_bias(ctx, y, 3)
    name = _text(ctx.attr("activation", None))
    if name not in ("", "Relu", "Tanh", "Sigmoid", "Silu", "LeakyRelu", "Clip", "HardSigmoid"):
        raise ctx.unsupported(f"attribute activation={name!r}")
    act = _activation(ctx, name, [float(v) for v in (ctx.attr("activation_params", None) or [])])
    return act(y) if act else y


@converter("FusedGemm", since=1, domain=MS)
def fused_gemm(ctx: NodeContext) -> Handle:
    """Gemm then the activation; its parameters are activation_alpha/beta/gamma."""
    y = ctx.call(rt_linalg.gemm, ctx.input(0), ctx.input(1), ctx.input(2), float(ctx.attr("alpha", 1.0)),
                 float(ctx.attr("beta", 1.0)), bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0)))
    name = _text(ctx.attr("activation", None))
    params = [ctx.attr(n, None) for n in ("activation_alpha", "activation_beta", "activation_gamma")]
    if name == "Selu":  # Selu's second parameter is gamma
        params = [params[0], params[2]]
    act = _activation(ctx, name, params)
    return act(y) if act else y


@converter(("FusedMatMul", "TransposeMatMul"), since=1, domain=MS)
def fused_matmul(ctx: NodeContext) -> Handle:
    """alpha * op(A) @ op(B): transBatch moves the first axis behind the other batch axes
    ([d0, d1, .., dn-2, dn-1] -> [d1, .., dn-2, d0, dn-1]), then trans swaps the last two."""
    a = _matmul_operand(ctx, 0, "A")
    b = _matmul_operand(ctx, 1, "B")
    y = ctx.call(torch.matmul, a, b)
    alpha = float(ctx.attr("alpha", 1.0))
    return y if alpha == 1.0 else ctx.call(torch.mul, y, alpha)


def _matmul_operand(ctx: NodeContext, i: int, letter: str) -> Handle:
    x = ctx.input(i)
    rank = ctx.rank(i)
    trans = bool(ctx.attr(f"trans{letter}", 0))
    trans_batch = bool(ctx.attr(f"transBatch{letter}", 0))
    if (trans or trans_batch) and rank is None:  # shape inference stopped upstream (at a contrib op)
        return ctx.call(rt.matmul_operand, x, trans, trans_batch)
    if rank == 1:
        return x
    if trans_batch and rank > 2:
        x = ctx.method("permute", x, *range(1, rank - 1), 0, rank - 1)
    if trans:
        x = ctx.method("transpose", x, -1, -2)
    return x


@converter("GemmFastGelu", since=1, domain=MS)
def gemm_fast_gelu(ctx: NodeContext) -> Handle:
    """FastGelu(X @ W + bias)."""
    y = _add_bias(ctx, ctx.call(torch.matmul, ctx.input(0), ctx.input(1)), 2)
    return ctx.call(F.gelu, y, approximate="tanh")


@converter("NhwcMaxPool", since=1, domain=MS)
def nhwc_max_pool(ctx: NodeContext) -> Handle:
    """MaxPool on [N, H, W, C] (8-bit integers): pooled channels-first, given back channels-last.

    SAME padding is sized as onnxruntime's pool kernels size it, from the undilated kernel.
    """
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    r = len(kernel)
    if r not in (1, 2, 3):
        raise ctx.unsupported(f"{r}-D pooling")
    shape = ctx.shape(0)
    spatial = None if shape is None else list(shape[1:-1])
    args = window_args(ctx, kernel, spatial)
    if args.auto_pad in ("SAME_UPPER", "SAME_LOWER") and any(d != 1 for d in args.dilations):
        if not args.static:
            raise ctx.unsupported("SAME padding with dilations on an input whose size is unknown at conversion")
        args.begin, args.end = same_pads(spatial, kernel, args.strides, [1] * r, args.auto_pad == "SAME_LOWER")
    x = ctx.method("permute", ctx.input(0), 0, r + 1, *range(1, r + 1))
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    plain = args.symmetric and all(0 <= p <= k // 2 for p, k in zip(args.begin, args.kernel))
    if plain:
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[r]
        y = ctx.call(pool, x, args.kernel, args.strides, list(args.begin), args.dilations, ceil_mode)
    else:
        y = ctx.call(rt_pool.max_pool, x, args.kernel, args.strides, args.dilations,
                     list(args.begin) if args.static else None, list(args.end) if args.static else None,
                     args.auto_pad if not args.static else "NOTSET", ceil_mode, 0, False)
    return ctx.method("permute", y, 0, *range(2, r + 2), 1)


converter("Trilu", since=1, domain=MS)(onnx_trilu)
