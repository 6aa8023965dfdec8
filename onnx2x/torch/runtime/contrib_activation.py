"""onnxruntime ``com.microsoft`` activation helpers that have no single torch call.

Why a helper: BiasSplitGelu halves the last axis and gates one half with the other, and
BiasSoftmax adds a bias broadcast over a flattened batch (Softmax-11 style: every axis from
``axis`` on is one softmax row), which plain broadcasting cannot express; a FusedMatMul operand
of a rank known only at run time is transposed by its rank then.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bias_split_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(x + bias) split in halves on the last axis: left * gelu(right), gelu with erf."""
    left, right = torch.chunk(x + bias, 2, dim=-1)
    return left * F.gelu(right)


def bias_softmax(x: torch.Tensor, bias: torch.Tensor, axis: int, inner_broadcast: bool) -> torch.Tensor:
    """softmax(x + bias) over the axes ``axis..rank-1`` taken together.

    The rows of ``x`` before ``axis`` form one flat batch. ``bias`` holds fewer rows: with
    ``inner_broadcast`` consecutive rows of ``x`` share a bias row (the bias lacks trailing batch
    axes), otherwise the bias rows repeat cyclically (the bias lacks leading batch axes).
    """
    axis = axis + x.dim() if axis < 0 else axis
    row = 1
    for d in x.shape[axis:]:
        row *= int(d)
    rows = x.reshape(-1, row)
    b = bias.reshape(-1, row).to(x.dtype)
    n_bias = b.shape[0]
    if inner_broadcast:
        z = rows.reshape(n_bias, -1, row) + b.unsqueeze(1)
    else:
        z = rows.reshape(-1, n_bias, row) + b.unsqueeze(0)
    return torch.softmax(z, dim=-1).reshape(x.shape)


def matmul_operand(x: torch.Tensor, trans: bool, trans_batch: bool) -> torch.Tensor:
    """FusedMatMul's op(X) for an operand whose rank the graph does not declare: transBatch moves
    the first axis behind the other batch axes, trans swaps the last two (a vector is as it is)."""
    rank = x.dim()
    if rank == 1:
        return x
    if trans_batch and rank > 2:
        x = x.permute(*range(1, rank - 1), 0, rank - 1)
    return x.transpose(-1, -2) if trans else x
