"""Recurrent sequence mixers: ONNX LinearAttention and CausalConvWithState.

Why a helper: both carry a state across time steps (a [B, H, d_k, d_v] associative memory, or
the last k-1 inputs of a depthwise causal convolution) with update rules no torch op provides.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, T, H*D] -> [B, H, T, D]."""
    b, t, hd = x.shape
    return x.reshape(b, t, num_heads, hd // num_heads).transpose(1, 2)


def linear_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     past_state: Optional[torch.Tensor], decay: Optional[torch.Tensor],
                     beta: Optional[torch.Tensor], q_num_heads: int, kv_num_heads: int,
                     scale: Optional[float], update_rule: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(output [B, T, Hq*d_v], present_state [B, Hkv, d_k, d_v]); computed in float32.

    Per step t: S <- S * exp(g_t) (gated rules); v_t <- beta_t * (v_t - S^T k_t) (delta rules);
    S <- S + k_t v_t^T; o_t = scale * q_t^T S (KV heads shared by groups of Q heads).
    """
    gating = update_rule in ("gated", "gated_delta")
    delta = update_rule in ("delta", "gated_delta")
    out_dtype = query.dtype
    b, t, _ = query.shape
    d_k = query.shape[-1] // q_num_heads
    d_v = value.shape[-1] // kv_num_heads
    group = q_num_heads // kv_num_heads
    f32 = torch.float32
    q4 = _heads(query, q_num_heads).to(f32)
    k4 = _heads(key, kv_num_heads).to(f32)
    v4 = _heads(value, kv_num_heads).to(f32)
    g4: Optional[torch.Tensor] = None
    if gating and decay is not None:
        if decay.shape[-1] == kv_num_heads:
            g4 = decay.reshape(b, t, kv_num_heads, 1).transpose(1, 2).to(f32)
        else:
            g4 = _heads(decay, kv_num_heads).to(f32)
    b4: Optional[torch.Tensor] = None
    if delta and beta is not None:
        b4 = beta.reshape(b, t, beta.shape[-1], 1).transpose(1, 2).to(f32)
    if past_state is not None:
        state_dtype = past_state.dtype
        state = past_state.to(f32)
    else:
        state_dtype = out_dtype
        state = torch.zeros((b, kv_num_heads, d_k, d_v), dtype=f32, device=query.device)
    scale_val = 1.0 / math.sqrt(d_k) if not scale else float(scale)
    outs = []
    for i in range(t):
        k_t = k4[:, :, i, :]
        v_t = v4[:, :, i, :]
        if g4 is not None:
            state = state * torch.exp(g4[:, :, i, :]).unsqueeze(-1)
        if b4 is not None:
            retrieved = torch.einsum("bhdm,bhd->bhm", state, k_t)
            v_t = b4[:, :, i, :] * (v_t - retrieved)
        state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        read = state if group == 1 else torch.repeat_interleave(state, group, dim=1)
        outs.append(scale_val * torch.einsum("bhd,bhdm->bhm", q4[:, :, i, :], read))
    if outs:
        out = torch.stack(outs, dim=2)  # [B, Hq, T, d_v]
    else:
        out = torch.zeros((b, q_num_heads, 0, d_v), dtype=f32, device=query.device)
    out = out.transpose(1, 2).reshape(b, t, q_num_heads * d_v).to(out_dtype)
    return out, state.to(state_dtype)


def causal_conv_with_state(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                           past_state: Optional[torch.Tensor], activation: str
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv1d over [B, C, L] with the previous k-1 inputs as left context.

    Returns (output [B, C, L], present_state = the last k-1 columns of [past | input]).
    """
    b, c, _ = x.shape
    k = weight.shape[2]
    if past_state is None:
        pad = torch.zeros((b, c, k - 1), dtype=x.dtype, device=x.device)
    else:
        pad = past_state.to(x.dtype)
    padded = torch.cat([pad, x], dim=2)
    wide = x.dtype in (torch.float16, torch.bfloat16)
    xin = padded.float() if wide else padded
    w = weight.to(xin.dtype)
    bb = None if bias is None else bias.to(xin.dtype)
    out = F.conv1d(xin, w, bb, groups=c).to(x.dtype)
    if activation in ("silu", "swish"):
        o32 = out.to(torch.float32)
        out = (o32 * torch.sigmoid(o32)).to(x.dtype)
    present = padded[:, :, padded.shape[2] - (k - 1):]
    return out, present
