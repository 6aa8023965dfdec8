"""Linear-algebra helpers: integer matmuls keep ONNX's exact integer semantics.

Why a helper: ONNX's MatMulInteger subtracts per-tensor, per-row (A) or per-column (B) zero
points and accumulates in int32; torch has no single function for that.
"""
from __future__ import annotations

from typing import Optional

import torch


def _int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int32 product (int64 accumulation on CPU; wraps like int32 arithmetic when cast)."""
    return torch.matmul(a.to(torch.int64), b.to(torch.int64)).to(torch.int32)


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
