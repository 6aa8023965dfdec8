"""Attention (opsets 23-25) and the other attention-family ops."""
from __future__ import annotations

import torch

from ..dtypes import torch_dtype
from ..registry import converter
from ..runtime import attention as rt
from ..runtime import linear_attention as lin


def _wanted(ctx, j: int) -> bool:
    return j < ctx.num_outputs and bool(ctx.node.outputs[j].name)


@converter("Attention", since=23)
def attention(ctx):
    """One runtime call; attributes are plain Python values baked into the call."""
    scale = ctx.attr("scale", None)
    q_heads = ctx.attr("q_num_heads", None)
    kv_heads = ctx.attr("kv_num_heads", None)
    precision = ctx.attr("softmax_precision", None)
    softmax_dtype = None
    if precision is not None:
        softmax_dtype = torch_dtype(int(precision))
        if softmax_dtype is None:
            raise ctx.unsupported(f"softmax_precision={precision}")
    want_qk = _wanted(ctx, 3)
    res = ctx.call(
        rt.attention, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4), ctx.input(5),
        ctx.input(6),
        scale=None if scale is None else float(scale),
        is_causal=bool(ctx.attr("is_causal", 0)),
        q_num_heads=None if q_heads is None else int(q_heads),
        kv_num_heads=None if kv_heads is None else int(kv_heads),
        softmax_dtype=softmax_dtype,
        softcap=float(ctx.attr("softcap", 0.0)),
        qk_matmul_output_mode=int(ctx.attr("qk_matmul_output_mode", 0)),
        left_window_size=int(ctx.attr("left_window_size", -1)),
        right_window_size=int(ctx.attr("right_window_size", -1)),
        want_qk=want_qk,
    )
    return tuple(ctx.getitem(res, k) if (k == 0 or _wanted(ctx, k)) else None for k in range(4))


@converter("RotaryEmbedding", since=23)
def rotary_embedding(ctx):
    return ctx.call(rt.rotary_embedding, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3),
                    bool(ctx.attr("interleaved", 0)), int(ctx.attr("rotary_embedding_dim", 0)),
                    int(ctx.attr("num_heads", 0)))


@converter("SwiGLU", since=28)
def swiglu(ctx):
    return ctx.call(rt.swiglu, ctx.input(0), ctx.input(1), float(ctx.attr("alpha", 1.0)))


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


@converter("LinearAttention", since=27)
def linear_attention(ctx):
    rule = _text(ctx.attr("update_rule", None), "gated_delta")
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise ctx.unsupported(f"update_rule={rule!r}")
    scale = ctx.attr("scale", None)
    res = ctx.call(lin.linear_attention, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4),
                   ctx.input(5), int(ctx.attr("q_num_heads")), int(ctx.attr("kv_num_heads")),
                   None if scale is None else float(scale), rule)
    return ctx.getitem(res, 0), ctx.getitem(res, 1)


@converter("CausalConvWithState", since=27)
def causal_conv_with_state(ctx):
    act = _text(ctx.attr("activation", None), "none")
    if act not in ("none", "silu", "swish"):
        raise ctx.unsupported(f"activation={act!r}")
    res = ctx.call(lin.causal_conv_with_state, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), act)
    return ctx.getitem(res, 0), ctx.getitem(res, 1)


def _flex_compute_dtype(ctx) -> torch.dtype:
    """Softmax precision: explicit attribute, else float32 for 16-bit inputs, else the input type."""
    precision = ctx.attr("softmax_precision", None)
    if precision is not None:
        dt = torch_dtype(int(precision))
        if dt is None:
            raise ctx.unsupported(f"softmax_precision={precision}")
        return dt
    dt = ctx.dtype(0) or torch.float32
    return torch.float32 if dt in (torch.float16, torch.bfloat16) else dt


@converter("FlexAttention", since=1, domain="ai.onnx.preview")
def flex_attention(ctx):
    """score_mod/prob_mod bodies are inlined between the score, softmax and output steps."""
    compute = _flex_compute_dtype(ctx)
    scale = ctx.attr("scale", None)
    scores = ctx.call(rt.flex_scores, ctx.input(0), ctx.input(1), None if scale is None else float(scale), compute)
    score_mod = ctx.attr("score_mod", None)
    if score_mod is not None:
        scores = ctx.inline_subgraph(score_mod, [scores])[0]
    probs = ctx.call(rt.flex_softmax, scores, compute)
    prob_mod = ctx.attr("prob_mod", None)
    if prob_mod is not None:
        probs = ctx.inline_subgraph(prob_mod, [probs])[0]
    return ctx.call(rt.flex_output, probs, ctx.input(2), compute)
