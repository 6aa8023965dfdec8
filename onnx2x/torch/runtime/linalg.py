"""Linear-algebra helpers: integer matmuls keep ONNX's exact integer semantics.

Why a helper: ONNX's MatMulInteger subtracts per-tensor, per-row (A) or per-column (B) zero
points and accumulates in int32; torch has no single function for that. ``linear_prepacked`` is
``F.linear`` on oneDNN with the weight packed once (eager CPU inference).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary


def _int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int32 product (int64 accumulation on CPU; wraps like int32 arithmetic when cast)."""
    return torch.matmul(a.to(torch.int64), b.to(torch.int64)).to(torch.int32)


# --- exact 8-bit products on torch's int8 GEMM ----------------------------------------------------
# Why: the exact product of 8-bit matrices otherwise takes int64 (torch has no BLAS for it) or
# float64 matmuls of widened copies, which on a quantized BERT-base layer (128x768 @ 768x2304)
# costs 12 ms per call where ``torch._int_mm`` (int8 x int8 -> int32, oneDNN) takes 1.1 ms. With
# ``x - zp = x8 + off`` (uint8 codes shifted to int8: ``x8 = x - 128``), the product is
# ``A8 B8 + off_a colsum(B8) + rowsum(A8) off_b + K off_a off_b``, every term an exact int32 for
# K <= INT8_GEMM_MAX_K (onnxruntime accumulates in int32 too).
_BYTE_TYPES = (torch.uint8, torch.int8)
_PLAIN = (torch.Tensor, torch.nn.Parameter)
INT8_GEMM_MAX_K = 2**15


def _int8_gemm_ok(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Eager CPU tensors of 8-bit codes, a 2-D B; tracing, export and compilation take the plain path."""
    if type(a) is not torch.Tensor or type(b) not in _PLAIN:
        return False
    if a.dtype not in _BYTE_TYPES or b.dtype not in _BYTE_TYPES or b.dim() != 2 or a.dim() < 1:
        return False
    if not (a.is_cpu and b.is_cpu) or a.shape[-1] != b.shape[0] or not 0 < b.shape[0] <= INT8_GEMM_MAX_K:
        return False
    if a.numel() == 0 or b.numel() == 0:
        return False
    return not (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()
                or torch.onnx.is_in_onnx_export())


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


_COLUMN_SUMS: "WeakIdKeyDictionary" = WeakIdKeyDictionary()  # B -> (key, int32 column sums of B8)


def _column_sums(b: torch.Tensor, b8: torch.Tensor) -> torch.Tensor:
    """Column sums of ``b8`` (the int8 codes of ``b``), kept while ``b`` is unchanged. Why: B is
    mostly a constant weight, and its sums (a widening pass over it) cost a quarter of the GEMM.
    Inference tensors (no version counter to tell an in-place change) are summed on every call."""
    if b.is_inference():
        return b8.sum(0, dtype=torch.int32)
    key = (b.data_ptr(), b._version)
    entry = _COLUMN_SUMS.get(b)
    if entry is None or entry[0] != key:
        entry = (key, b8.sum(0, dtype=torch.int32))
        _COLUMN_SUMS[b] = entry
    return entry[1]


def int8_product(a: torch.Tensor, b: torch.Tensor, a_zero_point: Optional[torch.Tensor],
                 b_zero_point: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``(A - za) @ (B - zb)`` exactly, in int32, on torch's int8 GEMM; None where that path does not
    apply (see ``_int8_gemm_ok``): the caller computes it with wide types instead."""
    if not _int8_gemm_ok(a, b):
        return None
    k, n = b.shape
    a8, a_off = _signed_codes(a, a_zero_point, per_row=True)
    b8, b_off = _signed_codes(b, b_zero_point, per_row=False)
    acc = torch._int_mm(a8.reshape(-1, k), b8.contiguous()).reshape(a.shape[:-1] + (n,))
    if a_off is not None:
        acc += a_off * _column_sums(b, b8)
    if b_off is not None:
        acc += a8.sum(-1, keepdim=True, dtype=torch.int32) * b_off
        if a_off is not None:
            acc += k * a_off * b_off
    return acc


def _zp_a(a: torch.Tensor, zp: Optional[torch.Tensor]) -> torch.Tensor:
    a = a.to(torch.int32)
    if zp is None:
        return a
    zp = zp.to(torch.int32)
    if zp.dim() == 1 and zp.numel() > 1 and a.dim() >= 2:
        # per-row zero point: one value per row M of A ([M]; the N-D form is [..., M, 1])
        zp = zp.unsqueeze(-1)
    return a - zp


def _zp_b(b: torch.Tensor, zp: Optional[torch.Tensor]) -> torch.Tensor:
    b = b.to(torch.int32)
    if zp is None:
        return b
    # per-column zero points ([N] or [..., 1, N]) broadcast along the rows as they are
    return b - zp.to(torch.int32)


def matmul_integer(a: torch.Tensor, b: torch.Tensor, a_zero_point: Optional[torch.Tensor] = None,
                   b_zero_point: Optional[torch.Tensor] = None) -> torch.Tensor:
    """ONNX MatMulInteger: (A - a_zp) @ (B - b_zp) in int32."""
    acc = int8_product(a, b, a_zero_point, b_zero_point)
    if acc is not None:
        return acc
    return _int_matmul(_zp_a(a, a_zero_point), _zp_b(b, b_zero_point))


def gemm(a: torch.Tensor, b: torch.Tensor, c: Optional[torch.Tensor], alpha: float, beta: float,
         trans_a: bool, trans_b: bool) -> torch.Tensor:
    """alpha * A' @ B' + beta * C, keeping the input dtype (also for integer Gemm)."""
    if trans_a:
        a = a.transpose(0, 1)
    if trans_b:
        b = b.transpose(0, 1)
    if a.dtype.is_floating_point:
        y = torch.matmul(a, b)
        if alpha != 1.0:
            y = y * alpha
        if c is not None and beta != 0.0:
            y = y + (c.to(y.dtype) if beta == 1.0 else c.to(y.dtype) * beta)
        return y
    y = torch.matmul(a.to(torch.int64), b.to(torch.int64))
    if alpha != 1.0:
        y = y.to(torch.float64) * alpha
    if c is not None and beta != 0.0:
        y = y + (c if beta == 1.0 else c.to(torch.float64) * beta)
    return y.to(a.dtype)


# --- F.linear with a pre-packed weight (eager CPU inference) -------------------------------------
# Why: ``F.linear`` on CPU calls MKL's sgemm, which re-packs the weight on every call; onnxruntime
# packs each weight once. oneDNN with a weight packed once runs transformer-sized layers 10-20%
# faster (BERT-small: 1.33x -> 1.2x onnxruntime's latency on one thread). The packed copy is a
# cache beside the parameter, never part of the state_dict. Tracing, export, compilation, autograd
# and any input that is not a plain CPU float32 tensor take the plain ``F.linear`` path. The
# packed copy costs memory: weights over PACK_MAX_BYTES (an LLM's or VGG's big matrices, where a
# second copy would double what the process holds, also while the CLI checks a conversion) stay
# on the plain path.
PACK_MAX_BYTES = 16 * 2**20
# oneDNN's call costs about 18 us more than MKL's; packing pays for that only on a weight of at
# least 512x512 and at least 4 rows of input (one thread: 64x64 weights run 2-9x slower packed,
# 256x256 1.1-4x up to 64 rows, one row 1.2-8x; 768x768 at 4-1024 rows 0.65-0.9x). Smaller
# problems take F.linear (a 64-wide BERT's layers: 23 -> 4 us each).
PACK_MIN_ELEMENTS = 512 * 512
PACK_MIN_ROWS = 4
_PACKED_LINEAR: "WeakIdKeyDictionary" = WeakIdKeyDictionary()  # weight -> (key, packed weight)


def clear_packed_linear_weights() -> None:
    """Drop every cached packed weight (rebuilt on the next call); needed only after editing a
    weight's values through ``.data``, which PyTorch's version counter does not see."""
    _PACKED_LINEAR.clear()


def _linear_fast_path_ok(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    """A problem big enough to gain from packing, plain CPU float32 tensors in eager mode, no
    autograd, oneDNN usable (checks ordered by cost: most small layers leave at the first)."""
    if type(x) is not torch.Tensor:
        return False  # fake, functional or other tensor subclasses mean someone is tracing: no size guards
    if not PACK_MIN_ELEMENTS <= weight.numel() <= PACK_MAX_BYTES // 4 or x.numel() < PACK_MIN_ROWS * weight.shape[-1]:
        return False
    if x.dtype != torch.float32 or not x.is_cpu or x.is_mkldnn or x.dim() < 1:
        return False
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    for t in (weight, bias):
        if t is not None and (type(t) not in _PLAIN or t.dtype != torch.float32 or not t.is_cpu or t.is_mkldnn):
            return False
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1] or (bias is not None and bias.shape != weight.shape[:1]):
        return False
    if not torch.backends.mkldnn.enabled or not torch.backends.mkldnn.is_available():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return False  # oneDNN's op has no backward
    return True


def _packed_linear_weight(weight: torch.Tensor) -> torch.Tensor:
    """oneDNN's blocked copy of ``weight``, kept while ``weight`` is unchanged."""
    version = -1 if weight.is_inference() else weight._version  # inference tensors have no counter
    key = (weight.data_ptr(), version, torch.get_num_threads())
    entry = _PACKED_LINEAR.get(weight)
    if entry is not None and entry[0] == key:
        return entry[1]
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous())
    _PACKED_LINEAR[weight] = (key, packed)
    return packed


def linear_prepacked(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; ``weight`` [out, in] is packed for oneDNN once."""
    if _linear_fast_path_ok(x, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(x, _packed_linear_weight(weight), bias, "none", [], "")
    return F.linear(x, weight, bias)
