"""Element-wise helpers with ONNX semantics where no single torch function has them.

Two gaps drive most of this module: torch kernels for ``uint16``/``uint32``/``uint64`` cover little
beyond conversion, equality and bitwise and/or/xor, and several ONNX ops differ from torch in
dtype rules (integer Div truncates, Pow keeps the base type, float8 casts saturate). Every
function dispatches on ``dtype``, which is static under ``torch.fx``/``torch.export``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

_WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)
_SIGNED_TWIN = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}
_INT64_MIN = -(2**63)
_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)

_COMPARE = {
    "eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge,
}
_BITWISE = {"and": torch.bitwise_and, "or": torch.bitwise_or, "xor": torch.bitwise_xor}


def _is_int(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def _signed_int_op(op: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``op`` on signed (or uint8) integers, the dtypes torch's kernels cover."""
    if op == "add":
        return torch.add(a, b)
    if op == "sub":
        return torch.sub(a, b)
    if op == "mul":
        return torch.mul(a, b)
    if op == "div":
        return torch.div(a, b, rounding_mode="trunc")
    if op == "mod":
        return torch.remainder(a, b)
    if op == "fmod":
        return torch.fmod(a, b)
    if op == "max":
        return torch.maximum(a, b)
    if op == "min":
        return torch.minimum(a, b)
    if op in _COMPARE:
        return _COMPARE[op](a, b)
    if op in _BITWISE:
        return _BITWISE[op](a, b)
    raise ValueError(f"unknown integer op {op!r}")


def _uint64_ordered(v: torch.Tensor) -> torch.Tensor:
    """int64 view of uint64 bits with the sign bit flipped: signed order == unsigned order."""
    return torch.bitwise_xor(v, _INT64_MIN)


def _uint64_divmod(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unsigned 64-bit quotient and remainder on int64 views of the bits."""
    a, b = torch.broadcast_tensors(a, b)
    big_divisor = b < 0  # divisor >= 2**63: the quotient is 0 or 1
    safe_b = torch.where(big_divisor, torch.ones_like(b), b)
    half = torch.bitwise_right_shift(a, 1) & (2**63 - 1)  # logical a >> 1, now non-negative
    q = torch.bitwise_left_shift(torch.div(half, safe_b, rounding_mode="floor"), 1)
    r = a - q * safe_b
    fix = _uint64_ordered(r) >= _uint64_ordered(safe_b)
    q = torch.where(fix, q + 1, q)
    r = torch.where(fix, r - safe_b, r)
    ge = _uint64_ordered(a) >= _uint64_ordered(b)
    q = torch.where(big_divisor, ge.to(torch.int64), q)
    r = torch.where(big_divisor, torch.where(ge, a - b, a), r)
    return q, r


def _uint64_op(op: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    va, vb = a.view(torch.int64), b.view(torch.int64)
    if op in ("add", "sub", "mul") or op in _BITWISE:
        return _signed_int_op(op, va, vb).view(torch.uint64)
    if op in ("eq", "ne"):
        return _COMPARE[op](va, vb)
    if op in _COMPARE:
        return _COMPARE[op](_uint64_ordered(va), _uint64_ordered(vb))
    if op in ("max", "min"):
        ua, ub = _uint64_ordered(va), _uint64_ordered(vb)
        pick_a = ua >= ub if op == "max" else ua <= ub
        return torch.where(pick_a, va, vb).view(torch.uint64)
    if op in ("div", "mod", "fmod"):
        q, r = _uint64_divmod(va, vb)
        return (q if op == "div" else r).view(torch.uint64)
    raise ValueError(f"unknown integer op {op!r}")


def int_binary(op: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer ``op`` (add, sub, mul, div, mod, fmod, max, min, eq..ge, and/or/xor) for every int dtype.

    uint16/uint32 are widened to int64 (their values fit) and wrapped back; uint64 works on the
    int64 view of its bits. Comparisons return bool, everything else keeps ``a.dtype``.
    """
    dtype = a.dtype
    if dtype in (torch.uint16, torch.uint32):
        out = _signed_int_op(op, a.to(torch.int64), b.to(torch.int64))
        return out if out.dtype == torch.bool else out.to(dtype)
    if dtype == torch.uint64:
        return _uint64_op(op, a, b.to(torch.uint64))
    return _signed_int_op(op, a, b)


def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ONNX Div: true division for floats, truncation toward zero for integers."""
    if _is_int(a.dtype):
        return int_binary("div", a, b)
    return torch.div(a, b)


def mod(a: torch.Tensor, b: torch.Tensor, fmod: bool) -> torch.Tensor:
    """ONNX Mod: ``fmod`` takes the sign of the dividend (C fmod), else of the divisor (Python %)."""
    if _is_int(a.dtype):
        return int_binary("fmod" if fmod else "mod", a, b)
    return torch.fmod(a, b) if fmod else torch.remainder(a, b)


def power(base: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """ONNX Pow: the result has the base's dtype whatever the exponent's dtype."""
    dtype = base.dtype
    if dtype.is_floating_point:
        return torch.pow(base, exponent.to(dtype))
    if exponent.dtype.is_floating_point:
        return torch.pow(base.to(torch.float64), exponent.to(torch.float64)).to(dtype)
    if dtype in _WIDE_UNSIGNED or exponent.dtype in _WIDE_UNSIGNED:
        return torch.pow(base.to(torch.int64), exponent.to(torch.int64)).to(dtype)
    return torch.pow(base, exponent).to(dtype)


def compare(op: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``op`` in eq/ne/lt/le/gt/ge as a bool tensor, for every dtype."""
    if a.dtype in _WIDE_UNSIGNED:
        return int_binary(op, a, b)
    return _COMPARE[op](a, b)


def bit_shift(x: torch.Tensor, y: torch.Tensor, left: bool) -> torch.Tensor:
    """ONNX BitShift: arithmetic right shift for signed types, logical for unsigned; a shift
    amount outside ``[0, bits)`` gives 0 (or -1 for a right shift of a negative value)."""
    dtype = x.dtype
    bits = dtype.itemsize * 8
    if dtype == torch.uint64:
        v = x.view(torch.int64)
        s = y.to(torch.uint64).view(torch.int64)
        valid = (s >= 0) & (s < 64)
        s = torch.where(valid, s, torch.zeros_like(s))
        if left:
            out = torch.bitwise_left_shift(v, s)
        else:
            keep = torch.bitwise_not(torch.bitwise_left_shift(torch.full_like(s, -1), 64 - s))
            keep = torch.where(s == 0, torch.full_like(s, -1), keep)
            out = torch.bitwise_and(torch.bitwise_right_shift(v, s), keep)
        return torch.where(valid, out, torch.zeros_like(out)).view(torch.uint64)
    v = x.to(torch.int64)
    s = y.to(torch.int64)
    valid = (s >= 0) & (s < bits)
    s = torch.where(valid, s, torch.zeros_like(s))
    if left:
        out = torch.bitwise_left_shift(v, s)
        fill = torch.zeros_like(out)
    else:
        out = torch.bitwise_right_shift(v, s)
        fill = torch.where(v < 0, torch.full_like(out, -1), torch.zeros_like(out))
    return torch.where(valid, out, fill).to(dtype)


def where(cond: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torch.where that also selects uint16/32/64 (through their signed twins' bits)."""
    dtype = x.dtype
    if dtype in _SIGNED_TWIN:
        twin = _SIGNED_TWIN[dtype]
        return torch.where(cond, x.view(twin), y.view(twin)).view(dtype)
    return torch.where(cond, x, y)


def bitwise_not(x: torch.Tensor) -> torch.Tensor:
    """~x for every integer dtype (uint16/32/64 through their signed twins' bits)."""
    if x.dtype in _SIGNED_TWIN:
        return torch.bitwise_not(x.view(_SIGNED_TWIN[x.dtype])).view(x.dtype)
    return torch.bitwise_not(x)


def absolute(x: torch.Tensor) -> torch.Tensor:
    """abs; the identity for unsigned types (torch lacks kernels for the wide ones)."""
    if x.dtype in _WIDE_UNSIGNED or x.dtype == torch.uint8:
        return x
    return torch.abs(x)


def sign(x: torch.Tensor) -> torch.Tensor:
    """sign for every numeric dtype (0 or 1 for unsigned ones)."""
    if x.dtype in _WIDE_UNSIGNED:
        return torch.ne(x, torch.zeros_like(x)).to(x.dtype)
    return torch.sign(x)


def clip(x: torch.Tensor, lo: Optional[torch.Tensor], hi: Optional[torch.Tensor]) -> torch.Tensor:
    """ONNX Clip with optional bounds; when lo > hi every element becomes hi (as in torch.clamp)."""
    if lo is None and hi is None:
        return x
    dtype = x.dtype
    if dtype in _WIDE_UNSIGNED:
        # min(max(x, lo), hi): the order that makes hi win when lo > hi.
        out = x if lo is None else int_binary("max", x, lo.to(dtype))
        return out if hi is None else int_binary("min", out, hi.to(dtype))
    if lo is not None:
        lo = lo.to(dtype)
    if hi is not None:
        hi = hi.to(dtype)
    return torch.clamp(x, lo, hi)


def is_inf(x: torch.Tensor, detect_positive: bool, detect_negative: bool) -> torch.Tensor:
    """ONNX IsInf with its sign filters."""
    if x.dtype in _FLOAT8:
        x = x.to(torch.float32)
    if detect_positive and detect_negative:
        return torch.isinf(x)
    if detect_positive:
        return torch.isposinf(x)
    if detect_negative:
        return torch.isneginf(x)
    return torch.zeros_like(x, dtype=torch.bool)


def is_nan(x: torch.Tensor) -> torch.Tensor:
    if x.dtype in _FLOAT8:
        x = x.to(torch.float32)
    return torch.isnan(x)


def float_unary(fn_name: str, x: torch.Tensor) -> torch.Tensor:
    """A float-only torch function (erf, exp, sin, ...) applied to any dtype, result in x's dtype."""
    fn = getattr(torch, fn_name)
    if x.dtype.is_floating_point and x.dtype not in _FLOAT8:
        return fn(x)
    return fn(x.to(torch.float64)).to(x.dtype)


# --- activations -------------------------------------------------------------------------------
def hard_sigmoid(x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """max(0, min(1, alpha * x + beta))."""
    return torch.clamp(x * alpha + beta, 0.0, 1.0)


def selu(x: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    return torch.nn.functional.elu(x, alpha) * gamma


def thresholded_relu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.where(x > alpha, x, torch.zeros_like(x))


def shrink(x: torch.Tensor, bias: float, lambd: float) -> torch.Tensor:
    """x + bias below -lambd, x - bias above lambd, 0 between (computed in float for int inputs)."""
    xf = x if x.dtype.is_floating_point else x.to(torch.float64)
    out = torch.where(xf < -lambd, xf + bias, torch.where(xf > lambd, xf - bias, torch.zeros_like(xf)))
    return out.to(x.dtype)


def swish(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return x * torch.sigmoid(x * alpha)


def prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """x where x >= 0 else slope * x, slope broadcast to x (unidirectional)."""
    if x.dtype in _WIDE_UNSIGNED or x.dtype == torch.uint8:  # never negative
        return x
    return torch.where(x < 0, x * slope.to(x.dtype), x)


def leaky_relu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    if x.dtype.is_floating_point:
        return torch.nn.functional.leaky_relu(x, alpha)
    return torch.where(x < 0, (x.to(torch.float64) * alpha).to(x.dtype), x)


def relu(x: torch.Tensor) -> torch.Tensor:
    if x.dtype in _WIDE_UNSIGNED or x.dtype == torch.uint8:
        return x
    return torch.relu(x)


# --- casts -------------------------------------------------------------------------------------
_FLOAT8_LIMITS = {
    # (largest finite value, magnitude above which a non-saturating cast overflows; at it, RNE
    # still rounds down to the largest value)
    torch.float8_e4m3fn: (448.0, 464.0),
    torch.float8_e4m3fnuz: (240.0, 248.0),
    torch.float8_e5m2: (57344.0, 61440.0),
    torch.float8_e5m2fnuz: (57344.0, 61440.0),
}


def cast(x: torch.Tensor, dtype: torch.dtype, saturate: bool = True) -> torch.Tensor:
    """ONNX Cast to a torch dtype, including float8 saturation and the uint16/32/64 types."""
    if x.dtype == dtype:
        return x
    if dtype in _FLOAT8_LIMITS:
        src = x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)
        finite_max, overflow = _FLOAT8_LIMITS[dtype]
        if saturate:
            src = torch.clamp(src, -finite_max, finite_max)
        elif dtype == torch.float8_e4m3fn:
            # torch saturates this type on its own; ONNX wants NaN past the rounding limit.
            src = torch.where(torch.abs(src) > overflow, torch.full_like(src, math.nan), src)
        return src.to(dtype)
    if x.dtype in _FLOAT8:
        return x.to(torch.float32).to(dtype)
    return x.to(dtype)


def cast_like(x: torch.Tensor, like: torch.Tensor, saturate: bool = True) -> torch.Tensor:
    """Cast ``x`` to the dtype of ``like`` (when that dtype is only known at run time)."""
    return cast(x, like.dtype, saturate)


def bit_cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Reinterpret the bits of ``x`` as ``dtype`` (same width), as ONNX BitCast."""
    return x.view(dtype)


def mean(*xs: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of broadcast tensors (ONNX Mean is defined for float types only)."""
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total / len(xs)


_PLAIN_BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "max": torch.maximum, "min": torch.minimum,
    "and": torch.bitwise_and, "or": torch.bitwise_or, "xor": torch.bitwise_xor,
}


def binary(op: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Binary ``op`` for any dtype, used when the dtype is unknown at conversion time or is one
    of the unsigned types torch's kernels lack."""
    if a.dtype in _WIDE_UNSIGNED:
        return int_binary(op, a, b)
    if op == "div":
        return div(a, b)
    if op in ("mod", "fmod"):
        return mod(a, b, op == "fmod")
    if op in _COMPARE:
        return _COMPARE[op](a, b)
    return _PLAIN_BINARY[op](a, b)
