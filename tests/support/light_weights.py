"""Real-size weights for onnx's "light" model-zoo graphs.

The light graphs (``onnx/backend/test/data/light/light_*.onnx``) keep the architecture of
resnet50, vgg19, ... but store no weights: each weight is ``ConstantOfShape(<name>__SHAPE)``
filling a tensor with 0.02. Constant weights make every channel identical and the logits so
large that the final softmax amplifies rounding noise, which hides real differences and makes
honest float differences look like bugs. :func:`with_random_weights` replaces every such node by
a seeded random initializer of the same name and shape, scaled so activations stay of order one
(He scaling for Conv/Gemm weights, halved in residual graphs; positive variances for
BatchNormalization).
"""
from __future__ import annotations

import glob
import os
from typing import Optional

import numpy as np
import onnx
from onnx import numpy_helper

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT_MODELS = tuple(sorted(os.path.basename(p)[len("light_"):-len(".onnx")]
                            for p in glob.glob(os.path.join(LIGHT_DIR, "light_*.onnx"))))


def light_path(name: str) -> str:
    return os.path.join(LIGHT_DIR, f"light_{name}.onnx")


def _weight(rng: np.random.Generator, shape: tuple[int, ...], uses: list[tuple[onnx.NodeProto, int]],
            conv_gain: float = 1.0) -> np.ndarray:
    node, slot = uses[0] if uses else (None, -1)
    op = node.op_type if node is not None else ""
    if op == "BatchNormalization" and slot in (1, 4):  # scale, variance: positive, near 1
        return rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
    if op == "BatchNormalization":  # bias, mean
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if len(shape) >= 2:
        if op == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            fan_in = shape[1] if (slot == 1 and trans_b) or slot == 0 else shape[0]
        else:
            fan_in = int(np.prod(shape[1:]))
        gain = conv_gain if op == "Conv" else 1.0
        return (rng.standard_normal(shape) * gain * np.sqrt(2.0 / max(fan_in, 1))).astype(np.float32)
    return (0.01 * rng.standard_normal(shape)).astype(np.float32)


def with_random_weights(model: onnx.ModelProto, seed: int = 0, *, dynamic_batch: bool = False) -> onnx.ModelProto:
    """A copy of a light model whose ConstantOfShape weights are seeded random initializers.

    ``dynamic_batch`` declares the batch dimension of inputs and outputs as ``N`` and turns the
    graphs' fixed flatten shapes ``[1, ...]`` into ``[-1, ...]`` so the model runs at any batch.
    """
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    shapes = {t.name: tuple(int(v) for v in numpy_helper.to_array(t)) for t in graph.initializer
              if t.name.endswith("__SHAPE")}
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, slot))
    # Residual sums (caffe2's resnet50, shufflenet) double the variance per block: halve conv
    # weights there so the logits stay of order one instead of saturating the softmax.
    conv_gain = 0.5 if any(n.op_type == "Sum" for n in graph.node) else 1.0
    keep_nodes, new_inits = [], []
    for node in graph.node:
        shape: Optional[tuple[int, ...]] = shapes.get(node.input[0]) if node.op_type == "ConstantOfShape" and node.input else None
        if shape is None:
            keep_nodes.append(node)
            continue
        name = node.output[0]
        new_inits.append(numpy_helper.from_array(_weight(rng, shape, uses.get(name, []), conv_gain), name))
    del graph.node[:]
    graph.node.extend(keep_nodes)
    used = {i for n in keep_nodes for i in n.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    # Old IR-3 graphs list every weight as an input too; keep only the real data inputs.
    initialized = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name in used and v.name not in initialized]
    del graph.input[:]
    graph.input.extend(inputs)
    out.ir_version = max(out.ir_version, 4)  # IR 3 required every initializer to be an input too
    if dynamic_batch:
        _make_batch_dynamic(graph)
    return out


def _make_batch_dynamic(graph: onnx.GraphProto) -> None:
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "N"
    reshape_shapes = {n.input[1] for n in graph.node if n.op_type == "Reshape" and len(n.input) > 1}
    for k, t in enumerate(graph.initializer):
        if t.name in reshape_shapes:
            shape = numpy_helper.to_array(t).copy()
            if shape.size and shape[0] == 1:
                shape[0] = -1
                graph.initializer[k].CopyFrom(numpy_helper.from_array(shape, t.name))


def load_light(name: str, seed: int = 0, *, dynamic_batch: bool = False) -> onnx.ModelProto:
    """The light graph ``name`` with real-size seeded random weights."""
    return with_random_weights(onnx.load(light_path(name)), seed, dynamic_batch=dynamic_batch)


def light_feed(model: onnx.ModelProto, batch: Optional[int] = None, seed: int = 0) -> np.ndarray:
    """A seeded image batch in the model's input shape (first dimension replaced by ``batch``)."""
    inits = {t.name for t in model.graph.initializer}
    value = next(v for v in model.graph.input if v.name not in inits)
    shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
    if batch is not None:
        shape[0] = batch
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
