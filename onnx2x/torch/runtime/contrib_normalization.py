"""onnxruntime ``com.microsoft`` normalization helpers (the parts no torch call covers).

Why a helper: EmbedLayerNormalization gathers three embeddings with default position ids and
derives BERT's 1-D mask index; the skip variants expose the row statistics as extra outputs
(shaped [..., 1] as onnxruntime writes them); GroupNorm/SkipGroupNorm default to channels-last
input with an optional residual, bias and SiLU.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def row_stats(s: torch.Tensor, eps: float, simplified: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/std) over the last axis, keepdim, in float32 at least.

    For the simplified (RMS) variants onnxruntime writes zeros as the mean and 1/rms as 1/std.
    """
    xs = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s
    if simplified:
        inv = torch.rsqrt((xs * xs).mean(dim=-1, keepdim=True) + eps)
        return torch.zeros_like(inv), inv
    mean = xs.mean(dim=-1, keepdim=True)
    d = xs - mean
    inv = torch.rsqrt((d * d).mean(dim=-1, keepdim=True) + eps)
    return mean, inv


def embed_layer_norm(input_ids: torch.Tensor, segment_ids: Optional[torch.Tensor], word_embedding: torch.Tensor,
                     position_embedding: torch.Tensor, segment_embedding: Optional[torch.Tensor],
                     gamma: torch.Tensor, beta: torch.Tensor, mask: Optional[torch.Tensor],
                     position_ids: Optional[torch.Tensor], eps: float
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(layer-normed embedding sum, mask_index, embedding sum) of EmbedLayerNormalization.

    Position ids default to 0..S-1 for every row; given ones may be [1, S] or [B, S]. The mask
    index is the number of ones in each mask row (int32 zeros without a mask).
    """
    batch, seq = input_ids.shape[0], input_ids.shape[1]
    emb = F.embedding(input_ids.long(), word_embedding)
    if position_ids is None:
        position_ids = torch.arange(seq, device=input_ids.device).unsqueeze(0)
    emb = emb + F.embedding(position_ids.long(), position_embedding)
    if segment_ids is not None and segment_embedding is not None:
        emb = emb + F.embedding(segment_ids.long(), segment_embedding)
    out = F.layer_norm(emb, [emb.shape[-1]], gamma, beta, eps)
    if mask is None:
        mask_index = torch.zeros(batch, dtype=torch.int32, device=input_ids.device)
    else:
        mask_index = mask.to(torch.int32).sum(dim=1, dtype=torch.int32)
    return out, mask_index, emb


def group_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, skip: Optional[torch.Tensor],
               bias: Optional[torch.Tensor], groups: int, eps: float, silu: bool, channels_last: bool
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(y, x + skip + bias) of GroupNorm/SkipGroupNorm; statistics in float32.

    ``channels_last``: x is [N, H, W, C] (a [N, C] skip broadcasts over H and W), else [N, C, H, W].
    """
    s = x
    c = x.shape[-1] if channels_last else x.shape[1]
    if skip is not None:
        if skip.dim() == 2:  # [N, C]
            skip = skip.reshape(skip.shape[0], 1, 1, c) if channels_last else skip.reshape(skip.shape[0], c, 1, 1)
        s = s + skip
    if bias is not None:
        s = s + (bias if channels_last else bias.reshape(c, 1, 1))
    nchw = s.permute(0, 3, 1, 2) if channels_last else s
    y = F.group_norm(nchw.float(), groups, gamma.float(), beta.float(), eps)
    if silu:
        y = F.silu(y)
    y = y.to(x.dtype)
    if channels_last:
        y = y.permute(0, 2, 3, 1)
    return y, s
