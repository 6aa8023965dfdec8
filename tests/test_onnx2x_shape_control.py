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



@pytest.mark.parametrize("tokens", [3, 200], ids=["few-rows", "whole-rows"])
def test_gather_of_rows_matches_onnxruntime_with_negative_indices(tokens: int, monkeypatch):
    """Gather along axis 0 (an embedding lookup, a mixture of experts' weights): few rows through
    plain indexing, many through index_select (runtime.indexing.WHOLE_ROWS_MIN_ELEMENTS); negative
    indices count from the end on both paths, an index out of range raises, and torch.export
    traces the plain path with a symbolic number of tokens."""
    from onnx import numpy_helper
    from onnx2x.torch.runtime import indexing

    rng = np.random.default_rng(3)
    table = rng.standard_normal((50, 4, 40)).astype(np.float32)
    graph = h.make_graph(
        [h.make_node("Gather", ["table", "ids"], ["y"], axis=0)], "rows",
        [h.make_tensor_value_info("ids", T.INT64, [2, "T"])], [h.make_tensor_value_info("y", T.FLOAT, [2, "T", 4, 40])],
        [numpy_helper.from_array(table, "table")])
    model = _model(graph)
    gm = convert(model)
    ids = rng.integers(-50, 50, (2, tokens)).astype(np.int64)
    paths = []
    whole_rows_pay = indexing._whole_rows_pay
    monkeypatch.setattr(indexing, "_whole_rows_pay", lambda *a: paths.append(whole_rows_pay(*a)) or paths[-1])
    _check(gm(torch.from_numpy(ids)), reference_outputs(model, {"ids": ids}))
    assert paths == [tokens == 200]  # 2 x 200 rows of 160 elements: whole rows pay
    with pytest.raises(IndexError):
        gm(torch.full((2, tokens), 50))
    n = torch.export.Dim("n", min=2)
    program = torch.export.export(gm, (torch.from_numpy(ids),), dynamic_shapes=({1: n},))
    _check(program.module()(torch.from_numpy(ids)), reference_outputs(model, {"ids": ids}))


def _expand_to_where_model():
    """The attention-mask expansion of transformers' exports: ``Expand(x, Where(Equal(target, -1),
    1, target))``, the target built from the run-time batch and length."""
    nodes = [
        h.make_node("Shape", ["x"], ["s"]),
        h.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        h.make_node("Gather", ["s", "i1"], ["l"], axis=0),
        h.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        h.make_node("Unsqueeze", ["l", "ax0"], ["l1"]),
        h.make_node("Concat", ["n1", "one", "l1", "l1"], ["target"], axis=0),
        h.make_node("Equal", ["target", "minus1"], ["is_free"]),
        h.make_node("Where", ["is_free", "one", "target"], ["fixed"]),
        h.make_node("Unsqueeze", ["x", "ax12"], ["x4"]),
        h.make_node("Expand", ["x4", "fixed"], ["y"]),
    ]
    inits = [h.make_tensor("i0", T.INT64, [], [0]), h.make_tensor("i1", T.INT64, [], [1]),
             h.make_tensor("ax0", T.INT64, [1], [0]), h.make_tensor("ax12", T.INT64, [2], [1, 2]),
             h.make_tensor("one", T.INT64, [1], [1]), h.make_tensor("minus1", T.INT64, [1], [-1])]
    graph = h.make_graph(nodes, "expand", [h.make_tensor_value_info("x", T.FLOAT, ["N", "L"])],
                         [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    return _model(graph, opset=17)


def _expand_to_shape_of_model():
    """``Expand(x, Shape(y))`` with x [N, 1] and y [M, 64]: ONNX broadcasts both ways, so where M is
    1 at run time the output keeps N (a mixture-of-experts layer's routed tokens, nllb_moe)."""
    nodes = [h.make_node("Shape", ["y"], ["target"]), h.make_node("Expand", ["x", "target"], ["out"])]
    graph = h.make_graph(nodes, "expand_shape_of",
                         [h.make_tensor_value_info("x", T.FLOAT, ["N", 1]),
                          h.make_tensor_value_info("y", T.FLOAT, ["M", 64])],
                         [h.make_tensor_value_info("out", T.FLOAT, None)])
    return _model(graph, opset=17)


def test_expand_to_a_run_time_size_of_one_keeps_the_input_dim():
    """A size read at run time against an input dim of unknown size may be 1 (keep the input's)
    or the output's; only the run tells: a plain ``x.expand(M, 64)`` fails when M is 1 < N."""
    model = _expand_to_shape_of_model()
    gm = convert(model, simplify=False)
    rng = np.random.default_rng(4)
    for n, m in ((3, 1), (3, 3), (1, 4), (1, 1)):
        feeds = {"x": rng.standard_normal((n, 1)).astype(np.float32),
                 "y": rng.standard_normal((m, 64)).astype(np.float32)}
        want = reference_outputs(model, feeds)
        assert want[0].shape == (max(n, m), 64)
        _check(gm(torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["y"])), want)


def _gathered_mask_model(row: int = 0):
    """The padding mask of transformers' opset-13 exports: the mask gathered at flat indices built
    from two Ranges, then reshaped to the indices' own Shape. onnx's inference loses the rank there
    ("keep"), and with it every value downstream; a final Add of a length-``row`` vector, if any."""
    def ints(name, vals):
        return h.make_tensor(name, T.INT64, [len(vals)] if isinstance(vals, list) else [],
                             vals if isinstance(vals, list) else [vals])
    nodes = [
        h.make_node("Cast", ["mask"], ["m"], to=T.BOOL),
        h.make_node("Flatten", ["m"], ["mflat"], axis=2),
        h.make_node("Shape", ["m"], ["ms"]),
        h.make_node("Gather", ["ms", "i1"], ["len"], axis=0),
        h.make_node("Range", ["zero", "len", "one"], ["kv"]),
        h.make_node("Unsqueeze", ["kv", "ax012"], ["kv3"]),        # [1, 1, 1, L]
        h.make_node("Shape", ["x"], ["xs"]),
        h.make_node("Gather", ["xs", "i0"], ["n"], axis=0),
        h.make_node("Range", ["zero", "n", "one"], ["bt"]),
        h.make_node("Unsqueeze", ["bt", "ax123"], ["bt3"]),        # [N, 1, 1, 1]
        h.make_node("Gather", ["ms", "i1v"], ["len1"], axis=0),
        h.make_node("Mul", ["bt3", "len1"], ["rows"]),
        h.make_node("Add", ["kv3", "rows"], ["flat_idx"]),         # [N, 1, 1, L]
        h.make_node("Gather", ["mflat", "flat_idx"], ["picked"], axis=0),
        h.make_node("Reshape", ["picked", "m1"], ["picked1"]),
        h.make_node("Shape", ["flat_idx"], ["fs"]),
        h.make_node("Concat", ["fs"], ["fs1"], axis=0),
        h.make_node("Reshape", ["picked1", "fs1"], ["keep"]),
        h.make_node("Where", ["keep", "zero_f", "neg_f"], ["bias"]),
        h.make_node("Shape", ["bias"], ["bs"]),
        h.make_node("Gather", ["bs", "i3"], ["blen"], axis=0),
        h.make_node("Unsqueeze", ["blen", "ax0"], ["blen1"]),
        h.make_node("Concat", ["m1", "blen1"], ["rows_shape"], axis=0),
        h.make_node("Reshape", ["bias", "rows_shape"], ["flat_bias"]),  # [N, L]
        h.make_node("ReduceSum", ["x", "ax2"], ["xsum"], keepdims=0),
        h.make_node("Add", ["flat_bias", "xsum"], ["y"]),
    ]
    inits = [ints("i0", 0), ints("i1", 1), ints("i3", 3), ints("zero", 0), ints("one", 1), ints("ax0", [0]),
             ints("ax2", [2]), ints("ax012", [0, 1, 2]), ints("ax123", [1, 2, 3]), ints("i1v", [1]),
             ints("m1", [-1]), h.make_tensor("zero_f", T.FLOAT, [], [0.0]),
             h.make_tensor("neg_f", T.FLOAT, [], [-1e4])]
    out = "y"
    if row:
        inits.append(h.make_tensor("row", T.FLOAT, [row], np.arange(row, dtype=np.float32).tolist()))
        nodes.append(h.make_node("Add", ["y", "row"], ["z"]))
        out = "z"
    graph = h.make_graph(nodes, "mask", [h.make_tensor_value_info("x", T.FLOAT, ["N", "L", 4]),
                                         h.make_tensor_value_info("mask", T.INT64, ["N", "L"])],
                         [h.make_tensor_value_info(out, T.FLOAT, None)], inits)
    return _model(graph, opset=13)


def _mask_feeds(n: int, length: int) -> dict:
    rng = np.random.default_rng(n * 100 + length)
    mask = (rng.random((n, length)) > 0.3).astype(np.int64)
    return {"x": rng.standard_normal((n, length, 4)).astype(np.float32), "mask": mask}


def _check_dynamic_export(model, gm, feeds_at, example) -> None:
    dims = {0: torch.export.Dim("N", min=1, max=64), 1: torch.export.Dim("L", min=2, max=64)}
    ep = torch.export.export(gm, example, dynamic_shapes=tuple(dims for _ in example))
    feeds = feeds_at(5, 6)
    _check(ep.module()(*(torch.from_numpy(v) for v in feeds.values())), reference_outputs(model, feeds))


def test_expand_to_a_where_of_shapes_is_resolved_at_conversion():
    """Equal/Where over shape values are folded (ops/_shape_values.py): the Expand gets its target
    as sizes, so ``torch.export`` keeps batch and length dynamic."""
    model = _expand_to_where_model()
    gm = convert(model, simplify=False)
    assert "runtime_shape" not in gm.code and "torch.eq" not in gm.code, gm.code
    def feeds_at(n, length):
        return {"x": np.random.default_rng(n).standard_normal((n, length)).astype(np.float32)}
    for n, length in ((2, 3), (1, 7)):
        feeds = feeds_at(n, length)
        _check(gm(torch.from_numpy(feeds["x"])), reference_outputs(model, feeds))
    _check_dynamic_export(model, gm, feeds_at, (torch.zeros(3, 4),))


def test_shapes_onnx_cannot_follow_come_from_symbolic_inference(tmp_path, monkeypatch):
    """Symbolic inference (common/symbolic_shapes.py) finds the ranks onnx's inference leaves
    unknown (never their numbers: it guesses some, e.g. a Split with computed lengths as an even
    split): the Reshape read from the mask's own Shape gets sizes, not run-time shape code."""
    from common.ir import infer_shapes
    from common.symbolic_shapes import fill_unknown_shapes, unknown_outputs

    model = _gathered_mask_model()
    inferred = infer_shapes(model)
    assert {"keep", "bias", "flat_bias", "y"} <= set(unknown_outputs(inferred.graph))  # the case is real
    found = {v.name: v.type.tensor_type.shape.dim for v in fill_unknown_shapes(inferred).graph.value_info}
    assert len(found["keep"]) == 4 and len(found["flat_bias"]) == 2
    assert not any(d.HasField("dim_value") for name in ("keep", "bias", "flat_bias") for d in found[name])  # ranks only
    monkeypatch.chdir(tmp_path)
    gm = convert(model, simplify=False)
    assert "runtime_shape_reshape" not in gm.code, gm.code
    for n, length in ((2, 3), (1, 7)):
        feeds = _mask_feeds(n, length)
        _check(gm(*(torch.from_numpy(v) for v in feeds.values())), reference_outputs(model, feeds))
    _check_dynamic_export(model, gm, _mask_feeds, tuple(torch.from_numpy(v) for v in _mask_feeds(3, 4).values()))
    assert list(tmp_path.iterdir()) == []  # onnxruntime's inference writes a file when incomplete: not here


def test_an_output_nobody_reads_needs_no_symbolic_inference(monkeypatch):
    """SqueezeNet's Dropout-7 leaves a mask that onnx's inference does not shape and nothing reads:
    not a reason to run the symbolic pass (sympy's import, 20 MB); one that a node reads is."""
    import common.symbolic_shapes as symbolic
    from common.ir import infer_shapes

    def model(read_mask: bool):
        nodes = [h.make_node("Dropout", ["x"], ["y", "mask"], ratio=0.5)]
        outputs = [h.make_tensor_value_info("y", T.FLOAT, ["N", 4])]
        if read_mask:
            nodes.append(h.make_node("Not", ["mask"], ["kept"]))
            outputs.append(h.make_tensor_value_info("kept", T.BOOL, None))
        graph = h.make_graph(nodes, "dropout", [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])], outputs)
        return _model(graph, opset=7)

    calls = []
    monkeypatch.setattr(symbolic, "_symbolic_inference", lambda proto: calls.append(proto) or proto)
    unread = infer_shapes(model(False))
    assert not any(v.name == "mask" for v in unread.graph.value_info)  # the case is real
    assert symbolic.unknown_outputs(unread.graph) == []
    symbolic.fill_unknown_shapes(unread)
    assert calls == []
    read = infer_shapes(model(True))
    assert "mask" in symbolic.unknown_outputs(read.graph)
    symbolic.fill_unknown_shapes(read)
    assert len(calls) == 1


def test_symbolic_inference_never_fixes_a_dynamic_dim():
    """A dim onnxruntime's inference would merge into a number (the free length broadcast against
    8, which may be a broadcast of 1) is not taken: the values keep unknown shapes, and the
    converted module runs at every length."""
    from common.ir import infer_shapes
    from common.symbolic_shapes import fill_unknown_shapes, unknown_outputs

    model = _gathered_mask_model(row=8)
    inferred = infer_shapes(model)
    before = set(unknown_outputs(inferred.graph))
    assert "z" in before
    assert set(unknown_outputs(fill_unknown_shapes(inferred).graph)) == before
    gm = convert(model, simplify=False)
    for n, length in ((2, 8), (3, 1)):  # z is (n, 8) for a length of 8 and of 1 (a broadcast)
        feeds = _mask_feeds(n, length)
        _check(gm(*(torch.from_numpy(v) for v in feeds.values())), reference_outputs(model, feeds))


_NONE_INDEX = "[(slice(None, None, None), None"


@pytest.mark.parametrize("dims,axes,form", [
    (["L"], [1, 2, 3], "torch.reshape"),            # one run-time size: a reshape with -1
    (["N", 3], [0, 2, -1], "torch.reshape"),
    (["N", 0], [1, 3], _NONE_INDEX),                # -1 cannot stand beside a known 0: indexing
    (["N", "L"], [1, 2], _NONE_INDEX),              # two run-time sizes: indexing with None
    (["N", "L"], [-1], "torch.unsqueeze"),
])
def test_unsqueeze_of_several_axes_is_one_op(dims, axes, form):
    """An Unsqueeze of several axes is one call, whatever sizes are known (each op costs dispatch
    time at batch 1), and keeps the sizes symbolic for torch.export."""
    graph = h.make_graph([h.make_node("Unsqueeze", ["x", "axes"], ["y"])], "unsqueeze",
                         [h.make_tensor_value_info("x", T.FLOAT, dims)], [h.make_tensor_value_info("y", T.FLOAT, None)],
                         [h.make_tensor("axes", T.INT64, [len(axes)], axes)])
    model = _model(graph, opset=13)
    gm = convert(model, simplify=False)
    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert len(calls) == 1 and form in gm.code, gm.code
    def feed(size):
        shape = [s if isinstance(d, str) else d for s, d in zip(size, dims)]
        return np.random.default_rng(size[1]).standard_normal(shape).astype(np.float32)

    for size in ((2, 3), (1, 5)):
        _check(gm(torch.from_numpy(feed(size))), reference_outputs(model, {"x": feed(size)}))
    free = {i: torch.export.Dim(f"d{i}", min=2, max=64) for i, d in enumerate(dims) if isinstance(d, str)}
    exported = torch.export.export(gm, (torch.from_numpy(feed((3, 4))),), dynamic_shapes=(free,)).module()
    _check(exported(torch.from_numpy(feed((5, 6)))), reference_outputs(model, {"x": feed((5, 6))}))
