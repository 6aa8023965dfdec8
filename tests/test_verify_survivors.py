"""surviving_tensors: after onnxsim, exactly the names whose values did not change are kept."""
from __future__ import annotations

import numpy as np
import onnx
import onnxsim
from onnx import TensorProto, helper, numpy_helper

from common.verify.runners import OnnxRuntimeRunner
from common.verify.survivors import surviving_tensors

X = np.random.default_rng(1).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)


def _model() -> onnx.ModelProto:
    """conv -> bn -> relu -> sigmoid -> identity -> conv2 -> (+ bias) -> tanh: onnxsim folds the
    BatchNorm into conv and the bias Add into conv2, both under the Conv's own output name."""
    rng = np.random.default_rng(0)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.uniform(0.5, 1.5, size=shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["r"], ["s"], name="sigmoid"),
        helper.make_node("Identity", ["s"], ["i"], name="identity"),
        helper.make_node("Conv", ["i", "W2"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c2", "bias2"], ["a2"], name="add"),
        helper.make_node("Tanh", ["a2"], ["out"], name="tanh"),
    ]
    inits = [init("W", 4, 3, 3, 3), init("gamma", 4), init("beta", 4), init("mean", 4), init("var", 4),
             init("W2", 4, 4, 1, 1), init("bias2", 4, 1, 1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_fused_names_are_dropped_and_the_rest_kept():
    before = _model()
    after, ok = onnxsim.simplify(before)
    assert ok and {n.op_type for n in after.graph.node} == {"Conv", "Relu", "Sigmoid", "Tanh"}
    survivors = surviving_tensors(before, after)
    assert survivors == {"x", "W2", "s", "out"}
    # the judgement matches the values: survivors equal, the fused Conv outputs do not
    values_b = OnnxRuntimeRunner(before).run({"x": X}, intermediates=True).intermediates
    values_a = OnnxRuntimeRunner(after).run({"x": X}, intermediates=True).intermediates
    for name in {"s", "out"}:
        np.testing.assert_allclose(values_a[name], values_b[name], rtol=1e-5, atol=1e-6)
    for name in {"c", "c2"}:
        assert np.abs(values_a[name] - values_b[name]).max() > 0.1


def test_an_unchanged_model_keeps_every_name():
    model = _model()
    names = {o for n in model.graph.node for o in n.output} | {"x"} | {t.name for t in model.graph.initializer}
    assert surviving_tensors(model, model) == names


def test_a_changed_value_taints_every_same_named_reader():
    """A producer whose attributes or constants changed is not the same value, and neither is
    anything computed from it (the graph's outputs are taken on trust: rewrites keep them)."""
    before = _model()
    after = onnx.ModelProto()
    after.CopyFrom(before)
    w2 = next(t for t in after.graph.initializer if t.name == "W2")
    w2.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w2) * 2, "W2"))
    assert surviving_tensors(before, after) == {"x", "W", "gamma", "beta", "mean", "var", "bias2", "c", "bn", "r",
                                                "s", "i", "out"}
    next(n for n in after.graph.node if n.name == "conv").attribute.append(helper.make_attribute("pads", [1] * 4))
    assert surviving_tensors(before, after) == {"x", "W", "gamma", "beta", "mean", "var", "bias2", "out"}
