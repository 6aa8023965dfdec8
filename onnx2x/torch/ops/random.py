"""Random generators: never folded at conversion time (registered with ``foldable=False``)."""
from __future__ import annotations

from typing import Any, Optional

import torch

from ..builder import NodeContext
from ..dtypes import torch_dtype
from ..registry import converter
from ..runtime import random as rt


def _dtype(ctx: NodeContext, default: Optional[torch.dtype]) -> Optional[torch.dtype]:
    code = ctx.attr("dtype", None)
    if code is None:
        return default
    dtype = torch_dtype(int(code))
    if dtype is None:
        raise ctx.fail(f"dtype {code} has no PyTorch equivalent")
    return dtype


def _seed(ctx: NodeContext) -> Optional[float]:
    seed = ctx.attr("seed", None)
    return None if seed is None else float(seed)


@converter("RandomNormal", since=1, foldable=False)
def random_normal(ctx: NodeContext) -> Any:
    shape = tuple(int(d) for d in ctx.attr("shape"))
    return ctx.call(rt.normal, shape, float(ctx.attr("mean", 0.0)), float(ctx.attr("scale", 1.0)),
                    _dtype(ctx, torch.float32), _seed(ctx))


@converter("RandomUniform", since=1, foldable=False)
def random_uniform(ctx: NodeContext) -> Any:
    shape = tuple(int(d) for d in ctx.attr("shape"))
    return ctx.call(rt.uniform, shape, float(ctx.attr("low", 0.0)), float(ctx.attr("high", 1.0)),
                    _dtype(ctx, torch.float32), _seed(ctx))


@converter("RandomNormalLike", since=1, foldable=False)
def random_normal_like(ctx: NodeContext) -> Any:
    return ctx.call(rt.normal_like, ctx.input(0), float(ctx.attr("mean", 0.0)), float(ctx.attr("scale", 1.0)),
                    _dtype(ctx, None), _seed(ctx))


@converter("RandomUniformLike", since=1, foldable=False)
def random_uniform_like(ctx: NodeContext) -> Any:
    return ctx.call(rt.uniform_like, ctx.input(0), float(ctx.attr("low", 0.0)), float(ctx.attr("high", 1.0)),
                    _dtype(ctx, None), _seed(ctx))


@converter("Multinomial", since=7, foldable=False)
def multinomial(ctx: NodeContext) -> Any:
    return ctx.call(rt.multinomial, ctx.input(0), int(ctx.attr("sample_size", 1)),
                    _dtype(ctx, torch.int32), _seed(ctx))


@converter("Bernoulli", since=15, foldable=False)
def bernoulli(ctx: NodeContext) -> Any:
    return ctx.call(rt.bernoulli, ctx.input(0), _dtype(ctx, None), _seed(ctx))
