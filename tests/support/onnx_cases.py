"""Small ONNX models converted with onnx2x and compared, output by output, with a reference.

One place for what the onnx2x op tests all do: build a model (one node from example inputs, or
typed nodes), run the reference (onnxruntime, or onnx's ReferenceEvaluator where onnxruntime lacks
the op or opset), convert with ``onnx2x.torch.convert`` and require the same number of outputs,
the same dtype and shape, floats within the caller's tolerance and everything else exact.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnx2x.torch import convert


def node_model(op: str, feeds: dict[str, Optional[np.ndarray]], outputs: Sequence[str], attrs: dict, *,
               opset: int, ir_version: int, consts: Optional[dict[str, np.ndarray]] = None,
               infer_output_types: bool = True) -> onnx.ModelProto:
    """A model of one ``op`` node whose graph inputs are typed after the example ``feeds`` (a ``None``
    feed is an omitted optional input) and ``consts`` become initializers. Outputs named ``""`` are
    not produced; the others are declared untyped, then typed by ONNX shape inference when asked."""
    consts = consts or {}
    names = [k if v is not None else "" for k, v in feeds.items()] + list(consts)
    node = helper.make_node(op, names, list(outputs), **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in feeds.items() if v is not None],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs if o],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    if infer_output_types:
        inferred = onnx.shape_inference.infer_shapes(model)
        for out, inf in zip(model.graph.output, inferred.graph.output):
            out.type.CopyFrom(inf.type)
    return model


def typed_model(nodes: Sequence[onnx.NodeProto], inputs: Iterable[tuple], outputs: Iterable[tuple], *,
                initializers: Iterable[tuple] = (), opset: int, ir_version: int = 9) -> onnx.ModelProto:
    """A model of ``nodes`` with inputs/outputs declared as ``(name, TensorProto type, shape)`` and
    ``initializers`` given as ``(name, value)``."""
    graph = helper.make_graph(
        list(nodes), "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in initializers],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def reference_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray], reference: str = "ort") -> list:
    """Outputs of ``model`` by onnxruntime (``"ort"``) or by onnx's ReferenceEvaluator (``"onnx"``)."""
    if reference == "ort":
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)
    if reference == "onnx":
        return ReferenceEvaluator(model).run(None, feeds)
    raise ValueError(f"unknown reference {reference!r} (expected 'ort' or 'onnx')")


def run_converted(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[torch.fx.GraphModule, list]:
    """(the onnx2x module, its outputs as numpy arrays), fed in the order of the graph inputs."""
    gm = convert(model, simplify=False)
    args = []
    for graph_input in model.graph.input:
        value = feeds[graph_input.name]
        args.append(torch.from_numpy(value if value.flags.c_contiguous else value.copy()))
    with torch.no_grad():
        out = gm(*args)
    outs = list(out) if isinstance(out, tuple) else [out]
    return gm, [o.numpy() for o in outs]


def assert_outputs_match(got: Sequence[np.ndarray], expected: Sequence, *, rtol: float, atol: float,
                         in_float64: bool = False) -> None:
    """Same count, dtype and shape; floats within ``rtol``/``atol`` (compared in float64 when asked,
    which matters for float16 outputs), every other dtype exactly equal."""
    assert len(got) == len(expected), (len(got), len(expected))
    for g, e in zip(got, expected):
        e = np.asarray(e)
        assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, e.dtype, g.shape, e.shape)
        if e.dtype.kind == "f":
            if in_float64:
                g, e = g.astype(np.float64), e.astype(np.float64)
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(g, e)


def check_converted(model: onnx.ModelProto, feeds: dict[str, Optional[np.ndarray]], *, rtol: float, atol: float,
                    reference: str = "ort", in_float64: bool = False) -> torch.fx.GraphModule:
    """Run the reference and the onnx2x conversion of ``model`` on ``feeds`` (``None`` feeds, i.e.
    omitted inputs, are dropped) and compare every output; returns the converted module."""
    feeds = {k: v for k, v in feeds.items() if v is not None}
    expected = reference_outputs(model, feeds, reference)
    gm, got = run_converted(model, feeds)
    assert_outputs_match(got, expected, rtol=rtol, atol=atol, in_float64=in_float64)
    return gm
