"""com.microsoft activations and fused linear ops (onnx2x/torch/ops/contrib_activation.py).

Reference: onnxruntime's CPU kernels. BiasAdd, BiasSplitGelu, BiasSoftmax and GemmFastGelu have
GPU kernels only; for them onnxruntime runs the documented computation written in standard ops.
Every case goes through the CLI's path: convert (onnx-simplifier first), save, load, run.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from common.errors import UnsupportedOpError
from onnx2x.torch import convert
from tests.support.contrib_cases import check_with_ort, graph_model, ms_node_model, rng_arrays, slow_after

rand = rng_arrays(1)


@pytest.mark.parametrize("op,with_bias,attrs", slow_after(4, [
    ("Gelu", False, {}), ("BiasGelu", True, {}), ("FastGelu", True, {}), ("QuickGelu", False, {}),
    ("FastGelu", False, {}), ("QuickGelu", False, {"alpha": 1.0}), ("QuickGelu", False, {"alpha": -0.7}),
]))
def test_gelu_family(op: str, with_bias: bool, attrs: dict, tmp_path) -> None:
    feeds = {"x": rand(2, 5, 16, scale=3.0)}
    if with_bias:
        feeds["bias"] = rand(16)
    check_with_ort(ms_node_model(op, feeds, ["y"], attrs), feeds, tmp_path)


def _std(op: str, inputs: list, outputs: list, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def test_bias_add_against_standard_ops(tmp_path) -> None:
    feeds = {"x": rand(2, 6, 8), "bias": rand(8), "skip": rand(2, 6, 8)}
    ref = graph_model([_std("Add", ["x", "bias"], ["t"]), _std("Add", ["t", "skip"], ["y"])], feeds, ["y"])
    check_with_ort(ms_node_model("BiasAdd", feeds, ["y"]), feeds, tmp_path, reference=ref)


def test_bias_split_gelu_against_standard_ops(tmp_path) -> None:
    feeds = {"x": rand(2, 6, 16), "bias": rand(16)}
    consts = {"halves": np.array([8, 8], np.int64)}
    ref = graph_model([_std("Add", ["x", "bias"], ["t"]), _std("Split", ["t", "halves"], ["l", "r"], axis=-1),
                       _std("Gelu", ["r"], ["g"]), _std("Mul", ["l", "g"], ["y"])], feeds, ["y"], consts, opset=20)
    check_with_ort(ms_node_model("BiasSplitGelu", feeds, ["y"]), feeds, tmp_path, reference=ref)


def test_gemm_fast_gelu_against_standard_ops(tmp_path) -> None:
    feeds = {"x": rand(2, 3, 8), "w": rand(8, 12), "bias": rand(12)}
    ref = graph_model([_std("MatMul", ["x", "w"], ["m"]), _std("Add", ["m", "bias"], ["t"]),
                       _std("Gelu", ["t"], ["y"], approximate="tanh")], feeds, ["y"], opset=20)
    check_with_ort(ms_node_model("GemmFastGelu", feeds, ["y"]), feeds, tmp_path, reference=ref, atol=2e-5)


@pytest.mark.parametrize("inner", slow_after(1, [1, 0]))
def test_bias_softmax_broadcasts(inner: int, tmp_path) -> None:
    """Softmax over the last axis of [B, N, S, T]; the bias lacks the inner batch axes (inner
    broadcast: a BERT mask [B, 1, 1, T]) or the outer ones (outer broadcast: [1, 1, S, T])."""
    x = rand(2, 3, 4, 5)
    bias = rand(2, 1, 1, 5) if inner else rand(1, 1, 4, 5)
    feeds = {"x": x, "bias": bias}
    ref = graph_model([_std("Add", ["x", "bias"], ["t"]), _std("Softmax", ["t"], ["y"], axis=-1)], feeds, ["y"])
    model = ms_node_model("BiasSoftmax", feeds, ["y"], {"axis": 3, "is_inner_broadcast": inner})
    check_with_ort(model, feeds, tmp_path, reference=ref)


def test_bias_softmax_flattens_from_axis(tmp_path) -> None:
    """axis=2 normalizes over the last two axes together (Softmax-11 semantics)."""
    feeds = {"x": rand(2, 3, 4, 5), "bias": rand(2, 1, 4, 5)}
    shape = {"flat": np.array([2, 3, 20], np.int64), "back": np.array([2, 3, 4, 5], np.int64)}
    ref = graph_model([_std("Add", ["x", "bias"], ["t"]), _std("Reshape", ["t", "flat"], ["f"]),
                       _std("Softmax", ["f"], ["s"], axis=-1), _std("Reshape", ["s", "back"], ["y"])],
                      feeds, ["y"], shape)
    model = ms_node_model("BiasSoftmax", feeds, ["y"], {"axis": 2, "is_inner_broadcast": 1})
    check_with_ort(model, feeds, tmp_path, reference=ref)


@pytest.mark.parametrize("activation,params", slow_after(2, [
    ("HardSigmoid", [0.3, 0.4]), ("Clip", [-0.5, 0.7]), (None, None), ("Relu", None), ("Tanh", None),
    ("Sigmoid", None), ("LeakyRelu", [0.3]),
]))
def test_fused_conv_activations_and_residual(activation, params, tmp_path) -> None:
    feeds = {"x": rand(1, 4, 9, 9), "w": rand(6, 2, 3, 3), "b": rand(6), "z": rand(1, 6, 5, 4)}
    attrs = {"group": 2, "strides": [2, 2], "pads": [1, 0, 1, 0], "kernel_shape": [3, 3]}
    if activation:
        attrs["activation"] = activation
    if params:
        attrs["activation_params"] = params
    check_with_ort(ms_node_model("FusedConv", feeds, ["y"], attrs, consts=["w"]), feeds, tmp_path, atol=2e-5)


def test_fused_conv_without_bias_or_residual(tmp_path) -> None:
    feeds = {"x": rand(2, 3, 7, 7), "w": rand(4, 3, 3, 3)}
    model = ms_node_model("FusedConv", feeds, ["y"], {"activation": "Relu", "auto_pad": "SAME_UPPER"})
    check_with_ort(model, feeds, tmp_path, atol=2e-5)


@pytest.mark.parametrize("activation,attrs", slow_after(3, [
    ("Selu", {"activation_alpha": 1.5, "activation_gamma": 1.1}),
    ("ParametricSoftplus", {"activation_alpha": 0.3, "activation_beta": 1.7}),
    ("LeakyRelu", {"activation_alpha": 0.2}), ("Relu", {}),
    ("HardSigmoid", {"activation_alpha": 0.3, "activation_beta": 0.4}), ("Tanh", {}), ("Sigmoid", {}),
    ("Elu", {"activation_alpha": 0.5}), ("ThresholdedRelu", {"activation_alpha": 0.2}), ("Softplus", {}),
    ("Softsign", {}), ("Celu", {"activation_alpha": 0.6}),
    ("ScaledTanh", {"activation_alpha": 0.3, "activation_beta": 1.7}),
]))
def test_fused_gemm_activations(activation, attrs, tmp_path) -> None:
    feeds = {"a": rand(4, 6), "b": rand(5, 6), "c": rand(5)}
    attrs = dict(attrs, transB=1, alpha=0.7, beta=1.3)
    if activation:
        attrs["activation"] = activation
    check_with_ort(ms_node_model("FusedGemm", feeds, ["y"], attrs), feeds, tmp_path)


@pytest.mark.parametrize("op,trans_a,trans_b", slow_after(2, [
    ("FusedMatMul", 1, 1), ("TransposeMatMul", 0, 1), ("FusedMatMul", 0, 0), ("FusedMatMul", 1, 0),
    ("FusedMatMul", 0, 1), ("TransposeMatMul", 1, 0),
]))
def test_fused_matmul_transposes(op: str, trans_a: int, trans_b: int, tmp_path) -> None:
    a = rand(3, 2, 4, 5) if not trans_a else rand(3, 2, 5, 4)
    b = rand(3, 2, 5, 6) if not trans_b else rand(3, 2, 6, 5)
    feeds = {"a": a, "b": b}
    check_with_ort(ms_node_model(op, feeds, ["y"], {"transA": trans_a, "transB": trans_b, "alpha": 0.5}),
                   feeds, tmp_path)


@pytest.mark.parametrize("trans_batch_a,trans_batch_b,trans_a,trans_b",
                         slow_after(1, [(1, 1, 1, 0), (1, 0, 0, 0), (0, 1, 0, 1)]))
def test_fused_matmul_trans_batch(trans_batch_a, trans_batch_b, trans_a, trans_b, tmp_path) -> None:
    """transBatch moves axis 0 behind the batch axes: A [d0, d1, d2, d3] is used as [d1, d2, d0, d3]."""
    a = rand(5, 2, 3, 4) if trans_batch_a else rand(2, 3, 5, 4)
    if trans_a:
        a = rand(4, 2, 3, 5) if trans_batch_a else rand(2, 3, 4, 5)
    b = rand(4, 2, 3, 6) if trans_batch_b else rand(2, 3, 4, 6)
    if trans_b:
        b = rand(6, 2, 3, 4) if trans_batch_b else rand(2, 3, 6, 4)
    feeds = {"a": a, "b": b}
    attrs = {"transBatchA": trans_batch_a, "transBatchB": trans_batch_b, "transA": trans_a, "transB": trans_b}
    check_with_ort(ms_node_model("FusedMatMul", feeds, ["y"], attrs), feeds, tmp_path)


@pytest.mark.parametrize("unknown,attrs", [("B", {"transB": 1}), ("B", {"transA": 1, "transB": 1, "transBatchB": 1}),
                                            ("A", {"transA": 1, "transBatchA": 1})])
def test_fused_matmul_of_an_operand_of_unknown_rank(unknown: str, attrs: dict, tmp_path) -> None:
    """onnx's shape inference stops at com.microsoft ops, so an operand computed by one (here the
    first FusedMatMul) has no declared rank: it is transposed by its rank at run time. (Equal
    sizes on every axis keep each permutation's shapes compatible and its values distinct.)"""
    from onnx2x.torch.runtime import contrib_activation as rt

    a, b = rand(3, 3, 3, 3), rand(3, 3, 3, 3)
    nodes = [helper.make_node("FusedMatMul", ["a", "b"], ["c"], domain="com.microsoft", transB=1, alpha=0.5),
             helper.make_node("FusedMatMul", ["c", "b"] if unknown == "A" else ["a", "c"], ["y"],
                              domain="com.microsoft", **attrs)]
    model = graph_model(nodes, {"a": a, "b": b}, ["y"])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    gm = convert(model, simplify=False)
    assert rt.matmul_operand in [n.target for n in gm.graph.nodes]
    check_with_ort(model, {"a": a, "b": b}, tmp_path)


@pytest.mark.parametrize("attrs,dtype", slow_after(2, [
    ({"kernel_shape": [2, 3], "strides": [1, 2], "pads": [0, 2, 1, 0], "ceil_mode": 1}, np.int8),
    ({"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "dilations": [2, 1]}, np.uint8),
    ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, np.uint8),
    ({"kernel_shape": [3, 2], "auto_pad": "SAME_LOWER", "strides": [2, 2]}, np.int8),
]))
def test_nhwc_max_pool(attrs: dict, dtype, tmp_path) -> None:
    """onnxruntime defines NhwcMaxPool for 8-bit integers (quantized CNNs)."""
    info = np.iinfo(dtype)
    feeds = {"x": rand.rng.integers(info.min, info.max, (2, 9, 8, 3), endpoint=True).astype(dtype)}
    check_with_ort(ms_node_model("NhwcMaxPool", feeds, ["y"], attrs), feeds, tmp_path)


@pytest.mark.parametrize("upper,k", slow_after(1, [(0, 2), (1, None), (0, None), (1, -1)]))
def test_trilu(upper: int, k, tmp_path) -> None:
    feeds = {"x": rand(2, 4, 5), "k": None if k is None else np.array(k, np.int64)}
    check_with_ort(ms_node_model("Trilu", feeds, ["y"], {"upper": upper}), feeds, tmp_path)


def test_unknown_fused_activation_is_refused_at_conversion() -> None:
    feeds = {"a": rand(4, 6), "b": rand(6, 5)}
    with pytest.raises(UnsupportedOpError, match="activation='Swoosh'"):
        convert(ms_node_model("FusedGemm", feeds, ["y"], {"activation": "Swoosh"}), simplify=False)
