"""Pad, DepthToSpace, SpaceToDepth, CenterCropPad, Dropout and NonMaxSuppression."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..dtypes import float32_literal
from ..registry import converter
from ..runtime import spatial as rt

_TORCH_PAD_MODE = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _torch_pad_list(rank: int, pads: list[int], axes) -> list[int]:
    """ONNX [begins..., ends...] over ``axes`` -> F.pad's list (last axis first, trailing zeros dropped)."""
    ax = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(ax):
        begin[a], end[a] = pads[i], pads[i + len(ax)]
    flat: list[int] = []
    for a in range(rank - 1, -1, -1):
        flat += [begin[a], end[a]]
    while flat and flat[-1] == 0 and flat[-2] == 0:
        flat = flat[:-2]
    return flat


def _torch_mode_fits(shape, flat: list[int], mode: str) -> bool:
    """F.pad's reflect/replicate/circular: rank 3-5, only non-batch/channel axes, pads within the axis."""
    if shape is None or not 3 <= len(shape) <= 5 or len(flat) // 2 > len(shape) - 2 or min(flat) < 0:
        return False
    for k in range(len(flat) // 2):
        size = shape[len(shape) - 1 - k]
        widest = max(flat[2 * k], flat[2 * k + 1])
        if size is None or widest > size or (mode == "reflect" and widest >= size):
            return False
    return True


def _pad(ctx, x, pads, mode: str, value, axes):
    """Emit ONNX Pad; static pads on a known rank become one F.pad call where F.pad fits."""
    rank = ctx.rank(0)
    if not (isinstance(pads, list) and rank is not None and (axes is None or isinstance(axes, list))):
        return ctx.call(rt.pad, x, pads, mode, value, axes)
    flat = _torch_pad_list(rank, pads, axes)
    if not flat:
        return x
    if mode == "constant":
        if isinstance(value, torch.fx.Node):
            return ctx.call(rt.pad, x, pads, mode, value, axes)
        fill = value if isinstance(value, (int, float)) else 0.0
        if isinstance(value, torch.Tensor) and value.numel():
            fill = value.reshape(-1)[0].item()
        return ctx.call(F.pad, x, flat, "constant", fill)
    if _torch_mode_fits(ctx.shape(0), flat, mode):
        return ctx.call(F.pad, x, flat, _TORCH_PAD_MODE[mode])
    return ctx.call(rt.pad, x, pads, mode, None, axes)


@converter("Pad", since=1)
def pad_v1(ctx):
    pads = ctx.attr("pads", None)
    if pads is None:
        pads = ctx.attr("paddings")
    return _pad(ctx, ctx.input(0), [int(p) for p in pads], _text(ctx.attr("mode", None), "constant"),
                float(ctx.attr("value", 0.0)), None)


@converter("Pad", since=11)
def pad(ctx):
    pads = ctx.const_ints(1)
    axes = None
    if ctx.has_input(3):
        axes = ctx.const_ints(3)
        if axes is None:
            axes_h = ctx.input(3)
            return ctx.call(rt.pad, ctx.input(0), ctx.input(1), _text(ctx.attr("mode", None), "constant"),
                            ctx.input(2), axes_h)
    value = ctx.input(2) if ctx.has_input(2) else None
    return _pad(ctx, ctx.input(0), pads if pads is not None else ctx.input(1),
                _text(ctx.attr("mode", None), "constant"), value, axes)


@converter("DepthToSpace", since=1)
def depth_to_space(ctx):
    mode = _text(ctx.attr("mode", None), "DCR")
    blocksize = int(ctx.attr("blocksize"))
    if mode == "CRD":
        return ctx.call(F.pixel_shuffle, ctx.input(0), blocksize)
    return ctx.call(rt.depth_to_space, ctx.input(0), blocksize, mode)


@converter("SpaceToDepth", since=1)
def space_to_depth(ctx):
    blocksize = int(ctx.attr("blocksize"))
    if _text(ctx.attr("mode", None), "DCR") == "CRD":  # opset 28 adds the CRD layout
        return ctx.call(F.pixel_unshuffle, ctx.input(0), blocksize)
    return ctx.call(rt.space_to_depth, ctx.input(0), blocksize)


@converter("CenterCropPad", since=18)
def center_crop_pad(ctx):
    axes = ctx.attr("axes", None)
    shape = ctx.const_ints(1)
    return ctx.call(rt.center_crop_pad, ctx.input(0), shape if shape is not None else ctx.input(1),
                    None if axes is None else [int(a) for a in axes])


def _dropout_outputs(ctx, x):
    y = x
    if ctx.num_outputs > 1 and ctx.node.outputs[1].name:
        return y, ctx.call(rt.dropout_mask, x)
    return y


def _trainable_dropout(ctx, ratio: float):
    """Dropout of a trainable conversion: active in ``train()`` (at ``ratio``), identity in ``eval()``."""
    training = ctx.builder.training_flag()
    if ctx.num_outputs > 1 and ctx.node.outputs[1].name:
        res = ctx.call(rt.dropout, ctx.input(0), ratio, training)
        return ctx.getitem(res, 0), ctx.getitem(res, 1)
    return ctx.call(F.dropout, ctx.input(0), ratio, training)


@converter("Dropout", since=1)
def dropout_legacy(ctx):
    if ctx.builder.trainable:
        return _trainable_dropout(ctx, float32_literal(ctx.attr("ratio", 0.5)))
    return _dropout_outputs(ctx, ctx.input(0))


@converter("Dropout", since=12, foldable=False)
def dropout(ctx):
    """Inference (no ``training_mode`` or a false one) is the identity. A trainable conversion
    follows the module's train()/eval() instead of a constant ``training_mode``."""
    x = ctx.input(0)
    if ctx.builder.trainable and (not ctx.has_input(2) or ctx.is_const(2)):
        ratio = ctx.const(1) if ctx.has_input(1) else np.float32(0.5)
        if ratio is not None:  # a run-time ratio: as in inference conversion, below
            return _trainable_dropout(ctx, float32_literal(np.asarray(ratio).reshape(-1)[0]))
    if not ctx.has_input(2):
        return _dropout_outputs(ctx, x)
    training = ctx.const(2)
    if training is not None and not bool(training.reshape(-1)[0]):
        return _dropout_outputs(ctx, x)
    ratio = ctx.const(1) if ctx.has_input(1) else None
    if training is not None and ctx.has_input(1) and ratio is not None and float(ratio.reshape(-1)[0]) == 0.0:
        return _dropout_outputs(ctx, x)
    if training is not None and not ctx.has_input(1):
        ratio_h = 0.5
    else:
        ratio_h = ctx.input(1) if ctx.has_input(1) else 0.5
    if training is None:
        res = ctx.call(rt.dropout, x, ratio_h, ctx.input(2))
    else:
        res = ctx.call(rt.train_dropout, x, ratio_h)
    if ctx.num_outputs > 1 and ctx.node.outputs[1].name:
        return ctx.getitem(res, 0), ctx.getitem(res, 1)
    return ctx.getitem(res, 0)


@converter("NonMaxSuppression", since=10)
def non_max_suppression(ctx):
    return ctx.call(rt.non_max_suppression, ctx.input(0), ctx.input(1),
                    ctx.input(2), ctx.input(3), ctx.input(4), int(ctx.attr("center_point_box", 0)))
