"""ONNX linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinear*.

Scales and zero points come per tensor, per axis (1-D along ``axis``) or per block (same rank as
the input, repeated ``block_size`` times along ``axis``). Integer results round half to even and
saturate to the target range; float8 results saturate to the largest finite value when asked.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

_INT_RANGES = {
    torch.uint8: (0, 255), torch.int8: (-128, 127), torch.uint16: (0, 65535),
    torch.int16: (-32768, 32767), torch.int32: (-2147483648, 2147483647),
}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def expand_param(value: torch.Tensor, x_shape: Sequence[int], axis: int, block_size: int) -> torch.Tensor:
    """Make a scale/zero point broadcastable to ``x_shape`` (per tensor, per axis or per block)."""
    rank = len(x_shape)
    if value.dim() == 0 or value.numel() == 1:
        return value.reshape(())
    axis = axis + rank if axis < 0 else axis
    if not block_size:
        dims = [1] * rank
        dims[axis] = value.numel()
        return value.reshape(dims)
    value = torch.repeat_interleave(value, int(block_size), dim=axis)
    return value.narrow(axis, 0, int(x_shape[axis]))


def _float8_max(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).max)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor], axis: int,
             block_size: int, out_dtype: torch.dtype, saturate: bool,
             precision: Optional[torch.dtype] = None) -> torch.Tensor:
    shape = list(x.shape)
    s = expand_param(scale, shape, axis, block_size)
    if precision is not None:
        v = x.to(precision) / s.to(precision)
    else:
        v = x / s.to(x.dtype) if x.dtype == s.dtype else x.to(torch.float32) / s.to(torch.float32)
    if out_dtype in _INT_RANGES:
        q = torch.round(v.to(torch.float64) if out_dtype == torch.int32 else v)
        if zero_point is not None:
            q = q + expand_param(zero_point, shape, axis, block_size).to(q.dtype)
        lo, hi = _INT_RANGES[out_dtype]
        return q.clamp(lo, hi).to(out_dtype)
    # float8: the zero point is always 0
    if saturate:
        m = _float8_max(out_dtype)
        v = v.clamp(-m, m)
    return v.to(out_dtype)


def dequantize(x: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor], axis: int,
               block_size: int, out_dtype: torch.dtype) -> torch.Tensor:
    shape = list(x.shape)
    work = torch.float64 if x.dtype == torch.int32 else torch.float32
    v = x.to(work)
    if zero_point is not None and x.dtype in _INT_RANGES:
        v = v - expand_param(zero_point, shape, axis, block_size).to(work)
    y = v * expand_param(scale, shape, axis, block_size).to(work)
    return y.to(out_dtype)


def dynamic_quantize(x: torch.Tensor):
    """ONNX DynamicQuantizeLinear: uint8 data, float scale, uint8 zero point."""
    xf = x.to(torch.float32)
    maxx = torch.clamp(xf.max(), min=0.0) if xf.numel() else torch.zeros(())
    minx = torch.clamp(xf.min(), max=0.0) if xf.numel() else torch.zeros(())
    rng = torch.where(maxx == minx, torch.ones_like(maxx), maxx - minx)
    scale = rng / 255.0
    zp = torch.round(torch.clamp(0.0 - minx / scale, 0.0, 255.0))
    y = torch.clamp(torch.round(xf / scale) + zp, 0.0, 255.0)
    return y.to(torch.uint8), scale.to(x.dtype), zp.to(torch.uint8)


def _requantize(acc: torch.Tensor, a_scale: torch.Tensor, b_scale: torch.Tensor, y_scale: torch.Tensor,
                y_zero_point: Optional[torch.Tensor], fallback: torch.dtype) -> torch.Tensor:
    multiplier = (a_scale * b_scale / y_scale).to(torch.float64)
    r = acc * multiplier
    out_dtype = fallback if y_zero_point is None else y_zero_point.dtype
    if y_zero_point is not None:
        r = r + y_zero_point.to(torch.float64)
    lo, hi = _INT_RANGES[out_dtype]
    return torch.round(r.clamp(lo, hi)).to(out_dtype)


def qlinear_matmul(a: torch.Tensor, a_scale: torch.Tensor, a_zero_point: Optional[torch.Tensor],
                   b: torch.Tensor, b_scale: torch.Tensor, b_zero_point: Optional[torch.Tensor],
                   y_scale: torch.Tensor, y_zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    av = a.to(torch.float64)
    bv = b.to(torch.float64)
    if a_zero_point is not None:
        zp = a_zero_point.to(torch.float64)
        av = av - (zp.reshape(-1, 1) if zp.numel() > 1 else zp.reshape(()))
    if b_zero_point is not None:
        zp = b_zero_point.to(torch.float64)
        bv = bv - (zp.reshape(-1) if zp.numel() > 1 else zp.reshape(()))
    a_s = a_scale.reshape(-1, 1) if a_scale.numel() > 1 else a_scale.reshape(())
    b_s = b_scale.reshape(-1) if b_scale.numel() > 1 else b_scale.reshape(())
    return _requantize(torch.matmul(av, bv), a_s, b_s, y_scale.reshape(()), y_zero_point, a.dtype)


def qlinear_conv(x: torch.Tensor, x_scale: torch.Tensor, x_zero_point: Optional[torch.Tensor],
                 w: torch.Tensor, w_scale: torch.Tensor, w_zero_point: Optional[torch.Tensor],
                 y_scale: torch.Tensor, y_zero_point: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                 strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int],
                 groups: int) -> torch.Tensor:
    """Integer convolution (exact in float64), bias in the accumulator, then requantize.

    ``pads`` is [begin..., end...] already resolved by the converter.
    """
    r = w.dim() - 2
    xv = x.to(torch.float64)
    if x_zero_point is not None:
        xv = xv - x_zero_point.to(torch.float64).reshape(())
    wv = w.to(torch.float64)
    if w_zero_point is not None:
        wz = w_zero_point.to(torch.float64)
        wv = wv - (wz.reshape([-1] + [1] * (r + 1)) if wz.numel() > 1 else wz.reshape(()))
    begin, end = list(pads[:r]), list(pads[r:])
    if begin == end:
        acc = _CONV[r](xv, wv, None, list(strides), begin, list(dilations), groups)
    else:
        flat = []
        for i in range(r - 1, -1, -1):
            flat += [int(begin[i]), int(end[i])]
        acc = _CONV[r](F.pad(xv, flat), wv, None, list(strides), 0, list(dilations), groups)
    if bias is not None:
        acc = acc + bias.to(torch.float64).reshape([1, -1] + [1] * r)
    ws = w_scale.reshape([1, -1] + [1] * r) if w_scale.numel() > 1 else w_scale.reshape(())
    return _requantize(acc, x_scale.reshape(()), ws, y_scale.reshape(()), y_zero_point, x.dtype)
