"""Graph upkeep during conversion: dead-node removal, the optional lint, and node order.

The converter's own dead-node removal must leave what ``fx.Graph.eliminate_dead_code`` leaves;
the lint runs only when asked for; nodes reach the converters producers first, whatever order
the file lists them in.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.fx as fx
from onnx import TensorProto as TP
from onnx import helper

from common import ir as cir
from common.errors import ModelLoadError
from onnx2x.torch import convert
from onnx2x.torch.graph_upkeep import CHECK_ENV, check_graph, drop_dead_nodes


def _graph_with_dead_branches() -> fx.Graph:
    g = fx.Graph()
    x = g.placeholder("x")
    live = g.call_function(torch.relu, (x,))
    dead = g.call_function(torch.sigmoid, (x,))
    g.call_function(torch.add, (dead, 1.0))  # reads the dead node: both go
    g.call_method("sum", (live,))  # unread method call
    g.call_function(torch._assert, (True, "kept: side effect"))
    g.output(live)
    return g


def _ops(g: fx.Graph) -> list[tuple[str, object]]:
    return [(n.op, n.target) for n in g.nodes]


def test_drop_dead_nodes_leaves_what_fx_leaves() -> None:
    ours, theirs = _graph_with_dead_branches(), _graph_with_dead_branches()
    assert drop_dead_nodes(ours) == 3
    theirs.eliminate_dead_code()
    assert _ops(ours) == _ops(theirs)
    assert (("call_function", torch._assert) in _ops(ours)) and ("call_function", torch.sigmoid) not in _ops(ours)
    gm = fx.GraphModule(torch.nn.Module(), ours)
    x = torch.randn(5)
    torch.testing.assert_close(gm(x), torch.relu(x), rtol=0, atol=0)


def _broken_graph() -> fx.Graph:
    other = fx.Graph()
    foreign = other.placeholder("y")
    g = fx.Graph()
    g.placeholder("x")
    g.output(g.call_function(torch.relu, (foreign,)))  # reads a node of another graph
    return g


def test_check_graph_lints_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHECK_ENV, "1")
    with pytest.raises(RuntimeError):
        check_graph(_broken_graph())
    monkeypatch.setenv(CHECK_ENV, "0")
    check_graph(_broken_graph())  # users' conversions skip the check


def _chain_model(reverse: bool) -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Sigmoid", ["c"], ["y"])]
    graph = helper.make_graph(nodes[::-1] if reverse else nodes, "chain",
                              [helper.make_tensor_value_info("x", TP.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [2, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("reverse", [False, True])
def test_nodes_come_producers_first_in_any_file_order(reverse: bool) -> None:
    model = _chain_model(reverse)
    ordered = [n.op_type for n in cir.topological_nodes(cir.from_proto(model).graph)]
    assert ordered == ["Relu", "Neg", "Add", "Sigmoid"]
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    want = ort.InferenceSession(_chain_model(False).SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = convert(model, simplify=False)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_node_reading_a_later_subgraph_capture_is_sorted() -> None:
    """An If whose branch reads a value produced after the If in the file: only a full sort
    (which sees the branch's reads) puts the producer first."""
    then_g = helper.make_graph([helper.make_node("Identity", ["late"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TP.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["late"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TP.FLOAT, [2])])
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
             helper.make_node("Relu", ["x"], ["late"])]
    graph = helper.make_graph(nodes, "late_capture",
                              [helper.make_tensor_value_info("cond", TP.BOOL, []),
                               helper.make_tensor_value_info("x", TP.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    ordered = [n.op_type for n in cir.topological_nodes(cir.from_proto(model).graph)]
    assert ordered == ["Relu", "If"]
    gm = convert(model, simplify=False)
    x = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(gm(torch.tensor(True), x), torch.tensor([0.0, 2.0]), rtol=0, atol=0)
    torch.testing.assert_close(gm(torch.tensor(False), x), torch.tensor([-0.0, -2.0]), rtol=0, atol=0)


def test_cycle_is_a_load_error() -> None:
    nodes = [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Add", ["x", "a"], ["y"])]
    graph = helper.make_graph(nodes, "cycle", [helper.make_tensor_value_info("x", TP.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ModelLoadError, match="not a DAG"):
        list(cir.topological_nodes(cir.from_proto(model).graph))
