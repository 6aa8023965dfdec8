"""BatchNormalization, InstanceNormalization, LayerNormalization, RMSNormalization,
GroupNormalization, LpNormalization, MeanVarianceNormalization and LRN."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ..dtypes import float32_literal
from ..registry import converter
from ..runtime import normalization as rt

log = logging.getLogger(__name__)


def _wanted(ctx, j: int) -> bool:
    return j < ctx.num_outputs and bool(ctx.node.outputs[j].name)


def _bn_args(ctx):
    return [ctx.input(i) for i in range(5)]


def _bn_inference(ctx):
    """An inference BatchNormalization; in a trainable conversion, one that also trains.

    Trainable: the mean and variance initializers become buffers that the batch statistics
    update in ``train()`` and that normalize in ``eval()``; ONNX's ``momentum`` (MXNet's
    convention: running = running * m + batch * (1 - m)) becomes PyTorch's ``1 - m``.
    """
    eps = float(ctx.attr("epsilon", 1e-5))
    if ctx.builder.trainable:
        x, scale, bias = (ctx.input(i) for i in range(3))
        mean, var = (ctx.builder.running_statistic(ctx.node.inputs[i], f"{ctx.name}_running_{what}")
                     for i, what in ((3, "mean"), (4, "var")))
        if mean is not None and var is not None and mean.dim() == 1 and var.dim() == 1:
            momentum = round(1.0 - float32_literal(ctx.attr("momentum", 0.9)), 9)
            return ctx.call(rt.batch_norm, x, mean, var, scale, bias, ctx.builder.training_flag(), momentum,
                            float32_literal(eps))
        log.warning("%s: statistics are not per-channel initializers; they stay fixed in "
                    "train()", ctx.where())
    return ctx.call(rt.batch_norm_inference, *_bn_args(ctx), eps)


def _bn_training(ctx, momentum: float):
    res = ctx.call(rt.batch_norm_training, *_bn_args(ctx), float(ctx.attr("epsilon", 1e-5)), momentum)
    return tuple(ctx.getitem(res, k) for k in range(5))


@converter("BatchNormalization", since=1)
def batch_norm_legacy(ctx):
    """Opsets 1-13: inference unless the node asks for the running/saved statistics outputs.

    Old models (opset < 7) carry ``is_test``/``spatial``/``consumed_inputs``; ``spatial=0`` models
    have [C, D1, ...] statistics, which the runtime helper broadcasts as they are.
    """
    momentum = float(ctx.attr("momentum", 0.9))
    training = any(_wanted(ctx, j) for j in range(1, ctx.num_outputs))
    if ctx.opset < 7 and ctx.attr("is_test", 0):
        training = False
    elif ctx.opset < 7 and not training:
        log.debug("%s: is_test=0 without statistics outputs; converted for inference", ctx.name)
    if not training:
        return _bn_inference(ctx)
    return _bn_training(ctx, momentum)


@converter("BatchNormalization", since=14)
def batch_norm(ctx):
    """Opset 14+: ``training_mode`` selects batch statistics and the running-stat outputs."""
    if not ctx.attr("training_mode", 0):
        return _bn_inference(ctx)
    y, rmean, rvar, _, _ = _bn_training(ctx, float(ctx.attr("momentum", 0.9)))
    return y, rmean, rvar


@converter("InstanceNormalization", since=1)
def instance_norm(ctx):
    return ctx.call(rt.instance_norm, ctx.input(0), ctx.input(1), ctx.input(2), float(ctx.attr("epsilon", 1e-5)))


@converter("LayerNormalization", since=17)
def layer_norm(ctx):
    axis = int(ctx.attr("axis", -1))
    eps = float(ctx.attr("epsilon", 1e-5))
    stash32 = int(ctx.attr("stash_type", 1)) == 1
    if not (_wanted(ctx, 1) or _wanted(ctx, 2)):
        normalized = _layer_norm_shape(ctx, axis)
        if normalized is not None:  # what the runtime helper would decide on every call, decided now
            bias = ctx.input(2) if ctx.has_input(2) else None
            return ctx.call(F.layer_norm, ctx.input(0), normalized, ctx.input(1), bias, eps)
        return ctx.call(rt.layer_norm_y, ctx.input(0), ctx.input(1), ctx.input(2), axis, eps, stash32)
    res = ctx.call(rt.layer_norm, ctx.input(0), ctx.input(1), ctx.input(2), axis, eps, stash32,
                   ctx.output_dtype(1) or ctx.output_dtype(2))
    return tuple(ctx.getitem(res, k) for k in range(3))


def _layer_norm_shape(ctx, axis: int) -> "tuple[int, ...] | None":
    """The normalized shape when ``F.layer_norm`` computes the node exactly: float32/float64 X,
    scale (and bias) of X's dtype with X's static shape from ``axis`` on."""
    shape, dtype = ctx.shape(0), ctx.dtype(0)
    if shape is None or dtype not in (torch.float32, torch.float64):
        return None
    axis = axis + len(shape) if axis < 0 else axis
    normalized = tuple(shape[axis:])
    if not normalized or not all(isinstance(d, int) and d > 0 for d in normalized):
        return None
    for i in (1, 2):
        if i == 2 and not ctx.has_input(2):
            continue
        if ctx.dtype(i) != dtype or ctx.shape(i) is None or tuple(ctx.shape(i)) != normalized:
            return None
    return normalized


@converter("RMSNormalization", since=23)
def rms_norm(ctx):
    return ctx.call(rt.rms_norm, ctx.input(0), ctx.input(1), int(ctx.attr("axis", -1)),
                    float(ctx.attr("epsilon", 1e-5)), int(ctx.attr("stash_type", 1)) == 1)


@converter("GroupNormalization", since=18)
def group_norm_18(ctx):
    """Opset 18: scale and bias have one value per group."""
    return ctx.call(rt.group_norm, ctx.input(0), ctx.input(1), ctx.input(2), int(ctx.attr("num_groups")),
                    float(ctx.attr("epsilon", 1e-5)), True, False)


@converter("GroupNormalization", since=21)
def group_norm_21(ctx):
    """Opset 21: scale and bias have one value per channel; statistics in ``stash_type``."""
    return ctx.call(rt.group_norm, ctx.input(0), ctx.input(1), ctx.input(2), int(ctx.attr("num_groups")),
                    float(ctx.attr("epsilon", 1e-5)), False, int(ctx.attr("stash_type", 1)) == 1)


@converter("LpNormalization", since=1)
def lp_norm(ctx):
    p = int(ctx.attr("p", 2))
    if p not in (1, 2):
        raise ctx.unsupported(f"p={p} (ONNX allows only 1 and 2)")
    return ctx.call(rt.lp_norm, ctx.input(0), int(ctx.attr("axis", -1)), p)


@converter("MeanVarianceNormalization", since=9)
def mean_variance_norm(ctx):
    axes = [int(a) for a in ctx.attr("axes", [0, 2, 3])]
    return ctx.call(rt.mean_variance_norm, ctx.input(0), axes)


@converter("LRN", since=1)
def lrn(ctx):
    """ONNX ``bias`` is torch's ``k``; ``alpha`` is divided by ``size`` as in torch."""
    return ctx.call(rt.lrn, ctx.input(0), int(ctx.attr("size")), float(ctx.attr("alpha", 1e-4)),
                    float(ctx.attr("beta", 0.75)), float(ctx.attr("bias", 1.0)))
