"""onnxruntime's MatMulNBits: a float matrix times 2/4/8-bit block-quantized weights.

MatMulNBits weights stay packed (uint8 codes plus scales, the bytes of the ONNX file) in the
module; :func:`matmul_nbits` unpacks and dequantizes them on each call. Why: an LLM's 4-bit
weights would take eight times their memory as float32 buffers, and a model that fits on disk
should fit in memory the same way; the per-call cost is one elementwise pass over the weight.
"""
from __future__ import annotations

from typing import Optional

import torch


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Little-endian bit fields of ``packed`` (uint8, last axis) -> ``count`` codes (int32) per row."""
    p = packed.to(torch.int32)
    if bits == 8:
        codes = p
    else:
        per_byte = 8 // bits
        shifts = torch.arange(per_byte, dtype=torch.int32) * bits
        codes = ((p.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)).flatten(-2)
    return codes[..., :count]


def dequantize_nbits(b: torch.Tensor, scales: torch.Tensor, zero_points: Optional[torch.Tensor],
                     g_idx: Optional[torch.Tensor], k: int, n: int, bits: int, block_size: int,
                     packed_zero_points: bool) -> torch.Tensor:
    """The float [N, K] weight of MatMulNBits: ``(code - zero_point) * scale`` per block.

    Zero points: uint8 packed like the codes (``packed_zero_points``), unpacked values in the
    scales' dtype, or omitted (``2 ** (bits - 1)``). ``g_idx`` maps each of the K rows to its block
    (act-order); without it row k is in block ``k // block_size``.
    """
    k_blocks = (k + block_size - 1) // block_size
    codes = unpack_codes(b.reshape(n, -1), bits, k_blocks * block_size)[:, :k]
    work = torch.float32 if scales.dtype in (torch.float16, torch.bfloat16, torch.float32) else scales.dtype
    sc = scales.reshape(n, k_blocks).to(work)
    if zero_points is None:
        zp = torch.full((n, k_blocks), float(1 << (bits - 1)), dtype=work)
    elif packed_zero_points:
        zp = unpack_codes(zero_points.reshape(n, -1), bits, k_blocks).to(work)
    else:
        zp = zero_points.reshape(n, k_blocks).to(work)
    if g_idx is not None:
        block = g_idx.to(torch.int64).reshape(-1)
    else:
        block = torch.arange(k, dtype=torch.int64) // block_size
    return (codes.to(work) - zp[:, block]) * sc[:, block]


def _int8_blocks(a: torch.Tensor, k: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A quantized to int8 per block of K, as onnxruntime's int8 compute path does it:
    ``scale = max|a| / 127``, ``q = round(a * (127 / max|a|))``. Returns (q [..., k_blocks, bs], scale)."""
    k_blocks = (k + block_size - 1) // block_size
    a = torch.nn.functional.pad(a.to(torch.float32), (0, k_blocks * block_size - k))
    a = a.reshape(list(a.shape[:-1]) + [k_blocks, block_size])
    amax = a.abs().amax(dim=-1)
    inv = torch.where(amax != 0, torch.tensor(127.0) / amax, torch.zeros_like(amax))
    q = torch.round(a * inv.unsqueeze(-1))
    return q, amax / torch.tensor(127.0)


def matmul_nbits(a: torch.Tensor, b: torch.Tensor, scales: torch.Tensor, zero_points: Optional[torch.Tensor],
                 g_idx: Optional[torch.Tensor], bias: Optional[torch.Tensor], k: int, n: int, bits: int,
                 block_size: int, packed_zero_points: bool, int8_a: bool = False) -> torch.Tensor:
    """com.microsoft MatMulNBits: ``A @ dequantize(B).T (+ bias)``, computed in float32 for
    float16/bfloat16 inputs and returned in A's dtype.

    ``int8_a`` (accuracy_level 4, where onnxruntime's CPU kernel quantizes A to int8 per block):
    the block dot products are exact integer sums of ``q_a * (code - zero_point)``, scaled by
    ``scale_a * scale_b`` and summed over the blocks in float32, as that kernel does.
    """
    if not int8_a:
        w = dequantize_nbits(b, scales, zero_points, g_idx, k, n, bits, block_size, packed_zero_points)
        work = w.dtype
        y = torch.matmul(a.to(work), w.transpose(0, 1))
    else:
        k_blocks = (k + block_size - 1) // block_size
        codes = unpack_codes(b.reshape(n, -1), bits, k_blocks * block_size).reshape(n, k_blocks, block_size)
        if zero_points is None:
            zp = torch.full((n, k_blocks), 1 << (bits - 1), dtype=torch.int32)
        else:
            zp = unpack_codes(zero_points.reshape(n, -1), bits, k_blocks)
        wq = (codes - zp.unsqueeze(-1)).to(torch.float64)
        qa, sa = _int8_blocks(a, k, block_size)
        dots = torch.einsum("...kb,nkb->...nk", qa.to(torch.float64), wq).to(torch.float32)
        sb = scales.reshape(n, k_blocks).to(torch.float32)
        work = torch.float32
        y = (dots * (sa.unsqueeze(-2) * sb)).sum(dim=-1)
    if bias is not None:
        y = y + bias.to(work)
    return y.to(a.dtype)
