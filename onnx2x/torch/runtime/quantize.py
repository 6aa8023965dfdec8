"""ONNX linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinear*.

Scales and zero points come per tensor, per axis (1-D along ``axis``) or per block (same rank as
the input, repeated ``block_size`` times along ``axis``). Integer results round half to even and
saturate to the target range; float8 results saturate to the largest finite value when asked.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

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
        q = v.to(torch.float64) if out_dtype == torch.int32 else v
        zp = None if zero_point is None else expand_param(zero_point, shape, axis, block_size).to(q.dtype)
        lo, hi = _INT_RANGES[out_dtype]
        if q.requires_grad:  # autograd (a trainable conversion): no step may overwrite its input
            q = torch.round(q) if zp is None else torch.round(q) + zp
            return q.clamp(lo, hi).to(out_dtype)
        # in place on the fresh quotient: each new full-size tensor costs more than the arithmetic
        # (a batch of 8 64x55x55 maps: 0.8 ms in place, 4.7 ms allocating one per step)
        q = q.round_() if zp is None else q.round_().add_(zp)
        return q.clamp_(lo, hi).to(out_dtype)
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
    fresh = v is not x and not v.requires_grad  # then the steps below may write into it (see quantize)
    if zero_point is not None and x.dtype in _INT_RANGES:
        zp = expand_param(zero_point, shape, axis, block_size).to(work)
        v = v.sub_(zp) if fresh else v - zp
        fresh = not v.requires_grad
    s = expand_param(scale, shape, axis, block_size).to(work)
    return (v.mul_(s) if fresh else v * s).to(out_dtype)


def quantize_dequantize(x: torch.Tensor, scale: float, zero_point: int, low: int, high: int) -> torch.Tensor:
    """``DequantizeLinear(QuantizeLinear(x))`` with one per-tensor float32 ``scale`` and
    ``zero_point`` (the codes' range ``low..high``): the float32 operations of :func:`quantize` and
    :func:`dequantize` without the 8-bit tensor between them (a NaN stays NaN)."""
    return torch.div(x, scale).round_().add_(zero_point).clamp_(low, high).sub_(zero_point).mul_(scale)


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


def requantize(acc: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
               out_dtype: torch.dtype) -> torch.Tensor:
    """onnxruntime's (MLAS) requantization of an integer accumulator, bit for bit.

    ``float32(acc) * scale`` in float32, clamped to the output range less the zero point, rounded
    half to even, plus the zero point. ``scale`` is the float32 ratio onnxruntime precomputes
    (e.g. ``x_scale * w_scale / y_scale``, each step rounded to float32); the accumulator is
    exact (float64 or an integer type) and is rounded to float32 as MLAS converts int32 to float.
    """
    lo, hi = _INT_RANGES[out_dtype]
    v = acc.to(torch.float32) * scale.to(torch.float32)  # a new tensor: the steps below work in place
    if zero_point is None:
        return v.clamp_(lo, hi).round_().to(out_dtype)
    zp = zero_point.to(torch.float32)
    return v.clamp_(lo - zp, hi - zp).round_().add_(zp).to(out_dtype)


def _requantize(acc: torch.Tensor, a_scale: torch.Tensor, b_scale: torch.Tensor, y_scale: torch.Tensor,
                y_zero_point: Optional[torch.Tensor], fallback: torch.dtype) -> torch.Tensor:
    """Requantize with onnxruntime's float32 ratio ``a_scale * b_scale / y_scale``."""
    ratio = (a_scale.to(torch.float32) * b_scale.to(torch.float32)) / y_scale.to(torch.float32)
    out_dtype = fallback if y_zero_point is None else y_zero_point.dtype
    return requantize(acc, ratio, y_zero_point, out_dtype)


# --- exact integer products: MatMulInteger and the quantized matmuls -------------------------------
def _int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int32 product (int64 accumulation on CPU; wraps like int32 arithmetic when cast)."""
    return torch.matmul(a.to(torch.int64), b.to(torch.int64)).to(torch.int32)


# --- exact 8-bit products on torch's int8 GEMM ----------------------------------------------------
# Why: the exact product of 8-bit matrices otherwise takes int64 (torch has no BLAS for it) or
# float64 matmuls of widened copies, which on a quantized BERT-base layer (128x768 @ 768x2304)
# costs 12 ms per call where ``torch._int_mm`` (int8 x int8 -> int32) takes 1.1 ms. With
# ``x - zp = x8 + off`` (uint8 codes shifted to int8: ``x8 = x - 128``), the product is
# ``A8 B8 + off_a colsum(B8) + rowsum(A8) off_b + K off_a off_b``, every term an exact int32 for
# K <= INT8_GEMM_MAX_K (onnxruntime accumulates in int32 too).
_BYTE_TYPES = (torch.uint8, torch.int8)
INT8_GEMM_MAX_K = 2**15

# torch's int8 GEMM is fast only on CPUs with 8-bit dot-product instructions (AVX-512 VNNI, AMX).
# Without them (AVX2: AMD Zen 1-3, Intel before Ice Lake) ``torch._int_mm`` takes a slow path:
# 30-50x the time of a float32 matmul of the same size (torch 2.13, AMD EPYC with AVX2: 128x768 @
# 768x768 in 93 ms against 2.0 ms), and a quantized SqueezeNet ran 56x onnxruntime. There, the
# exact float32 (or float64) products run instead. None: not decided yet (tests set it).
_INT8_GEMM_FAST: Optional[bool] = None


def int8_gemm_is_fast() -> bool:
    """True where this CPU runs ``torch._int_mm`` on int8 dot-product instructions (decided once)."""
    global _INT8_GEMM_FAST
    if _INT8_GEMM_FAST is None:
        try:
            _INT8_GEMM_FAST = bool(torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported())
        except (AttributeError, RuntimeError):  # private helpers of torch.cpu: absent means unknown
            _INT8_GEMM_FAST = False
    return _INT8_GEMM_FAST


def _int8_gemm_ok(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Eager CPU tensors of 8-bit codes, a 2-D B; tracing, export and compilation take the plain path."""
    return b.dim() == 2 and a.dim() >= 1 and a.shape[-1] == b.shape[0] and _int8_operands_ok(a, b, b.shape[0])


def _int8_operands_ok(a: torch.Tensor, b: torch.Tensor, depth: int) -> bool:
    """Eager, non-empty CPU tensors of 8-bit codes whose products sum ``depth`` terms (see
    ``INT8_GEMM_MAX_K``); tracing, export and compilation take the plain path."""
    if type(b) not in (torch.Tensor, torch.nn.Parameter) or a.dtype not in _BYTE_TYPES or b.dtype not in _BYTE_TYPES:
        return False
    if not (a.is_cpu and b.is_cpu) or not 0 < depth <= INT8_GEMM_MAX_K:
        return False
    return a.numel() > 0 and b.numel() > 0 and not _traced(a)


def _signed_codes(x: torch.Tensor, zero_point: Optional[torch.Tensor],
                  per_row: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(x8, off)`` with ``x - zero_point == x8 + off``: x8 int8, off an int32 tensor that broadcasts
    over rows (``per_row``, A's [M] zero points) or columns (B's [N]), or None when it is zero."""
    if x.dtype == torch.uint8:
        x8, base = torch.bitwise_xor(x, 128).view(torch.int8), 128
    else:
        x8, base = x, 0
    if zero_point is None:
        return x8, (torch.tensor(base, dtype=torch.int32) if base else None)
    zp = zero_point.to(torch.int32)
    if zp.numel() == 1:
        zp = zp.reshape(())
    elif per_row and zp.dim() == 1:
        zp = zp.unsqueeze(-1)  # one value per row M of A ([M]; the N-D form is [..., M, 1])
    off = base - zp
    return x8, (None if not bool(off.any()) else off)


_COLUMN_SUMS: "WeakIdKeyDictionary" = WeakIdKeyDictionary()  # B's owner -> (key, None, int32 column sums of B8)


def _kept_for(cache: "WeakIdKeyDictionary", b: torch.Tensor, compute, zero_point: Optional[torch.Tensor] = None):
    """``compute()``, kept beside ``b`` (mostly a constant weight) while ``b``'s memory, version and
    geometry and ``zero_point``'s values are unchanged. A view made for each call (a 1x1
    convolution's transposed weight) is kept under the tensor it views, with its geometry in the
    key. Inference tensors (no version counter to tell an in-place change) compute on every call."""
    if b.is_inference():
        return compute()
    owner = b if b._base is None else b._base
    key = (b.data_ptr(), b._version, tuple(b.shape), b.stride())
    entry = cache.get(owner)
    if (entry is None or entry[0] != key or (entry[1] is None) != (zero_point is None)
            or (zero_point is not None and not torch.equal(entry[1], zero_point))):
        entry = (key, None if zero_point is None else zero_point.clone(), compute())
        cache[owner] = entry
    return entry[2]


def _column_sums(b: torch.Tensor, b8: torch.Tensor) -> torch.Tensor:
    """Column sums of ``b8`` (the int8 codes of ``b``), kept while ``b`` is unchanged. Why: B is
    mostly a constant weight, and its sums (a widening pass over it) cost a quarter of the GEMM."""
    return _kept_for(_COLUMN_SUMS, b, lambda: b8.sum(0, dtype=torch.int32))


def int8_product(a: torch.Tensor, b: torch.Tensor, a_zero_point: Optional[torch.Tensor],
                 b_zero_point: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``(A - za) @ (B - zb)`` exactly, in int32, on torch's int8 GEMM; None where that path does not
    apply (see ``_int8_gemm_ok``): the caller computes it with wide types instead."""
    if not _int8_gemm_ok(a, b):
        return None
    a8, a_off = _signed_codes(a, a_zero_point, per_row=True)
    return _signed_product(a8, a_off, b, b_zero_point)


def _signed_product(a8: torch.Tensor, a_off: Optional[torch.Tensor], b: torch.Tensor,
                    b_zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    """``(A8 + a_off) @ (B - zb)`` in int32, A already as int8 codes (see :func:`_signed_codes`)."""
    k, n = b.shape
    b8, b_off = _signed_codes(b, b_zero_point, per_row=False)
    acc = torch._int_mm(a8.reshape(-1, k), b8.contiguous()).reshape(a8.shape[:-1] + (n,))
    if a_off is not None:
        acc += a_off * _column_sums(b, b8)
    if b_off is not None:
        acc += a8.sum(-1, keepdim=True, dtype=torch.int32) * b_off
        if a_off is not None:
            acc += k * a_off * b_off
    return acc


def _zp_a(a: torch.Tensor, zp: Optional[torch.Tensor], dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """``a - zp`` in ``dtype``, a new tensor (the subtraction works in place on the copy)."""
    av = a.to(dtype, copy=True)
    if zp is None:
        return av
    zp = zp.to(dtype)
    if zp.dim() == 1 and zp.numel() > 1 and a.dim() >= 2:
        # per-row zero point: one value per row M of A ([M]; the N-D form is [..., M, 1])
        zp = zp.unsqueeze(-1)
    return av.sub_(zp)


def _zp_b(b: torch.Tensor, zp: Optional[torch.Tensor], dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """``b - zp`` in ``dtype``, a new tensor (the subtraction works in place on the copy)."""
    bv = b.to(dtype, copy=True)
    if zp is None:
        return bv
    # per-column zero points ([N] or [..., 1, N]) broadcast along the rows as they are
    return bv.sub_(zp.to(dtype))


def matmul_integer(a: torch.Tensor, b: torch.Tensor, a_zero_point: Optional[torch.Tensor] = None,
                   b_zero_point: Optional[torch.Tensor] = None) -> torch.Tensor:
    """ONNX MatMulInteger: (A - a_zp) @ (B - b_zp) in int32."""
    if _int8_gemm_ok(a, b):  # eager 8-bit codes: every sum fits int32 (INT8_GEMM_MAX_K)
        return _int_product(a, b, a_zero_point, b_zero_point).to(torch.int32)
    return _int_matmul(_zp_a(a, a_zero_point), _zp_b(b, b_zero_point))


def qlinear_matmul(a: torch.Tensor, a_scale: torch.Tensor, a_zero_point: Optional[torch.Tensor],
                   b: torch.Tensor, b_scale: torch.Tensor, b_zero_point: Optional[torch.Tensor],
                   y_scale: torch.Tensor, y_zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    a_s = a_scale.reshape(-1, 1) if a_scale.numel() > 1 else a_scale.reshape(())
    b_s = b_scale.reshape(-1) if b_scale.numel() > 1 else b_scale.reshape(())
    acc = _int_product(a, b, a_zero_point, b_zero_point)
    return _requantize(acc, a_s, b_s, y_scale.reshape(()), y_zero_point, a.dtype)


def _int_product(a: torch.Tensor, b: torch.Tensor, a_zero_point: Optional[torch.Tensor],
                 b_zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    """(A - za) @ (B - zb), exact: int32 from torch's int8 GEMM where it applies and is fast
    (:func:`int8_gemm_is_fast`), else integers in float32 (eager, within ``_FLOAT32_EXACT``) or
    float64 (which holds every 8-bit product sum of realistic K); per-row A zero points ([M])
    and per-column B zero points ([N]) broadcast as ONNX defines."""
    if int8_gemm_is_fast():
        acc = int8_product(a, b, a_zero_point, b_zero_point)
        if acc is not None:
            return acc
    exact32 = _int8_gemm_ok(a, b) and _float32_is_exact()  # eager: the bound below reads values
    if exact32 and b_zero_point is not None and not bool(b_zero_point.any()):
        b_zero_point = None  # symmetric weights: no pass over B to subtract zeros
    av = _zp_a(a, a_zero_point, torch.float32 if exact32 else torch.float64)
    bv = _zp_b(b, b_zero_point, av.dtype)
    if exact32:
        # every partial sum is an integer below max|A - za| * (largest L1 norm of a column of B - zb)
        lo, hi = torch.aminmax(av)
        if max(-float(lo), float(hi)) * _largest_column_l1(b, b_zero_point, bv) < _FLOAT32_EXACT:
            return torch.matmul(av, bv)
        av, bv = av.to(torch.float64), bv.to(torch.float64)
    return torch.matmul(av, bv)


_COLUMN_L1: "WeakIdKeyDictionary" = WeakIdKeyDictionary()  # B's owner -> (key, zero point, largest L1 norm)


def _largest_column_l1(b: torch.Tensor, zero_point: Optional[torch.Tensor], bv: torch.Tensor) -> float:
    """``max_n sum_k |B - zb|[k, n]`` (``bv`` = B - zb), kept while ``b`` and the zero point's
    values are unchanged. Why: B is mostly a constant weight, and the two passes over it cost a
    fifth of a quantized BERT layer's time."""
    return _kept_for(_COLUMN_L1, b, lambda: float(bv.abs().sum(0).amax()), zero_point)


def matmul_integer_to_float(a: torch.Tensor, b: torch.Tensor, a_scale: torch.Tensor, b_scale: torch.Tensor,
                            a_zero_point: Optional[torch.Tensor], b_zero_point: Optional[torch.Tensor],
                            bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``float32(acc) * (a_scale * b_scale) + bias``, the multiplier rounded to float32 (MLAS's
    scale-bias output processor); per-column ``b_scale`` broadcasts along the last axis."""
    out_dtype = a_scale.dtype
    acc = _int_product(a, b, a_zero_point, b_zero_point)
    bs = b_scale.to(torch.float32)
    bs = bs.reshape(-1) if bs.numel() > 1 else bs.reshape(())
    y = acc.to(torch.float32) * (a_scale.to(torch.float32).reshape(()) * bs)
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.to(out_dtype)


def _centred(x: torch.Tensor, zero_point: Optional[torch.Tensor], dtype: torch.dtype,
             memory_format: torch.memory_format = torch.preserve_format) -> torch.Tensor:
    """``x - zero_point`` (a per-tensor zero point) in ``dtype``, always a new tensor."""
    xv = x.to(dtype, memory_format=memory_format, copy=True)
    return xv if zero_point is None else xv.sub_(zero_point.to(dtype).reshape(()))


def _centred_weight(w: torch.Tensor, zero_point: Optional[torch.Tensor], dtype: torch.dtype,
                    memory_format: torch.memory_format = torch.preserve_format) -> torch.Tensor:
    """``w - zero_point`` with a per-tensor or per-output-channel zero point, in ``dtype`` (a new tensor)."""
    wv = w.to(dtype, memory_format=memory_format, copy=True)
    if zero_point is None:
        return wv
    zp = zero_point.to(dtype)
    return wv.sub_(zp.reshape([-1] + [1] * (w.dim() - 1)) if zp.numel() > 1 else zp.reshape(()))


# A float32 sum of integers is exact while every partial sum stays below 2**24 in magnitude: for a
# convolution, below max|x - zx| * (the largest L1 norm of an output channel's centred weights).
# Most 8-bit convolutions are within it, or within it after splitting the weights into their
# high and low 4 bits; float32 convolutions run 3-7x faster than float64 ones (grouped ones far
# more: torch has no oneDNN kernel for float64).
_FLOAT32_EXACT = float(2**24)


def _float32_is_exact() -> bool:
    """float32 products and sums are IEEE ones: no TF32 or bfloat16 down-conversion asked for."""
    return (getattr(torch.backends.mkldnn, "fp32_precision", "none") in ("none", "ieee")
            and torch.get_float32_matmul_precision() == "highest")


def _integer_conv_float32(x: torch.Tensor, x_zero_point: Optional[torch.Tensor], w: torch.Tensor,
                          w_zero_point: Optional[torch.Tensor], conv) -> Optional[tuple[torch.Tensor, float]]:
    """The exact accumulator of ``conv(x - zx, w - zw)`` as ``(acc, bound)``: one float32
    convolution whose values are integers below ``bound`` (< 2**24) in magnitude, or the int32
    sum of two over the weights' 4-bit halves (bound inf). None where neither bound holds, the
    inputs are traced (this reads the zero point's value) or oneDNN may round float32 products."""
    if x.dtype not in _BYTE_TYPES or not x.is_cpu or _traced(x):
        return None
    if not (torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available()):
        return None  # with oneDNN off, torch may take NNPACK's Winograd kernels, which are not exact
    if not _float32_is_exact():
        return None
    lo, hi = _INT_RANGES[x.dtype]
    zx = 0 if x_zero_point is None else int(x_zero_point.reshape(-1)[0])
    x_span = float(max(abs(lo - zx), abs(hi - zx)))
    # 2-D: channels-last operands, so that torch runs every convolution on oneDNN (its NCHW path
    # takes an im2col GEMM for 1x1 kernels at batch 1) and the result stays channels-last for the
    # next quantized op
    layout = torch.channels_last if x.dim() == 4 else torch.preserve_format
    wv = _centred_weight(w, w_zero_point, torch.float32, layout)
    bound = x_span * float(wv.abs().flatten(1).sum(1).max())
    if bound < _FLOAT32_EXACT:
        return conv(_centred(x, x_zero_point, torch.float32, layout), wv), bound
    low = torch.remainder(wv, 16.0)  # w = 16 * high + low, low in [0, 15], high in [-16, 15]
    high = (wv - low) / 16.0
    if x_span * float(high.abs().flatten(1).sum(1).max()) >= _FLOAT32_EXACT \
            or x_span * float(low.flatten(1).sum(1).max()) >= _FLOAT32_EXACT:
        return None
    xv = _centred(x, x_zero_point, torch.float32, layout)
    return conv(xv, high).to(torch.int32).mul_(16).add_(conv(xv, low).to(torch.int32)), math.inf


_GEMM_WEIGHTS: "WeakIdKeyDictionary" = WeakIdKeyDictionary()  # conv weight -> (key, [KH*KW*C, Cout] codes)

# The patch matrix of the int8 GEMM convolution is copied out of the input; beyond this many bytes
# (a large image) the float convolution, which needs no such copy, runs instead.
INT8_PATCHES_MAX_BYTES = 64 * 2**20


def _conv_weight_matrix(w: torch.Tensor) -> torch.Tensor:
    """The codes of a 2-D convolution weight [Cout, C, KH, KW] as the contiguous [KH*KW*C, Cout]
    matrix that multiplies channels-last patches, kept while ``w`` is unchanged (a copy per call
    for inference tensors, which have no version counter)."""
    if w.is_inference():
        return w.permute(2, 3, 1, 0).reshape(-1, w.shape[0])
    key = (w.data_ptr(), w._version)
    entry = _GEMM_WEIGHTS.get(w)
    if entry is None or entry[0] != key:
        entry = (key, w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).contiguous())
        _GEMM_WEIGHTS[w] = entry
    return entry[1]


def _int8_gemm_conv(x: torch.Tensor, x_zero_point: Optional[torch.Tensor], w: torch.Tensor,
                    w_zero_point: Optional[torch.Tensor], strides: Sequence[int], pads: Sequence[int],
                    dilations: Sequence[int]) -> Optional[torch.Tensor]:
    """A 2-D one-group convolution as the int8 GEMM of channels-last patches by the weight
    (exact int32, :func:`_signed_product`), as onnxruntime runs QLinearConv: 2-4x faster than
    the float32 convolution of the same integers. A 1x1 kernel with stride 1 and no padding reads
    the pixels in place (a view of channels-last input, such as another quantized convolution's
    result); other kernels copy their patches out of a channels-last copy of the input padded
    with the zero point's code. The result is an NCHW view of channels-last data. None where the
    int8 GEMM does not apply (per-row input zero points, wide codes, tracing, too large a patch
    matrix): the caller convolves in float."""
    if x.dim() != 4 or (x_zero_point is not None and x_zero_point.numel() != 1):
        return None
    n, c, h, width = x.shape
    cout, _, kh, kw = w.shape
    (pt, pl), (pb, pr) = pads[:2], pads[2:]
    hp, wp = h + pt + pb, width + pl + pr
    oh = (hp - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wp - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    if (oh <= 0 or ow <= 0 or not _int8_operands_ok(x, w, c * kh * kw)
            or n * oh * ow * c * kh * kw > INT8_PATCHES_MAX_BYTES):
        return None
    b = _conv_weight_matrix(w)
    x8, x_off = _signed_codes(x, x_zero_point, per_row=False)
    if (kh, kw) == (1, 1) and tuple(strides) == (1, 1) and not any(pads):
        rows = x8.permute(0, 2, 3, 1).reshape(-1, c)
    else:
        # padding holds the code whose centred value is 0; each output pixel's row is its window
        padded = torch.full((n, hp, wp, c), 0 if x_off is None else -int(x_off), dtype=torch.int8)
        padded[:, pt:pt + h, pl:pl + width].copy_(x8.permute(0, 2, 3, 1))
        sn, sh, sw = hp * wp * c, wp * c, c
        windows = padded.as_strided((n, oh, ow, kh, kw, c), (sn, strides[0] * sh, strides[1] * sw,
                                                             dilations[0] * sh, dilations[1] * sw, 1))
        rows = windows.reshape(n * oh * ow, kh * kw * c)
    acc = _signed_product(rows, x_off, b, w_zero_point)
    return acc.reshape(n, oh, ow, cout).permute(0, 3, 1, 2)


# Below this many products per output value (C * KH * KW) a kernel larger than 1x1 stays on the
# float32 convolution (a 3-channel stem: its int8 patches cost more than the GEMM saves).
INT8_CONV_MIN_DEPTH = 32


def _integer_conv(x: torch.Tensor, x_zero_point: Optional[torch.Tensor], w: torch.Tensor,
                  w_zero_point: Optional[torch.Tensor], strides: Sequence[int], pads: Sequence[int],
                  dilations: Sequence[int], groups: int) -> tuple[torch.Tensor, float]:
    """``conv(x - zx, w - zw)`` exactly, as ``(acc, bound)`` (:func:`_integer_conv_float32`), else
    in float64 (bound inf). ``pads`` is [begin..., end...] already resolved by the converter."""
    r = w.dim() - 2
    begin, end = list(pads[:r]), list(pads[r:])
    pad_first = [] if begin == end else [p for i in range(r - 1, -1, -1) for p in (int(begin[i]), int(end[i]))]

    def conv(xv: torch.Tensor, wv: torch.Tensor) -> torch.Tensor:
        if pad_first:
            return _CONV[r](F.pad(xv, pad_first), wv, None, list(strides), 0, list(dilations), groups)
        return _CONV[r](xv, wv, None, list(strides), begin, list(dilations), groups)

    if r == 2 and groups == 1 and int8_gemm_is_fast() and (w.shape[1] * w.shape[2] * w.shape[3] >= INT8_CONV_MIN_DEPTH
                                                           or tuple(w.shape[2:]) == (1, 1)):
        acc = _int8_gemm_conv(x, x_zero_point, w, w_zero_point, strides, pads, dilations)
        if acc is not None:
            return acc, math.inf
    exact = _integer_conv_float32(x, x_zero_point, w, w_zero_point, conv)
    if exact is None:
        return conv(_centred(x, x_zero_point, torch.float64), _centred_weight(w, w_zero_point, torch.float64)), math.inf
    return exact


def conv_integer(x: torch.Tensor, w: torch.Tensor, x_zero_point: Optional[torch.Tensor],
                 w_zero_point: Optional[torch.Tensor], strides: Sequence[int], pads: Sequence[int],
                 dilations: Sequence[int], groups: int) -> torch.Tensor:
    """ONNX ConvInteger: the int32 accumulator of ``conv(x - zx, w - zw)``."""
    return _integer_conv(x, x_zero_point, w, w_zero_point, strides, pads, dilations, groups)[0].to(torch.int32)


def qlinear_conv(x: torch.Tensor, x_scale: torch.Tensor, x_zero_point: Optional[torch.Tensor],
                 w: torch.Tensor, w_scale: torch.Tensor, w_zero_point: Optional[torch.Tensor],
                 y_scale: torch.Tensor, y_zero_point: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                 strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int],
                 groups: int) -> torch.Tensor:
    """Integer convolution (exact), bias in the accumulator, then requantize.

    ``pads`` is [begin..., end...] already resolved by the converter.
    """
    r = w.dim() - 2
    acc, bound = _integer_conv(x, x_zero_point, w, w_zero_point, strides, pads, dilations, groups)
    if bias is not None:
        b = bias.reshape([1, -1] + [1] * r)
        if acc.dtype == torch.float32 and bound + float(bias.to(torch.float64).abs().max()) < _FLOAT32_EXACT:
            acc = acc.add_(b.to(torch.float32))  # every sum an integer below 2**24: exact in float32
        elif acc.dtype == torch.float64:
            acc = acc.add_(b.to(torch.float64))
        else:
            acc = acc.to(torch.int32).add_(b.to(torch.int32))
    ws = w_scale.reshape([1, -1] + [1] * r) if w_scale.numel() > 1 else w_scale.reshape(())
    return _requantize(acc, x_scale.reshape(()), ws, y_scale.reshape(()), y_zero_point, x.dtype)


# --- onnxruntime's com.microsoft QLinear* kernels ----------------------------------------------
# Each follows the arithmetic of onnxruntime's CPU kernel (MLAS), so that results agree bit for
# bit except where a float32 value lands within an ulp of a rounding boundary.

def _scalar(t: Optional[torch.Tensor], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A per-tensor scale or zero point as a 0-d tensor (0 when omitted)."""
    if t is None:
        return torch.zeros((), dtype=dtype)
    return t.reshape(()).to(dtype)


def _byte_values(dtype: torch.dtype) -> torch.Tensor:
    """The 256 values of an 8-bit type, indexed by their byte (int8: 0..127, -128..-1)."""
    return torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype).to(torch.int32)


def quantize_mlas(v: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
                  out_dtype: torch.dtype) -> torch.Tensor:
    """MLAS's QuantizeLinear: ``v / scale`` in float32, clamped, rounded half to even, plus the zero point."""
    lo, hi = _INT_RANGES[out_dtype]
    zp = _scalar(zero_point)
    q = v.to(torch.float32) / _scalar(scale)
    q = torch.minimum(torch.maximum(q, lo - zp), hi - zp)
    return (torch.round(q) + zp).to(out_dtype)


def lookup_table(x_scale: torch.Tensor, x_zero_point: Optional[torch.Tensor], y_scale: torch.Tensor,
                 y_zero_point: Optional[torch.Tensor], dtype: torch.dtype, kind: str,
                 alpha: float = 0.0) -> torch.Tensor:
    """The 256-entry table onnxruntime builds for an 8-bit unary op: quantize(f(dequantize(v))).

    ``kind``: 'identity' (requantization, as QLinearConcat and QLinearWhere do), 'sigmoid' or
    'leaky_relu' (with ``alpha``). Indexed by the input's byte (see :func:`apply_table`).
    """
    v = (_byte_values(dtype) - _scalar(x_zero_point, torch.int32)).to(torch.float32) * _scalar(x_scale)
    if kind == "sigmoid":
        v = torch.sigmoid(v)
    elif kind == "leaky_relu":
        v = torch.where(v >= 0, v, v * torch.tensor(alpha, dtype=torch.float32))
    elif kind != "identity":
        raise ValueError(f"unknown lookup-table function {kind!r}")
    return quantize_mlas(v, y_scale, y_zero_point, dtype)


def apply_table(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``table[byte of x]`` for a uint8 or int8 tensor; ``x`` itself where the table maps every
    code to itself (a requantization between equal scales and zero points, as QLinearConcat's
    inputs mostly are: the gather would read and write the whole tensor for nothing)."""
    if not _traced(x) and torch.equal(table, _byte_values(x.dtype).to(table.dtype)):
        return x
    # int32 indices through index_select: 3.7x faster than indexing with int64 ones (one thread,
    # 194K bytes: 94 against 346 us), which first widen every byte to 8
    codes = (x.view(torch.uint8) if x.dtype == torch.int8 else x).reshape(-1).to(torch.int32)
    return torch.index_select(table, 0, codes).reshape(x.shape)


def _traced(x: torch.Tensor) -> bool:
    """Tracing, export or compilation: no branch on a tensor's values."""
    return type(x) is not torch.Tensor or torch.jit.is_scripting() or torch.jit.is_tracing() \
        or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def qlinear_add(a: torch.Tensor, a_scale: torch.Tensor, a_zero_point: Optional[torch.Tensor],
                b: torch.Tensor, b_scale: torch.Tensor, b_zero_point: Optional[torch.Tensor],
                c_scale: torch.Tensor, c_zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    """com.microsoft QLinearAdd as MLAS computes it.

    ``c = a * (sa/sc) + (b * (sb/sc) + (zc - (sa/sc)*za - (sb/sc)*zb))`` with the ratios and every
    fused multiply-add rounded to float32, then rounded half to even and saturated.
    """
    f32, f64 = torch.float32, torch.float64
    r_a = (_scalar(a_scale) / _scalar(c_scale)).to(f64)
    r_b = (_scalar(b_scale) / _scalar(c_scale)).to(f64)
    zp_a, zp_b, zp_c = (_scalar(z, f64) for z in (a_zero_point, b_zero_point, c_zero_point))
    fixed = (zp_c - (r_a * zp_a + r_b * zp_b).to(f32).to(f64)).to(f32).to(f64)
    partial = (b.to(f64) * r_b + fixed).to(f32).to(f64)
    c = (a.to(f64) * r_a + partial).to(f32)
    lo, hi = _INT_RANGES[a.dtype]
    return torch.round(c).clamp(lo, hi).to(a.dtype)


def qlinear_mul(a: torch.Tensor, a_scale: torch.Tensor, a_zero_point: Optional[torch.Tensor],
                b: torch.Tensor, b_scale: torch.Tensor, b_zero_point: Optional[torch.Tensor],
                c_scale: torch.Tensor, c_zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    """com.microsoft QLinearMul as MLAS computes it: the exact integer product
    ``(a - za)(b - zb)`` times the float32 ratio ``sa*sb/sc``, rounded half to even, plus ``zc``,
    saturated."""
    prod = (a.to(torch.int32) - _scalar(a_zero_point, torch.int32)) * (b.to(torch.int32) - _scalar(b_zero_point, torch.int32))
    ratio = (_scalar(a_scale) * _scalar(b_scale)) / _scalar(c_scale)
    lo, hi = _INT_RANGES[a.dtype]
    v = torch.round(prod.to(torch.float32) * ratio) + _scalar(c_zero_point)
    return v.clamp(lo, hi).to(a.dtype)


def qlinear_global_average_pool(x: torch.Tensor, x_scale: torch.Tensor, x_zero_point: Optional[torch.Tensor],
                                y_scale: torch.Tensor, y_zero_point: Optional[torch.Tensor],
                                channels_last: bool) -> torch.Tensor:
    """com.microsoft QLinearGlobalAveragePool: the exact integer sum of ``x - zx`` over the spatial
    axes, requantized with the float32 scale ``sx / (sy * size)`` (MLAS)."""
    dims = list(range(1, x.dim() - 1)) if channels_last else list(range(2, x.dim()))
    size = 1
    for d in dims:
        size *= int(x.shape[d])
    acc = (x.to(torch.int64) - _scalar(x_zero_point, torch.int64)).sum(dim=dims, keepdim=True)
    scale = _scalar(x_scale) / (_scalar(y_scale) * torch.tensor(float(size), dtype=torch.float32))
    return requantize(acc, scale, _scalar(y_zero_point), x.dtype)


def dequantize_f32(x: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    """``scale * (x - zero_point)`` in float32 (per tensor), as onnxruntime's QLinear pools dequantize."""
    return (x.to(torch.int32) - _scalar(zero_point, torch.int32)).to(torch.float32) * _scalar(scale)


def quantize_pool(y: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
                  out_dtype: torch.dtype) -> torch.Tensor:
    """QLinearAveragePool's output: ``round(y / scale + zero_point)`` in float32, saturated."""
    lo, hi = _INT_RANGES[out_dtype]
    v = y.to(torch.float32) / _scalar(scale) + _scalar(zero_point)
    return torch.round(v).clamp(lo, hi).to(out_dtype)


def qlinear_concat(axis: int, y_scale: torch.Tensor, y_zero_point: Optional[torch.Tensor],
                   *triples: Optional[torch.Tensor]) -> torch.Tensor:
    """com.microsoft QLinearConcat: inputs come as (x, x_scale, x_zero_point) triples; each is
    requantized to the output's scale and zero point (a lookup table, as onnxruntime) and concatenated."""
    parts = []
    out_dtype = y_zero_point.dtype if y_zero_point is not None else triples[0].dtype
    for i in range(0, len(triples), 3):
        x, s, z = triples[i], triples[i + 1], triples[i + 2]
        table = lookup_table(s, z, y_scale, y_zero_point, out_dtype, "identity")
        parts.append(apply_table(x, table))
    return torch.cat(parts, dim=axis)


def qlinear_where(condition: torch.Tensor, x: torch.Tensor, x_scale: torch.Tensor, x_zero_point: Optional[torch.Tensor],
                  y: torch.Tensor, y_scale: torch.Tensor, y_zero_point: Optional[torch.Tensor],
                  z_scale: torch.Tensor, z_zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    """com.microsoft QLinearWhere: both branches requantized to the output's parameters, then selected."""
    dtype = x.dtype
    xt = apply_table(x, lookup_table(x_scale, x_zero_point, z_scale, z_zero_point, dtype, "identity"))
    yt = apply_table(y, lookup_table(y_scale, y_zero_point, z_scale, z_zero_point, dtype, "identity"))
    return torch.where(condition, xt, yt)


def softmax_exp_table(x_scale: torch.Tensor, reduce_len: int, signed: bool) -> torch.Tensor:
    """onnxruntime's QLinearSoftmax table: ``exp((i - 255 + shift) * x_scale)`` (float64, stored as
    float32) for i in 0..255, with ``shift`` keeping the sum of ``reduce_len`` terms finite."""
    max_f32 = float(torch.finfo(torch.float32).max)
    shift = max(0.0, math.log(max_f32 / reduce_len) - 5.0) / float(_scalar(x_scale))
    i = torch.arange(256, dtype=torch.float64)
    table = torch.exp((i - 255 + shift) * float(_scalar(x_scale))).to(torch.float32)
    if signed:  # entry i lives at byte (i - 128)
        table = torch.roll(table, -128)
    return table


def qlinear_softmax(x: torch.Tensor, x_scale: torch.Tensor, table: Optional[torch.Tensor], y_scale: torch.Tensor,
                    y_zero_point: Optional[torch.Tensor], axis: int, flatten: bool) -> torch.Tensor:
    """com.microsoft QLinearSoftmax as onnxruntime computes it.

    Per row: ``e = table[x - max(x) + 255]`` (float32), ``y = round(e * floor(1 / y_scale) / sum(e)) + zy``,
    saturated at the type's maximum (as onnxruntime 1.31 does; older releases wrapped int8 results
    above 127 around to -128: microsoft/onnxruntime#29727). ``flatten``: opset < 13 semantics (the row is every axis
    from ``axis`` on); otherwise the row is ``axis`` alone. ``table``: :func:`softmax_exp_table`,
    built here when None.
    """
    shape = x.shape
    axis = axis + x.dim() if axis < 0 else axis
    if flatten:
        rows = x.reshape(math.prod(int(d) for d in shape[:axis]), -1)
    else:
        rows = x.movedim(axis, -1)
    signed = x.dtype == torch.int8
    if table is None:
        table = softmax_exp_table(x_scale, int(rows.shape[-1]), signed)
    xi = rows.to(torch.int64)
    xmax = xi.amax(dim=-1, keepdim=True)
    if signed:
        index = (127 - xmax + xi) & 255
    else:
        index = 255 - xmax + xi
    e = table[index]
    total = e.sum(dim=-1, keepdim=True, dtype=torch.float32)
    inv = torch.floor(torch.tensor(1.0, dtype=torch.float32) / _scalar(y_scale))
    q = torch.round((e * inv) / total).to(torch.int64) + _scalar(y_zero_point, torch.int64)
    out = q.clamp(max=127).to(torch.int8) if signed else q.clamp(max=255).to(torch.uint8)
    if flatten:
        return out.reshape(shape)
    return out.movedim(-1, axis)


def qgemm(a: torch.Tensor, a_scale: torch.Tensor, a_zero_point: torch.Tensor, b: torch.Tensor,
          b_scale: torch.Tensor, b_zero_point: torch.Tensor, c: Optional[torch.Tensor],
          y_scale: Optional[torch.Tensor], y_zero_point: Optional[torch.Tensor], alpha: float,
          trans_a: bool, trans_b: bool) -> torch.Tensor:
    """com.microsoft QGemm: ``C + (A - za)(B - zb)`` exactly, then scaled by the float32
    ``alpha * sa * sb[n] (/ sy)``: requantized when ``y_zero_point`` is given, float32 otherwise."""
    f64 = torch.float64
    acc = _int_product(a.transpose(0, 1) if trans_a else a, b.transpose(0, 1) if trans_b else b,
                       a_zero_point, b_zero_point)
    if c is not None:
        acc = acc + c.to(f64)
    scale = torch.tensor(alpha, dtype=torch.float32) * _scalar(a_scale) * b_scale.to(torch.float32).reshape(-1)
    if y_scale is not None:
        scale = scale / _scalar(y_scale)
    scale = scale if scale.numel() > 1 else scale.reshape(())
    if y_zero_point is None:
        return acc.to(torch.float32) * scale
    return requantize(acc, scale, _scalar(y_zero_point), y_zero_point.dtype)
