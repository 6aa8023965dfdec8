"""Activation functions and Clip.

Attribute-parameterised activations map onto ``torch.nn.functional`` where its parameters
match ONNX's; the rest (HardSigmoid's alpha/beta, Selu's gamma, Shrink, Swish's alpha, integer
LeakyRelu/PRelu) call small helpers of ``runtime/elementwise.py``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..builder import Handle, NodeContext
from ..registry import converter
from ..runtime import elementwise as rt
from .arithmetic import WIDE_UNSIGNED, plain_dtype


def _is_float(ctx: NodeContext, i: int = 0) -> bool:
    dtype = ctx.dtype(i)
    return dtype is not None and dtype.is_floating_point


@converter("Relu", since=1)
def relu(ctx: NodeContext) -> Handle:
    if plain_dtype(ctx.dtype(0)) and ctx.dtype(0) != torch.uint8:
        return ctx.call(torch.relu, ctx.input(0))
    return ctx.call(rt.relu, ctx.input(0))


@converter("LeakyRelu", since=1)
def leaky_relu(ctx: NodeContext) -> Handle:
    alpha = float(ctx.attr("alpha", 0.01))
    if _is_float(ctx):
        return ctx.call(F.leaky_relu, ctx.input(0), alpha)
    return ctx.call(rt.leaky_relu, ctx.input(0), alpha)


@converter("PRelu", since=1)
def prelu(ctx: NodeContext) -> Handle:
    """slope broadcasts to X (unidirectional); before opset 7 a 1-D slope is per channel."""
    x, slope = ctx.input(0), ctx.input(1)
    rank_x, shape_s = ctx.rank(0), ctx.shape(1)
    if ctx.opset < 7 and rank_x is not None and rank_x > 2 and shape_s is not None and len(shape_s) == 1:
        slope = ctx.getitem(slope, (slice(None),) + (None,) * (rank_x - 2))
    return ctx.call(rt.prelu, x, slope)


@converter("Elu", since=1)
def elu(ctx: NodeContext) -> Handle:
    return ctx.call(F.elu, ctx.input(0), float(ctx.attr("alpha", 1.0)))


@converter("Selu", since=1)
def selu(ctx: NodeContext) -> Handle:
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    return ctx.call(rt.selu, ctx.input(0), alpha, gamma)


@converter("Celu", since=12)
def celu(ctx: NodeContext) -> Handle:
    return ctx.call(F.celu, ctx.input(0), float(ctx.attr("alpha", 1.0)))


@converter("Gelu", since=20)
def gelu(ctx: NodeContext) -> Handle:
    approximate = str(ctx.attr("approximate", "none"))
    if approximate not in ("none", "tanh"):
        raise ctx.fail(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return ctx.call(F.gelu, ctx.input(0), approximate=approximate)


@converter("Sigmoid", since=1)
def sigmoid(ctx: NodeContext) -> Handle:
    return ctx.call(torch.sigmoid, ctx.input(0))


@converter("HardSigmoid", since=1)
def hard_sigmoid(ctx: NodeContext) -> Handle:
    alpha = float(ctx.attr("alpha", 0.2))
    beta = float(ctx.attr("beta", 0.5))
    if np.float32(alpha) == np.float32(1 / 6) and beta == 0.5:  # torch's hardsigmoid (MobileNetV3's gates)
        return ctx.call(F.hardsigmoid, ctx.input(0))
    return ctx.call(rt.hard_sigmoid, ctx.input(0), alpha, beta)


@converter("HardSwish", since=14)
def hard_swish(ctx: NodeContext) -> Handle:
    """x * HardSigmoid(x) with alpha 1/6 and beta 0.5, exactly torch's hardswish."""
    return ctx.call(F.hardswish, ctx.input(0))


@converter("Tanh", since=1)
def tanh(ctx: NodeContext) -> Handle:
    return ctx.call(torch.tanh, ctx.input(0))


@converter("Softplus", since=1)
def softplus(ctx: NodeContext) -> Handle:
    return ctx.call(F.softplus, ctx.input(0))


@converter("Softsign", since=1)
def softsign(ctx: NodeContext) -> Handle:
    return ctx.call(F.softsign, ctx.input(0))


@converter("Swish", since=24)
def swish(ctx: NodeContext) -> Handle:
    return ctx.call(rt.swish, ctx.input(0), float(ctx.attr("alpha", 1.0)))


@converter("Mish", since=18)
def mish(ctx: NodeContext) -> Handle:
    return ctx.call(F.mish, ctx.input(0))


@converter("ThresholdedRelu", since=10)
def thresholded_relu(ctx: NodeContext) -> Handle:
    return ctx.call(rt.thresholded_relu, ctx.input(0), float(ctx.attr("alpha", 1.0)))


@converter("Shrink", since=9)
def shrink(ctx: NodeContext) -> Handle:
    bias = float(ctx.attr("bias", 0.0))
    lambd = float(ctx.attr("lambd", 0.5))
    return ctx.call(rt.shrink, ctx.input(0), bias, lambd)


@converter("Clip", since=1)
def clip_attrs(ctx: NodeContext) -> Handle:
    """Clip-1/6: bounds are float attributes (absent means unbounded)."""
    lo = ctx.attr("min", None)
    hi = ctx.attr("max", None)
    lo = None if lo is None or lo == -math.inf else float(lo)
    hi = None if hi is None or hi == math.inf else float(hi)
    if lo is None and hi is None:
        return ctx.input(0)
    return ctx.call(torch.clamp, ctx.input(0), lo, hi)


@converter("Clip", since=11)
def clip_inputs(ctx: NodeContext) -> Handle:
    """Clip-11+: bounds are optional 0-d inputs of X's dtype, possibly computed at run time."""
    x = ctx.input(0)
    lo = ctx.input(1) if ctx.has_input(1) else None
    hi = ctx.input(2) if ctx.has_input(2) else None
    if lo is None and hi is None:
        return x
    dtype = ctx.dtype(0)
    if plain_dtype(dtype) and dtype not in WIDE_UNSIGNED and all(
        ctx.dtype(i) == dtype for i in (1, 2) if ctx.has_input(i)
    ):
        if dtype.is_floating_point:
            # Constant bounds as numbers (ReLU6 is Clip(0, 6)): a clamp with tensor bounds is a
            # broadcasting ternary op, 2.5x slower than the scalar one on a channels-last activation.
            lo, hi = (_number_bound(ctx, i, b) for i, b in ((1, lo), (2, hi)))
        return ctx.call(torch.clamp, x, lo, hi)
    return ctx.call(rt.clip, x, lo, hi)


def _number_bound(ctx: NodeContext, i: int, bound: Handle) -> Handle:
    """A constant single-value bound as a Python float (exact: float32/float16 values are doubles)."""
    value = ctx.const(i) if bound is not None else None
    if value is None or value.size != 1 or value.dtype.kind != "f":
        return bound
    return float(value.reshape(()))
