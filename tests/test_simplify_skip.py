"""onnx-simplifier is not run on a graph it would hand back unchanged (``common.simplify.nothing_to_simplify``),
and conversion pauses the cyclic garbage collector (``common.gc_pause``).

The predicate is checked against onnxsim itself: on the plain graph onnxsim changes nothing (and
the conversion without it is the same module), and on each graph the predicate sends to onnxsim,
onnxsim does change something.
"""
from __future__ import annotations

import gc
import importlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from common.gc_pause import gc_paused
from common.simplify import nothing_to_simplify, simplify
from onnx2x.torch import convert

convert_module = importlib.import_module("onnx2x.torch.convert")  # the package re-exports the function under that name

X = np.random.default_rng(1).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)


def _plain(extra: list = (), extra_inits: list = (), out: str = "y", opset: int = 13) -> onnx.ModelProto:
    """Conv, BatchNormalization, Relu, MaxPool, Concat of two, Transpose, Reshape by a constant
    shape, Gemm: what a convolutional network exported for inference is made of (weights over
    1 KB: onnxsim sees the skeleton only, as with real models, so it folds no BatchNormalization)."""
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.normal(0, 0.3, shape).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("w", f32(16, 3, 3, 3)), ("b", f32(16)), ("scale", 1 + f32(16)), ("bias", f32(16)), ("mean", f32(16)),
        ("var", 1 + np.abs(f32(16))), ("fc", f32(10, 512)), ("fc_b", f32(10))]]
    inits.append(numpy_helper.from_array(np.array([-1, 512], np.int64), "flat"))
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Concat", ["p", "p"], ["cat"], axis=1),
             helper.make_node("Transpose", ["cat"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Reshape", ["t", "flat"], ["v"]),
             helper.make_node("Gemm", ["v", "fc", "fc_b"], ["g"], transB=1)] + list(extra)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", "K"])], inits + list(extra_inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_onnxsim_leaves_the_plain_graph_as_it_is_and_conversion_skips_it(monkeypatch) -> None:
    model = _plain([helper.make_node("Softmax", ["g"], ["y"])])
    assert nothing_to_simplify(model, folds_constants=False)
    assert _ops(simplify(model)) == _ops(model)  # the claim the skip rests on
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    skipped = convert(model)
    monkeypatch.setattr(convert_module, "nothing_to_simplify", lambda *a, **k: False)
    simplified = convert(model)
    assert skipped.code == simplified.code
    with torch.no_grad():
        np.testing.assert_allclose(skipped(torch.from_numpy(X)).numpy(), want, rtol=1e-5, atol=1e-6)


def _const(name: str, value: list) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, np.int64), name)


CASES = {
    "identity-transpose": ([helper.make_node("Transpose", ["g"], ["y"], perm=[0, 1])], []),
    "transpose-of-transpose": ([helper.make_node("Transpose", ["g"], ["t2"], perm=[1, 0]),
                                helper.make_node("Transpose", ["t2"], ["y"], perm=[1, 0])], []),
    "concat-of-one": ([helper.make_node("Concat", ["g"], ["y"], axis=1)], []),
    "concat-of-concat": ([helper.make_node("Concat", ["g", "g"], ["c2"], axis=1),
                          helper.make_node("Concat", ["c2", "g"], ["y"], axis=1)], []),
    "identity": ([helper.make_node("Identity", ["g"], ["y"])], []),
    "dead-node": ([helper.make_node("Relu", ["g"], ["y"]), helper.make_node("Sigmoid", ["g"], ["unread"])], []),
    "shape": ([helper.make_node("Shape", ["g"], ["s"]), helper.make_node("Reshape", ["g", "s"], ["y"])], []),
    "constant-inputs": ([helper.make_node("Add", ["k", "k"], ["k2"]), helper.make_node("Reshape", ["g", "k2"], ["y"])],
                        [_const("k", [-1, 5])]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_graphs_onnxsim_would_change_are_given_to_it(case: str) -> None:
    nodes, inits = CASES[case]
    model = _plain(nodes, inits)
    assert not nothing_to_simplify(model, folds_constants=case != "constant-inputs")
    if case == "constant-inputs":  # the converter computes it: no need for onnxsim
        assert nothing_to_simplify(model, folds_constants=True)
    assert _ops(simplify(model)) != _ops(model)  # onnxsim did have something to do


def test_unused_initializers_go_to_onnxsim() -> None:
    model = _plain([helper.make_node("Relu", ["g"], ["y"])], [_const("unused", [1, 2])])
    assert not nothing_to_simplify(model, folds_constants=True)
    names = lambda m: {t.name for t in m.graph.initializer}  # noqa: E731
    assert "unused" in names(model) and "unused" not in names(simplify(model))


def test_other_domains_and_functions_go_to_onnxsim() -> None:
    model = _plain([helper.make_node("Relu", ["g"], ["y"])])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert not nothing_to_simplify(model, folds_constants=True)


def test_gc_is_paused_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with gc_paused():
            raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller's own choice stays
    finally:
        gc.enable()


def test_conversion_runs_with_the_collector_paused(monkeypatch) -> None:
    seen = []
    real = convert_module._convert_owned

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(convert_module, "_convert_owned", spy)
    convert(_plain([helper.make_node("Relu", ["g"], ["y"])]))
    assert seen == [False] and gc.isenabled()
