"""MXNet -> ONNX loss heads and softmax activations (mx2onnx_patches/ops_heads.py) against MXNet.

Reference: MXNet's own kernels with MKL-DNN off (one subprocess for every case), which compute the
operators' definitions; the pip CPU build's oneDNN kernel departs from them for a float32
SoftmaxOutput on 1-D and 4-D inputs, which is pinned down here too. Labels are recognised by
their place in the graph (``common.mxnet_heads``), whatever their name.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from common.errors import ModelLoadError, ShapeError
from common.mxnet_heads import label_inputs, training_only_nodes
from tests.support.mxnet_ops import (check_export, export_to_onnx, mx, mxnet_forward, mxnet_forwards_without_mkldnn,
                                     onnx_forward, rand, random_params)

data = mx.sym.var("data")
SHAPES = {1: (5,), 2: (2, 5), 3: (2, 3, 4), 4: (2, 3, 4, 5), 5: (2, 3, 2, 3, 4)}
OUTPUT_CASES = [(rank, mo, ps) for rank in SHAPES for mo in (False, True) for ps in (False, True)
                if not (mo and rank == 1)]  # MXNet's shape inference refuses multi_output on 1-D input
ACTIVATION_CASES = [(rank, mode) for rank in SHAPES for mode in ("instance", "channel")
                    if not (mode == "channel" and rank < 3)]


def _softmax_output(multi_output: bool, preserve_shape: bool):
    return mx.sym.SoftmaxOutput(data, multi_output=multi_output, preserve_shape=preserve_shape, name="head")


def _softmax_activation(mode: str):
    return mx.sym.SoftmaxActivation(data, mode=mode, name="head")


def _inputs(rank: int) -> dict:
    return {"data": rand(*SHAPES[rank], seed=rank, low=-2.0, high=2.0)}


def _cases() -> dict:
    cases = {("SoftmaxOutput",) + c: (_softmax_output(*c[1:]), c[0]) for c in OUTPUT_CASES}
    cases.update({("SoftmaxActivation",) + c: (_softmax_activation(c[1]), c[0]) for c in ACTIVATION_CASES})
    return cases


@pytest.fixture(scope="module")
def definition() -> dict:
    """Every case's output from MXNet's own kernels (``MXNET_MKLDNN_ENABLED=0``), in one process."""
    cases = _cases()
    runs = [(sym, random_params(sym, _inputs(rank)), _inputs(rank)) for sym, rank in cases.values()]
    return {key: outputs[0] for key, outputs in zip(cases, mxnet_forwards_without_mkldnn(runs))}


@pytest.mark.parametrize("rank, multi_output, preserve_shape", OUTPUT_CASES)
def test_softmax_output_follows_mxnets_definition(definition, rank, multi_output, preserve_shape):
    inputs = _inputs(rank)
    model = export_to_onnx(_softmax_output(multi_output, preserve_shape), {}, inputs)
    assert [i.name for i in model.graph.input] == ["data"]  # head_label is training-only
    got = onnx_forward(model, inputs)[0]
    expected = definition[("SoftmaxOutput", rank, multi_output, preserve_shape)]
    assert got.shape == expected.shape == SHAPES[rank]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rank, mode", ACTIVATION_CASES)
def test_softmax_activation_follows_mxnet(definition, rank, mode):
    inputs = _inputs(rank)
    got = onnx_forward(export_to_onnx(_softmax_activation(mode), {}, inputs), inputs)[0]
    np.testing.assert_allclose(got, definition[("SoftmaxActivation", rank, mode)], rtol=1e-5, atol=1e-6)


def test_definitions_by_hand(definition):
    """What the reference computes, spelled out: flattened per instance, per position over axis 1,
    over the last axis; a 1-D input without options is five one-element instances."""
    def softmax(x, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    x = _inputs(4)["data"].astype(np.float64)
    flat = softmax(x.reshape(2, -1), 1).reshape(x.shape)
    np.testing.assert_allclose(definition[("SoftmaxOutput", 4, False, False)], flat, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(definition[("SoftmaxOutput", 4, True, True)], softmax(x, 1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(definition[("SoftmaxOutput", 4, False, True)], softmax(x, -1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(definition[("SoftmaxActivation", 4, "instance")], softmax(x, -1), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(definition[("SoftmaxOutput", 1, False, False)], np.ones(5, np.float32))


def test_mxnet_cpu_kernel_departs_from_the_definition_only_for_default_softmax_output_on_1d_and_4d(definition,
                                                                                                   monkeypatch):
    """MXNet 1.9.1's pip build (oneDNN on) against its own kernels, with and without subgraph
    fusion: only SoftmaxOutput without multi_output/preserve_shape on 1-D and 4-D float32 input
    differs (oneDNN normalises over the last axis)."""
    departures = {}
    for backend in ("MKLDNN", "NONE"):
        monkeypatch.setenv("MXNET_SUBGRAPH_BACKEND", backend)
        for key, (sym, rank) in _cases().items():
            inputs = _inputs(rank)
            cpu = mxnet_forward(sym, random_params(sym, inputs), inputs)[0]
            error = float(np.abs(cpu - definition[key]).max())
            if error > 1e-5:
                departures[(backend,) + key] = error
    expected = {(b, "SoftmaxOutput", rank, False, False) for b in ("MKLDNN", "NONE") for rank in (1, 4)}
    assert set(departures) == expected, departures
    assert all(error > 0.1 for error in departures.values()), departures


def test_multi_output_on_1d_input_is_refused_with_mxnets_reason():
    with pytest.raises(mx.base.MXNetError, match="index = 1 must be in range"):  # reference: MXNet
        _softmax_output(True, False).infer_shape(data=(5,))
    with pytest.raises(ShapeError, match="do not fit the network: .*index = 1 must be in range") as info:
        export_to_onnx(_softmax_output(True, False), {}, {"data": rand(5)})
    assert info.value.node == "head"


def test_channel_mode_below_rank_3_is_refused_as_mxnet_refuses_it():
    sym = _softmax_activation("channel")
    executor = sym.simple_bind(mx.cpu(), data=(2, 5), grad_req="null")  # MXNet binds it ...
    with pytest.raises(mx.base.MXNetError, match="a least 3 dimensions when mode=channel"):
        executor.forward()[0].asnumpy()  # ... and refuses to run it
    with pytest.raises(ModelLoadError, match="Input need to have a least 3 dimensions when mode=channel") as info:
        export_to_onnx(sym, {}, {"data": rand(2, 5)})
    assert (info.value.node, info.value.op_type, info.value.exit_code) == ("head", "SoftmaxActivation", 2)


# -- labels ------------------------------------------------------------------------------------

def _two_heads():
    """A head whose label is not called *_label, and one whose label is computed from a variable
    (cast and scaled, as training symbols prepare labels)."""
    fc = mx.sym.FullyConnected(data, num_hidden=4, name="fc")
    prob = mx.sym.SoftmaxOutput(fc, mx.sym.var("target"), name="prob")
    raw = mx.sym.var("raw_label_in")
    label = mx.sym.Cast(raw, dtype="float32", name="cast_label") * 0.5
    reg = mx.sym.LinearRegressionOutput(mx.sym.FullyConnected(data, num_hidden=3, name="fc2"), label, name="reg")
    return mx.sym.Group([prob, reg])


def test_labels_are_found_by_their_place_not_their_name():
    sym = _two_heads()
    graph = json.loads(sym.tojson())
    assert label_inputs(graph["nodes"], heads=graph["heads"]) == ["target", "raw_label_in"]
    only = {graph["nodes"][i]["name"] for i in training_only_nodes(graph["nodes"], graph["heads"])}
    scaled = next(n["name"] for n in graph["nodes"] if n["op"] == "_mul_scalar")  # MXNet numbers it per process
    assert only == {"target", "raw_label_in", "cast_label", scaled}
    model = check_export(sym, {"data": rand(2, 6)})  # reference: MXNet's forward, labels bound
    assert [i.name for i in model.graph.input] == ["data"]
    assert not [n for n in model.graph.node if n.op_type == "Cast"]


def test_a_variable_that_also_feeds_the_network_is_no_label():
    x = mx.sym.var("x")
    fc = mx.sym.FullyConnected(data + x, num_hidden=3, name="fc")
    sym = mx.sym.LinearRegressionOutput(fc, x, name="reg")
    graph = json.loads(sym.tojson())
    assert label_inputs(graph["nodes"], heads=graph["heads"]) == []
    model = check_export(sym, {"data": rand(3, 3), "x": rand(3, 3, seed=5)})
    assert [i.name for i in model.graph.input] == ["data", "x"]


def test_every_part_of_the_toolkit_shares_the_label_definition(tmp_path):
    from common.summary import mxnet_summary
    from common.verify.inputs import specs_from_mxnet_json
    from common.verify.runners import MXNetRunner
    from x2onnx.mxnet.export import export_report

    sym = _two_heads()
    inputs = {"data": rand(2, 6)}
    params = {k: v for k, v in random_params(sym, inputs).items() if k not in ("target", "raw_label_in")}
    path = tmp_path / "heads-symbol.json"
    sym.save(str(path))
    runner = MXNetRunner(sym, params)
    assert runner.input_names == ["data"] and runner.label_names == {"target", "raw_label_in"}
    assert [s.name for s in specs_from_mxnet_json(str(path), list(params))] == ["data"]
    assert "training labels (not inference inputs): raw_label_in, target" in mxnet_summary(path).notes
    # a shape given for a label is accepted (MXNet's simple_bind takes it too) and not needed
    report = export_report(str(path), {k: mx.nd.array(v) for k, v in params.items()},
                           {"data": (2, 6), "target": (2,)}, verify=True, simplify=False)
    assert report.labels == ["raw_label_in", "target"] and list(report.inputs.shapes) == ["data"]
    expected = mxnet_forward(sym, random_params(sym, inputs), inputs)
    for got, want in zip(runner.run(inputs).outputs.values(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


# -- regression heads --------------------------------------------------------------------------

def test_linear_regression_output_is_identity_at_inference():
    fc = mx.sym.FullyConnected(data, num_hidden=3, name="fc")
    sym = mx.sym.LinearRegressionOutput(fc, name="lro")
    model = check_export(sym, {"data": rand(4, 5)})
    assert [i.name for i in model.graph.input] == ["data"]  # the label is not an input


def test_linear_regression_output_with_named_label_and_grad_scale():
    sym = mx.sym.LinearRegressionOutput(mx.sym.tanh(data), mx.sym.var("target"), grad_scale=2.0, name="lro")
    model = check_export(sym, {"data": rand(2, 3, 4)})
    assert [i.name for i in model.graph.input] == ["data"]
