"""Find the ranks onnx's own shape inference leaves unknown, with onnxruntime's symbolic inference.

onnx's inference propagates shape *data* through a handful of ops and gives up on some chains
exporters write: transformers' padding mask at opset 13 is gathered at indices built from two
Ranges and reshaped to the indices' own Shape, and with a dynamic batch and sequence length onnx
leaves that Reshape's output without a rank, and with it every value downstream (the whole encoder
of a BERT). A converter that does not know a rank must emit run-time shape code (slower, and
opaque to ``torch.export``). onnxruntime's symbolic shape inference
(``onnxruntime.tools.symbolic_shape_infer``, sympy) follows these chains. Only its ranks are
taken (its numbers can be guesses), only for values onnx left without a shape, and it only runs
when there are such values, on a copy of the model without its large weights.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import onnx

from .ir import without_weight_data

log = logging.getLogger(__name__)

_INT_MAX = 2**31 - 1
_MAX_PASSES = 4  # ill-formed graphs can keep it merging forever


def unknown_outputs(graph: onnx.GraphProto) -> list[str]:
    """Main-graph node outputs whose shape (rank) nothing records and something reads (a node, a
    subgraph, the graph's outputs).

    Why only those: an output nobody reads needs no shape, and zoo models leave some behind (the
    mask of SqueezeNet's Dropout-7, which onnx's inference does not shape); the symbolic pass
    (sympy's import and 20 MB with it) ran for those alone.
    """
    known = {v.name for v in list(graph.value_info) + list(graph.output) + list(graph.input)
             if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}
    known.update(t.name for t in graph.initializer)
    read = _read_names(graph) | {o.name for o in graph.output}
    return [out for node in graph.node for out in node.output if out and out not in known and out in read]


def _read_names(graph: onnx.GraphProto) -> set[str]:
    """Every value name a node of ``graph`` or of its subgraphs (If/Loop/Scan bodies) reads."""
    names: set[str] = set()
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                names |= _read_names(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    names |= _read_names(sub)
    return names


def fill_unknown_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Add to ``proto`` (in place) the ranks symbolic inference finds for values that have none.

    Shapes onnx inferred are kept as they are; the added ones have unknown dims
    (:func:`_rank_only`). Best effort: when the symbolic pass fails (an op it does not know, dims
    it cannot reconcile), ``proto`` is returned as it was.
    """
    missing = unknown_outputs(proto.graph)
    if not missing:
        return proto
    try:
        inferred = _symbolic_inference(without_weight_data(proto))
    except Exception as exc:  # noqa: BLE001 - inference is an optimisation, never a requirement
        log.debug("symbolic shape inference failed: %s", " ".join(str(exc).split())[:300])
        return proto
    found = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)
             if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}
    wanted = set(missing)
    kept = [v for v in proto.graph.value_info if not (v.name in wanted and v.name in found)]
    added = [_rank_only(found[name]) for name in missing if name in found]
    outputs = {o.name: o for o in proto.graph.output}
    for vi in added:
        if vi.name in outputs:
            outputs[vi.name].type.CopyFrom(vi.type)
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(kept + [vi for vi in added if vi.name not in outputs])
    log.debug("symbolic shape inference: %d of %d unknown shapes found", len(added), len(missing))
    return proto


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _rank_only(vi: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    """``vi`` with every dim unknown: its rank, never its numbers. The symbolic pass guesses some
    (a Split whose lengths are computed is split evenly), and a number taken for a dim that is not
    would be built into the converted module; a rank lets the converter read sizes at run time."""
    out = onnx.ValueInfoProto()
    out.CopyFrom(vi)
    for dim in out.type.tensor_type.shape.dim:
        dim.Clear()
    return out


def _symbolic_inference(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's ``SymbolicShapeInference.infer_shapes`` without its side effect (on an
    incomplete result it writes ``sym_shape_infer_temp.onnx`` into the working directory): an
    incomplete result is still worth taking.

    Dims that must be equal for the graph to run (an Expand of a sliced buffer to the input's
    sequence length) are merged into one symbol (``auto_merge``). A merge into a *number* is an
    assumption about the inputs (a broadcast of a symbolic dim against 512 may be a broadcast of
    1) that the rest of the pass builds on: the result is refused then.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference, is_literal

    inference = SymbolicShapeInference(_INT_MAX, True, False, 0)
    inference._preprocess(model)
    with _quiet(logging.getLogger(SymbolicShapeInference.__module__)):  # its doubts are not the user's
        for _ in range(_MAX_PASSES):  # each pass after the first applies the merges the last found
            if not inference.run_:
                break
            inference._infer_impl()
    if inference.run_:
        raise ValueError(f"no fixed point after {_MAX_PASSES} passes")
    fixed = sorted(str(k) for k, v in inference.suggested_merge_.items() if is_literal(v))
    if fixed:
        raise ValueError(f"it would fix dims {', '.join(fixed)} to numbers")
    inference._update_output_from_vi()
    return inference.out_mp_
