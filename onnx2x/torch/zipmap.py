"""ai.onnx.ml ZipMap at a graph output: the classifier probabilities as one {label: probability}
dict per row, which is what skl2onnx writes by default and what onnxruntime returns.

Why a graph rewrite rather than a converter: ZipMap's output type, seq(map(int64|string, float)),
has no form in onnx-ir (nor in PyTorch tensors), so the graph could not even be loaded. Before
anything else, :func:`split_zipmaps` turns each ZipMap whose output is only a graph output into an
Identity of its probabilities (a float tensor) and records the labels in the model's metadata;
after the graph is built, :func:`zip_outputs` makes those outputs dicts again
(``runtime/ml.zip_map``), so the module returns what onnxruntime returns.
"""
from __future__ import annotations

import logging
from typing import Any

import onnx
import torch.fx as fx

from common.metadata import json_value, set_json

from .runtime import ml as rt

log = logging.getLogger(__name__)

ZIPMAP_KEY = "onnx2x.zipmap_outputs"


def split_zipmaps(proto: onnx.ModelProto, *, copy: bool) -> onnx.ModelProto:
    """``proto`` with every ZipMap that only feeds a graph output replaced by an Identity of its
    input, that output declared float, and {output: labels} under :data:`ZIPMAP_KEY`. ``copy``:
    rewrite a copy (the caller's proto stays as given) when there is anything to rewrite."""
    graph = proto.graph
    outputs = {o.name for o in graph.output}
    read = {name for node in graph.node for name in node.input}
    found = [i for i, node in enumerate(graph.node) if node.op_type == "ZipMap" and node.domain == "ai.onnx.ml"
             and len(node.output) == 1 and node.output[0] in outputs and node.output[0] not in read]
    if not found:
        return proto
    if copy:
        out = onnx.ModelProto()
        out.CopyFrom(proto)
        proto, graph = out, out.graph
    labels: dict[str, Any] = {}
    for i in found:
        node = graph.node[i]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if "classlabels_strings" in attrs:
            labels[node.output[0]] = [v.decode("utf-8") if isinstance(v, bytes) else str(v)
                                      for v in attrs["classlabels_strings"]]
        else:
            labels[node.output[0]] = [int(v) for v in attrs.get("classlabels_int64s", [])]
        identity = onnx.helper.make_node("Identity", list(node.input), list(node.output), name=node.name)
        graph.node[i].CopyFrom(identity)
        declared = next(o for o in graph.output if o.name == node.output[0])
        classes = len(labels[node.output[0]])
        declared.type.CopyFrom(onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, [None, classes]))
    set_json(proto, ZIPMAP_KEY, labels)
    log.info("ZipMap output(s) %s: the module returns one {label: probability} dict per row, as onnxruntime "
             "does", ", ".join(labels))
    return proto


def zip_outputs(gm: fx.GraphModule, metadata: Any) -> None:
    """Make the outputs :func:`split_zipmaps` recorded ({name: labels} in ``metadata``) dicts again."""
    labels = json_value(metadata, ZIPMAP_KEY)
    if not labels:
        return
    out = next(n for n in gm.graph.nodes if n.op == "output")
    values = out.args[0]
    several = isinstance(values, (tuple, list))
    values = list(values) if several else [values]
    for position, name in enumerate(gm.onnx_output_names):
        if name in labels and isinstance(values[position], fx.Node):
            with gm.graph.inserting_before(out):
                node = gm.graph.call_function(rt.zip_map, (values[position], tuple(labels[name])))
            node.meta["is_wrapped"] = True  # a leaf call if the module is traced again
            values[position] = node
    out.args = (tuple(values) if several else values[0],)
