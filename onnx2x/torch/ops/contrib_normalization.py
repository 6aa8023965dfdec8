"""onnxruntime's normalization ops: SkipLayerNormalization, SkipSimplifiedLayerNormalization,
EmbedLayerNormalization, QEmbedLayerNormalization, GroupNorm, SkipGroupNorm (``com.microsoft``), and the contrib schemas
onnxruntime registers in the ONNX domain from opset 1: LayerNormalization (what its optimizer
writes into opset < 17 models) and SimplifiedLayerNormalization (RMS norm, as LLM builders emit it).

The normalizations are ``F.layer_norm``/``F.rms_norm`` on ``input + skip (+ bias)``; the optional
statistics outputs (mean and 1/std, shaped [..., 1]) and the sum come from the same values.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..builder import Handle, NodeContext
from ..registry import converter
from ..runtime import contrib_normalization as rt
from ..runtime import normalization as rt_norm
from ..runtime import quantize as rt_quantize
from .normalization import layer_norm as onnx_layer_norm

MS = "com.microsoft"

# LayerNormalization-17 and onnxruntime's LayerNormalization-1 contrib schema agree (axis, epsilon,
# stash_type; outputs Y, Mean, InvStdDev), so one converter serves both.
converter("LayerNormalization", since=1)(onnx_layer_norm)


def _wanted(ctx: NodeContext, j: int) -> bool:
    return j < ctx.num_outputs and bool(ctx.node.outputs[j].name)


def _last_dim(ctx: NodeContext, gamma_index: int) -> Handle:
    """The normalized width: gamma's length, known at conversion for initializer weights."""
    shape = ctx.shape(gamma_index)
    if shape is not None and len(shape) == 1 and shape[0] is not None:
        return int(shape[0])
    return ctx.method("size", ctx.input(gamma_index), -1)


def _skip_norm(ctx: NodeContext, simplified: bool) -> Handle:
    eps = float(ctx.attr("epsilon", 1e-12))
    bias_index = 3 if simplified else 4
    s = ctx.call(torch.add, ctx.input(0), ctx.input(1))
    if ctx.has_input(bias_index):
        s = ctx.call(torch.add, s, ctx.input(bias_index))
    width = [_last_dim(ctx, 2)]
    if simplified:
        y = ctx.call(F.rms_norm, s, width, ctx.input(2), eps)
    else:
        y = ctx.call(F.layer_norm, s, width, ctx.input(2), ctx.input(3), eps)
    mean = inv = None
    if _wanted(ctx, 1) or _wanted(ctx, 2):
        stats = ctx.call(rt.row_stats, s, eps, simplified)
        mean, inv = ctx.getitem(stats, 0), ctx.getitem(stats, 1)
    return y, mean, inv, (s if _wanted(ctx, 3) else None)


@converter("SkipLayerNormalization", since=1, domain=MS)
def skip_layer_norm(ctx: NodeContext) -> Handle:
    """LayerNorm(input + skip + bias) * gamma + beta; skip may be [B, S, D], [1, S, D] or [S, D]."""
    return _skip_norm(ctx, simplified=False)


@converter("SkipSimplifiedLayerNormalization", since=1, domain=MS)
def skip_simplified_layer_norm(ctx: NodeContext) -> Handle:
    """RMSNorm(input + skip + bias) * gamma; output 3 (the sum) is the next layer's residual."""
    return _skip_norm(ctx, simplified=True)


@converter("SimplifiedLayerNormalization", since=1)
def simplified_layer_norm(ctx: NodeContext) -> Handle:
    """X / sqrt(mean(X^2 over axis..) + eps) * scale, statistics in ``stash_type`` (float32)."""
    axis = int(ctx.attr("axis", -1))
    eps = float(ctx.attr("epsilon", 1e-5))
    stash32 = int(ctx.attr("stash_type", 1)) == 1
    x, scale = ctx.input(0), ctx.input(1)
    rank = ctx.rank(0)
    last_axis_only = rank is not None and axis in (-1, rank - 1) and ctx.rank(1) == 1
    if last_axis_only and ctx.dtype(0) in (torch.float32, torch.float64):
        y = ctx.call(F.rms_norm, x, [_last_dim(ctx, 1)], scale, eps)
    else:
        y = ctx.call(rt_norm.rms_norm, x, scale, axis, eps, stash32)
    if not _wanted(ctx, 1):
        return y
    if rank is None:
        raise ctx.fail("the input rank must be known at conversion for the inv_std_var output")
    first = axis + rank if axis < 0 else axis
    xs = ctx.method("float", x) if stash32 else x
    mean_sq = ctx.call(torch.mean, ctx.call(torch.mul, xs, xs), list(range(first, rank)), True)
    return y, ctx.call(torch.rsqrt, ctx.call(torch.add, mean_sq, eps))


@converter("EmbedLayerNormalization", since=1, domain=MS)
def embed_layer_norm(ctx: NodeContext) -> Handle:
    """LayerNorm(word[ids] + position[position_ids or 0..S-1] + segment[segment_ids]);
    outputs the normed sum, the mask index (ones per mask row, int32) and the raw sum."""
    res = ctx.call(rt.embed_layer_norm, ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4),
                   ctx.input(5), ctx.input(6), ctx.input(7), ctx.input(8), float(ctx.attr("epsilon", 1e-12)))
    return tuple(ctx.getitem(res, j) if (j == 0 or _wanted(ctx, j)) else None for j in range(3))


@converter("QEmbedLayerNormalization", since=1, domain=MS)
def quantized_embed_layer_norm(ctx: NodeContext) -> Handle:
    """EmbedLayerNormalization whose tables, gamma and beta are stored quantized (8-bit, per-tensor
    scale and zero point: onnxruntime's quantizer after its transformer optimizer). Each is
    ``(q - zero_point) * scale`` in float32, as onnxruntime's kernel dequantizes them; positions are
    0..S-1. Inputs: input_ids, segment_ids, word/position/segment tables, gamma, beta, mask, then
    their scales (8-12) and zero points (13-17)."""
    segment = ctx.has_input(1)
    if any(ctx.has_input(i) != segment for i in (4, 10, 15)):
        raise ctx.fail("segment_ids, segment_embedding and its scale and zero point must be given together")

    def table(i: int) -> Handle:
        return ctx.call(rt_quantize.dequantize_f32, ctx.input(i), ctx.input(i + 6), ctx.input(i + 11))

    res = ctx.call(rt.embed_layer_norm, ctx.input(0), ctx.input(1) if segment else None, table(2), table(3),
                   table(4) if segment else None, table(5), table(6), ctx.input(7), None,
                   float(ctx.attr("epsilon", 1e-12)))
    return ctx.getitem(res, 0), (ctx.getitem(res, 1) if _wanted(ctx, 1) else None)


def _group_norm(ctx: NodeContext, skip: Handle, bias: Handle) -> Handle:
    activation = int(ctx.attr("activation"))
    if activation not in (0, 1):
        raise ctx.unsupported(f"attribute activation={activation} (0: none, 1: SiLU)")
    return ctx.call(rt.group_norm, ctx.input(0), ctx.input(1), ctx.input(2), skip, bias, int(ctx.attr("groups")),
                    float(ctx.attr("epsilon", 1e-5)), bool(activation), bool(ctx.attr("channels_last", 1)))


@converter("GroupNorm", since=1, domain=MS)
def group_norm(ctx: NodeContext) -> Handle:
    """Group normalization of NHWC (default) or NCHW input, optionally followed by SiLU."""
    return ctx.getitem(_group_norm(ctx, None, None), 0)


@converter("SkipGroupNorm", since=1, domain=MS)
def skip_group_norm(ctx: NodeContext) -> Handle:
    """GroupNorm(x + skip + bias); output 1 is that sum."""
    res = _group_norm(ctx, ctx.input(3), ctx.input(4))
    return ctx.getitem(res, 0), (ctx.getitem(res, 1) if _wanted(ctx, 1) else None)
