"""ONNX Attention (opsets 23-25) in plain tensor ops.

Why a helper: ONNX's Attention fixes details that torch's scaled_dot_product_attention leaves
open or does differently: sqrt(scale) applied to Q and K separately, softcap before the mask,
bottom-right (offset-aligned) causal masks for KV caches, sliding windows, per-batch
``nonpad_kv_seqlen`` padding, fully-masked rows giving zeros instead of NaN, and the optional
``qk_matmul_output`` debug output in four modes.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

Offset = Union[int, torch.Tensor]


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, S, H*D] -> [B, H, S, D]."""
    b, s, hidden = x.shape
    return x.reshape(b, s, num_heads, hidden // num_heads).transpose(1, 2)


def _neg_inf_bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.full((), -math.inf, dtype=dtype, device=allowed.device))


def _frontier_diff(q_len: int, kv_len: int, offset: Offset, device: torch.device) -> torch.Tensor:
    """(i + offset) - j as [q, kv], or [B, 1, q, kv] for a per-batch offset tensor."""
    i = torch.arange(q_len, device=device).reshape(q_len, 1)
    j = torch.arange(kv_len, device=device).reshape(1, kv_len)
    if isinstance(offset, torch.Tensor):
        return (i + offset.to(torch.int64).reshape(-1, 1, 1, 1)) - j
    return (i + int(offset)) - j


def _causal_bias(q_len: int, kv_len: int, offset: Offset, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return _neg_inf_bias(_frontier_diff(q_len, kv_len, offset, device) >= 0, dtype)


def _window_bias(q_len: int, kv_len: int, offset: Offset, left: int, right: int, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    diff = _frontier_diff(q_len, kv_len, offset, device)
    allowed = torch.ones_like(diff, dtype=torch.bool)
    if left >= 0:
        allowed = allowed & (diff <= left)
    if right >= 0:
        allowed = allowed & (-diff <= right)
    return _neg_inf_bias(allowed, dtype)


def _safe_softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where an all -inf row gives zeros (not NaN)."""
    x_max = torch.amax(x, dim=-1, keepdim=True)
    safe_max = torch.where(torch.isneginf(x_max), torch.zeros_like(x_max), x_max)
    e = torch.exp(x - safe_max)
    s = torch.sum(e, dim=-1, keepdim=True)
    s = torch.where(s == 0, torch.ones_like(s), s)
    return e / s


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, is_causal: bool) -> torch.Tensor:
    n_q, n_kv = q.shape[1], k.shape[1]
    if n_q != n_kv:
        k = torch.repeat_interleave(k, n_q // n_kv, dim=1)
        v = torch.repeat_interleave(v, n_q // n_kv, dim=1)
    if is_causal and q.shape[2] > k.shape[2]:
        # more queries than keys: build the top-left mask explicitly (every row keeps key 0)
        allowed = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: Optional[torch.Tensor] = None,
    past_key: Optional[torch.Tensor] = None,
    past_value: Optional[torch.Tensor] = None,
    nonpad_kv_seqlen: Optional[torch.Tensor] = None,
    scale: Optional[float] = None,
    is_causal: bool = False,
    q_num_heads: Optional[int] = None,
    kv_num_heads: Optional[int] = None,
    softmax_dtype: Optional[torch.dtype] = None,
    softcap: float = 0.0,
    qk_matmul_output_mode: int = 0,
    left_window_size: int = -1,
    right_window_size: int = -1,
    want_qk: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(Y, present_key, present_value, qk_matmul_output or None) of ONNX Attention."""
    dtype = q.dtype
    is_3d = q.dim() == 3
    if is_3d:
        if q_num_heads is None or kv_num_heads is None:
            raise ValueError("3-D Attention inputs need q_num_heads and kv_num_heads")
        q = _split_heads(q, q_num_heads)
        k = _split_heads(k, kv_num_heads)
        v = _split_heads(v, kv_num_heads)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[3])
    # ONNX scales Q and K by sqrt(scale) each, in the input precision
    root = torch.tensor(math.sqrt(scale), dtype=torch.float64).to(dtype)

    if past_key is not None:
        k = torch.cat([past_key, k], dim=2)
    if past_value is not None:
        v = torch.cat([past_value, v], dim=2)
    present_key, present_value = k, v
    q_len, kv_len = q.shape[2], k.shape[2]
    device = q.device

    has_window = left_window_size >= 0 or right_window_size >= 0
    plain = (attn_mask is None and nonpad_kv_seqlen is None and not has_window and softcap <= 0
             and not want_qk and softmax_dtype in (None, dtype) and dtype in (torch.float32, torch.float64)
             and (not is_causal or past_key is None))
    if plain:
        # Nothing ONNX-specific is left: torch's fused kernel gives the same result (its causal
        # mask is the top-left one ONNX uses without a cache) and no row can be fully masked.
        y = _sdpa(q, k, v, scale, is_causal)
        if is_3d:
            y = y.transpose(1, 2)
            y = y.reshape(y.shape[0], y.shape[1], -1)
        return y, present_key, present_value, None
    if past_key is None and nonpad_kv_seqlen is not None:
        offset: Offset = nonpad_kv_seqlen.reshape(-1) - q_len
    else:
        offset = past_key.shape[2] if past_key is not None else 0

    mask = attn_mask
    if mask is not None and mask.shape[-1] < kv_len:
        pad = kv_len - mask.shape[-1]
        fill = False if mask.dtype == torch.bool else -math.inf
        mask = F.pad(mask, [0, pad], value=fill)
    if mask is not None:
        mask = _neg_inf_bias(mask, dtype) if mask.dtype == torch.bool else mask.to(dtype)

    bias: Optional[torch.Tensor] = None
    if is_causal:
        base = mask if mask is not None else torch.zeros((q_len, kv_len), dtype=dtype, device=device)
        if has_window:
            base = torch.zeros((q_len, kv_len), dtype=dtype, device=device) + base
        bias = base + _causal_bias(q_len, kv_len, offset, dtype, device)
    elif mask is not None:
        bias = torch.zeros((q_len, kv_len), dtype=dtype, device=device) + mask
    if has_window:
        base = torch.zeros((q_len, kv_len), dtype=dtype, device=device)
        if bias is not None:
            base = base + bias
        bias = base + _window_bias(q_len, kv_len, offset, left_window_size, right_window_size, dtype, device)
    if nonpad_kv_seqlen is not None:
        keep = torch.arange(kv_len, device=device).reshape(1, kv_len) < nonpad_kv_seqlen.reshape(-1, 1).to(torch.int64)
        pad_bias = _neg_inf_bias(keep, dtype).reshape(-1, 1, 1, kv_len)
        bias = pad_bias if bias is None else bias + pad_bias

    n_q, n_kv = q.shape[1], k.shape[1]
    if n_q != n_kv and n_q % n_kv == 0 and v.shape[1] == n_kv:
        k = torch.repeat_interleave(k, n_q // n_kv, dim=1)
        v = torch.repeat_interleave(v, n_q // n_kv, dim=1)

    qk = torch.matmul(q * root, (k * root).transpose(-1, -2))
    if softcap > 0:
        qk = torch.tanh(qk / softcap) * softcap
    with_bias = qk if bias is None else qk + bias
    qk_out: Optional[torch.Tensor] = None
    if want_qk:
        qk_out = with_bias if qk_matmul_output_mode == 2 else qk

    logits = with_bias.to(softmax_dtype) if softmax_dtype is not None else with_bias
    probs = _safe_softmax(logits)
    if bias is not None:
        all_masked = torch.isneginf(torch.amax(bias, dim=-1, keepdim=True))
        probs = torch.where(all_masked, torch.zeros((), dtype=probs.dtype, device=device), probs)
    if want_qk and qk_matmul_output_mode == 3:
        qk_out = probs
    if qk_out is not None:
        qk_out = qk_out.to(dtype)
    y = torch.matmul(probs.to(dtype), v)
    if is_3d:
        y = y.transpose(1, 2)
        y = y.reshape(y.shape[0], y.shape[1], -1)
    return y, present_key, present_value, qk_out


def rotary_embedding(x: torch.Tensor, cos_cache: torch.Tensor, sin_cache: torch.Tensor,
                     position_ids: Optional[torch.Tensor] = None, interleaved: bool = False,
                     rotary_dim: int = 0, num_heads: int = 0) -> torch.Tensor:
    """ONNX RotaryEmbedding on [B, H, S, D] or [B, S, H*D] input.

    The caches are [max_pos, rotary_dim/2] indexed by ``position_ids`` ([B, S]), or already
    [B, S, rotary_dim/2] when no position ids are given.
    """
    is_3d = x.dim() == 3
    if is_3d:
        b, s, hidden = x.shape
        x4 = x.reshape(b, s, num_heads, hidden // num_heads)  # [B, S, H, D]
    else:
        x4 = x.transpose(1, 2)  # [B, S, H, D]
    head = x4.shape[-1]
    rd = rotary_dim if rotary_dim > 0 else head
    if position_ids is not None:
        cos = cos_cache[position_ids.to(torch.int64)]
        sin = sin_cache[position_ids.to(torch.int64)]
    else:
        cos, sin = cos_cache, sin_cache
    cos = cos.unsqueeze(2).to(x.dtype)  # [B, S, 1, rd/2]
    sin = sin.unsqueeze(2).to(x.dtype)
    rot, keep = x4[..., :rd], x4[..., rd:]
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., : rd // 2], rot[..., rd // 2:]
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    if interleaved:
        rot = torch.stack([real, imag], dim=-1).reshape(rot.shape)
    else:
        rot = torch.cat([real, imag], dim=-1)
    out = torch.cat([rot, keep], dim=-1)
    if is_3d:
        return out.reshape(x.shape)
    return out.transpose(1, 2)


def swiglu(a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """a * sigmoid(alpha * a) * b."""
    gate = torch.sigmoid(a * alpha) if alpha != 1.0 else torch.sigmoid(a)
    return (a * gate.to(a.dtype)) * b


def flex_scores(q: torch.Tensor, k: torch.Tensor, scale: Optional[float],
                compute_dtype: torch.dtype) -> torch.Tensor:
    """FlexAttention scores: (Q*sqrt(scale)) @ (K*sqrt(scale))^T with KV heads repeated for GQA."""
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    hq, hkv = q.shape[1], k.shape[1]
    if hq != hkv:
        k = torch.repeat_interleave(k, hq // hkv, dim=1)
    root = torch.tensor(math.sqrt(scale), dtype=torch.float32).to(q.dtype)
    return torch.matmul(q * root, (k * root).transpose(-1, -2)).to(compute_dtype)


def flex_softmax(scores: torch.Tensor, compute_dtype: torch.dtype) -> torch.Tensor:
    return torch.softmax(scores.to(compute_dtype), dim=-1)


def flex_output(probs: torch.Tensor, v: torch.Tensor, compute_dtype: torch.dtype) -> torch.Tensor:
    hq, hkv = probs.shape[1], v.shape[1]
    if hq != hkv:
        v = torch.repeat_interleave(v, hq // hkv, dim=1)
    return torch.matmul(probs.to(compute_dtype), v.to(compute_dtype)).to(v.dtype)
