"""Element-wise math, reductions and small composite ops MXNet 1.9.1's exporter lacks or gets wrong.

Added: sign, round (half away from zero, unlike ONNX Round), erf, sinh, cosh, log1p, expm1
(accurate near 0), rsqrt, log10, trunc, arcsinh, broadcast_hypot, broadcast_maximum, pick,
smooth_l1, moments, sort, softmin. Fixed: ``sum``/``sum_axis`` with ``exclude=True`` (it reduced
the given axes instead of the others) and MXNet's shape (1,) for a full reduction; LeakyReLU
``prelu`` (the stock translation hands PRelu a (C,) slope, which ONNX broadcasts against the last
axis instead of the channel axis) and ``rrelu`` (at inference a leaky ReLU with slope
(lower_bound + upper_bound) / 2).
"""
from __future__ import annotations

import math

import numpy as np

from .ops_common import Emitter, delegate, stock_translation
from .translations import translation

_DIRECT_UNARY = {"sign": "Sign", "erf": "Erf", "sinh": "Sinh", "cosh": "Cosh", "arcsinh": "Asinh"}


@translation(tuple(_DIRECT_UNARY), since=12)
def convert_direct_unary(node, **kwargs):
    e = Emitter(node, kwargs)
    e.op(_DIRECT_UNARY[e.op_type], [e.inputs[0]], e.name)
    return e.done()


@translation("round", since=12)
def convert_round(node, **kwargs):
    """MXNet rounds halves away from zero (ONNX Round goes to even): sign(x) * (floor|x| + [frac >= 0.5]).

    The fraction |x| - floor|x| is exact in floating point, unlike floor(|x| + 0.5), which
    rounds 0.49999997 up.
    """
    e = Emitter(node, kwargs)
    x = e.inputs[0]
    magnitude = e.op("Abs", [x])
    whole = e.op("Floor", [magnitude])
    fraction = e.op("Sub", [magnitude, whole])
    round_up = e.op("Cast", [e.op("GreaterOrEqual", [fraction, e.scalar(0.5)])], to=e.onnx_dtype())
    e.op("Mul", [e.op("Sign", [x]), e.op("Add", [whole, round_up])], e.name)
    return e.done()


@translation("trunc", since=12)
def convert_trunc(node, **kwargs):
    e = Emitter(node, kwargs)
    x = e.inputs[0]
    e.op("Mul", [e.op("Sign", [x]), e.op("Floor", [e.op("Abs", [x])])], e.name)
    return e.done()


@translation("rsqrt", since=12)
def convert_rsqrt(node, **kwargs):
    e = Emitter(node, kwargs)
    e.op("Reciprocal", [e.op("Sqrt", [e.inputs[0]])], e.name)
    return e.done()


@translation("log10", since=12)
def convert_log10(node, **kwargs):
    e = Emitter(node, kwargs)
    e.op("Div", [e.op("Log", [e.inputs[0]]), e.scalar(math.log(10.0))], e.name)
    return e.done()


@translation("log1p", since=12)
def convert_log1p(node, **kwargs):
    """log(1 + x) without losing small x: u = 1 + x; log(u) * x / (u - 1), or x where u == 1."""
    e = Emitter(node, kwargs)
    x = e.inputs[0]
    one = e.scalar(1.0)
    u = e.op("Add", [x, one])
    u_minus_one = e.op("Sub", [u, one])
    is_one = e.op("Equal", [u_minus_one, e.scalar(0.0)])
    safe = e.op("Where", [is_one, one, u_minus_one])
    corrected = e.op("Mul", [e.op("Log", [u]), e.op("Div", [x, safe])])
    e.op("Where", [is_one, x, corrected], e.name)
    return e.done()


@translation("expm1", since=12)
def convert_expm1(node, **kwargs):
    """exp(x) - 1 without losing small x: u = exp(x); (u - 1) * x / log(u), or x where u == 1."""
    e = Emitter(node, kwargs)
    x = e.inputs[0]
    one = e.scalar(1.0)
    u = e.op("Exp", [x])
    u_minus_one = e.op("Sub", [u, one])
    log_u = e.op("Log", [u])
    # where u is 1 (|x| tiny) or exp under/overflowed, use x or the plain difference
    tiny = e.op("Equal", [u_minus_one, e.scalar(0.0)])
    finite = e.op("And", [e.op("Not", [e.op("Equal", [log_u, e.scalar(0.0)])]),
                          e.op("Not", [e.op("IsInf", [log_u])])])
    safe_log = e.op("Where", [finite, log_u, one])
    corrected = e.op("Mul", [u_minus_one, e.op("Div", [x, safe_log])])
    accurate = e.op("Where", [finite, corrected, u_minus_one])
    e.op("Where", [tiny, x, accurate], e.name)
    return e.done()


@translation("broadcast_hypot", since=12)
def convert_broadcast_hypot(node, **kwargs):
    e = Emitter(node, kwargs)
    a, b = e.inputs[:2]
    squares = e.op("Add", [e.op("Mul", [a, a]), e.op("Mul", [b, b])])
    e.op("Sqrt", [squares], e.name)
    return e.done()


@translation("broadcast_maximum", since=12)
def convert_broadcast_maximum(node, **kwargs):
    e = Emitter(node, kwargs)
    e.op("Max", e.inputs[:2], e.name)
    return e.done()


def _reduced_axes(e: Emitter, rank: int) -> list[int]:
    """MXNet's reduction axes (``axis``, ``exclude``) as sorted non-negative ints."""
    raw = e.attr_tuple("axis", ())
    axes = sorted({int(a) % rank for a in raw if a is not None})
    if not raw:  # None or () reduce everything (exclude then keeps everything)
        axes = [] if e.attr_bool("exclude", False) else list(range(rank))
    elif e.attr_bool("exclude", False):
        axes = [a for a in range(rank) if a not in axes]
    return axes


@translation(("sum", "sum_axis"), since=12)
def convert_sum(node, **kwargs):
    """ReduceSum over MXNet's axes; MXNet returns shape (1,) when every axis is reduced away."""
    e = Emitter(node, kwargs)
    rank = len(e.need_input_shape(0))
    keepdims = e.attr_bool("keepdims", False)
    axes = _reduced_axes(e, rank)
    if not axes:
        e.op("Identity", [e.inputs[0]], e.name)
    elif not keepdims and len(axes) == rank:
        total = e.reduce("ReduceSum", e.inputs[0], axes, keepdims=False)
        e.op("Reshape", [total, e.ints([1], "one")], e.name)
    else:
        e.reduce("ReduceSum", e.inputs[0], axes, keepdims=keepdims, out=e.name)
    return e.done()


@translation("moments", since=12)
def convert_moments(node, **kwargs):
    """Mean and (biased) variance over ``axes``: two outputs, ``name0`` and ``name1``."""
    e = Emitter(node, kwargs)
    rank = len(e.need_input_shape(0))
    raw = e.attr_tuple("axes", ())
    axes = sorted({int(a) % rank for a in raw if a is not None}) or list(range(rank))
    keepdims = e.attr_bool("keepdims", False)
    x = e.inputs[0]
    mean = e.reduce("ReduceMean", x, axes, keepdims=True)
    centred = e.op("Sub", [x, mean])
    if keepdims:
        e.op("Identity", [mean], f"{e.name}0")
        e.reduce("ReduceMean", e.op("Mul", [centred, centred]), axes, keepdims=True, out=f"{e.name}1")
        return e.done()
    var = e.reduce("ReduceMean", e.op("Mul", [centred, centred]), axes, keepdims=False)
    squeezed = e.squeeze(mean, axes)
    if len(axes) == rank:  # MXNet gives shape (1,) for a full reduction
        one = e.ints([1], "one")
        e.op("Reshape", [squeezed, one], f"{e.name}0")
        e.op("Reshape", [var, one], f"{e.name}1")
    else:
        e.op("Identity", [squeezed], f"{e.name}0")
        e.op("Identity", [var], f"{e.name}1")
    return e.done()


@translation("smooth_l1", since=12)
def convert_smooth_l1(node, **kwargs):
    """0.5 * (sigma * x)^2 where |x| < 1 / sigma^2, else |x| - 0.5 / sigma^2 (sigma = ``scalar``)."""
    e = Emitter(node, kwargs)
    sigma = e.attr_float("scalar", 1.0)
    x = e.inputs[0]
    sigma2 = sigma * sigma
    magnitude = e.op("Abs", [x])
    quadratic = e.op("Mul", [e.op("Mul", [x, x]), e.scalar(0.5 * sigma2)])
    linear = e.op("Sub", [magnitude, e.scalar(0.5 / sigma2)])
    e.op("Where", [e.op("Less", [magnitude, e.scalar(1.0 / sigma2)]), quadratic, linear], e.name)
    return e.done()


@translation("softmin", since=12)
def convert_softmin(node, **kwargs):
    """softmax(-x / temperature) along ``axis`` (Softmax is per-axis from opset 13)."""
    e = Emitter(node, kwargs)
    if e.attr_bool("use_length", False):
        raise e.fail("use_length=True is not supported")
    axis = e.attr_int("axis", -1)
    temperature = e.attr_float("temperature", None)
    scaled = e.op("Neg", [e.inputs[0]])
    if temperature is not None and temperature != 1.0:
        scaled = e.op("Div", [scaled, e.scalar(temperature)])
    if e.opset < 13:
        raise e.fail("softmin needs opset 13 or later")
    e.op("Softmax", [scaled], e.name, axis=axis)
    return e.done()


@translation("pick", since=12)
def convert_pick(node, **kwargs):
    """data[..., index, ...] along ``axis`` with MXNet's clip or wrap of out-of-range indices."""
    e = Emitter(node, kwargs)
    data, index = e.inputs[:2]
    if not e.has("axis"):
        if "axis" in e.attrs:  # axis=None: pick from the flattened array
            raise e.fail("axis=None is not supported")
    axis = e.attr_int("axis", -1)
    keepdims = e.attr_bool("keepdims", False)
    mode = e.attr_str("mode", "clip")
    rank = len(e.need_input_shape(0))
    axis = axis % rank
    size = e.dims(data, axis, axis + 1)
    indices = e.cast(index, np.int64)
    if mode == "wrap":
        indices = e.op("Mod", [indices, size])
    elif mode == "clip":
        upper = e.op("Sub", [size, e.ints([1], "one")])
        indices = e.op("Min", [e.op("Max", [indices, e.ints([0], "zero")]), upper])
    else:
        raise e.fail(f"mode={mode} is not supported")
    index_rank = len(e.need_input_shape(1))
    if index_rank == rank - 1:
        indices = e.unsqueeze(indices, [axis])
    elif index_rank != rank:
        raise e.fail(f"index of rank {index_rank} does not fit data of rank {rank}")
    picked = e.op("GatherElements", [data, indices], axis=axis)
    if keepdims:
        e.op("Identity", [picked], e.name)
    else:
        e.squeeze(picked, [axis], out=e.name)
    return e.done()


@translation("sort", since=12)
def convert_sort(node, **kwargs):
    """TopK over the whole axis, ascending unless ``is_ascend=False``."""
    e = Emitter(node, kwargs)
    if "axis" in e.attrs and not e.has("axis"):
        raise e.fail("axis=None is not supported")
    rank = len(e.need_input_shape(0))
    axis = e.attr_int("axis", -1) % rank
    ascending = e.attr_bool("is_ascend", True)
    k = e.dims(e.inputs[0], axis, axis + 1)
    e.op("TopK", [e.inputs[0], k], [e.name, e.tmp("indices")], axis=axis, largest=0 if ascending else 1, sorted=1)
    return e.done()


def _prelu_slope_shape(data_rank: int) -> list[int]:
    """ONNX PRelu broadcasts its slope from the right, MXNet lines gamma up with axis 1:
    (C,) becomes (C, 1, ..., 1) with one 1 per dimension after the channel axis."""
    return [-1] + [1] * max(data_rank - 2, 0)


@translation("LeakyReLU", since=12)
def convert_leaky_relu(node, **kwargs):
    """``prelu`` (slope reshaped for the input's rank) and ``rrelu`` (at inference a leaky ReLU
    with the mean slope); the other act types go down the chain."""
    e = Emitter(node, kwargs)
    act_type = e.attr_str("act_type", "leaky")
    if act_type == "prelu":
        rank = len(e.need_input_shape(0))
        data, gamma = e.inputs[:2]
        if rank > 2:
            gamma = e.op("Reshape", [gamma, e.ints(_prelu_slope_shape(rank), "slope_shape")])
        e.op("PRelu", [data, gamma], e.name)
        return e.done()
    if act_type != "rrelu":
        return delegate("LeakyReLU", convert_leaky_relu, stock_translation("convert_leakyrelu"), node, kwargs)
    slope = (e.attr_float("lower_bound", 0.125) + e.attr_float("upper_bound", 0.334)) / 2.0
    outs = e.output_names(2)
    e.op("LeakyRelu", [e.inputs[0]], outs[0], alpha=slope)
    if len(outs) > 1:  # the random-slope mask output: not drawn at inference (zeros)
        e.op("Sub", [outs[0], outs[0]], outs[1])
    return e.done()
