"""Softmax-family helpers: ONNX's pre-13 "coerce to 2-D" semantics, Hardmax and the two losses.

Why a helper: before opset 13, Softmax/LogSoftmax/Hardmax normalise over *all* dimensions from
``axis`` on (the input is viewed as a matrix), which no torch function does directly; the losses
need ONNX's ``ignore_index`` and weighted-mean rules around torch's ``nll_loss``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def hardmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    """1 at the first maximum along ``axis``, 0 elsewhere (same dtype as ``x``)."""
    if x.numel() == 0:
        return x
    idx = torch.argmax(x, dim=axis, keepdim=True)
    return torch.zeros_like(x).scatter(axis, idx, 1)


def _stepwise(kind: str, x: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX's function body op by op, each step rounded to x's dtype (used for 16-bit floats,
    where torch's fused kernels keep float32 intermediates and land one ulp away)."""
    shifted = x - torch.amax(x, dim=axis, keepdim=True)
    e = torch.exp(shifted)
    s = torch.sum(e, dim=axis, keepdim=True)
    return e / s if kind == "softmax" else shifted - torch.log(s)


def _apply(kind: str, x: torch.Tensor, axis: int) -> torch.Tensor:
    if kind != "hardmax" and x.dtype in (torch.float16, torch.bfloat16) and x.numel() > 0:
        return _stepwise(kind, x, axis)
    if kind == "softmax":
        return torch.softmax(x, dim=axis)
    if kind == "logsoftmax":
        return torch.log_softmax(x, dim=axis)
    return hardmax(x, axis)


def softmax_axis(x: torch.Tensor, kind: str, axis: int) -> torch.Tensor:
    """Opset >= 13: normalise along one axis."""
    return _apply(kind, x, axis)


def softmax_2d(x: torch.Tensor, kind: str, axis: int) -> torch.Tensor:
    """Opset < 13: view ``x`` as [prod(shape[:axis]), prod(shape[axis:])] and normalise rows."""
    rank = x.dim()
    if axis < 0:
        axis += rank
    if axis == rank - 1:
        return _apply(kind, x, -1)
    flat = x.reshape(x.shape[:axis].numel(), x.shape[axis:].numel())
    return _apply(kind, flat, 1).reshape(x.shape)


def nll_loss(log_prob: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
             ignore_index: Optional[int], reduction: str) -> torch.Tensor:
    """ONNX NegativeLogLikelihoodLoss on [N, C, d1, ...] inputs.

    ``ignore_index`` may be negative or beyond C; those targets contribute 0 and (for "mean")
    are left out of the divisor, as torch does.
    """
    target = target.to(torch.int64)
    # ONNX has no ignore_index by default; then use a value no valid class can take.
    ii = -(2 ** 62) if ignore_index is None else int(ignore_index)
    if weight is not None and weight.dtype != log_prob.dtype:
        weight = weight.to(log_prob.dtype)
    if log_prob.dtype == torch.float16 or log_prob.dtype == torch.bfloat16:
        w = None if weight is None else weight.float()
        out = F.nll_loss(log_prob.float(), target, weight=w, ignore_index=ii, reduction=reduction)
        return out.to(log_prob.dtype)
    return F.nll_loss(log_prob, target, weight=weight, ignore_index=ii, reduction=reduction)


def softmax_cross_entropy(x: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
                          ignore_index: Optional[int], reduction: str):
    """(loss, log_prob) of ONNX SoftmaxCrossEntropyLoss: log-softmax over axis 1, then NLL."""
    log_prob = torch.log_softmax(x, dim=1)
    return nll_loss(log_prob, target, weight, ignore_index, reduction), log_prob
