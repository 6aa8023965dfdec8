"""onnxruntime ``com.microsoft`` attention ops (Attention, MultiHeadAttention, GroupQueryAttention).

Why a helper: these ops fix conventions torch's ``scaled_dot_product_attention`` leaves to the
caller, and which the outputs depend on: BERT's mask formats (key lengths, start/end pairs, raw
0/1 masks in 2-D/3-D/4-D) turned into a *finite* additive ``mask_filter_value`` (a fully padded
row still gets a softmax, not NaN), causal masks offset by the cached length and added on top
with the dtype's lowest value (so they win over padding), present
key/value caches laid out as onnxruntime writes them (GPT-2's stacked [2, B, N, T, H]; GQA's
per-row write position ``seqlens_k + 1 - S`` with zeros past each row's length), local windows,
softcap and sink logits. Where nothing of that applies the call is one fused SDPA.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, S, N*H] -> [B, N, S, H]."""
    b, s = x.shape[0], x.shape[1]
    return x.reshape(b, s, num_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, N, S, H] -> [B, S, N*H]."""
    b, n, s, h = x.shape
    return x.transpose(1, 2).reshape(b, s, n * h)


# --- masks --------------------------------------------------------------------------------------
def key_positions_allowed(mask: Optional[torch.Tensor], batch: int, q_len: int, total_len: int,
                          past_len: int, device: torch.device) -> Optional[torch.Tensor]:
    """Boolean [B, 1, S|1, T] of the keys each query may see under a BERT-style mask, or None.

    Formats: [B] key lengths (right padding); [2B] exclusive ends then inclusive starts (left
    padding); [B, T] or [B, S, T] raw masks where values > 0 keep a key; [B, 1, M, M] (Megatron)
    read at rows past_len..past_len+S-1 and columns 0..T-1.
    """
    if mask is None:
        return None
    j = torch.arange(total_len, device=device).reshape(1, 1, 1, total_len)
    if mask.dim() == 1:
        m = mask.to(torch.int64)
        if m.shape[0] == 2 * batch:
            end, start = m[:batch].reshape(batch, 1, 1, 1), m[batch:].reshape(batch, 1, 1, 1)
            return (j < end) & (j >= start)
        if m.shape[0] != batch:
            raise ValueError(f"a 1-D mask of {m.shape[0]} values for batch {batch}: only [batch] key lengths "
                             "and [2*batch] end/start positions are implemented")
        return j < m.reshape(batch, 1, 1, 1)
    if mask.dim() == 2:
        return (mask > 0).reshape(mask.shape[0], 1, 1, mask.shape[1])
    if mask.dim() == 3:
        return (mask > 0).unsqueeze(1)
    return mask[:, :, past_len:past_len + q_len, :total_len] > 0


def causal_allowed(q_len: int, total_len: int, device: torch.device) -> torch.Tensor:
    """[S, T]: query i sees keys j <= i + (T - S) (the cached keys and its own prefix)."""
    i = torch.arange(q_len, device=device).reshape(q_len, 1)
    j = torch.arange(total_len, device=device).reshape(1, total_len)
    return j <= i + (total_len - q_len)


def filter_bias(allowed: Optional[torch.Tensor], filter_value: float, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """0 where allowed, ``filter_value`` elsewhere (onnxruntime adds this finite value, not -inf)."""
    if allowed is None:
        return None
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.full((), filter_value, dtype=dtype, device=allowed.device))


def mask_bias(allowed: Optional[torch.Tensor], causal: bool, q_len: int, total_len: int, filter_value: float,
              dtype: torch.dtype, device: torch.device) -> Optional[torch.Tensor]:
    """The additive mask onnxruntime builds: ``filter_value`` on padded keys, plus the dtype's
    lowest value on future keys when causal (so a fully padded row still attends causally)."""
    bias = filter_bias(allowed, filter_value, dtype)
    if causal:
        bias = combine_bias(bias, filter_bias(causal_allowed(q_len, total_len, device), torch.finfo(dtype).min, dtype))
    return bias


def combine_bias(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor], scale: float,
           want_scores: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """softmax(scale * Q K^T + bias) V on [B, N, S, H]; also the pre-softmax scores when asked."""
    if not want_scores:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype),
                                              scale=scale), None
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias
    return torch.matmul(torch.softmax(scores, dim=-1), v), scores


# --- Attention (BERT / GPT-2 fused QKV projection) ----------------------------------------------
def attention(x: torch.Tensor, weights: torch.Tensor, bias: Optional[torch.Tensor],
              mask_index: Optional[torch.Tensor], past: Optional[torch.Tensor],
              attention_bias: Optional[torch.Tensor], num_heads: int, qkv_hidden_sizes: List[int],
              unidirectional: bool, scale: Optional[float], mask_filter_value: float
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(output [B, S, Dv], present [2, B, N, P+S, H]) of com.microsoft Attention.

    Q, K and V come from one projection ``x @ weights + bias`` split by ``qkv_hidden_sizes``;
    ``past`` [2, B, N, P, H] is prepended to K and V.
    """
    qkv = torch.matmul(x, weights)
    if bias is not None:
        qkv = qkv + bias
    return attention_projected(qkv, mask_index, past, attention_bias, num_heads, qkv_hidden_sizes, unidirectional,
                               scale, mask_filter_value)


def attention_projected(qkv: torch.Tensor, mask_index: Optional[torch.Tensor], past: Optional[torch.Tensor],
                        attention_bias: Optional[torch.Tensor], num_heads: int, qkv_hidden_sizes: List[int],
                        unidirectional: bool, scale: Optional[float], mask_filter_value: float
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`attention` after its projection: ``qkv`` [B, S, Dq + Dk + Dv] is Q, K and V side by
    side (QAttention computes it from quantized operands)."""
    q, k, v = torch.split(qkv, qkv_hidden_sizes, dim=-1)
    q, k, v = split_heads(q, num_heads), split_heads(k, num_heads), split_heads(v, num_heads)
    past_len = 0
    if past is not None:
        past_len = past.shape[3]
        k = torch.cat([past[0], k], dim=2)
        v = torch.cat([past[1], v], dim=2)
    present = torch.stack([k, v]) if k.shape[-1] == v.shape[-1] else k.new_zeros(0)
    batch, q_len, total_len = q.shape[0], q.shape[2], k.shape[2]
    allowed = key_positions_allowed(mask_index, batch, q_len, total_len, past_len, qkv.device)
    bias_qk = combine_bias(attention_bias, mask_bias(allowed, unidirectional, q_len, total_len,
                                                     mask_filter_value, q.dtype, qkv.device))
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    y, _ = attend(q, k, v, bias_qk, scale)
    return merge_heads(y), present


# --- MultiHeadAttention (separate or packed Q/K/V, cross attention, KV cache) ------------------
def mha_project(query: torch.Tensor, key: Optional[torch.Tensor], value: Optional[torch.Tensor],
                bias: Optional[torch.Tensor], num_heads: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q, K, V as [B, N, S|L, H] from MultiHeadAttention's input forms, with the input bias added.

    query [B, S, D] with key/value [B, L, D]; packed QKV query [B, S, N, 3, H]; packed KV key
    [B, L, N, 2, H]; or key/value already [B, N, L, H] (cross attention on cached projections,
    which take no bias).
    """
    if query.dim() == 5:
        if bias is not None:
            query = query + bias.reshape(3, num_heads, -1).transpose(0, 1)
        q, k, v = query.unbind(3)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    d = query.shape[-1]
    bias_q = bias_k = bias_v = None
    if bias is not None:
        bias_q, bias_k, bias_v = bias[:d], bias[d:2 * d], bias[2 * d:]
    q = split_heads(query if bias_q is None else query + bias_q, num_heads)
    if key is not None and key.dim() == 5:
        if bias is not None:
            key = key + torch.stack([bias_k.reshape(num_heads, -1), bias_v.reshape(num_heads, -1)], dim=1)
        k, v = key.unbind(3)
        return q, k.transpose(1, 2), v.transpose(1, 2)
    if key is not None and key.dim() == 4:
        return q, key, value
    k = split_heads(key if bias_k is None else key + bias_k, num_heads)
    v = split_heads(value if bias_v is None else value + bias_v, num_heads)
    return q, k, v


def multi_head_attention(query: torch.Tensor, key: Optional[torch.Tensor], value: Optional[torch.Tensor],
                         bias: Optional[torch.Tensor], key_padding_mask: Optional[torch.Tensor],
                         attention_bias: Optional[torch.Tensor], past_key: Optional[torch.Tensor],
                         past_value: Optional[torch.Tensor], num_heads: int, scale: Optional[float],
                         mask_filter_value: float, unidirectional: bool, want_qk: bool
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(output, present_key, present_value, qk or None) of com.microsoft MultiHeadAttention.

    ``qk`` is the scaled Q K^T with the attention bias and mask added (before softmax).
    """
    q, k, v = mha_project(query, key, value, bias, num_heads)
    past_len = 0
    if past_key is not None and past_value is not None:
        past_len = past_key.shape[2]
        k = torch.cat([past_key, k], dim=2)
        v = torch.cat([past_value, v], dim=2)
    batch, q_len, total_len = q.shape[0], q.shape[2], k.shape[2]
    allowed = key_positions_allowed(key_padding_mask, batch, q_len, total_len, past_len, q.device)
    bias_qk = combine_bias(attention_bias, mask_bias(allowed, unidirectional, q_len, total_len,
                                                     mask_filter_value, q.dtype, q.device))
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    y, qk = attend(q, k, v, bias_qk, scale, want_qk)
    if qk is not None and qk.shape != (batch, q.shape[1], q_len, total_len):
        qk = qk.expand(batch, q.shape[1], q_len, total_len)
    return merge_heads(y), k, v, qk


def decoder_masked_mha(query: torch.Tensor, key: Optional[torch.Tensor], value: Optional[torch.Tensor],
                       mask_index: Optional[torch.Tensor], attention_bias: Optional[torch.Tensor],
                       past_key: Optional[torch.Tensor], past_value: Optional[torch.Tensor],
                       past_sequence_length: Optional[torch.Tensor], bias: Optional[torch.Tensor], num_heads: int,
                       scale: Optional[float], mask_filter_value: float, want_qk: bool
                       ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(output, present_key, present_value, qk) of DecoderMaskedMultiHeadAttention (one query token).

    Self attention writes the new key/value into the shared [B, N, M, H] cache at
    ``past_sequence_length`` (the rest of the buffer passes through) and attends to positions
    0..past_sequence_length; cross attention (key/value given as [B, N, L, H]) attends to them all.
    ``qk`` is the scaled Q K^T with the mask and attention bias added.
    """
    if key is None and query.dim() == 3:  # packed QKV [B, 1, 3D]
        query, key, value = torch.chunk(query, 3, dim=-1)
    q, k, v = mha_project(query, key, value, bias, num_heads)
    present_key = present_value = None
    if key is not None and key.dim() == 4:
        keys, values = k, v
    else:
        past_len = int(past_sequence_length.reshape(-1)[0])
        present_key = past_key.clone()
        present_value = past_value.clone()
        present_key[:, :, past_len:past_len + 1] = k
        present_value[:, :, past_len:past_len + 1] = v
        keys, values = present_key[:, :, :past_len + 1], present_value[:, :, :past_len + 1]
    batch, total_len = q.shape[0], keys.shape[2]
    allowed = key_positions_allowed(mask_index, batch, 1, total_len, 0, q.device)
    bias_qk = combine_bias(attention_bias, filter_bias(allowed, mask_filter_value, q.dtype))
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    y, qk = attend(q, keys, values, bias_qk, scale, want_qk)
    if qk is not None and qk.shape != (batch, q.shape[1], 1, total_len):
        qk = qk.expand(batch, q.shape[1], 1, total_len)
    return merge_heads(y), present_key, present_value, qk


# --- GroupQueryAttention (LLM decoders: GQA, KV cache per row, rotary, windows) ----------------
def gqa_split_packed(qkv: torch.Tensor, num_heads: int, kv_num_heads: int
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed [B, S, (N + 2 Nkv) H] -> Q [B, S, N H], K and V [B, S, Nkv H]."""
    head = qkv.shape[-1] // (num_heads + 2 * kv_num_heads)
    return torch.split(qkv, [num_heads * head, kv_num_heads * head, kv_num_heads * head], dim=-1)


def gqa_past_lengths(seqlens_k: torch.Tensor, q_len: int, total_sequence_length: torch.Tensor) -> torch.Tensor:
    """Cached length of each row: 0 for a first prompt (S == total_sequence_length), else
    seqlens_k + 1 - S (the new tokens go right after each row's own history)."""
    total = int(total_sequence_length.reshape(-1)[0])
    lengths = seqlens_k.to(torch.int64).reshape(-1) + 1
    if q_len == total:
        return torch.zeros_like(lengths)
    return lengths - q_len


def gqa_position_ids(seqlens_k: torch.Tensor, q_len: int, total_sequence_length: torch.Tensor) -> torch.Tensor:
    """[B, S] rotary positions GroupQueryAttention derives: past length + 0..S-1."""
    past = gqa_past_lengths(seqlens_k, q_len, total_sequence_length)
    return past.unsqueeze(1) + torch.arange(q_len, device=seqlens_k.device).unsqueeze(0)


def _write_cache(past: Optional[torch.Tensor], new: torch.Tensor, past_lens: torch.Tensor, length: int) -> torch.Tensor:
    """[B, Nkv, length, H]: each row's first past_lens[b] cached entries, then the new ones, then zeros."""
    b, n, s, h = new.shape
    pos = torch.arange(length, device=new.device).reshape(1, 1, length, 1)
    keep = pos < past_lens.reshape(b, 1, 1, 1)
    if past is not None and past.shape[2] > 0:
        old = past[:, :, :length]
        if old.shape[2] < length:
            old = F.pad(old, [0, 0, 0, length - old.shape[2]])
        cache = torch.where(keep, old, torch.zeros((), dtype=new.dtype, device=new.device))
    else:
        cache = new.new_zeros(b, n, length, h)
    index = (past_lens.reshape(b, 1, 1, 1) + torch.arange(s, device=new.device).reshape(1, 1, s, 1))
    return cache.scatter(2, index.expand(b, n, s, h), new)


def _sink_softmax(scores: torch.Tensor, sink: torch.Tensor) -> torch.Tensor:
    """softmax with one extra logit per head (``sink`` [N]) in the denominator only."""
    sink = sink.to(scores.dtype).reshape(1, -1, 1, 1).expand(scores.shape[0], -1, scores.shape[2], 1)
    full = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)
    return full[..., :-1]


def group_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past_key: Optional[torch.Tensor],
                          past_value: Optional[torch.Tensor], seqlens_k: torch.Tensor,
                          total_sequence_length: torch.Tensor, attention_bias: Optional[torch.Tensor],
                          head_sink: Optional[torch.Tensor], num_heads: int, kv_num_heads: int,
                          scale: Optional[float], softcap: float, local_window_size: int, smooth_softmax: bool,
                          causal: bool, qk_output: int
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(output [B, S, N H], present_key, present_value, qk or None) of GroupQueryAttention.

    q [B, S, N H], k/v [B, S, Nkv H] (rotary already applied). The present caches have
    max(past buffer length, total_sequence_length) positions; row b holds its first
    ``past_b`` cached entries, the S new ones, then zeros. Query s of row b sees keys
    [0, past_b + s] (all of [0, past_b + S) when not causal), only the last ``local_window_size``
    of them (itself included) when a window is set; keys past the row's length are never seen.
    """
    batch, q_len = q.shape[0], q.shape[1]
    qh = split_heads(q, num_heads)
    kh = split_heads(k, kv_num_heads)
    vh = split_heads(v, kv_num_heads)
    head = qh.shape[-1]
    total = int(total_sequence_length.reshape(-1)[0])
    past_lens = gqa_past_lengths(seqlens_k, q_len, total_sequence_length)
    past_buffer = past_key.shape[2] if past_key is not None else 0
    length = max(total, past_buffer)
    present_key = _write_cache(past_key, kh, past_lens, length)
    present_value = _write_cache(past_value, vh, past_lens, length)

    row_len = seqlens_k.to(torch.int64).reshape(batch, 1, 1, 1) + 1
    i = torch.arange(q_len, device=q.device).reshape(1, 1, q_len, 1)
    j = torch.arange(length, device=q.device).reshape(1, 1, 1, length)
    frontier = past_lens.reshape(batch, 1, 1, 1) + i
    allowed = j < row_len
    if causal:
        allowed = allowed & (j <= frontier)
        if local_window_size > 0:
            allowed = allowed & (j > frontier - local_window_size)

    group = num_heads // kv_num_heads
    keys = present_key.repeat_interleave(group, dim=1) if group > 1 else present_key
    values = present_value.repeat_interleave(group, dim=1) if group > 1 else present_value
    if scale is None or scale == 0.0:
        scale = 1.0 / math.sqrt(head)
    if attention_bias is not None:  # columns are absolute key positions, up to total_sequence_length
        attention_bias = attention_bias[..., :length].to(q.dtype)
        if attention_bias.shape[-1] < length:
            attention_bias = F.pad(attention_bias, [0, length - attention_bias.shape[-1]])
    plain = softcap <= 0 and head_sink is None and not smooth_softmax and qk_output == 0
    if plain:
        bias = torch.where(allowed, 0.0, -math.inf).to(q.dtype)
        if attention_bias is not None:
            bias = attention_bias + bias
        y = F.scaled_dot_product_attention(qh, keys, values, attn_mask=bias, scale=scale)
        return merge_heads(y), present_key, present_value, None
    scores = torch.matmul(qh, keys.transpose(-1, -2)) * scale
    if softcap > 0:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_bias is not None:
        scores = scores + attention_bias
    masked = scores.masked_fill(~allowed, -math.inf)
    if head_sink is not None or smooth_softmax:
        sink = head_sink if head_sink is not None else torch.zeros(num_heads, dtype=scores.dtype, device=q.device)
        probs = _sink_softmax(masked, sink)
    else:
        probs = torch.softmax(masked, dim=-1)
    y = torch.matmul(probs, values)
    qk = None
    if qk_output == 1:
        qk = scores.masked_fill(~allowed, 0.0)
    elif qk_output == 2:
        qk = probs
    return merge_heads(y), present_key, present_value, qk


# --- rotary ---------------------------------------------------------------------------------------
def rotary_position_ids(position_ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[B, S] positions for x ([B, S, D] or [B, N, S, H]): given ones as they are, or a single
    start position p giving p..p+S-1 in every row."""
    if position_ids.dim() == 2:
        return position_ids.to(torch.int64)
    batch, q_len = x.shape[0], x.shape[1] if x.dim() == 3 else x.shape[2]
    start = position_ids.reshape(-1)[:1].to(torch.int64)
    return (start + torch.arange(q_len, device=position_ids.device)).unsqueeze(0).expand(batch, q_len)


def rotary_head_count(x: torch.Tensor, head_size: int) -> int:
    """Heads of x: N of [B, N, S, H], else the hidden size over ``head_size``."""
    return int(x.shape[1]) if x.dim() == 4 else int(x.shape[-1]) // head_size
