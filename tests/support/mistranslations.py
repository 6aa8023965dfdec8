"""A catalogue of realistic mistranslations, each injected at one node of a correct conversion.

Verification has two jobs: never refuse a correct conversion, and never let a wrong one through.
The second is tested here. Each entry is an error a converter author really makes (a default
taken from the wrong framework, a pad on the wrong side, an attribute ignored, operands swapped,
a weight read in the wrong layout...), injected into one translation of the MXNet exporter
(``direction="mxnet"``, checked by ``x2onnx mxnet``) or into one converter of ``onnx2x torch``
(``direction="torch"``), at one node of the catalogue network (tests/support/catalogue_net.py).
The test expects exit 3 and the injected node named in the error line.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

MXNET_OPSET = 13


@dataclass(frozen=True)
class Mistranslation:
    key: str
    direction: str  # "mxnet": an exporter translation; "torch": an onnx2x converter
    op: str  # MXNet op (direction mxnet) or ONNX op type (direction torch)
    node: str  # MXNet node name, or the ONNX output name of the node
    description: str
    inject: Callable[..., Any]

    @property
    def expected_node(self) -> str:
        """What the error line must name: the MXNet node, or the ONNX node producing ``node``."""
        return self.node


# --- MXNet exporter: rewrite the ONNX nodes one translation returns --------------------------
def _find(nodes: Sequence[onnx.NodeProto], op_type: str) -> onnx.NodeProto:
    return next(n for n in nodes if n.op_type == op_type)


def _set_attr(node: onnx.NodeProto, name: str, value: Any) -> None:
    for k, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[k]
            break
    node.attribute.append(helper.make_attribute(name, value))


def _replace_initializer(initializer: list, name: str, value: np.ndarray) -> None:
    for k, t in enumerate(initializer):
        if t.name == name:
            initializer[k] = numpy_helper.from_array(value, name)
            return
    raise KeyError(name)


def set_attribute(op_type: str, name: str, value: Any) -> Callable[..., list]:
    def mutate(nodes: list, initializer: list) -> list:
        _set_attr(_find(nodes, op_type), name, value)
        return nodes
    return mutate


def retype(op_from: str, op_to: str, keep_attributes: Sequence[str] = ()) -> Callable[..., list]:
    def mutate(nodes: list, initializer: list) -> list:
        node = _find(nodes, op_from)
        node.op_type = op_to
        kept = [a for a in node.attribute if a.name in keep_attributes]
        del node.attribute[:]
        node.attribute.extend(kept)
        return nodes
    return mutate


def swap_inputs(op_type: str, i: int, j: int) -> Callable[..., list]:
    def mutate(nodes: list, initializer: list) -> list:
        node = _find(nodes, op_type)
        node.input[i], node.input[j] = node.input[j], node.input[i]
        return nodes
    return mutate


def drop_input(op_type: str, i: int) -> Callable[..., list]:
    def mutate(nodes: list, initializer: list) -> list:
        node = _find(nodes, op_type)
        node.input[i] = ""
        while node.input and not node.input[-1]:
            del node.input[-1]
        return nodes
    return mutate


def transpose_input(op_type: str, i: int, perm: Sequence[int]) -> Callable[..., list]:
    """Read input ``i`` in another layout (a weight loaded transposed)."""
    def mutate(nodes: list, initializer: list) -> list:
        node = _find(nodes, op_type)
        moved = f"{node.input[i]}__transposed"
        nodes.insert(nodes.index(node), helper.make_node("Transpose", [node.input[i]], [moved], perm=list(perm)))
        node.input[i] = moved
        return nodes
    return mutate


def scale_channel(op_type: str, channels: int, channel: int, factor: float) -> Callable[..., list]:
    """One output channel ``factor`` times what it should be."""
    def mutate(nodes: list, initializer: list) -> list:
        node = _find(nodes, op_type)
        out = node.output[0]
        node.output[0] = f"{out}__unscaled"
        scale = np.ones((1, channels, 1, 1), np.float32)
        scale[0, channel] = factor
        name = f"{out}__channel_scale"
        initializer.append(numpy_helper.from_array(scale, name))
        nodes.insert(nodes.index(node) + 1, helper.make_node("Mul", [node.output[0], name], [out]))
        return nodes
    return mutate


def shift_initializer(op_type: str, input_index: int, delta: int) -> Callable[..., list]:
    """An integer constant input (a slice bound) off by ``delta``."""
    def mutate(nodes: list, initializer: list) -> list:
        node = _find(nodes, op_type)
        name = node.input[input_index]
        value = next(numpy_helper.to_array(t) for t in initializer if t.name == name)
        _replace_initializer(initializer, name, (value + delta).astype(value.dtype))
        return nodes
    return mutate


def clamp_min_dropped(nodes: list, initializer: list) -> list:
    node = _find(nodes, "Clip")
    node.input[1] = ""
    return nodes


def batchnorm_fix_gamma_ignored(nodes: list, initializer: list) -> list:
    """Uses gamma = 1 (as ``fix_gamma=True`` would), though the model trained gamma."""
    node = _find(nodes, "BatchNormalization")
    name = node.input[1]
    value = next(numpy_helper.to_array(t) for t in initializer if t.name == name) if any(
        t.name == name for t in initializer) else None
    ones = f"{name}__ones"
    channels = value.shape[0] if value is not None else 16
    initializer.append(numpy_helper.from_array(np.ones(channels, np.float32), ones))
    node.input[1] = ones
    return nodes


@contextlib.contextmanager
def mxnet_injected(m: Mistranslation) -> Iterator[None]:
    """The exporter's translation of ``m.op`` rewritten by ``m.inject`` at node ``m.node`` only."""
    import mx2onnx_patches
    from mx2onnx_patches.mxnet_import import import_mxnet

    from tests.support.verify_models import wrong_translation

    import_mxnet()
    with mx2onnx_patches.apply():
        from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

        # MXNet looks a translation up from the export's opset down to 12, as here
        original = next(MXNetGraph.registry_[v][m.op] for v in range(MXNET_OPSET, 11, -1)
                        if m.op in MXNetGraph.registry_.get(v, {}))

    def translation(node: dict, **kwargs: Any) -> list:
        nodes = list(original(node, **kwargs))
        if node["name"] == m.node:
            nodes = m.inject(nodes, kwargs["initializer"])
        return nodes

    with wrong_translation(m.op, translation, since=12):
        yield


# --- onnx2x: wrap one converter -----------------------------------------------------------------
def with_attributes(**overrides: Any) -> Callable[..., Any]:
    """The converter reads ``overrides`` instead of the node's own attributes."""
    def inject(ctx: Any, convert: Callable[[Any], Any]) -> Any:
        ctx._attrs = {**ctx._attrs, **overrides}
        return convert(ctx)
    return inject


def then(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """The converter's result passed through ``fn(ctx, result)``."""
    def inject(ctx: Any, convert: Callable[[Any], Any]) -> Any:
        return fn(ctx, convert(ctx))
    return inject


def instead(fn: Callable[[Any], Any]) -> Callable[..., Any]:
    """Another conversion altogether."""
    def inject(ctx: Any, convert: Callable[[Any], Any]) -> Any:
        return fn(ctx)
    return inject


@contextlib.contextmanager
def torch_injected(m: Mistranslation, target: str) -> Iterator[None]:
    """``onnx2x``'s converter of ``m.op`` wrapped by ``m.inject`` for the node named ``target``."""
    from onnx2x.torch import registry

    real = registry.lookup

    def lookup(op_type: str, opset: int, *, domain: str = "", node_name: Optional[str] = None) -> Any:
        conv = real(op_type, opset, domain=domain, node_name=node_name)
        if op_type != m.op or node_name != target:
            return conv
        return registry.Converter(lambda ctx: m.inject(ctx, conv.fn), conv.since, conv.foldable)

    registry.lookup = lookup
    try:
        yield
    finally:
        registry.lookup = real


def _channel_off(ctx: Any, result: Any) -> Any:
    import torch

    scale = torch.ones((1, 32, 1, 1))
    scale[0, 5] = 1.01
    return ctx.call(torch.mul, result, scale)


def _add_as_sub(ctx: Any) -> Any:
    import torch

    return ctx.call(torch.sub, ctx.input(0), ctx.input(1))


def _clip_without_min(ctx: Any) -> Any:
    import torch

    return ctx.call(torch.clamp, ctx.input(0), max=float(ctx.const(2)))


def _concat_reversed(ctx: Any) -> Any:
    import torch

    return ctx.call(torch.cat, list(reversed(ctx.inputs)), dim=int(ctx.attr("axis")))


# --- the catalogue ------------------------------------------------------------------------------
CATALOGUE: list[Mistranslation] = [
    # MXNet -> ONNX
    Mistranslation("bn-epsilon-default", "mxnet", "BatchNorm", "bn1a_fwd",
                   "BatchNorm epsilon taken from the symbol API's default (1e-3), not the layer's 1e-5",
                   set_attribute("BatchNormalization", "epsilon", 1e-3)),
    Mistranslation("bn-fix-gamma", "mxnet", "BatchNorm", "bn2_fwd",
                   "BatchNorm gamma replaced by ones (fix_gamma misread)", batchnorm_fix_gamma_ignored),
    Mistranslation("bn-mean-var-swapped", "mxnet", "BatchNorm", "bn0_fwd",
                   "BatchNorm running mean and variance swapped", swap_inputs("BatchNormalization", 3, 4)),
    Mistranslation("conv-pad-off-by-one", "mxnet", "Convolution", "conv1a_fwd",
                   "Convolution padding on the wrong side (begin 0, end 2 for 1, 1)",
                   set_attribute("Conv", "pads", [0, 0, 2, 2])),
    Mistranslation("conv-weight-transposed", "mxnet", "Convolution", "conv1b_fwd",
                   "Convolution kernel read transposed (height and width swapped)",
                   transpose_input("Conv", 1, [0, 1, 3, 2])),
    Mistranslation("conv-dilation-dropped", "mxnet", "Convolution", "conv0_fwd",
                   "Convolution dilation 2 where MXNet has 1", set_attribute("Conv", "dilations", [2, 2])),
    Mistranslation("conv-bias-dropped", "mxnet", "Convolution", "conv_seg_fwd",
                   "Convolution bias left out", drop_input("Conv", 2)),
    Mistranslation("conv-channel-1pct", "mxnet", "Convolution", "conv2_fwd",
                   "one output channel of a convolution 1% off", scale_channel("Conv", 32, 7, 1.01)),
    Mistranslation("pool-ceil-flipped", "mxnet", "Pooling", "pool0",
                   "pooling_convention='full' exported as floor mode", set_attribute("MaxPool", "ceil_mode", 0)),
    Mistranslation("avgpool-include-pad", "mxnet", "Pooling", "avg2",
                   "average pooling counts the padding (count_include_pad ignored)",
                   set_attribute("AveragePool", "count_include_pad", 1)),
    Mistranslation("gap-as-max", "mxnet", "Pooling", "gap",
                   "global average pooling exported as global max pooling",
                   retype("GlobalAveragePool", "GlobalMaxPool")),
    Mistranslation("softmax-wrong-axis", "mxnet", "softmax", "seg",
                   "softmax over the last axis instead of the channels", set_attribute("Softmax", "axis", 3)),
    Mistranslation("relu-as-sigmoid", "mxnet", "Activation", "relu0",
                   "Activation act_type read wrong (sigmoid for relu)", retype("Relu", "Sigmoid")),
    Mistranslation("leaky-slope-default", "mxnet", "LeakyReLU", "leaky1",
                   "LeakyReLU slope left at ONNX's default 0.01 instead of 0.25",
                   set_attribute("LeakyRelu", "alpha", 0.01)),
    Mistranslation("resize-wrong-mode", "mxnet", "UpSampling", "up2",
                   "nearest-neighbour upsampling exported as bilinear", set_attribute("Resize", "mode", "linear")),
    Mistranslation("slice-one-short", "mxnet", "slice_axis", "slice_w",
                   "a slice one element short (end exclusive read as inclusive)", shift_initializer("Slice", 2, -1)),
    Mistranslation("concat-order", "mxnet", "Concat", "concat3",
                   "Concat inputs in the wrong order", swap_inputs("Concat", 0, 1)),
    Mistranslation("add-as-sub", "mxnet", "elemwise_add", "add1",
                   "residual addition exported as subtraction", retype("Add", "Sub")),
    Mistranslation("clip-min-dropped", "mxnet", "clip", "clip3",
                   "clip's lower bound dropped (relu6 became min(x, 6))", clamp_min_dropped),
    Mistranslation("fc-bias-dropped", "mxnet", "FullyConnected", "fc_cls_fwd",
                   "FullyConnected bias left out", drop_input("Gemm", 2)),
    # ONNX -> PyTorch (nodes named by the ONNX value they compute)
    Mistranslation("torch-conv-pads", "torch", "Conv", "conv1a_fwd",
                   "Conv pads read as [begin, begin, end, end] in the wrong order", with_attributes(pads=[0, 0, 2, 2])),
    Mistranslation("torch-leaky-alpha", "torch", "LeakyRelu", "leaky1",
                   "LeakyRelu alpha ignored (torch's default 0.01)", with_attributes(alpha=0.01)),
    Mistranslation("torch-softmax-axis", "torch", "Softmax", "seg",
                   "Softmax axis ignored (last axis)", with_attributes(axis=-1)),
    Mistranslation("torch-resize-mode", "torch", "Resize", "up2",
                   "Resize mode ignored (bilinear)", with_attributes(mode="linear")),
    Mistranslation("torch-avgpool-pad", "torch", "AveragePool", "avg2",
                   "AveragePool count_include_pad ignored", with_attributes(count_include_pad=1)),
    Mistranslation("torch-maxpool-ceil", "torch", "MaxPool", "pool0",
                   "MaxPool ceil_mode ignored", with_attributes(ceil_mode=0)),
    Mistranslation("torch-bn-epsilon", "torch", "BatchNormalization", "bn2_fwd",
                   "BatchNormalization epsilon read from momentum (0.9)", with_attributes(epsilon=0.9)),
    Mistranslation("torch-gemm-beta", "torch", "Gemm", "fc_cls_fwd",
                   "Gemm beta ignored (bias dropped)", with_attributes(beta=0.0)),
    Mistranslation("torch-conv-channel", "torch", "Conv", "conv3_fwd",
                   "one output channel 1% off", then(_channel_off)),
    Mistranslation("torch-add-as-sub", "torch", "Add", "add1",
                   "Add converted as subtraction", instead(_add_as_sub)),
    Mistranslation("torch-clip-min", "torch", "Clip", "clip3",
                   "Clip min input ignored", instead(_clip_without_min)),
    Mistranslation("torch-concat-order", "torch", "Concat", "concat3",
                   "Concat inputs reversed", instead(_concat_reversed)),
]
