"""ONNX RNN, GRU and LSTM written as explicit per-step tensor code.

Written out step by step (rather than through ``torch.nn.LSTM``) so every ONNX feature keeps its
exact meaning: gate order (LSTM ``iofc``, GRU ``zrh``), peepholes, ``clip``, ``input_forget``,
custom activations with alpha/beta, ``linear_before_reset``, per-batch ``sequence_lens`` and both
layouts. The input projection of all time steps is one matmul; only the recurrent part loops.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch.utils.weak import WeakIdKeyDictionary

Activation = Tuple[str, float, float]
_FUSED_DTYPES = (torch.float32, torch.float64)


def _activation(spec: Activation) -> Callable[[torch.Tensor], torch.Tensor]:
    name, alpha, beta = spec
    key = name.lower()
    if key == "sigmoid":
        return torch.sigmoid
    if key == "tanh":
        return torch.tanh
    if key == "relu":
        return torch.relu
    if key == "affine":
        return lambda x: alpha * x + beta
    if key == "leakyrelu":
        return lambda x: torch.where(x >= 0, x, alpha * x)
    if key == "thresholdedrelu":
        return lambda x: torch.where(x > alpha, x, torch.zeros_like(x))
    if key == "scaledtanh":
        return lambda x: alpha * torch.tanh(beta * x)
    if key == "hardsigmoid":
        return lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0)
    if key == "elu":
        return lambda x: torch.where(x >= 0, x, alpha * (torch.exp(x) - 1))
    if key == "softsign":
        return lambda x: x / (1 + torch.abs(x))
    if key == "softplus":
        return lambda x: torch.log(1 + torch.exp(x))
    raise ValueError(f"unsupported RNN activation {name!r}")


def _clipper(clip: Optional[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    if clip is None:
        return lambda x: x
    return lambda x: torch.clamp(x, -clip, clip)


def _prepare(x: torch.Tensor, layout: int, h0: Optional[torch.Tensor], c0: Optional[torch.Tensor]):
    if layout == 1:  # batch-major -> time-major
        x = x.transpose(0, 1)
        h0 = None if h0 is None else h0.transpose(0, 1)
        c0 = None if c0 is None else c0.transpose(0, 1)
    return x, h0, c0


def _finish(ys: List[torch.Tensor], hs: List[torch.Tensor], cs: List[torch.Tensor], layout: int,
            merged: bool = False):
    y = torch.cat(ys, -1) if merged else torch.stack(ys, 1)  # (T, B, D*H) or (T, D, B, H)
    h = torch.stack(hs, 0)  # (D, B, H)
    c = torch.stack(cs, 0) if cs else None
    if layout == 1:
        y = y.transpose(0, 1) if merged else y.permute(2, 0, 1, 3)  # (B, T, D*H) or (B, T, D, H)
        h = h.transpose(0, 1)
        c = None if c is None else c.transpose(0, 1)
    return y, h, c


def _finish_fused(y: torch.Tensor, h: torch.Tensor, c: Optional[torch.Tensor], layout: int, merged: bool,
                  n_dir: int, hidden: int):
    """torch's (T, B, D*H) output as ONNX's Y, or as it is when ``merged``."""
    if not merged:
        y = y.reshape(y.shape[0], y.shape[1], n_dir, hidden).transpose(1, 2)  # (T, D, B, H)
    if layout == 1:
        y = y.transpose(0, 1) if merged else y.permute(2, 0, 1, 3)
        h = h.transpose(0, 1)
        c = None if c is None else c.transpose(0, 1)
    return y, h, c


def _directions(direction: str) -> List[bool]:
    """Per direction: True when it runs backwards in time."""
    if direction == "bidirectional":
        return [False, True]
    return [direction == "reverse"]


def _steps(seq: int, reverse: bool) -> Sequence[int]:
    return range(seq - 1, -1, -1) if reverse else range(seq)


def _mask(lens: Optional[torch.Tensor], t: int) -> Optional[torch.Tensor]:
    return None if lens is None else (lens > t).unsqueeze(1)


def _run_cell(x: torch.Tensor, lens: Optional[torch.Tensor], reverse: bool, states: List[torch.Tensor],
              step: Callable[[torch.Tensor, List[torch.Tensor]], List[torch.Tensor]]):
    """Loop over time; with ``lens`` finished batch entries keep their state and output zeros."""
    seq = x.shape[0]
    outs: List[Optional[torch.Tensor]] = [None] * seq
    for t in _steps(seq, reverse):
        new = step(x[t], states)
        m = _mask(lens, t)
        if m is None:
            states = new
            outs[t] = new[0]
        else:
            states = [torch.where(m, n, s) for n, s in zip(new, states)]
            outs[t] = torch.where(m, new[0], torch.zeros_like(new[0]))
    return torch.stack(outs, 0), states


def _lens(lens: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if lens is None else lens.to(torch.int64)


# ONNX's default activations per direction (f, g[, h]); the lowercase names, as compared.
DEFAULT_ACTIVATIONS = {"lstm": ("sigmoid", "tanh", "tanh"), "gru": ("sigmoid", "tanh")}


def default_specs(kind: str, n_dir: int) -> Tuple[Activation, ...]:
    """The activations as the converter writes them for a node without the attribute."""
    return tuple((n.capitalize(), 0.0, 0.0) for n in DEFAULT_ACTIVATIONS[kind]) * n_dir


# Per default names: one set lookup on every call (the usual case) instead of a loop.
_DEFAULT_SPECS = {names: frozenset(default_specs(kind, d) for d in (1, 2))
                  for kind, names in DEFAULT_ACTIVATIONS.items()}


def _is_default(activations: Sequence[Activation], names: Tuple[str, ...]) -> bool:
    if isinstance(activations, tuple) and all(isinstance(a, tuple) for a in activations) and (
            activations in _DEFAULT_SPECS.get(names, ())):
        return True
    return all(a[0].lower() == names[k % len(names)] for k, a in enumerate(activations))


def _reorder(t: torch.Tensor, hidden: int, order: Sequence[int]) -> torch.Tensor:
    """Reorder gate blocks along dim 0 (ONNX gate order -> torch gate order)."""
    chunks = torch.split(t, hidden, 0)
    return torch.cat([chunks[k] for k in order], 0)


# Why a cache: torch's kernel wants its own gate order, and reordering the weights on every call
# (a split and a cat per matrix and direction) cost a 2-layer bidirectional LSTM a third of its
# time at batch 1. Like the packed convolution weights, the reordered copy lives beside the
# weight (checked against its version counter), is kept only from the weight's second call on (a
# run made once holds no second copy of the weights) and is never part of the state_dict; with
# autograd on the weights, or under tracing, the weights are reordered in the graph every call.
_TORCH_ORDER: "WeakIdKeyDictionary" = WeakIdKeyDictionary()  # w -> (key, torch-ordered parameters)


def clear_reordered_weights() -> None:
    """Drop every cached reordered weight (rebuilt on the next call); needed only after editing a
    weight's values through ``.data``, which PyTorch's version counter does not see."""
    _TORCH_ORDER.clear()


def _torch_params(w: torch.Tensor, r: torch.Tensor, b: Optional[torch.Tensor], hidden: int, n_dir: int,
                  order: Sequence[int], dtype: torch.dtype) -> List[torch.Tensor]:
    """The flat parameter list of ``torch.lstm``/``torch.gru`` from ONNX W, R, B."""
    tensors = [t for t in (w, r, b) if t is not None]
    cacheable = (all(type(t) in (torch.Tensor, torch.nn.Parameter) for t in tensors)
                 and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
                 and not (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()))
    key = None
    seen = False
    if cacheable:
        key = (tuple((id(t), t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors),
               hidden, n_dir, tuple(order), dtype)
        entry = _TORCH_ORDER.get(w)
        seen = entry is not None and entry[0] == key
        if seen and entry[1] is not None:
            return entry[1]
    gates = len(order)
    params: List[torch.Tensor] = []
    for d in range(n_dir):
        bias = b[d] if b is not None else torch.zeros(2 * gates * hidden, dtype=dtype)
        params += [_reorder(w[d], hidden, order), _reorder(r[d], hidden, order),
                   _reorder(bias[: gates * hidden], hidden, order), _reorder(bias[gates * hidden:], hidden, order)]
    if key is not None:
        _TORCH_ORDER[w] = (key, params if seen else None)  # kept from the second call on
    return params


def _fused(kind: str, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: Optional[torch.Tensor],
           h0: Optional[torch.Tensor], c0: Optional[torch.Tensor], hidden: int, n_dir: int, order: Sequence[int]):
    """torch's fused LSTM/GRU kernel for the common configuration (time-major input); Y as torch
    returns it, (T, B, D*H)."""
    batch = x.shape[1]
    params = _torch_params(w, r, b, hidden, n_dir, order, x.dtype)
    zeros = torch.zeros(n_dir, batch, hidden, dtype=x.dtype)
    h = zeros if h0 is None else h0
    if kind == "lstm":
        c = zeros if c0 is None else c0
        y, hn, cn = torch.lstm(x, (h, c), params, True, 1, 0.0, False, n_dir == 2, False)
    else:
        y, hn = torch.gru(x, h, params, True, 1, 0.0, False, n_dir == 2, False)
        cn = None
    return y, hn, cn  # y: (T, B, D*H)


_ORDERS = {"lstm": (0, 2, 3, 1), "gru": (1, 0, 2)}  # ONNX gate order -> torch's (LSTM i o f c, GRU z r h)


def layers(kind: str, x: torch.Tensor, weights: Sequence[Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]],
           hidden: int, direction: str) -> torch.Tensor:
    """A stack of ONNX LSTM (``kind`` "lstm") or GRU (``kind`` "gru", ``linear_before_reset`` 1)
    nodes in their default configuration (time-major, no initial state, sequence lengths, peepholes
    or clip), each reading the previous one's Y merged to (T, B, D*H): what ``torch.onnx.export``
    writes for ``nn.LSTM(num_layers=k)``. One call of torch's kernel for the stack, as
    ``nn.LSTM`` makes; ``weights``: (W, R, B) per layer. Returns the last Y as (T, B, D*H)."""
    n_dir = 2 if direction == "bidirectional" else 1
    if x.dtype not in _FUSED_DTYPES:
        acts = default_specs(kind, n_dir)
        for w, r, b in weights:
            if kind == "lstm":
                x = lstm(x, w, r, b, None, None, None, None, hidden, direction, acts, None, 0, 0, merged=True)[0]
            else:
                x = gru(x, w, r, b, None, None, hidden, direction, acts, None, 1, 0, merged=True)[0]
        return x
    params: List[torch.Tensor] = []
    for w, r, b in weights:
        params += _torch_params(w, r, b, hidden, n_dir, _ORDERS[kind], x.dtype)
    zeros = torch.zeros(len(weights) * n_dir, x.shape[1], hidden, dtype=x.dtype)
    if kind == "lstm":
        return torch.lstm(x, (zeros, zeros), params, True, len(weights), 0.0, False, n_dir == 2, False)[0]
    return torch.gru(x, zeros, params, True, len(weights), 0.0, False, n_dir == 2, False)[0]


def lstm(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: Optional[torch.Tensor],
         seq_lens: Optional[torch.Tensor], h0: Optional[torch.Tensor], c0: Optional[torch.Tensor],
         p: Optional[torch.Tensor], hidden: int, direction: str, activations: Sequence[Activation],
         clip: Optional[float], input_forget: int, layout: int, merged: bool = False):
    """ONNX LSTM -> (Y, Y_h, Y_c).

    ``merged`` (time-major ``layout`` 0 only): Y comes as (T, B, D*H), the directions side by side
    as torch's kernel writes them: what exporters compute from ONNX's (T, D, B, H) with
    Transpose(0, 2, 1, 3) + Reshape, folded by :mod:`onnx2x.torch.fusion_patterns`."""
    x, h0, c0 = _prepare(x, layout, h0, c0)
    if (direction != "reverse" and seq_lens is None and p is None and x.dtype in _FUSED_DTYPES
            and clip is None and not input_forget
            and _is_default(activations, DEFAULT_ACTIVATIONS["lstm"])):
        n_dir = 2 if direction == "bidirectional" else 1
        y, hn, cn = _fused("lstm", x, w, r, b, h0, c0, hidden, n_dir, _ORDERS["lstm"])
        return _finish_fused(y, hn, cn, layout, merged, n_dir, hidden)
    batch = x.shape[1]
    lens = _lens(seq_lens)
    cl = _clipper(clip)
    ys, hs, cs = [], [], []
    for d, reverse in enumerate(_directions(direction)):
        f = _activation(activations[3 * d])
        g = _activation(activations[3 * d + 1])
        h_act = _activation(activations[3 * d + 2])
        wd, rd = w[d], r[d]
        xw = torch.matmul(x, wd.t())
        if b is not None:
            xw = xw + b[d, : 4 * hidden] + b[d, 4 * hidden:]
        zeros = torch.zeros(batch, hidden, dtype=x.dtype)
        h = zeros if h0 is None else h0[d]
        c = zeros if c0 is None else c0[d]
        pi = po = pf = None
        if p is not None:
            pi, po, pf = p[d, :hidden], p[d, hidden: 2 * hidden], p[d, 2 * hidden:]
        rt = rd.t()

        def step(xt: torch.Tensor, st: List[torch.Tensor]) -> List[torch.Tensor]:
            h_prev, c_prev = st
            gates = xt + torch.matmul(h_prev, rt)
            gi, go, gf, gc = torch.split(gates, hidden, -1)
            if pi is not None:
                gi = gi + pi * c_prev
                gf = gf + pf * c_prev
            i = f(cl(gi))
            fg = 1 - i if input_forget else f(cl(gf))
            c_new = fg * c_prev + i * g(cl(gc))
            if po is not None:
                go = go + po * c_new
            o = f(cl(go))
            return [o * h_act(c_new), c_new]

        y, (h_last, c_last) = _run_cell(xw, lens, reverse, [h, c], step)
        ys.append(y)
        hs.append(h_last)
        cs.append(c_last)
    return _finish(ys, hs, cs, layout, merged)


def gru(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: Optional[torch.Tensor],
        seq_lens: Optional[torch.Tensor], h0: Optional[torch.Tensor], hidden: int, direction: str,
        activations: Sequence[Activation], clip: Optional[float], linear_before_reset: int, layout: int,
        merged: bool = False):
    """ONNX GRU -> (Y, Y_h); ``merged``: see :func:`lstm`."""
    x, h0, _ = _prepare(x, layout, h0, None)
    if (direction != "reverse" and seq_lens is None and clip is None and linear_before_reset
            and x.dtype in _FUSED_DTYPES
            and _is_default(activations, DEFAULT_ACTIVATIONS["gru"])):
        n_dir = 2 if direction == "bidirectional" else 1
        y, hn, _ = _fused("gru", x, w, r, b, h0, None, hidden, n_dir, _ORDERS["gru"])
        y, hn, _ = _finish_fused(y, hn, None, layout, merged, n_dir, hidden)
        return y, hn
    batch = x.shape[1]
    lens = _lens(seq_lens)
    cl = _clipper(clip)
    ys, hs = [], []
    for d, reverse in enumerate(_directions(direction)):
        f = _activation(activations[2 * d])
        g = _activation(activations[2 * d + 1])
        xw = torch.matmul(x, w[d].t())
        rd = r[d]
        if b is not None:
            wb, rb = b[d, : 3 * hidden], b[d, 3 * hidden:]
        else:
            wb = rb = torch.zeros(3 * hidden, dtype=x.dtype)
        xw = xw + wb
        r_zr = rd[: 2 * hidden].t()
        r_h = rd[2 * hidden:].t()
        rb_zr, rb_h = rb[: 2 * hidden], rb[2 * hidden:]
        h = torch.zeros(batch, hidden, dtype=x.dtype) if h0 is None else h0[d]

        def step(xt: torch.Tensor, st: List[torch.Tensor]) -> List[torch.Tensor]:
            h_prev = st[0]
            x_zr, x_h = xt[:, : 2 * hidden], xt[:, 2 * hidden:]
            zr = x_zr + torch.matmul(h_prev, r_zr) + rb_zr
            z = f(cl(zr[:, :hidden]))
            rg = f(cl(zr[:, hidden:]))
            if linear_before_reset:
                hh = x_h + rg * (torch.matmul(h_prev, r_h) + rb_h)
            else:
                hh = x_h + torch.matmul(rg * h_prev, r_h) + rb_h
            ht = g(cl(hh))
            return [(1 - z) * ht + z * h_prev]

        y, (h_last,) = _run_cell(xw, lens, reverse, [h], step)
        ys.append(y)
        hs.append(h_last)
    y, h, _ = _finish(ys, hs, [], layout, merged)
    return y, h


def rnn(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: Optional[torch.Tensor],
        seq_lens: Optional[torch.Tensor], h0: Optional[torch.Tensor], hidden: int, direction: str,
        activations: Sequence[Activation], clip: Optional[float], layout: int, merged: bool = False):
    """ONNX RNN (Elman) -> (Y, Y_h); ``merged``: see :func:`lstm`."""
    x, h0, _ = _prepare(x, layout, h0, None)
    batch = x.shape[1]
    lens = _lens(seq_lens)
    cl = _clipper(clip)
    ys, hs = [], []
    for d, reverse in enumerate(_directions(direction)):
        f = _activation(activations[d])
        xw = torch.matmul(x, w[d].t())
        if b is not None:
            xw = xw + b[d, :hidden] + b[d, hidden:]
        rt = r[d].t()
        h = torch.zeros(batch, hidden, dtype=x.dtype) if h0 is None else h0[d]

        def step(xt: torch.Tensor, st: List[torch.Tensor]) -> List[torch.Tensor]:
            return [f(cl(xt + torch.matmul(st[0], rt)))]

        y, (h_last,) = _run_cell(xw, lens, reverse, [h], step)
        ys.append(y)
        hs.append(h_last)
    y, h, _ = _finish(ys, hs, [], layout, merged)
    return y, h
