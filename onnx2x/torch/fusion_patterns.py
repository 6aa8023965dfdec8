"""Exact pattern fusions: exporters' decompositions back into the one PyTorch call they came from.

Exporters write LayerNorm, RMSNorm, GELU, attention and linear layers as chains of elementwise
ops (``torch.onnx.export`` at opset < 17 has no LayerNormalization; ``F.gelu`` becomes Erf or Tanh
arithmetic). Run as chains, each op reads and writes the whole activation; the fused calls run one
kernel (attention in blocks, without the [L, S] score matrix ever being written):

* LayerNorm:  ``ReduceMean, Sub, Pow 2 | Mul, ReduceMean, Add eps, Sqrt, Div | Reciprocal+Mul,
  [Mul gamma], [Add beta]``  -> ``F.layer_norm``
* RMSNorm:    ``Pow 2 | Mul, ReduceMean, Add eps, Sqrt, Div | Reciprocal+Mul | Div(1)+Mul,
  [Mul weight]``  -> ``F.rms_norm``
* GroupNorm:  ``Reshape [N, G, -1], InstanceNormalization (unit scale, zero bias), Reshape to x's
  shape, [Mul gamma], [Add beta]`` (per-channel constants)  -> ``F.group_norm`` (both torch
  exporters' ``nn.GroupNorm``: five ops and two re-layouts become one kernel)
* GELU:       ``x * 0.5 * (1 + erf(x / sqrt 2))`` and ``... (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
  in the exporters' orders  -> ``F.gelu(approximate='none' | 'tanh')``
* SiLU:       ``x * Sigmoid(x)``  -> ``F.silu`` (EfficientNet, MobileViT, YOLO exports); likewise
  ``x * HardSigmoid(x)`` (alpha 1/6, beta 1/2: MobileNetV3 before opset 14)  -> ``F.hardswish``
* attention:  ``MatMul(Q, K^T)``, scale (Mul/Div on the scores, Q or K^T), [Add masks: up to three
  additive terms, e.g. T5's position bias and padding mask, summed into one], Softmax(-1),
  [``Where(IsNaN(p), 0, p)``], ``MatMul(V)``  -> ``F.scaled_dot_product_attention(q, k, v, attn_mask,
  scale=...)``. One difference is accepted: a row whose additive mask is -inf everywhere is NaN
  after ONNX's Softmax and zeros after SDPA (transformers' masks use the dtype's minimum, which
  keeps every row finite; torch's own export of SDPA zeroes such rows, matched exactly).
* channel shuffle: ``Reshape [N, g, C/g, ...], Transpose (0, 2, 1, ...), Reshape [N, C, ...]``
  -> ``torch.channel_shuffle`` (:func:`runtime.shape.channel_shuffle`)
* RNN output: ``Transpose(Y, (0, 2, 1, 3)), Reshape [T, B, -1]`` of a time-major LSTM/GRU/RNN's Y
  -> the (T, B, D*H) tensor torch's kernel writes (``merged=True``, :mod:`runtime.rnn`); then LSTM
  (GRU) nodes in their default configuration, each reading the previous one's merged Y only
  -> one call of torch's kernel for the stack (:func:`runtime.rnn.layers`)
* linear:     ``MatMul(x, W)`` [+ ``Add(b)``] with a constant 2-D ``W``, and ``Gemm`` with a constant
  B [and bias]  -> ``F.linear`` (the weight transposed once, at conversion)
* QDQ pair:   ``DequantizeLinear(QuantizeLinear(x))`` with one constant per-tensor scale and zero
  point (what QDQ-format quantizers put on every float32 activation)  -> one call of
  :func:`runtime.quantize.quantize_dequantize`, the same float32 operations without the 8-bit
  tensor in between (bit for bit; the scale and zero point become numbers in the code)

A pattern is replaced only when the fused call computes the same function up to float rounding:
reductions over the last axis with keepdims, epsilon added to the variance before the square root,
the exponent exactly 2 (or 3 in GELU's cube), GELU's constants exact in their dtype, parameters of
the normalized shape, float32/float64 values (16-bit chains round every step, the fused kernels
do not), and every intermediate value read only inside the chain. The chain's last node becomes the
fused call, so it keeps its name and its ``gm.onnx_value_to_fx`` entry (the verification locator
still finds the chain's result); the intermediate values disappear.
"""
from __future__ import annotations

import logging
import math
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Optional, Union

import torch
import torch.fx as fx
import torch.nn.functional as F

from .runtime import linalg as rt_linalg
from .runtime import normalization as rt_norm
from .runtime import quantize as rt_quantize
from .runtime import reduce as rt_reduce
from .runtime import rnn as rt_rnn
from .runtime import shape as rt_shape
from .runtime import softmax as rt_softmax

log = logging.getLogger(__name__)

_ADD = (torch.add, operator.add)
_SUB = (torch.sub, operator.sub)
_MUL = (torch.mul, operator.mul)
_DIV = (torch.div, operator.truediv)
_FLOATS = (torch.float32, torch.float64)

Dim = Union[int, str, None]


class ValueInfo(NamedTuple):
    """What ONNX shape inference knows of the value an fx node computes."""
    rank: Optional[int]
    dtype: Optional[torch.dtype]
    shape: Optional[tuple[Dim, ...]]  # ints, symbolic names, None for unknown dims


Info = dict[str, ValueInfo]


@dataclass
class PatternStats:
    layer_norms: int = 0
    rms_norms: int = 0
    group_norms: int = 0
    gelus: int = 0
    self_gated: int = 0  # x * sigmoid(x) and x * hardsigmoid(x)
    attentions: int = 0
    linears: int = 0
    channel_shuffles: int = 0
    merged_rnn_outputs: int = 0
    rnn_stacks: int = 0
    quantize_dequantize: int = 0


def fuse_patterns(gm: fx.GraphModule, info: Info) -> PatternStats:
    """Replace every exact pattern in ``gm.graph`` (in place; the caller recompiles)."""
    stats = PatternStats()
    for node in list(gm.graph.nodes):
        if _erased(node) or node.op != "call_function":
            continue
        if node.target is rt_reduce.reduce:
            if _layer_norm(gm, info, node):
                stats.layer_norms += 1
            elif _rms_norm(gm, info, node):
                stats.rms_norms += 1
        elif node.target is rt_norm.instance_norm:
            stats.group_norms += _group_norm(gm, info, node)
        elif node.target in (torch.erf, torch.tanh):
            stats.gelus += _gelu(gm, info, node)
        elif node.target in _GATES:
            stats.self_gated += _self_gated(gm, info, node)
        elif node.target in (rt_softmax.softmax_axis, rt_softmax.softmax_2d):
            stats.attentions += _attention(gm, info, node)
        elif node.target is torch.permute and _channel_shuffle(gm, info, node):
            stats.channel_shuffles += 1
        elif node.target in (torch.permute, torch.squeeze):
            stats.merged_rnn_outputs += _rnn_merged_output(gm, info, node)
        elif node.target is rt_quantize.dequantize:
            stats.quantize_dequantize += _quantize_dequantize(gm, info, node)
    if stats.merged_rnn_outputs:
        stats.rnn_stacks = _rnn_stacks(gm)
    readers = Counter(n.target for n in gm.graph.nodes if n.op == "get_attr")  # get_attr nodes per attribute
    transposed: dict[str, str] = {}  # weight attribute -> its transposed copy (tied weights: one copy)
    for node in list(gm.graph.nodes):  # after attention: its scores MatMul has no constant weight anyway
        if not _erased(node) and node.op == "call_function" and node.target in (torch.matmul, rt_linalg.gemm):
            stats.linears += _linear(gm, info, node, readers, transposed)
    if any(vars(stats).values()):
        log.debug("pattern fusion: %s", stats)
    return stats


# --- matching helpers ----------------------------------------------------------------------------
def _erased(node: fx.Node) -> bool:
    return bool(getattr(node, "_erased", False))


def _call(node: Any, targets: Iterable, nargs: Optional[int] = None) -> bool:
    return (isinstance(node, fx.Node) and node.op == "call_function" and node.target in tuple(targets)
            and not node.kwargs and (nargs is None or len(node.args) == nargs))


def _const(gm: fx.GraphModule, arg: Any) -> Optional[torch.Tensor]:
    """The tensor behind a ``get_attr`` argument, else None."""
    if isinstance(arg, fx.Node) and arg.op == "get_attr" and "." not in arg.target:
        value = gm._parameters.get(arg.target)
        if value is None:
            value = gm._buffers.get(arg.target)
        return value if isinstance(value, torch.Tensor) else None
    return None


def _scalar(gm: fx.GraphModule, arg: Any, rank: Optional[int]) -> Optional[float]:
    """``arg`` as a float when it is one known real number that broadcasts without adding dims
    to a value of ``rank``."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return float(arg)
    t = _const(gm, arg)
    if t is None or t.numel() != 1 or t.is_complex() or t.dtype == torch.bool:
        return None
    if t.dim() > (rank if rank is not None else 0):
        return None
    return float(t.reshape(()).item())


def _exact(value: Optional[float], want: float, dtype: torch.dtype) -> bool:
    """``value`` is ``want`` rounded to ``dtype`` (as an exporter writes the constant)."""
    if value is None:
        return False
    return value == torch.tensor(want, dtype=dtype).item() or value == want


def _the_user(node: fx.Node) -> Optional[fx.Node]:
    """The single user of ``node``, else None."""
    return next(iter(node.users)) if len(node.users) == 1 else None


def _other(node: fx.Node, operand: Any) -> Any:
    """The other argument of a binary ``node`` one of whose arguments is ``operand`` (not both)."""
    a, b = node.args
    if (a is operand) == (b is operand):
        return None
    return b if a is operand else a


def _info(info: Info, node: Any) -> ValueInfo:
    if isinstance(node, fx.Node):
        return info.get(node.name, ValueInfo(None, None, None))
    return ValueInfo(None, None, None)


def _float_value(info: Info, node: Any) -> Optional[ValueInfo]:
    """Info of ``node`` when it is a float32/float64 value of known rank >= 1."""
    vi = _info(info, node)
    return vi if vi.dtype in _FLOATS and vi.rank is not None and vi.rank >= 1 else None


def _mean_last(node: Any, rank: Optional[int] = None) -> Optional[fx.Node]:
    """x when ``node`` is ``ReduceMean(x, axes=[last], keepdims=1)`` (x of ``rank``, when given)."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target is rt_reduce.reduce
            and not node.kwargs and len(node.args) == 5):
        return None
    x, kind, axes, keepdims, _ = node.args
    if kind != "mean" or keepdims is not True or not isinstance(axes, (list, tuple)) or len(axes) != 1:
        return None
    if not isinstance(x, fx.Node) or not isinstance(axes[0], int):
        return None
    if axes[0] != -1 and (rank is None or axes[0] != rank - 1):
        return None
    return x


def _square_of(gm: fx.GraphModule, node: Any) -> Optional[fx.Node]:
    """x when ``node`` computes x ** 2: ``square(x)``, ``pow(x, 2)``, ``x * x``."""
    if _call(node, (torch.square,), 1):
        return node.args[0] if isinstance(node.args[0], fx.Node) else None
    if _call(node, (torch.pow, operator.pow), 2) and isinstance(node.args[0], fx.Node):
        return node.args[0] if _scalar(gm, node.args[1], None) == 2.0 else None
    if _call(node, _MUL, 2) and node.args[0] is node.args[1] and isinstance(node.args[0], fx.Node):
        return node.args[0]
    return None


def _cube_of(gm: fx.GraphModule, node: Any) -> Optional[fx.Node]:
    """x when ``node`` computes x ** 3: ``pow(x, 3)``, ``(x * x) * x`` or ``x * (x * x)``."""
    if _call(node, (torch.pow, operator.pow), 2) and isinstance(node.args[0], fx.Node):
        return node.args[0] if _scalar(gm, node.args[1], None) == 3.0 else None
    if _call(node, _MUL, 2):
        a, b = node.args
        for x, sq in ((a, b), (b, a)):
            if isinstance(x, fx.Node) and _square_of(gm, sq) is x and len(sq.users) == 1:
                return x
    return None


def _scale_step(gm: fx.GraphModule, node: Any, rank: Optional[int]) -> Optional[tuple[fx.Node, float, bool]]:
    """(x, c, divides) when ``node`` is ``x * c``, ``c * x`` (divides False) or ``x / c`` (True), c a scalar."""
    if _call(node, _MUL, 2):
        a, b = node.args
        for x, c in ((a, b), (b, a)):
            s = _scalar(gm, c, rank)
            if s is not None and isinstance(x, fx.Node) and x.op != "get_attr":
                return x, s, False
    if _call(node, _DIV, 2) and isinstance(node.args[0], fx.Node):
        s = _scalar(gm, node.args[1], rank)
        if s is not None and s != 0.0:
            return node.args[0], s, True
    return None


def _scaled_by(gm: fx.GraphModule, node: Any, rank: Optional[int]) -> Optional[tuple[fx.Node, float]]:
    """(x, factor) when ``node`` multiplies or divides x by a scalar."""
    step = _scale_step(gm, node, rank)
    if step is None:
        return None
    x, c, divides = step
    return x, (1.0 / c if divides else c)


def _plus_scalar(gm: fx.GraphModule, node: Any, rank: Optional[int]) -> Optional[tuple[fx.Node, float]]:
    """(x, c) when ``node`` is ``x + c`` or ``c + x`` with a scalar c."""
    if _call(node, _ADD, 2):
        a, b = node.args
        for x, c in ((a, b), (b, a)):
            s = _scalar(gm, c, rank)
            if s is not None and isinstance(x, fx.Node):
                return x, s
    return None


def _vector(gm: fx.GraphModule, arg: Any, size: int, rank: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """A constant that broadcasts along the last axis only: shape [..1.., size], rank <= ``rank``."""
    t = _const(gm, arg)
    if t is None or t.dtype != dtype or t.dim() < 1 or t.dim() > rank or t.shape[-1] != size:
        return None
    return t if all(s == 1 for s in t.shape[:-1]) else None


def _only_inside(chain: list[fx.Node], keep: fx.Node) -> bool:
    """Every value of ``chain`` except ``keep`` (the result) is read only by nodes of ``chain``."""
    members = set(chain)
    return all(set(n.users) <= members for n in chain if n is not keep)


def _as_1d_attr(gm: fx.GraphModule, arg: fx.Node, t: torch.Tensor, before: fx.Node) -> fx.Node:
    """A ``get_attr`` of ``t`` as a 1-D tensor (the node itself when it already is one)."""
    if t.dim() == 1:
        return arg
    return _new_attr(gm, before, t.detach().reshape(-1).clone(), f"{arg.target}_1d",
                     getattr(gm, "onnx_param_names", {}).get(arg.target, arg.target))


def _new_attr(gm: fx.GraphModule, before: fx.Node, tensor: torch.Tensor, hint: str, onnx_name: str) -> fx.Node:
    """Register ``tensor`` as a new parameter and return a ``get_attr`` node for it placed before ``before``."""
    name, i = hint, 1
    while hasattr(gm, name):
        i += 1
        name = f"{hint}_{i}"
    gm.register_parameter(name, torch.nn.Parameter(tensor, requires_grad=False))
    getattr(gm, "onnx_param_names", {})[name] = onnx_name
    with gm.graph.inserting_before(before):
        return gm.graph.get_attr(name)


def _become(gm: fx.GraphModule, last: fx.Node, chain: list[fx.Node], target: Any, args: tuple,
            kwargs: Optional[dict] = None) -> None:
    """Turn ``last`` (the chain's result) into ``target(*args, **kwargs)`` and erase the rest of the chain."""
    last.target = target
    last.args = args
    last.kwargs = kwargs or {}
    last.meta.pop("is_wrapped", None)
    rest = [n for n in chain if n is not last]
    while rest:
        dead = [n for n in rest if not n.users]
        if not dead:
            break
        for n in dead:
            gm.graph.erase_node(n)
            rest.remove(n)


# --- LayerNorm / RMSNorm --------------------------------------------------------------------------
def _normalize_by_root(gm: fx.GraphModule, data: fx.Node, mean_sq: fx.Node, rank: int
                       ) -> Optional[tuple[float, fx.Node, list[fx.Node]]]:
    """From ``mean_sq`` = mean of squares: ``data / sqrt(mean_sq + eps)`` or ``data * 1/sqrt(...)``.

    Returns (eps, normalized node, chain nodes after ``mean_sq``).
    """
    plus = _the_user(mean_sq)
    found = _plus_scalar(gm, plus, rank) if plus is not None else None
    if found is None or found[0] is not mean_sq or found[1] < 0.0:
        return None
    eps = found[1]
    root = _the_user(plus)
    if not _call(root, (torch.sqrt,), 1):
        return None
    step = _the_user(root)
    if step is None:
        return None
    if _call(step, _DIV, 2) and step.args == (data, root):
        return eps, step, [plus, root, step]
    inverse = None
    if _call(step, (torch.reciprocal,), 1):
        inverse = step
    elif _call(step, _DIV, 2) and step.args[1] is root and _scalar(gm, step.args[0], rank) == 1.0:
        inverse = step
    if inverse is None:
        return None
    times = _the_user(inverse)
    if not _call(times, _MUL, 2) or _other(times, inverse) is not data:
        return None
    return eps, times, [plus, root, inverse, times]


def _affine(gm: fx.GraphModule, start: fx.Node, size: int, rank: int, dtype: torch.dtype, with_bias: bool
            ) -> tuple[Optional[tuple[fx.Node, torch.Tensor]], Optional[tuple[fx.Node, torch.Tensor]], list[fx.Node]]:
    """``start [* weight] [+ bias]`` with constant [size] vectors: ((attr, w) | None, (attr, b) | None, nodes)."""
    weight = bias = None
    nodes: list[fx.Node] = []
    last = start
    user = _the_user(last)
    if _call(user, _MUL, 2):
        other = _other(user, last)
        w = _vector(gm, other, size, rank, dtype)
        if w is not None:
            weight = (other, w)
            nodes.append(user)
            last = user
    user = _the_user(last)
    if with_bias and _call(user, _ADD, 2):
        other = _other(user, last)
        b = _vector(gm, other, size, rank, dtype)
        if b is not None:
            bias = (other, b)
            nodes.append(user)
    return weight, bias, nodes


def _normalized_size(info: Info, x: fx.Node) -> Optional[tuple[int, torch.dtype]]:
    vi = _float_value(info, x)
    if vi is None or vi.shape is None or not isinstance(vi.shape[-1], int) or vi.shape[-1] < 1:
        return None
    return vi.shape[-1], vi.dtype


def _layer_norm(gm: fx.GraphModule, info: Info, mean: fx.Node) -> bool:
    """``mean`` = ReduceMean(x) starting a decomposed LayerNorm -> ``F.layer_norm`` (True when fused)."""
    x = _mean_last(mean, _info(info, mean.args[0]).rank)
    sized = _normalized_size(info, x) if x is not None else None
    if sized is None:
        return False
    size, dtype = sized
    rank = _info(info, x).rank
    centered = _the_user(mean)
    if not (_call(centered, _SUB, 2) and centered.args == (x, mean)):
        return False
    squares = [u for u in centered.users if _square_of(gm, u) is centered]
    if len(squares) != 1 or len(centered.users) != 2:
        return False
    square = squares[0]
    variance = _the_user(square)
    if variance is None or _mean_last(variance, rank) is not square:
        return False
    found = _normalize_by_root(gm, centered, variance, rank)
    if found is None:
        return False
    eps, normalized, tail = found
    weight, bias, affine = _affine(gm, normalized, size, rank, dtype, with_bias=True)
    chain = [mean, centered, square, variance] + tail + affine
    last = chain[-1]
    if not _only_inside(chain, last):
        return False
    w = _as_1d_attr(gm, *weight, last) if weight else None
    b = _as_1d_attr(gm, *bias, last) if bias else None
    _become(gm, last, chain, F.layer_norm, (x, (size,), w, b, eps))
    return True


def _rms_norm(gm: fx.GraphModule, info: Info, mean_sq: fx.Node) -> bool:
    """``mean_sq`` = ReduceMean(x ** 2) starting a decomposed RMSNorm -> ``F.rms_norm``."""
    square = mean_sq.args[0] if mean_sq.args else None
    x = _square_of(gm, square)
    if x is None or _mean_last(mean_sq, _info(info, square).rank) is not square:
        return False
    sized = _normalized_size(info, x)
    if sized is None:
        return False
    size, dtype = sized
    rank = _info(info, x).rank
    found = _normalize_by_root(gm, x, mean_sq, rank)
    if found is None:
        return False
    eps, normalized, tail = found
    weight, _, affine = _affine(gm, normalized, size, rank, dtype, with_bias=False)
    chain = [square, mean_sq] + tail + affine
    last = chain[-1]
    if not _only_inside(chain, last):
        return False
    w = _as_1d_attr(gm, *weight, last) if weight else None
    _become(gm, last, chain, F.rms_norm, (x, (size,), w, eps))
    return True


# --- GroupNorm ------------------------------------------------------------------------------------
def _group_norm(gm: fx.GraphModule, info: Info, norm: fx.Node) -> bool:
    """``norm`` = InstanceNormalization (unit scale, zero bias) of x reshaped to [N, G, -1],
    reshaped back to x's shape, [Mul gamma], [Add beta] per channel -> ``F.group_norm`` (what both
    torch exporters write for ``nn.GroupNorm``: diffusion UNets and VAEs, BiT, wav2vec2). With
    G = C on an [N, C, L] input the first Reshape is the identity, which the converter drops."""
    if not _call(norm, (rt_norm.instance_norm,), 4) or not isinstance(norm.args[3], float):
        return False
    head, scale, shift, eps = norm.args
    grouped = head if _call(head, (torch.reshape,), 2) and len(head.users) == 1 else None
    x = grouped.args[0] if grouped is not None else head
    xi = _float_value(info, x)
    if xi is None or xi.shape is None or xi.rank < 2 or not isinstance(xi.shape[1], int):
        return False
    rank, channels, dtype = xi.rank, xi.shape[1], xi.dtype
    groups = channels
    if grouped is not None:
        spec = grouped.args[1]
        groups = spec[1] if isinstance(spec, (list, tuple)) and len(spec) == 3 else None
        if not (isinstance(groups, int) and 0 < groups <= channels and channels % groups == 0
                and _groups_of(info, x, spec, groups)):
            return False
    s, b = _const(gm, scale), _const(gm, shift)
    if s is None or b is None or s.shape != (groups,) or b.shape != (groups,) or not bool((s == 1).all()) \
            or not bool((b == 0).all()):
        return False
    chain, last = [norm] if grouped is None else [grouped, norm], norm
    back = _the_user(norm)
    if (_call(back, (torch.reshape,), 2) and back.args[0] is norm and isinstance(back.args[1], (list, tuple))
            and len(back.args[1]) == rank and all(_dim_is(info, e, x, i) for i, e in enumerate(back.args[1]))):
        chain.append(back)
        last = back
    elif grouped is not None:
        return False  # the normalized [N, G, -1] value is what the graph reads
    affine: list[Optional[tuple[fx.Node, torch.Tensor]]] = [None, None]  # gamma, beta
    for slot, ops in ((0, _MUL), (1, _ADD)):
        user = _the_user(last)
        other = _other(user, last) if _call(user, ops, 2) else None
        t = _const(gm, other)
        if t is None or t.dtype != dtype or t.numel() != channels or not rank - 1 <= t.dim() <= rank \
                or t.shape[t.dim() - rank + 1] != channels:
            continue  # not a per-channel vector ([C, 1, ...] or [1, C, 1, ...])
        affine[slot] = (other, t)
        chain.append(user)
        last = user
    if len(chain) == 1 or not _only_inside(chain, last):
        return False  # a bare InstanceNormalization is already one call (runtime.normalization)
    w, b = (_as_1d_attr(gm, *p, last) if p else None for p in affine)
    _become(gm, last, chain, F.group_norm, (x, groups, w, b, eps))
    return True


def _groups_of(info: Info, x: fx.Node, spec: Any, groups: int) -> bool:
    """``spec`` reshapes ``x`` [N, C, *S] to [N, G, C/G * prod(S)]: the batch, then -1 or that int."""
    if spec[2] == -1:
        return _dim_is(info, spec[0], x, 0)
    shape = _info(info, x).shape
    if not isinstance(spec[2], int) or shape is None or not all(isinstance(d, int) for d in shape[1:]):
        return False
    return spec[2] * groups == math.prod(shape[1:]) and (spec[0] == -1 or _dim_is(info, spec[0], x, 0))


# --- GELU ------------------------------------------------------------------------------------------
_SQRT2 = math.sqrt(2.0)
_TANH_SCALE = math.sqrt(2.0 / math.pi)
_TANH_CUBIC = 0.044715


def _gelu_inner(gm: fx.GraphModule, info: Info, fn: fx.Node) -> Optional[tuple[fx.Node, str, list[fx.Node]]]:
    """(x, approximate, nodes) when ``fn`` is ``erf(x / sqrt 2)`` or ``tanh(sqrt(2/pi) (x + 0.044715 x^3))``."""
    arg = fn.args[0] if len(fn.args) == 1 and not fn.kwargs else None
    step = _scale_step(gm, arg, _info(info, arg).rank) if arg is not None else None
    if step is None:
        return None
    inner, c, divides = step
    if fn.target is torch.erf:
        vi = _float_value(info, inner)
        if vi is None:
            return None
        if not (_exact(c, _SQRT2, vi.dtype) if divides else _exact(c, 1.0 / _SQRT2, vi.dtype)):
            return None
        return inner, "none", [arg, fn]
    if divides:
        return None
    # tanh: inner = x + 0.044715 * x^3
    if not _call(inner, _ADD, 2):
        return None
    for x, cubic in (inner.args, inner.args[::-1]):
        vi = _float_value(info, x)
        term = _scaled_by(gm, cubic, vi.rank if vi else None) if isinstance(cubic, fx.Node) else None
        if vi is None or term is None or _cube_of(gm, term[0]) is not x:
            continue
        if not (_exact(c, _TANH_SCALE, vi.dtype) and _exact(term[1], _TANH_CUBIC, vi.dtype)):
            continue
        cube = term[0]
        nodes = [cube] + ([cube.args[0] if cube.args[0] is not x else cube.args[1]] if _call(cube, _MUL, 2) else [])
        return x, "tanh", nodes + [cubic, inner, arg, fn]
    return None


def _gelu(gm: fx.GraphModule, info: Info, fn: fx.Node) -> int:
    """``x * 0.5 * (1 + fn(...))`` in its three groupings -> ``F.gelu`` (1 when fused)."""
    found = _gelu_inner(gm, info, fn)
    if found is None:
        return 0
    x, approximate, nodes = found
    rank = _info(info, x).rank
    one = _the_user(fn)
    plus = _plus_scalar(gm, one, rank) if one is not None else None
    if plus is None or plus[0] is not fn or plus[1] != 1.0:
        return 0
    prod = _the_user(one)
    if not _call(prod, _MUL, 2):
        return 0
    other = _other(prod, one)
    half_of = _scaled_by(gm, other, rank) if isinstance(other, fx.Node) else None
    if other is x:  # (x * (1 + erf)) * 0.5
        last = _the_user(prod)
        scaled = _scaled_by(gm, last, rank) if last is not None else None
        if scaled is None or scaled[0] is not prod or scaled[1] != 0.5:
            return 0
        tail = [one, prod, last]
    elif half_of is not None and half_of == (x, 0.5):  # (0.5 * x) * (1 + erf)
        last = prod
        tail = [one, other, prod]
    elif _scalar(gm, other, rank) == 0.5:  # x * ((1 + erf) * 0.5)
        last = _the_user(prod)
        if not _call(last, _MUL, 2) or _other(last, prod) is not x:
            return 0
        tail = [one, prod, last]
    else:
        return 0
    chain = nodes + tail
    if not _only_inside(chain, last):
        return 0
    _become(gm, last, chain, F.gelu, (x,), {"approximate": approximate} if approximate != "none" else None)
    return 1


# --- SiLU, hardswish -------------------------------------------------------------------------------
_GATES = {torch.sigmoid: F.silu, F.hardsigmoid: F.hardswish}  # gate(x) -> what x * gate(x) is


def _self_gated(gm: fx.GraphModule, info: Info, gate: fx.Node) -> int:
    """``x * sigmoid(x)`` -> ``F.silu(x)``, ``x * hardsigmoid(x)`` -> ``F.hardswish(x)`` (either
    operand order; 1 when fused)."""
    if len(gate.args) != 1 or gate.kwargs or not isinstance(gate.args[0], fx.Node):
        return 0
    x = gate.args[0]
    mul = _the_user(gate)
    if not _call(mul, _MUL, 2) or mul.kwargs or set(mul.args) != {x, gate} or x is gate:
        return 0
    if _info(info, x).dtype not in _FLOATS:
        return 0
    _become(gm, mul, [gate, mul], _GATES[gate.target], (x,))
    return 1


# --- attention -------------------------------------------------------------------------------------
def _softmax_last(node: fx.Node, info: Info) -> Optional[fx.Node]:
    """The input when ``node`` is a softmax over the last axis."""
    if node.kwargs or len(node.args) != 3 or node.args[1] != "softmax" or not isinstance(node.args[0], fx.Node):
        return None
    axis = node.args[2]
    rank = _info(info, node.args[0]).rank
    if axis == -1 or (rank is not None and axis == rank - 1):
        return node.args[0]
    return None


def _unscale(gm: fx.GraphModule, node: Any, rank: Optional[int], chain: list[fx.Node]) -> tuple[Any, float]:
    """Strip single-use scalar Mul/Div steps ending at ``node``: (the value before them, total factor)."""
    factor = 1.0
    while isinstance(node, fx.Node):
        step = _scaled_by(gm, node, rank)
        if step is None or (chain and len(node.users) != 1):
            break
        chain.append(node)
        factor *= step[1]
        node = step[0]
    return node, factor


def _untransposed(gm: fx.GraphModule, kt: fx.Node, rank: int, before: fx.Node, chain: list[fx.Node]) -> fx.Node:
    """K from K^T: the permutation's source with the last two axes swapped back, else a transpose."""
    if (_call(kt, (torch.permute,), 2) and isinstance(kt.args[1], (list, tuple)) and len(kt.args[1]) == rank
            and len(kt.users) == 1):
        perm = list(kt.args[1])
        perm[-2], perm[-1] = perm[-1], perm[-2]
        chain.append(kt)
        if perm == list(range(rank)):
            return kt.args[0]
        with gm.graph.inserting_before(before):
            return gm.graph.create_node("call_function", torch.permute, (kt.args[0], perm), name="key")
    if _call(kt, (torch.transpose,), 3) and sorted(a % rank for a in kt.args[1:]) == [rank - 2, rank - 1] \
            and len(kt.users) == 1:
        chain.append(kt)
        return kt.args[0]
    with gm.graph.inserting_before(before):
        return gm.graph.call_function(torch.transpose, (kt, -2, -1))


def _mask_fits(gm: fx.GraphModule, info: Info, mask: Any, scores: fx.Node) -> bool:
    """The additive mask broadcasts to the scores' shape without enlarging it (as far as known)."""
    m, s = _info(info, mask), _info(info, scores)
    constant = _const(gm, mask)
    if constant is not None:  # a constant mask (a causal one folded at conversion)
        m = ValueInfo(constant.dim(), constant.dtype, tuple(constant.shape))
    if m.dtype not in _FLOATS or m.dtype != s.dtype or m.rank is None or s.rank is None or m.rank > s.rank:
        return False
    if m.rank < 2:  # SDPA indexes the mask's last two dims
        return False
    if m.shape is None or s.shape is None:
        return True
    for dm, ds in zip(m.shape[::-1], s.shape[::-1]):
        if dm == 1 or dm == ds:
            continue
        if ds == 1:  # the mask would enlarge the scores
            return False
    return True


def _nan_guarded(gm: fx.GraphModule, softmax: fx.Node, rank: Optional[int]) -> tuple[fx.Node, list[fx.Node]]:
    """``where(isnan(p), 0, p)`` after the softmax (torch.onnx's export of SDPA zeroes the rows a
    mask hides entirely, as SDPA does): (that value, its two nodes); else (softmax, [])."""
    if len(softmax.users) != 2:
        return softmax, []
    isnan = next((u for u in softmax.users if _call(u, (torch.isnan,), 1)), None)
    where = _the_user(isnan) if isnan is not None else None
    if (where is None or not _call(where, (torch.where,), 3) or where.args[0] is not isnan
            or where.args[2] is not softmax or _scalar(gm, where.args[1], rank) != 0.0
            or set(softmax.users) != {isnan, where}):
        return softmax, []
    return where, [isnan, where]


def _attention(gm: fx.GraphModule, info: Info, softmax: fx.Node) -> int:
    """``softmax(scale * Q K^T [+ mask]) V`` -> ``F.scaled_dot_product_attention`` (1 when fused)."""
    logits = _softmax_last(softmax, info)
    probs, guard = _nan_guarded(gm, softmax, _info(info, logits).rank)
    out = _the_user(probs)
    if logits is None or not _call(out, (torch.matmul,), 2) or out.args[0] is not probs:
        return 0
    value = out.args[1]
    vi = _info(info, logits)
    if vi.dtype not in _FLOATS or vi.rank is None or vi.rank < 3 or len(logits.users) != 1:
        return 0
    rank = vi.rank
    chain: list[fx.Node] = [softmax, *guard, out]
    split = _scores_plus(gm, logits, rank, chain)
    if split is None:
        return 0
    scores, masks = split
    if masks and (len(scores.users) != 1 or not all(_mask_fits(gm, info, m, scores) for m in masks)):
        return 0
    matmul, scale = _unscale(gm, scores, rank, chain)  # appends the scale steps on the scores
    if not _call(matmul, (torch.matmul,), 2) or len(matmul.users) != 1:
        return 0
    chain.append(matmul)
    q, q_scale = _unscale(gm, matmul.args[0], rank, chain)
    kt, k_scale = _unscale(gm, matmul.args[1], rank, chain)
    if not (isinstance(q, fx.Node) and isinstance(kt, fx.Node) and isinstance(value, fx.Node)):
        return 0
    ranks = {_info(info, n).rank for n in (q, kt, value)}
    if ranks != {rank} or _info(info, value).dtype != vi.dtype:
        return 0
    if not _only_inside(chain, out):
        return 0
    k = _untransposed(gm, kt, rank, out, chain)
    mask = masks[0] if masks else None
    for term in masks[1:]:  # T5: a position bias and a padding mask, added to the scores one by one
        with gm.graph.inserting_before(out):
            mask = gm.graph.call_function(torch.add, (mask, term))
    kwargs: dict[str, Any] = {"scale": scale * q_scale * k_scale}
    args = (q, k, value) if mask is None else (q, k, value, mask)
    _become(gm, out, chain, F.scaled_dot_product_attention, args, kwargs)
    return 1


def _scores_plus(gm: fx.GraphModule, logits: fx.Node, rank: int, chain: list[fx.Node],
                 most: int = 3) -> Optional[tuple[fx.Node, list[fx.Node]]]:
    """``logits`` as (scaled) ``Q K^T`` plus up to ``most`` additive mask terms, outermost Add
    first: (the scores, the terms in the order they are added); the Adds join ``chain``."""
    adds: list[fx.Node] = []
    terms: list[fx.Node] = []
    node: Any = logits
    while not _is_scores(gm, node, rank):
        if len(terms) == most or not _call(node, _ADD, 2) or (adds and len(node.users) != 1):
            return None
        for cand, other in (node.args, node.args[::-1]):
            if isinstance(cand, fx.Node) and isinstance(other, fx.Node) and _leads_to_scores(gm, cand, rank):
                adds.append(node)
                terms.append(other)
                node = cand
                break
        else:
            return None
    chain.extend(adds)
    return node, terms[::-1]


def _is_scores(gm: fx.GraphModule, node: Any, rank: int) -> bool:
    """Whether ``node`` is a MatMul, or scalar scale steps on one (``Q K^T`` before the Softmax)."""
    inner, _ = _unscale(gm, node, rank, [])
    return _call(inner, (torch.matmul,), 2)


def _leads_to_scores(gm: fx.GraphModule, node: fx.Node, rank: int, depth: int = 3) -> bool:
    """Whether ``node`` is (scaled) ``Q K^T``, or an Add with an operand that leads to it."""
    if _is_scores(gm, node, rank):
        return True
    return depth > 0 and _call(node, _ADD, 2) and any(
        isinstance(a, fx.Node) and _leads_to_scores(gm, a, rank, depth - 1) for a in node.args)


# --- linear ----------------------------------------------------------------------------------------
def _linear(gm: fx.GraphModule, info: Info, node: fx.Node, readers: Counter, transposed: dict[str, str]) -> int:
    """``x @ W [+ b]`` (MatMul [+ Add], or Gemm) with constant W [K, N] and b [N] -> ``F.linear``
    (1 when fused). Without a bias too: LLaMA's and T5's layers have none, and a weight worth
    packing then runs on oneDNN (1 x 16 x 1024 @ 1024 x 1024: 341 us against matmul's 676 us).

    ``readers``: how many get_attr nodes read each attribute (W is transposed in place when one
    node, read by this MatMul alone, does); ``transposed``: copies made so far, shared."""
    if node.kwargs:
        return 0
    if node.target is rt_linalg.gemm:
        if len(node.args) != 7:
            return 0
        x, w_arg, b_arg, alpha, beta, trans_a, trans_b = node.args
        if alpha != 1.0 or (beta != 1.0 and b_arg is not None) or trans_a:
            return 0
        chain, last = [node], node
    else:
        if len(node.args) != 2:
            return 0
        x, w_arg = node.args
        trans_b = False
        add = _the_user(node)
        b_arg = _other(add, node) if _call(add, _ADD, 2) else None
        chain, last = ([node, add], add) if b_arg is not None else ([node], node)
    w = _const(gm, w_arg)
    vi = _info(info, x)
    if w is None or w.dim() != 2 or w.dtype not in _FLOATS or vi.dtype != w.dtype or not isinstance(x, fx.Node):
        return 0
    n = w.shape[0] if trans_b else w.shape[1]
    out_rank = 2 if node.target is rt_linalg.gemm else (vi.rank or 1)  # a bias of higher rank would add dims
    b = None if b_arg is None else _vector(gm, b_arg, n, out_rank, w.dtype)
    if node.target is rt_linalg.gemm:
        if b_arg is not None and b is None:
            return 0  # C is not a per-output vector
    elif b is None or not _only_inside(chain, last):  # no bias, or the product is also read elsewhere
        chain, last, b = [node], node, None
    param_names: dict[str, str] = getattr(gm, "onnx_param_names", {})
    onnx_name = param_names.get(w_arg.target, w_arg.target)
    if trans_b:
        weight = w_arg
    elif w_arg.target in transposed:
        with gm.graph.inserting_before(last):
            weight = gm.graph.get_attr(transposed[w_arg.target])
    elif len(w_arg.users) == 1 and w_arg.target in gm._parameters and readers[w_arg.target] == 1:
        # a transposed view, not a copy: matmul reads either layout at the same speed, and a copy
        # would hold the weight twice until the original is freed (peak memory)
        gm._parameters[w_arg.target] = torch.nn.Parameter(w.detach().t(), requires_grad=False)
        _stored_transposed(gm, w_arg.target)
        weight = w_arg  # nothing else reads it: stored transposed under its own name
    else:
        weight = _new_attr(gm, last, w.detach().t(), f"{w_arg.target}_t", onnx_name)
        transposed[w_arg.target] = weight.target
    bias = None if b is None else _as_1d_attr(gm, b_arg, b, last)
    _become(gm, last, chain, F.linear, (x, weight, bias))
    return 1


def _stored_transposed(gm: fx.GraphModule, attr: str) -> None:
    """Note in ``gm.onnx_param_permuted`` that the 2-D parameter ``attr`` is now stored as the
    transpose of what it was, so that ``naming.onnx_initializer`` still gives its initializer back
    (``initializer = param.permute(perm)``: the new perm applies (1, 0) first, then the old one)."""
    onnx_name = getattr(gm, "onnx_param_names", {}).get(attr)
    permuted = getattr(gm, "onnx_param_permuted", None)
    if onnx_name is None or permuted is None:
        return
    perm = tuple((1, 0)[d] for d in permuted.get(onnx_name, (0, 1)))
    if perm == (0, 1):
        permuted.pop(onnx_name, None)
    else:
        permuted[onnx_name] = perm


# --- channel shuffle -------------------------------------------------------------------------------
def _batch_dim(info: Info, entry: Any, batch: Dim) -> bool:
    """A reshape target entry that is ``batch``: that int, or ``t.size(0)`` of a value of that batch."""
    if isinstance(entry, int):
        return isinstance(batch, int) and entry == batch
    return (isinstance(entry, fx.Node) and entry.op == "call_method" and entry.target == "size"
            and len(entry.args) == 2 and entry.args[1] == 0 and not entry.kwargs
            and _info(info, entry.args[0]).shape is not None and _info(info, entry.args[0]).shape[0] == batch)


def _reshaped_to(info: Info, node: Any, source: fx.Node, dims: list[int], batch: Dim) -> bool:
    """``node`` is ``torch.reshape(source, [N, *dims])``, N the batch written as -1 (the other dims
    being exact, it can only be the batch), the batch itself, or a batch followed by -1 for
    ``dims[0]``."""
    if not _call(node, (torch.reshape,), 2) or node.args[0] is not source:
        return False
    spec = node.args[1]
    if not isinstance(spec, (list, tuple)) or len(spec) != len(dims) + 1:
        return False
    if list(spec[1:]) == dims:
        return spec[0] == -1 or _batch_dim(info, spec[0], batch)
    return spec[1] == -1 and list(spec[2:]) == dims[1:] and _batch_dim(info, spec[0], batch)


def _channel_shuffle(gm: fx.GraphModule, info: Info, permute: fx.Node) -> int:
    """``Reshape(x, [N, g, C/g, *S]) -> Transpose(0, 2, 1, ...) -> Reshape [N, C, *S]`` (C and S
    known ints) is ShuffleNet's channel shuffle of ``x`` in ``g`` groups."""
    if not _call(permute, (torch.permute,), 2) or not isinstance(permute.args[0], fx.Node):
        return 0
    split, perm = permute.args
    after = _the_user(permute)
    x = split.args[0] if split.op == "call_function" and split.args else None
    shape = _info(info, x).shape
    if after is None or shape is None or len(shape) < 3 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return 0
    rank, channels, spatial = len(shape), shape[1], list(shape[2:])
    if list(perm) != [0, 2, 1] + list(range(3, rank + 1)):
        return 0
    spec = split.args[1] if len(split.args) == 2 else None
    groups = spec[1] if isinstance(spec, (list, tuple)) and len(spec) == rank + 1 else None
    if not (isinstance(groups, int) and groups > 0 and channels % groups == 0):
        return 0
    if not (_reshaped_to(info, split, x, [groups, channels // groups] + spatial, shape[0])
            and _reshaped_to(info, after, permute, [channels] + spatial, shape[0])):
        return 0
    chain = [split, permute, after]
    if not _only_inside(chain, after):
        return 0
    _become(gm, after, chain, rt_shape.channel_shuffle, (x, groups))
    return 1


# --- RNN outputs -----------------------------------------------------------------------------------
# runtime function -> (index of hidden_size, index of direction) in its arguments
_RNN_ARGS = {rt_rnn.lstm: (8, 9), rt_rnn.gru: (6, 7), rt_rnn.rnn: (6, 7)}


def _dim(info: Info, node: Any, axis: int) -> Dim:
    shape = _info(info, node).shape
    return shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None


def _dim_is(info: Info, entry: Any, value: fx.Node, axis: int) -> bool:
    """A reshape target entry that is dim ``axis`` of ``value``: ``value.size(axis)``, the size of a
    dim that shape inference names the same, or that dim's int."""
    want = _dim(info, value, axis)
    if isinstance(entry, int):
        return isinstance(want, int) and entry == want
    if not (isinstance(entry, fx.Node) and entry.op == "call_method" and entry.target == "size"
            and len(entry.args) == 2 and not entry.kwargs):
        return False
    source, at = entry.args
    if source is value and at == axis:
        return True
    got = _dim(info, source, at) if isinstance(at, int) else None
    return got is not None and want is not None and got == want


def _merging_rnn(y: Any) -> Optional[fx.Node]:
    """The time-major LSTM/GRU/RNN call whose Y ``y`` is (``getitem(rnn, 0)``, read once), else None."""
    if not (_call(y, (operator.getitem,), 2) and y.args[1] == 0 and len(y.users) == 1):
        return None
    rnn = y.args[0]
    where = _RNN_ARGS.get(rnn.target) if isinstance(rnn, fx.Node) and rnn.op == "call_function" else None
    if where is None or rnn.kwargs or len(rnn.args) != where[1] + 5 or rnn.args[-1] != 0:  # layout 0
        return None
    return rnn if isinstance(rnn.args[where[0]], int) else None


def _rnn_merged_output(gm: fx.GraphModule, info: Info, node: fx.Node) -> int:
    """``Transpose(Y, (0, 2, 1, 3)) -> Reshape [T, B, -1 | D*H]`` of a time-major RNN's Y (T, D, B, H)
    is the (T, B, D*H) tensor torch's LSTM/GRU kernel writes: how ``torch.onnx.export`` writes a
    bidirectional or stacked ``nn.LSTM``; one direction's ``Squeeze(Y, 1)`` is that tensor too. The
    RNN returns it as it is (``merged=True``), saving a relayout each way."""
    if _call(node, (torch.squeeze,), 2) and node.args[1] in (1, (1,), [1]):
        rnn = _merging_rnn(node.args[0])
        if rnn is None or rnn.args[_RNN_ARGS[rnn.target][1]] == "bidirectional":
            return 0
        chain, last = [node.args[0], node], node
    elif _call(node, (torch.permute,), 2) and list(node.args[1]) == [0, 2, 1, 3]:
        rnn = _merging_rnn(node.args[0])
        last = next((u for u in node.users if _call(u, (torch.reshape,), 2) and u.args[0] is node), None)
        spec = last.args[1] if last is not None else None
        if rnn is None or not (isinstance(spec, (list, tuple)) and len(spec) == 3):
            return 0
        hidden, direction = (rnn.args[i] for i in _RNN_ARGS[rnn.target])
        width = hidden * (2 if direction == "bidirectional" else 1)
        if not (_dim_is(info, spec[0], node, 0) and _dim_is(info, spec[1], node, 1) and spec[2] in (-1, width)):
            return 0
        sizes = [e for e in spec[:2] if isinstance(e, fx.Node)]
        if not (set(node.users) <= {last, *sizes} and all(set(n.users) == {last} for n in sizes)):
            return 0
        chain = [node.args[0], node, *sizes, last]
    else:
        return 0
    rnn.kwargs = {"merged": True}
    _become(gm, last, chain, operator.getitem, (rnn, 0))
    return 1


def _stackable(node: Any) -> Optional[tuple]:
    """(kind, hidden, direction) of an LSTM/GRU call in its default configuration returning a merged Y
    (:func:`runtime.rnn.layers`) of which only Y is read, else None."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.kwargs == {"merged": True}):
        return None
    a = node.args
    if node.target is rt_rnn.lstm and len(a) == 14:
        kind, state, rest = "lstm", a[4:8], (a[11], a[12], a[13])  # seq_lens h0 c0 p; clip input_forget layout
        ok = rest == (None, 0, 0) and rt_rnn._is_default(a[10], rt_rnn.DEFAULT_ACTIVATIONS[kind])
    elif node.target is rt_rnn.gru and len(a) == 12:
        kind, state, rest = "gru", a[4:6], (a[9], a[10], a[11])  # seq_lens h0; clip linear_before_reset layout
        ok = rest == (None, 1, 0) and rt_rnn._is_default(a[8], rt_rnn.DEFAULT_ACTIVATIONS[kind])
    else:
        return None
    hidden, direction = a[_RNN_ARGS[node.target][0]], a[_RNN_ARGS[node.target][1]]
    if not (ok and all(v is None for v in state) and isinstance(hidden, int)
            and direction in ("forward", "bidirectional")):
        return None
    if not all(_call(u, (operator.getitem,), 2) and u.args[1] == 0 for u in node.users) or len(node.users) != 1:
        return None
    return kind, hidden, direction


def _rnn_stacks(gm: fx.GraphModule) -> int:
    """Chains of stackable RNN calls of one kind and size (:func:`_stackable`), each the only reader
    of the previous one's Y, become one :func:`runtime.rnn.layers` call."""
    stacks = 0
    for node in list(gm.graph.nodes):
        config = None if _erased(node) else _stackable(node)
        if config is None:
            continue
        # the first layer of its chain: a later layer of a chain is erased when the chain's first is met
        chain, out = [node], next(iter(node.users))
        while len(out.users) == 1:
            nxt = next(iter(out.users))
            if _stackable(nxt) != config or nxt.args[0] is not out:
                break
            chain.append(nxt)
            out = next(iter(nxt.users))
        if len(chain) < 2:
            continue
        weights = tuple(tuple(n.args[1:4]) for n in chain)
        members = [m for n in chain for m in (n, next(iter(n.users)))]
        _become(gm, out, members, rt_rnn.layers, (config[0], node.args[0], weights, config[1], config[2]))
        stacks += 1
    return stacks


# --- QDQ pairs ---------------------------------------------------------------------------------------
_QDQ_RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127), torch.uint16: (0, 65535), torch.int16: (-32768, 32767)}


def _per_tensor_number(gm: fx.GraphModule, arg: Any) -> Optional[float]:
    """The value of a constant one-element scale or zero point (None: absent, 0)."""
    if arg is None:
        return 0.0
    t = _const(gm, arg)
    return float(t.reshape(()).item()) if t is not None and t.numel() == 1 else None


def _quantize_dequantize(gm: fx.GraphModule, info: Info, dq: fx.Node) -> int:
    """``dequantize(quantize(x, s, z), s, z)`` -> ``quantize_dequantize(x, s, z, low, high)`` when x
    and the result are float32, the 8/16-bit codes are read by nothing else, and s and z are the
    same constant per-tensor values on both sides (rt.quantize/dequantize's positional signatures)."""
    q = dq.args[0]
    if not _call(q, (rt_quantize.quantize,), 8) or len(dq.args) != 6 or dq.kwargs or len(q.users) != 1:
        return 0
    x, scale, zero, _, q_block, codes, _, precision = q.args
    _, scale2, zero2, _, dq_block, out = dq.args
    if codes not in _QDQ_RANGES or precision is not None or q_block or dq_block or out != torch.float32:
        return 0
    if _info(info, x).dtype != torch.float32:
        return 0
    s, z = _per_tensor_number(gm, scale), _per_tensor_number(gm, zero)
    t = _const(gm, scale)
    if t is None or t.dtype != torch.float32 or s is None or z is None or s <= 0 or not math.isfinite(s):
        return 0
    if _per_tensor_number(gm, scale2) != s or _per_tensor_number(gm, zero2) != z:
        return 0
    low, high = _QDQ_RANGES[codes]
    _become(gm, dq, [q, dq], rt_quantize.quantize_dequantize, (x, s, int(z), low, high))
    return 1
