"""onnxsim on the skeleton: large weights hidden from it, except those a constant subgraph reads."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.simplify import LARGE_INITIALIZER_BYTES, simplify, simplify_tracking_names

X = np.random.default_rng(1).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)


def _model() -> onnx.ModelProto:
    """conv1's weight is sliced out of one flat parameter vector (as MXNet's RNN exports do);
    conv2's weight is read directly."""
    rng = np.random.default_rng(0)
    flat = rng.normal(0, 0.3, 2000).astype(np.float32)
    w2 = rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)
    consts = [numpy_helper.from_array(flat, "flat"), numpy_helper.from_array(w2, "w2"),
              numpy_helper.from_array(np.array([0], np.int64), "start"),
              numpy_helper.from_array(np.array([108], np.int64), "end"),
              numpy_helper.from_array(np.array([4, 3, 3, 3], np.int64), "w1_shape")]
    nodes = [helper.make_node("Slice", ["flat", "start", "end"], ["w1_flat"]),
             helper.make_node("Reshape", ["w1_flat", "w1_shape"], ["w1"]),
             helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _run(model: onnx.ModelProto) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]


@pytest.mark.parametrize("keep_foldable", [False, True])
def test_only_weights_constant_subgraphs_read_are_shown_to_onnxsim(keep_foldable, onnxsim_inputs):
    model = _model()
    expected = _run(model)
    out = simplify(model, keep_foldable=keep_foldable)
    (given,) = onnxsim_inputs
    shown = {t.name for t in given.graph.initializer if numpy_helper.to_array(t).nbytes > LARGE_INITIALIZER_BYTES}
    assert shown == ({"flat"} if keep_foldable else set())
    assert "w2" in {i.name for i in given.graph.input}
    ops = [n.op_type for n in out.graph.node]
    assert ops == (["Conv", "Relu", "Conv"] if keep_foldable else ["Slice", "Reshape", "Conv", "Relu", "Conv"])
    np.testing.assert_allclose(_run(out), expected, rtol=1e-6, atol=1e-6)


def test_tracked_names_are_judged_on_the_skeletons():
    model = _model()
    out, survivors = simplify_tracking_names(model, keep_foldable=True)
    assert survivors is not None
    # conv1 now reads a folded initializer with the same content: same value; the rest unchanged
    assert {"x", "w2", "c1", "r1", "y"} <= survivors
    np.testing.assert_allclose(_run(out), _run(_model()), rtol=1e-6, atol=1e-6)


def test_native_output_is_captured_not_printed(capfd):
    """What C/C++ code writes to the process's descriptors (onnxsim's per-node "failed to run ...
    skip" lines) is captured for the log, buffered C stdio included, and nothing leaks."""
    import ctypes
    import os

    from common.native_output import captured_native_output

    capfd.readouterr()
    printed: list[str] = []
    with captured_native_output(printed):
        os.write(2, b"WARNING: failed to run \"Gather\" op, skip...\n")
        ctypes.CDLL(None).printf(b"buffered by C stdio\n")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert "failed to run" in printed[0] and "buffered by C stdio" in printed[0]
    os.write(1, b"after\n")
    assert capfd.readouterr().out == "after\n"


def _unsorted_model() -> onnx.ModelProto:
    """A keep_io_types float16 conversion's shape (onnxruntime.transformers' float16): the input Cast is
    appended after the nodes that read it; an If branch reads a value produced after the If."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float16), "w")
    one = numpy_helper.from_array(np.array(1.0, dtype=np.float16), "one")
    branch = lambda name, op: helper.make_graph(  # noqa: E731 - two tiny subgraphs
        [helper.make_node(op, ["h", "one"], [f"{name}_out"])], name, [],
        [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT16, None)])
    nodes = [
        helper.make_node("MatMul", ["x16", "w"], ["mm"]),
        helper.make_node("If", ["cond"], ["picked"], then_branch=branch("then", "Add"), else_branch=branch("else", "Sub")),
        helper.make_node("Relu", ["mm"], ["h"]),
        helper.make_node("Cast", ["picked"], ["y"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),  # the reader comes first
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
                                           helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w, one])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_nodes_out_of_order_are_sorted_for_onnxsim(caplog):
    from common.simplify import sort_nodes

    model = _unsorted_model()
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    assert sort_nodes(graph) and not sort_nodes(graph)  # sorted once, then already in order
    assert [n.op_type for n in graph.node] == ["Cast", "MatMul", "Relu", "If", "Cast"]
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)}
    with caplog.at_level("WARNING"):
        simplified = simplify(model, label="unsorted")
    assert not [r for r in caplog.records if "onnxsim" in r.getMessage()], caplog.text
    assert simplified is not model  # simplified, not handed back with a warning
    for cond in (True, False):
        run = {**feeds, "cond": np.array(cond)}
        want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, run)[0]
        got = ort.InferenceSession(simplified.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, run)[0]
        np.testing.assert_array_equal(got, want)


def test_a_cycle_is_left_for_the_converter_to_name():
    from common.simplify import sort_nodes

    nodes = [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])])
    assert not sort_nodes(graph) and [n.output[0] for n in graph.node] == ["a", "b"]
