"""onnxruntime ``com.microsoft`` attention ops: Attention, QAttention, MultiHeadAttention,
DecoderMaskedMultiHeadAttention, GroupQueryAttention, RotaryEmbedding.

These are what onnxruntime's transformer optimizer (BERT, GPT-2 with past, ViT; QAttention once
its output is quantized with ``quantize_dynamic``) and LLM builders
(grouped-query attention with a KV cache and rotary embeddings) put into graphs. Semantics follow
onnxruntime's contrib op documentation and, where it is silent, its CPU kernels (the reference the
tests compare with). Attribute combinations that are not implemented are refused here, at
conversion, never in the forward pass.
"""
from __future__ import annotations

from typing import Optional

from ..builder import Handle, NodeContext
from ..registry import converter
from ..runtime import attention as rt_onnx
from ..runtime import contrib_attention as rt
from ..runtime import quantize as rt_quantize

MS = "com.microsoft"
DEFAULT_MASK_FILTER = -10000.0


def _wanted(ctx: NodeContext, j: int) -> bool:
    return j < ctx.num_outputs and bool(ctx.node.outputs[j].name)


def _opt_float(ctx: NodeContext, name: str) -> Optional[float]:
    value = ctx.attr(name, None)
    return None if value is None else float(value)


def _scale(ctx: NodeContext) -> Optional[float]:
    """The ``scale`` attribute; absent or 0 means 1/sqrt(head_size) in every attention kernel."""
    scale = _opt_float(ctx, "scale")
    return None if scale is None or scale == 0.0 else scale


def _refuse_inputs(ctx: NodeContext, names: dict[int, str]) -> None:
    for i, what in names.items():
        if ctx.has_input(i):
            raise ctx.unsupported(f"input {i} ({what}) is not supported")


def _refuse_flag(ctx: NodeContext, name: str, why: str) -> None:
    if int(ctx.attr(name, 0) or 0):
        raise ctx.unsupported(f"attribute {name}={int(ctx.attr(name))}: {why}")


def _check_mask(ctx: NodeContext, index: int) -> None:
    """Mask formats the runtime implements; the packed (3*B + 2) one is refused (CUDA-only layout)."""
    shape = ctx.shape(index)
    if shape is None:
        return
    if len(shape) not in (1, 2, 3, 4):
        raise ctx.unsupported(f"a {len(shape)}-D mask (input {index})")
    if len(shape) == 1 and shape[0] is not None:
        batch = (ctx.shape(0) or (None,))[0]
        if batch is not None and shape[0] not in (batch, 2 * batch):
            raise ctx.unsupported(f"mask of shape [{shape[0]}] with batch {batch}: only [batch] key lengths "
                                  "and [2*batch] end/start positions are implemented")


def _qkv_sizes(ctx: NodeContext, num_heads: int) -> list[int]:
    """Widths of Q, K and V in the fused projection: ``qkv_hidden_sizes``, else a third of the
    weight's width each."""
    sizes = ctx.attr("qkv_hidden_sizes", None)
    if sizes:
        sizes = [int(v) for v in sizes]
    else:
        wshape = ctx.shape(1)
        if wshape is None or wshape[-1] is None:
            raise ctx.fail("the width of the QKV weights is unknown at conversion; set qkv_hidden_sizes")
        sizes = [int(wshape[-1]) // 3] * 3
    if sizes[0] != sizes[1]:
        raise ctx.fail(f"qkv_hidden_sizes {sizes}: Q and K must have the same width")
    if any(s % num_heads for s in sizes):
        raise ctx.fail(f"qkv_hidden_sizes {sizes} are not multiples of num_heads={num_heads}")
    if _wanted(ctx, 1) and sizes[1] != sizes[2]:
        raise ctx.unsupported("a present output when K and V have different widths")
    return sizes


def _refuse_attention_flags(ctx: NodeContext) -> None:
    _refuse_flag(ctx, "do_rotary", "rotary embedding inside Attention is not supported "
                                   "(use MultiHeadAttention + RotaryEmbedding)")
    _refuse_flag(ctx, "past_present_share_buffer", "a shared past/present buffer is not supported")


@converter("Attention", since=1, domain=MS)
def attention(ctx: NodeContext) -> Handle:
    """BERT/GPT-2 attention with the QKV projection fused in; ``past``/``present`` are
    [2, B, N, T, H]. Rotary and a shared past/present buffer are refused (onnxruntime's CPU kernel
    has no rotary either)."""
    _refuse_attention_flags(ctx)
    _refuse_inputs(ctx, {6: "past_sequence_length"})
    _check_mask(ctx, 3)
    num_heads = int(ctx.attr("num_heads"))
    sizes = _qkv_sizes(ctx, num_heads)
    res = ctx.call(rt.attention, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4),
                   ctx.input(5), num_heads, sizes, bool(ctx.attr("unidirectional", 0)), _scale(ctx),
                   float(ctx.attr("mask_filter_value", DEFAULT_MASK_FILTER)))
    return ctx.getitem(res, 0), (ctx.getitem(res, 1) if _wanted(ctx, 1) else None)


@converter("QAttention", since=1, domain=MS)
def quantized_attention(ctx: NodeContext) -> Handle:
    """Attention whose projection multiplies a quantized input (uint8/int8, per-tensor scale and
    zero point: a DynamicQuantizeLinear's outputs) by quantized QKV weights (per-tensor or
    per-column), as onnxruntime's quantizer writes it after its transformer optimizer. The
    product is exact and scaled in float32 as onnxruntime's kernel does (MatMulIntegerToFloat);
    the attention after it is :func:`attention`'s. Inputs: input, weight, bias, input_scale,
    weight_scale, mask_index, input_zero_point, weight_zero_point, past."""
    _refuse_attention_flags(ctx)
    _check_mask(ctx, 5)
    num_heads = int(ctx.attr("num_heads"))
    sizes = _qkv_sizes(ctx, num_heads)
    qkv = ctx.call(rt_quantize.matmul_integer_to_float, ctx.input(0), ctx.input(1), ctx.input(3), ctx.input(4),
                   ctx.input(6), ctx.input(7), ctx.input(2))
    res = ctx.call(rt.attention_projected, qkv, ctx.input(5), ctx.input(8), None, num_heads, sizes,
                   bool(ctx.attr("unidirectional", 0)), _scale(ctx),
                   float(ctx.attr("mask_filter_value", DEFAULT_MASK_FILTER)))
    return ctx.getitem(res, 0), (ctx.getitem(res, 1) if _wanted(ctx, 1) else None)


@converter("MultiHeadAttention", since=1, domain=MS)
def multi_head_attention(ctx: NodeContext) -> Handle:
    """Self or cross attention with separate, packed QKV/KV or pre-projected [B, N, L, H] keys,
    an optional KV cache (past_key/past_value -> present_key/present_value) and the scaled
    Q K^T (plus bias and mask) as the optional ``qk`` output."""
    _refuse_inputs(ctx, {8: "past_sequence_length (shared past/present buffer)",
                         9: "cache_indirection (beam search)"})
    _check_mask(ctx, 4)
    kshape = ctx.shape(1)
    if kshape is not None and len(kshape) == 4 and ctx.has_input(6):
        raise ctx.unsupported("past_key together with pre-projected [B, N, L, H] key")
    res = ctx.call(rt.multi_head_attention, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3),
                   ctx.input(4), ctx.input(5), ctx.input(6), ctx.input(7), int(ctx.attr("num_heads")),
                   _scale(ctx), float(ctx.attr("mask_filter_value", DEFAULT_MASK_FILTER)),
                   bool(ctx.attr("unidirectional", 0)), _wanted(ctx, 3))
    return tuple(ctx.getitem(res, j) if (j == 0 or _wanted(ctx, j)) else None for j in range(4))


@converter("DecoderMaskedMultiHeadAttention", since=1, domain=MS)
def decoder_masked_multi_head_attention(ctx: NodeContext) -> Handle:
    """One-token decoding attention: self attention on a shared [B, N, M, H] KV buffer
    (``past_present_share_buffer=1`` with ``past_sequence_length``, as onnxruntime's CPU kernel
    requires) or cross attention on projected [B, N, L, H] keys; beam-search cache indirection
    is refused."""
    _refuse_inputs(ctx, {9: "cache_indirection (beam search)"})
    kshape = ctx.shape(1)
    cross = kshape is not None and len(kshape) == 4
    if not cross:
        if not int(ctx.attr("past_present_share_buffer", 0) or 0):
            raise ctx.unsupported("self attention without past_present_share_buffer=1")
        if not (ctx.has_input(5) and ctx.has_input(6) and ctx.has_input(7)):
            raise ctx.fail("self attention needs past_key, past_value and past_sequence_length")
    want_qk = bool(int(ctx.attr("output_qk", 0) or 0)) and _wanted(ctx, 3)
    res = ctx.call(rt.decoder_masked_mha, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4),
                   ctx.input(5), ctx.input(6), ctx.input(7), ctx.input(10), int(ctx.attr("num_heads")), _scale(ctx),
                   float(ctx.attr("mask_filter_value", DEFAULT_MASK_FILTER)), want_qk)
    wanted = [True, _wanted(ctx, 1) and not cross, _wanted(ctx, 2) and not cross, want_qk]
    return tuple(ctx.getitem(res, j) if wanted[j] else None for j in range(4))


def _rotary_dim(ctx: NodeContext, cos_index: int) -> int:
    shape = ctx.shape(cos_index)
    if shape is None or len(shape) != 2 or shape[1] is None:
        raise ctx.fail(f"the shape of cos_cache (input {cos_index}) must be known at conversion")
    return 2 * int(shape[1])


_GQA_REFUSED_INPUTS = {12: "k_scale (quantized KV cache)", 13: "v_scale (quantized KV cache)",
                       14: "q_norm_weight", 15: "k_norm_weight"}


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


@converter("GroupQueryAttention", since=1, domain=MS)
def group_query_attention(ctx: NodeContext) -> Handle:
    """Grouped-query attention over a per-row KV cache (``seqlens_k`` = row length - 1),
    packed or separate Q/K/V, optional rotary (positions derived from the cache lengths or
    ``position_ids``), local window, softcap, sink/smooth softmax and the ``output_qk`` output."""
    _refuse_inputs(ctx, _GQA_REFUSED_INPUTS)
    for name in ("k_quant_type", "v_quant_type"):
        if _text(ctx.attr(name, None), "NONE").upper() != "NONE":
            raise ctx.unsupported(f"attribute {name}={_text(ctx.attr(name), '')!r} (quantized KV cache)")
    _refuse_flag(ctx, "kv_cache_bit_width", "quantized KV cache")
    _refuse_flag(ctx, "sliding_window_cache", "window-sized KV buffers are not supported")
    num_heads = int(ctx.attr("num_heads"))
    kv_heads = int(ctx.attr("kv_num_heads"))
    if kv_heads <= 0 or num_heads % kv_heads:
        raise ctx.fail(f"num_heads={num_heads} is not a multiple of kv_num_heads={kv_heads}")
    causal = int(ctx.attr("causal", 1))
    window = int(ctx.attr("local_window_size", -1))
    if not causal and window >= 0:
        raise ctx.fail("local_window_size needs causal=1")
    qk_output = int(ctx.attr("qk_output", 0))
    if qk_output not in (0, 1, 2):
        raise ctx.unsupported(f"attribute qk_output={qk_output}")
    if qk_output and not _wanted(ctx, 3):
        qk_output = 0

    q, k, v = ctx.input(0), ctx.input(1), ctx.input(2)
    if not ctx.has_input(1):
        split = ctx.call(rt.gqa_split_packed, q, num_heads, kv_heads)
        q, k, v = (ctx.getitem(split, j) for j in range(3))
    q_len = ctx.method("size", ctx.input(0), 1)
    if int(ctx.attr("do_rotary", 0)):
        if not (ctx.has_input(7) and ctx.has_input(8)):
            raise ctx.fail("do_rotary=1 needs cos_cache and sin_cache")
        rotary_dim = _rotary_dim(ctx, 7)
        if ctx.has_input(9):
            positions = ctx.call(rt.rotary_position_ids, ctx.input(9), q)
        else:
            positions = ctx.call(rt.gqa_position_ids, ctx.input(5), q_len, ctx.input(6))
        interleaved = bool(ctx.attr("rotary_interleaved", 0))
        q = ctx.call(rt_onnx.rotary_embedding, q, ctx.input(7), ctx.input(8), positions, interleaved, rotary_dim,
                     num_heads)
        k = ctx.call(rt_onnx.rotary_embedding, k, ctx.input(7), ctx.input(8), positions, interleaved, rotary_dim,
                     kv_heads)
    smooth = int(ctx.attr("smooth_softmax", -1)) == 1
    res = ctx.call(rt.group_query_attention, q, k, v, ctx.input(3), ctx.input(4), ctx.input(5), ctx.input(6),
                   ctx.input(10), ctx.input(11), num_heads, kv_heads, _scale(ctx),
                   float(ctx.attr("softcap", 0.0) or 0.0), window, smooth, bool(causal), qk_output)
    return tuple(ctx.getitem(res, j) if (j == 0 or _wanted(ctx, j)) else None for j in range(4))


@converter("RotaryEmbedding", since=1, domain=MS)
def rotary_embedding(ctx: NodeContext) -> Handle:
    """Inputs (x, position_ids, cos_cache, sin_cache) -- a different order from ONNX's
    RotaryEmbedding-23. x is [B, S, D] or [B, N, S, H]; position_ids is [B, S] or one start
    position. Without num_heads the head size is twice the cache width. ``scale`` and
    ``is_packed_batching`` do not change the result on onnxruntime's CPU kernel."""
    x = ctx.input(0)
    num_heads = int(ctx.attr("num_heads", 0) or 0)
    rotary_dim = int(ctx.attr("rotary_embedding_dim", 0) or 0)
    if rotary_dim and not num_heads:
        raise ctx.fail("rotary_embedding_dim needs num_heads")
    cache_dim = _rotary_dim(ctx, 2)
    heads: Handle = num_heads or ctx.call(rt.rotary_head_count, x, cache_dim)
    positions = ctx.call(rt.rotary_position_ids, ctx.input(1), x)
    return ctx.call(rt_onnx.rotary_embedding, x, ctx.input(2), ctx.input(3), positions,
                    bool(ctx.attr("interleaved", 0)), rotary_dim or cache_dim, heads)
