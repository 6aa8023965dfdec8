"""Arithmetic and math element-wise ops: Add..Div, Mod, Pow, variadic Sum/Mean/Max/Min, unary math.

ONNX fixes the output dtype (integer ops stay integer, Pow keeps the base type), so a plain torch
function is emitted only when the input dtype is known and has torch kernels; otherwise a helper
of ``runtime/elementwise.py`` that dispatches on dtype at run time is called.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..builder import Handle, NodeContext
from ..registry import converter
from ..runtime import elementwise as rt

WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)
_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)


def plain_dtype(dtype: Optional[torch.dtype]) -> bool:
    """True when ``dtype`` is known and torch's element-wise kernels cover it."""
    return dtype is not None and dtype not in WIDE_UNSIGNED and dtype not in _FLOAT8


def unary_by_dtype(ctx: NodeContext, torch_fn: Callable, fallback: Callable) -> Handle:
    """``torch_fn`` on input 0 where torch's kernel covers its dtype, else the runtime emulation ``fallback``."""
    return ctx.call(torch_fn if plain_dtype(ctx.dtype(0)) else fallback, ctx.input(0))


def is_integer(dtype: Optional[torch.dtype]) -> bool:
    return dtype is not None and not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def binary_inputs(ctx: NodeContext) -> tuple[Handle, Handle]:
    """Inputs A and B; before opset 7 a ``broadcast=1, axis=k`` B is aligned to A from axis k."""
    a, b = ctx.input(0), ctx.input(1)
    if ctx.opset < 7 and ctx.attr("broadcast", 0) and ctx.has_attr("axis"):
        rank_a, rank_b = ctx.rank(0), ctx.rank(1)
        if rank_a is None or rank_b is None:
            raise ctx.fail("legacy broadcast with 'axis' needs the ranks of both inputs")
        axis = int(ctx.attr("axis"))
        axis = axis + rank_a if axis < 0 else axis
        trailing = rank_a - axis - rank_b
        if trailing > 0:
            b = ctx.getitem(b, (Ellipsis,) + (None,) * trailing)
    return a, b


def _binary(op: str, torch_fn: Callable) -> Callable[[NodeContext], Handle]:
    def convert(ctx: NodeContext) -> Handle:
        a, b = binary_inputs(ctx)
        if plain_dtype(ctx.dtype(0)):
            return ctx.call(torch_fn, a, b)
        return ctx.call(rt.binary, op, a, b)

    convert.__name__ = f"convert_{op}"
    convert.__doc__ = f"ONNX {op} with numpy broadcasting, in the inputs' dtype."
    return convert


converter("Add", since=1)(_binary("add", torch.add))
converter("Sub", since=1)(_binary("sub", torch.sub))
converter("Mul", since=1)(_binary("mul", torch.mul))


@converter("Div", since=1)
def div(ctx: NodeContext) -> Handle:
    """True division for floats; integer Div truncates toward zero."""
    a, b = binary_inputs(ctx)
    dtype = ctx.dtype(0)
    if plain_dtype(dtype):
        if is_integer(dtype):
            return ctx.call(torch.div, a, b, rounding_mode="trunc")
        return ctx.call(torch.div, a, b)
    return ctx.call(rt.div, a, b)


@converter("Mod", since=10)
def mod(ctx: NodeContext) -> Handle:
    """fmod=0: result takes the divisor's sign (Python %); fmod=1: the dividend's (C fmod)."""
    a, b = ctx.input(0), ctx.input(1)
    fmod = bool(ctx.attr("fmod", 0))
    if plain_dtype(ctx.dtype(0)):
        return ctx.call(torch.fmod if fmod else torch.remainder, a, b)
    return ctx.call(rt.mod, a, b, fmod)


# A constant exponent is a Python number in ``forward`` (torch.pow with a tensor exponent is an
# element-wise binary kernel: ConvNeXt's LayerNorm spent 64% of its time in it); these ones have a
# named function, which is what torch.pow runs for them anyway.
_NAMED_POWERS: dict[float, Callable] = {2.0: torch.square, 0.5: torch.sqrt, -1.0: torch.reciprocal,
                                        -0.5: torch.rsqrt}


@converter("Pow", since=1)
def pow_(ctx: NodeContext) -> Handle:
    """The result keeps the base's dtype whatever the exponent's."""
    base, exponent = binary_inputs(ctx)
    db, de = ctx.dtype(0), ctx.dtype(1)
    scalar = _constant_exponent(ctx, base, exponent)
    if scalar is not None:
        named = _NAMED_POWERS.get(scalar)
        return ctx.call(named, base) if named is not None else ctx.call(torch.pow, base, scalar)
    if plain_dtype(db) and db == de:
        return ctx.call(torch.pow, base, exponent)
    return ctx.call(rt.power, base, exponent)


def _constant_exponent(ctx: NodeContext, base: Handle, exponent: Handle) -> Optional[float]:
    """The exponent as a float when it is one known number that cannot change the result's shape
    (a [1, 1] exponent on a 1-D base would) and the base is a float type torch computes in."""
    db = ctx.dtype(0)
    if not isinstance(exponent, torch.Tensor) or exponent.numel() != 1:
        return None
    builder = ctx.builder
    if getattr(builder, "trainable", False) and builder.is_weight(exponent):
        return None  # a trainable conversion keeps every float initializer a parameter that learns
    if db is None or not db.is_floating_point or not plain_dtype(db) or exponent.is_complex():
        return None
    rank = ctx.rank(0)
    if exponent.dim() > 0 and (rank is None or exponent.dim() > rank):
        return None
    return float(exponent.reshape(()).item())


# --- variadic ----------------------------------------------------------------------------------
def _fold_inputs(ctx: NodeContext, op: str, torch_fn: Callable) -> Handle:
    handles = [ctx.input(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    if not handles:
        raise ctx.fail("needs at least one input")
    plain = all(plain_dtype(ctx.dtype(i)) for i in range(ctx.num_inputs) if ctx.has_input(i))
    result = handles[0]
    for h in handles[1:]:
        result = ctx.call(torch_fn, result, h) if plain else ctx.call(rt.binary, op, result, h)
    return result


@converter("Sum", since=1)
def sum_(ctx: NodeContext) -> Handle:
    return _fold_inputs(ctx, "add", torch.add)


@converter("Max", since=1)
def max_(ctx: NodeContext) -> Handle:
    """Element-wise maximum of all inputs (NaN propagates, as numpy.maximum)."""
    return _fold_inputs(ctx, "max", torch.maximum)


@converter("Min", since=1)
def min_(ctx: NodeContext) -> Handle:
    return _fold_inputs(ctx, "min", torch.minimum)


@converter("Mean", since=1)
def mean(ctx: NodeContext) -> Handle:
    handles = [ctx.input(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    if len(handles) == 1:
        return handles[0]
    return ctx.call(rt.mean, *handles)


# --- unary -------------------------------------------------------------------------------------
_FLOAT_UNARY = {
    "Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Reciprocal": "reciprocal", "Ceil": "ceil",
    "Floor": "floor", "Round": "round", "Erf": "erf",
    "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan",
    "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh",
}


@converter(tuple(_FLOAT_UNARY), since=1)
def float_unary(ctx: NodeContext) -> Handle:
    """Math functions defined on floats (Round is half to even, like torch.round)."""
    name = _FLOAT_UNARY[ctx.op_type]
    dtype = ctx.dtype(0)
    if dtype is not None and dtype.is_floating_point and dtype not in _FLOAT8:
        return ctx.call(getattr(torch, name), ctx.input(0))
    if dtype is not None and is_integer(dtype) and name in ("ceil", "floor", "round"):
        return ctx.input(0)
    return ctx.call(rt.float_unary, name, ctx.input(0))


@converter("Neg", since=1)
def neg(ctx: NodeContext) -> Handle:
    return ctx.call(torch.neg, ctx.input(0))


@converter("Abs", since=1)
def abs_(ctx: NodeContext) -> Handle:
    return unary_by_dtype(ctx, torch.abs, rt.absolute)


@converter("Sign", since=9)
def sign(ctx: NodeContext) -> Handle:
    return unary_by_dtype(ctx, torch.sign, rt.sign)


@converter("IsInf", since=10)
def is_inf(ctx: NodeContext) -> Handle:
    pos = bool(ctx.attr("detect_positive", 1))
    neg = bool(ctx.attr("detect_negative", 1))
    if pos and neg and plain_dtype(ctx.dtype(0)):
        return ctx.call(torch.isinf, ctx.input(0))
    return ctx.call(rt.is_inf, ctx.input(0), pos, neg)


@converter("IsNaN", since=9)
def is_nan(ctx: NodeContext) -> Handle:
    return unary_by_dtype(ctx, torch.isnan, rt.is_nan)


@converter("BitShift", since=11)
def bit_shift(ctx: NodeContext) -> Handle:
    """Shifts with ONNX's rules for amounts outside [0, bits) and logical right shifts of unsigned types."""
    direction = str(ctx.attr("direction")).upper()
    if direction not in ("LEFT", "RIGHT"):
        raise ctx.fail(f"direction must be LEFT or RIGHT, got {direction!r}")
    return ctx.call(rt.bit_shift, ctx.input(0), ctx.input(1), direction == "LEFT")
