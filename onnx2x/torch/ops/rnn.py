"""Recurrent ops RNN, GRU and LSTM: attributes are resolved here, the step loop is run-time code
(``runtime/rnn.py``) so every ONNX option keeps its exact meaning."""
from __future__ import annotations

from typing import Any, Optional

from ..builder import NodeContext
from ..registry import converter
from ..runtime import rnn as rt

# activation -> (default alpha, default beta); None where the activation takes no such parameter
_PARAMS: dict[str, tuple[Optional[float], Optional[float]]] = {
    "affine": (1.0, 0.0),
    "leakyrelu": (0.01, None),
    "thresholdedrelu": (1.0, None),
    "scaledtanh": (1.0, 1.0),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.0, None),
}
_KNOWN = {"sigmoid", "tanh", "relu", "softsign", "softplus", *_PARAMS}


def activation_specs(ctx: NodeContext, defaults: list[str], num_directions: int) -> tuple:
    """(name, alpha, beta) per activation and direction; alphas/betas are consumed in order by
    the activations that take them (as onnxruntime does)."""
    names = [str(n) for n in ctx.attr("activations", defaults * num_directions)]
    if len(names) == len(defaults) and num_directions == 2:
        names = names * 2
    if len(names) != len(defaults) * num_directions:
        raise ctx.fail(f"expected {len(defaults) * num_directions} activations, got {len(names)}")
    alphas = [float(a) for a in ctx.attr("activation_alpha", [])]
    betas = [float(b) for b in ctx.attr("activation_beta", [])]
    specs = []
    for name in names:
        key = name.lower()
        if key not in _KNOWN:
            raise ctx.unsupported(f"activation {name!r}")
        da, db = _PARAMS.get(key, (None, None))
        alpha = alphas.pop(0) if da is not None and alphas else (da or 0.0)
        beta = betas.pop(0) if db is not None and betas else (db or 0.0)
        specs.append((name, alpha, beta))
    return tuple(specs)


def _common(ctx: NodeContext, defaults: list[str]) -> dict[str, Any]:
    direction = ctx.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ctx.fail(f"unknown direction {direction!r}")
    num_directions = 2 if direction == "bidirectional" else 1
    hidden = ctx.attr("hidden_size", None)
    if hidden is None:
        r_shape = ctx.shape(2)
        if r_shape is None or r_shape[-1] is None:
            raise ctx.fail("hidden_size is missing and cannot be read from R")
        hidden = r_shape[-1]
    clip = ctx.attr("clip", None)
    return dict(hidden=int(hidden), direction=direction,
                activations=activation_specs(ctx, defaults, num_directions),
                clip=None if clip is None else float(clip))


@converter("LSTM", since=7)
def lstm(ctx: NodeContext) -> Any:
    kw = _common(ctx, ["Sigmoid", "Tanh", "Tanh"])
    res = ctx.call(rt.lstm, *(ctx.input(i) for i in range(8)), kw["hidden"], kw["direction"],
                   kw["activations"], kw["clip"], int(ctx.attr("input_forget", 0)), int(ctx.attr("layout", 0)))
    return tuple(ctx.getitem(res, j) for j in range(3))


@converter("GRU", since=7)
def gru(ctx: NodeContext) -> Any:
    kw = _common(ctx, ["Sigmoid", "Tanh"])
    res = ctx.call(rt.gru, *(ctx.input(i) for i in range(6)), kw["hidden"], kw["direction"], kw["activations"],
                   kw["clip"], int(ctx.attr("linear_before_reset", 0)), int(ctx.attr("layout", 0)))
    return ctx.getitem(res, 0), ctx.getitem(res, 1)


@converter("RNN", since=7)
def rnn(ctx: NodeContext) -> Any:
    kw = _common(ctx, ["Tanh"])
    res = ctx.call(rt.rnn, *(ctx.input(i) for i in range(6)), kw["hidden"], kw["direction"], kw["activations"],
                   kw["clip"], int(ctx.attr("layout", 0)))
    return ctx.getitem(res, 0), ctx.getitem(res, 1)
