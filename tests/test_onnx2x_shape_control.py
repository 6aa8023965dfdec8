"""Shape, control-flow and recurrent converters against onnxruntime on hand-built graphs.

What the conformance suites do not cover: symbolic batch sizes (shape chains must stay symbolic
so ``torch.export`` with a dynamic batch works), Loop unrolling vs the run-time loop with an If
inside that captures outer values, If under ``torch.export`` and the fused LSTM/GRU fast path vs
the explicit per-step path.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h

from onnx2x.torch import convert
from tests.support.onnx_cases import assert_outputs_match, reference_outputs

RTOL, ATOL = 1e-4, 1e-5


def _model(graph, opset: int = 18):
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8  # onnxruntime's supported IR range
    return m


def _check(got, ref: list[np.ndarray]) -> None:
    got = got if isinstance(got, (tuple, list)) else (got,)
    assert_outputs_match([g.detach().numpy() for g in got], ref, rtol=RTOL, atol=ATOL)


def _dynamic_batch_model():
    nodes = [
        h.make_node("Shape", ["x"], ["s"]),
        h.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        h.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        h.make_node("Concat", ["n1", "m1"], ["shp"], axis=0),
        h.make_node("Reshape", ["x", "shp"], ["r"]),
        h.make_node("Reshape", ["x", "z"], ["r0"]),
        h.make_node("Slice", ["x", "st", "en", "axs", "sp"], ["sl"]),
        h.make_node("ConstantOfShape", ["s"], ["cs"], value=h.make_tensor("v", T.FLOAT, [1], [2.5])),
        h.make_node("Range", ["zero", "n", "one"], ["rg"]),
        h.make_node("Expand", ["b", "ones"], ["ex"]),
        h.make_node("Flatten", ["x"], ["f"], axis=2),
        h.make_node("TopK", ["x", "k"], ["tv", "ti"], axis=-1),
    ]
    inits = [h.make_tensor("i0", T.INT64, [], [0]), h.make_tensor("ax0", T.INT64, [1], [0]),
             h.make_tensor("m1", T.INT64, [1], [-1]), h.make_tensor("z", T.INT64, [3], [0, 12, -1]),
             h.make_tensor("st", T.INT64, [2], [-1, 1]), h.make_tensor("en", T.INT64, [2], [-100, 3]),
             h.make_tensor("axs", T.INT64, [2], [1, 2]), h.make_tensor("sp", T.INT64, [2], [-1, 1]),
             h.make_tensor("zero", T.INT64, [], [0]), h.make_tensor("one", T.INT64, [], [1]),
             h.make_tensor("ones", T.INT64, [3], [1, 1, 1]), h.make_tensor("k", T.INT64, [1], [2])]
    outs = [("r", T.FLOAT), ("r0", T.FLOAT), ("sl", T.FLOAT), ("s", T.INT64), ("cs", T.FLOAT), ("rg", T.INT64),
            ("ex", T.FLOAT), ("f", T.FLOAT), ("tv", T.FLOAT), ("ti", T.INT64)]
    graph = h.make_graph(nodes, "dyn", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 4, 4]),
                                        h.make_tensor_value_info("b", T.FLOAT, ["N", 5])],
                         [h.make_tensor_value_info(n, t, None) for n, t in outs], inits)
    return _model(graph)


def _feeds(n: int) -> dict:
    rng = np.random.default_rng(n)
    return {"x": rng.standard_normal((n, 3, 4, 4)).astype(np.float32),
            "b": rng.standard_normal((n, 5)).astype(np.float32)}


def test_symbolic_batch_eager_and_export():
    model = _dynamic_batch_model()
    gm = convert(model, simplify=False)
    assert ".tolist()" not in gm.code and "_reshape(" not in gm.code  # shape chain resolved symbolically
    for n in (2, 5):
        feeds = _feeds(n)
        _check(gm(*(torch.from_numpy(v) for v in feeds.values())), reference_outputs(model, feeds))
    batch = torch.export.Dim("N", min=2, max=64)
    example = tuple(torch.from_numpy(v) for v in _feeds(3).values())
    ep = torch.export.export(gm, example, dynamic_shapes=({0: batch}, {0: batch}))
    feeds = _feeds(7)
    _check(ep.module()(*(torch.from_numpy(v) for v in feeds.values())), reference_outputs(model, feeds))


def _loop_model(static_trips: bool):
    then_g = h.make_graph([h.make_node("Add", ["acc_in", "w"], ["t_out"])], "then", [],
                          [h.make_tensor_value_info("t_out", T.FLOAT, [2])])
    else_g = h.make_graph([h.make_node("Sub", ["acc_in", "w"], ["e_out"])], "else", [],
                          [h.make_tensor_value_info("e_out", T.FLOAT, [2])])
    body = h.make_graph([
        h.make_node("Identity", ["cond_in"], ["cond_out"]),
        h.make_node("Cast", ["it"], ["itf"], to=T.FLOAT),
        h.make_node("Greater", ["itf", "half"], ["big"]),
        h.make_node("If", ["big"], ["acc_out"], then_branch=then_g, else_branch=else_g),
        h.make_node("Mul", ["acc_out", "itf"], ["scan"]),
    ], "body", [h.make_tensor_value_info("it", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                h.make_tensor_value_info("acc_in", T.FLOAT, [2])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("acc_out", T.FLOAT, [2]),
         h.make_tensor_value_info("scan", T.FLOAT, [2])])
    inputs = [h.make_tensor_value_info("x", T.FLOAT, [2]), h.make_tensor_value_info("w", T.FLOAT, [2])]
    inits = [h.make_tensor("half", T.FLOAT, [], [0.5])]
    if static_trips:
        inits.append(h.make_tensor("M", T.INT64, [], [3]))
    else:
        inputs.append(h.make_tensor_value_info("M", T.INT64, []))
    graph = h.make_graph([h.make_node("Loop", ["M", "", "x"], ["y", "ys"], body=body)], "loop", inputs,
                         [h.make_tensor_value_info("y", T.FLOAT, [2]), h.make_tensor_value_info("ys", T.FLOAT, [None, 2])],
                         inits)
    return _model(graph, 13)


@pytest.mark.parametrize("static_trips", [True, False])
def test_loop_with_nested_if(static_trips: bool):
    model = _loop_model(static_trips)
    gm = convert(model, simplify=False)
    assert ("run_loop" in gm.code) != static_trips  # a small constant trip count is unrolled
    feeds = {"x": np.array([1.0, 2.0], np.float32), "w": np.array([10.0, 20.0], np.float32)}
    if not static_trips:
        feeds["M"] = np.array(4, np.int64)
    _check(gm(*(torch.from_numpy(v) for v in feeds.values())), reference_outputs(model, feeds))


def test_if_exports_through_torch_cond():
    then_g = h.make_graph([h.make_node("Add", ["x", "w"], ["t"])], "then", [], [h.make_tensor_value_info("t", T.FLOAT, [2])])
    else_g = h.make_graph([h.make_node("Mul", ["x", "x"], ["e"])], "else", [], [h.make_tensor_value_info("e", T.FLOAT, [2])])
    graph = h.make_graph([h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "if",
                         [h.make_tensor_value_info("c", T.BOOL, []), h.make_tensor_value_info("x", T.FLOAT, [2]),
                          h.make_tensor_value_info("w", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    model = _model(graph, 13)
    gm = convert(model, simplify=False)
    x, w = np.array([1.0, 2.0], np.float32), np.array([10.0, 20.0], np.float32)
    ep = torch.export.export(gm, (torch.tensor(True), torch.from_numpy(x), torch.from_numpy(w)))
    for c in (True, False):
        feeds = {"c": np.array(c), "x": x, "w": w}
        args = tuple(torch.from_numpy(v) for v in feeds.values())
        _check(gm(*args), reference_outputs(model, feeds))
        _check(ep.module()(*args), reference_outputs(model, feeds))


def _rnn_model(op: str, direction: str, layout: int, extra: dict, with_seq_lens: bool):
    rng = np.random.default_rng(0)
    gates = {"LSTM": 4, "GRU": 3}[op]
    seq, batch, size, hidden = 5, 3, 4, 6
    nd = 2 if direction == "bidirectional" else 1
    w = rng.standard_normal((nd, gates * hidden, size)).astype(np.float32) * 0.5
    r = rng.standard_normal((nd, gates * hidden, hidden)).astype(np.float32) * 0.5
    b = rng.standard_normal((nd, 2 * gates * hidden)).astype(np.float32) * 0.5
    inits = [h.make_tensor("W", T.FLOAT, w.shape, w.ravel()), h.make_tensor("R", T.FLOAT, r.shape, r.ravel()),
             h.make_tensor("B", T.FLOAT, b.shape, b.ravel())]
    ins = ["X", "W", "R", "B", "L" if with_seq_lens else ""]
    if with_seq_lens:
        inits.append(h.make_tensor("L", T.INT32, [batch], [5, 2, 4]))
    if op == "LSTM" and extra.pop("peepholes", False):
        p = rng.standard_normal((nd, 3 * hidden)).astype(np.float32)
        inits.append(h.make_tensor("P", T.FLOAT, p.shape, p.ravel()))
        ins += ["", "", "P"]
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = h.make_node(op, ins, outs, hidden_size=hidden, direction=direction, layout=layout, **extra)
    x_shape = [seq, batch, size] if layout == 0 else [batch, seq, size]
    graph = h.make_graph([node], "rnn", [h.make_tensor_value_info("X", T.FLOAT, x_shape)],
                         [h.make_tensor_value_info(o, T.FLOAT, None) for o in outs], inits)
    return _model(graph, 14), rng.standard_normal(x_shape).astype(np.float32)


@pytest.mark.parametrize("op,direction,layout,extra,seq_lens", [
    ("LSTM", "forward", 0, {}, False),                      # fused kernel
    ("LSTM", "bidirectional", 1, {}, False),                # fused kernel, batch-major
    ("LSTM", "reverse", 0, {"peepholes": True, "clip": 2.0}, False),
    ("LSTM", "bidirectional", 0, {}, True),                 # per-step path with sequence_lens
    ("GRU", "bidirectional", 0, {"linear_before_reset": 1}, False),  # fused kernel
    ("GRU", "forward", 1, {"linear_before_reset": 0}, False),
    ("GRU", "forward", 0, {"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.3],
                           "activation_beta": [0.4]}, True),
])
def test_recurrent_matches_onnxruntime(op, direction, layout, extra, seq_lens):
    model, x = _rnn_model(op, direction, layout, dict(extra), seq_lens)
    gm = convert(model, simplify=False)
    if layout == 0:
        ref = reference_outputs(model, {"X": x})
    else:  # onnxruntime has no batch-major RNNs: run the time-major twin and transpose
        twin, _ = _rnn_model(op, direction, 0, dict(extra), seq_lens)
        y, *states = reference_outputs(twin, {"X": np.ascontiguousarray(x.transpose(1, 0, 2))})
        ref = [y.transpose(2, 0, 1, 3)] + [s.transpose(1, 0, 2) for s in states]
    _check(gm(torch.from_numpy(x)), ref)


def test_scalar_initializers_stay_scalars():
    """A 0-d weight read from ``raw_data`` keeps rank 0 (a scalar Gather index drops the axis)."""
    from onnx import numpy_helper

    index = numpy_helper.from_array(np.array(1, dtype=np.int64), "index")  # raw_data, 0-d
    graph = h.make_graph(
        [h.make_node("Gather", ["x", "index"], ["y"], axis=1),
         h.make_node("Mul", ["y", "scale"], ["z"])],
        "scalars",
        [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4])],
        [h.make_tensor_value_info("z", T.FLOAT, None)],
        [index, numpy_helper.from_array(np.array(0.5, dtype=np.float32), "scale")],
    )
    model = _model(graph)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    ref = reference_outputs(model, {"x": x})
    got = convert(model, simplify=False)(torch.from_numpy(x))
    assert tuple(got.shape) == ref[0].shape == (2, 4)
    _check(got, ref)


def test_constant_sliced_to_a_run_time_length():
    """A constant buffer sliced to the input's length (transformers' position ids): a run-time slice."""
    positions = np.arange(16, dtype=np.int64).reshape(1, 16)
    from onnx import numpy_helper

    graph = h.make_graph(
        [h.make_node("Shape", ["ids"], ["shape"]),
         h.make_node("Gather", ["shape", "one"], ["length"], axis=0),
         h.make_node("Unsqueeze", ["length", "zero_axis"], ["end"]),
         h.make_node("Slice", ["positions", "start", "end", "axis1"], ["sliced"]),
         h.make_node("Add", ["ids", "sliced"], ["y"])],
        "position_ids",
        [h.make_tensor_value_info("ids", T.INT64, ["batch", "sequence"])],
        [h.make_tensor_value_info("y", T.INT64, ["batch", "sequence"])],
        [numpy_helper.from_array(positions, "positions"),
         numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
         numpy_helper.from_array(np.array([0], dtype=np.int64), "zero_axis"),
         numpy_helper.from_array(np.array([0], dtype=np.int64), "start"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")],
    )
    model = _model(graph)
    gm = convert(model, simplify=False)
    for length in (3, 7):
        ids = np.arange(2 * length, dtype=np.int64).reshape(2, length)
        ref = reference_outputs(model, {"ids": ids})
        np.testing.assert_array_equal(gm(torch.from_numpy(ids)).numpy(), ref[0])


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
def test_global_pool_of_unknown_rank(op: str):
    """The rank of a reshaped tensor may be known only at run time (shapes computed in the graph)."""
    graph = h.make_graph(
        [h.make_node("Reshape", ["x", "shape"], ["r"]), h.make_node(op, ["r"], ["y"])],
        "global_pool",
        [h.make_tensor_value_info("x", T.FLOAT, [2, 60]), h.make_tensor_value_info("shape", T.INT64, [None])],
        [h.make_tensor_value_info("y", T.FLOAT, None)],
    )
    model = _model(graph)
    gm = convert(model, simplify=False)
    x = np.random.default_rng(1).standard_normal((2, 60)).astype(np.float32)
    for shape in ([2, 3, 4, 5], [2, 6, 10]):
        feeds = {"x": x, "shape": np.array(shape, dtype=np.int64)}
        _check(gm(torch.from_numpy(x), torch.tensor(shape)), reference_outputs(model, feeds))


@pytest.mark.parametrize("op", ["Gather", "GatherElements"])
def test_gather_with_negative_axis_on_unknown_rank(op: str):
    """axis=-1 on a tensor whose rank is known only at run time counts from the end."""
    from onnx import numpy_helper

    index = np.array([[2, 0, 1]] * 6, dtype=np.int64).reshape(2, 3, 3) if op == "GatherElements" \
        else np.array([2, 0], dtype=np.int64)
    graph = h.make_graph(
        [h.make_node("Reshape", ["x", "shape"], ["r"]), h.make_node(op, ["r", "index"], ["y"], axis=-1)],
        "gather_last",
        [h.make_tensor_value_info("x", T.FLOAT, [2, 12]), h.make_tensor_value_info("shape", T.INT64, [None])],
        [h.make_tensor_value_info("y", T.FLOAT, None)],
        [numpy_helper.from_array(index, "index")],
    )
    model = _model(graph)
    gm = convert(model, simplify=False)
    x = np.random.default_rng(2).standard_normal((2, 12)).astype(np.float32)
    shape = np.array([2, 3, 4], dtype=np.int64)
    _check(gm(torch.from_numpy(x), torch.from_numpy(shape)), reference_outputs(model, {"x": x, "shape": shape}))
