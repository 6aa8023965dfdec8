"""Which tensor names still mean the same value after a graph rewrite such as onnx-simplifier.

A converter records which ONNX tensor holds which source-framework value (MXNet's internals);
the locator compares them. Simplification keeps many names but not always their meaning:
``fuse_bn_into_conv`` leaves the Conv's output name on what is now Conv+BatchNormalization, and
``fuse_add_bias_into_conv`` does the same with a bias Add. Comparing the pre-BatchNorm MXNet
value with that tensor would blame a correct Conv.

Each name of the rewritten graph is judged from its producer against the original's producer of
that name, in topological order:

- *changed*: another op, domain, output slot, attribute or input count; a constant input with
  other content; or an input of the same name that is itself changed. A fused node is changed,
  and so is everything that reads a changed value under its old name;
- *unknown*: otherwise, but some input was renamed. Consumers of a fused-away name read the
  fused node's output instead (same value when the rewrite preserves the graph's function, which
  this cannot check locally). The name is dropped but not held against its consumers;
- *same*: everything equal, constants by content (shape, type and CRC-32; a value computed from
  constants alone may be folded into a literal). These survive.

A fusion only swallows a node whose output has one consumer, so no same-named reader of a fused
name is left to be misjudged. Dropping a name costs the locator one comparison; keeping a stale
one would make it blame the wrong node.
"""
from __future__ import annotations

import zlib
from typing import Optional

import onnx
from onnx import numpy_helper

from common.simplify import constant_nodes


class _Graph:
    """Producers and constant values of one graph, looked up by tensor name."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.producer: dict[str, tuple[onnx.NodeProto, int]] = {}
        for node in graph.node:
            for slot, name in enumerate(node.output):
                if name:
                    self.producer[name] = (node, slot)
        self.initializers = {t.name: t for t in graph.initializer}
        self._fingerprints: dict[str, Optional[tuple]] = {}
        self.constant_derived = set(self.initializers)
        self.constant_derived.update(o for node in constant_nodes(graph) for o in node.output if o)

    def fingerprint(self, name: str) -> Optional[tuple]:
        """:func:`_fingerprint` of ``name``'s literal value (None when it has none), computed once."""
        if name not in self._fingerprints:
            literal = self.literal(name)
            self._fingerprints[name] = None if literal is None else _fingerprint(literal)
        return self._fingerprints[name]

    def literal(self, name: str) -> Optional[onnx.TensorProto]:
        """The value of ``name`` when it is written in the graph (initializer or Constant node)."""
        if name in self.initializers:
            return self.initializers[name]
        node = self.producer.get(name, (None, 0))[0]
        if node is not None and node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    return attr.t
        return None


def _fingerprint(tensor: onnx.TensorProto) -> tuple:
    """Type, shape and a CRC of the content: one transient copy of the bytes at a time (comparing
    two ``raw_data`` directly would hold both, twice the largest weight)."""
    if tensor.HasField("raw_data"):
        data = tensor.raw_data
        content = (len(data), zlib.crc32(data))
        del data
    elif tensor.data_type == onnx.TensorProto.STRING:
        content = (len(tensor.string_data), zlib.crc32(repr(list(tensor.string_data)).encode()))
    else:
        array = numpy_helper.to_array(tensor)
        content = (array.nbytes, zlib.crc32(array.tobytes()))
    return (tuple(tensor.dims), tensor.data_type, *content)


SAME, UNKNOWN, CHANGED = 0, 1, 2


def _input_state(name_b: str, name_a: str, before: _Graph, after: _Graph, states: dict[str, int]) -> int:
    literal_b, literal_a = before.fingerprint(name_b), after.fingerprint(name_a)
    if literal_b is not None and literal_a is not None:
        return SAME if literal_b == literal_a else CHANGED
    if name_b != name_a:
        return UNKNOWN
    if literal_a is not None:  # folded: the same value if the original was computed from constants only
        return SAME if name_b in before.constant_derived else CHANGED
    if literal_b is not None:
        return UNKNOWN
    return CHANGED if states.get(name_a) == CHANGED else SAME  # an unknown input is not held against it


def _producer_state(name: str, before: _Graph, after: _Graph, states: dict[str, int]) -> int:
    node_b, slot_b = before.producer[name]
    node_a, slot_a = after.producer[name]
    if (node_b.op_type, node_b.domain, slot_b, len(node_b.input)) != \
            (node_a.op_type, node_a.domain, slot_a, len(node_a.input)):
        return CHANGED
    attrs_b = sorted((a.name, a.SerializeToString(deterministic=True)) for a in node_b.attribute)
    attrs_a = sorted((a.name, a.SerializeToString(deterministic=True)) for a in node_a.attribute)
    if attrs_b != attrs_a:
        return CHANGED
    return max((_input_state(b, a, before, after, states) for b, a in zip(node_b.input, node_a.input) if b or a),
               default=SAME)


def surviving_tensors(before: onnx.ModelProto, after: onnx.ModelProto) -> set[str]:
    """Names of ``after``'s node outputs, graph inputs and initializers that hold the same value
    as the tensor of that name in ``before`` (``after`` computing the same function, as a
    simplifier's output does)."""
    graph_b, graph_a = _Graph(before.graph), _Graph(after.graph)
    inputs_b = {i.name for i in before.graph.input} - set(graph_b.initializers)
    states = {i.name: SAME for i in after.graph.input if i.name in inputs_b}
    for node in after.graph.node:  # topological order
        for name in node.output:
            if name in graph_b.producer:
                states[name] = _producer_state(name, graph_b, graph_a, states)
            elif name:
                states[name] = UNKNOWN
    survivors = {name for name, state in states.items() if state == SAME}
    for name in graph_a.initializers:
        if name in graph_b.initializers and graph_b.fingerprint(name) == graph_a.fingerprint(name):
            survivors.add(name)
    # a rewrite preserves the graph's function: same-named outputs hold the same values
    survivors.update(o.name for o in after.graph.output if o.name in {p.name for p in before.graph.output})
    return survivors
