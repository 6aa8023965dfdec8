"""Inference fusions (``onnx2x/torch/fusion.py``) and the weight-free onnx-simplifier pass.

Every case converts a small model with and without fusion and compares both with onnxruntime on
the original model: folding BatchNormalization/Mul/Add into convolutions, the fused
conv(+add)(+relu) calls with pre-packed oneDNN weights, and the multiply-add that replaces the
remaining BatchNormalizations. Cases where folding would be wrong (a convolution output read
twice, a non per-channel constant, a shared weight, a residual that is the convolution's own
input) must leave the graph alone and still match.

The exact pattern fusions (``fusion_patterns.py``: LayerNorm, RMSNorm, GroupNorm, GELU, attention,
linear, QDQ pairs, channel shuffle)
run on hand-built graphs in the exporters' forms, each with near misses that must stay unfused
(checked against onnxruntime with its own graph fusions off: its LayerNorm fusion ignores the
Pow exponent), on a fused block under ``torch.export`` and ONNX re-export, and on BERT / GPT-2
exported by ``torch.onnx.export`` through the CLI.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from onnx2x.torch import convert
from onnx2x.torch.runtime import conv as rt_conv
from onnx2x.torch.runtime import linalg as rt_linalg
from onnx2x.torch.runtime import normalization as rt_norm
from common.simplify import LARGE_INITIALIZER_BYTES, simplify

RTOL, ATOL = 1e-4, 1e-5
LINEAR = F.linear  # what MatMul+Add / Gemm with a constant weight becomes (small weights)
PACKED_LINEAR = rt_linalg.linear_prepacked  # the same with a weight worth packing for oneDNN once


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _bn_params(rng: np.random.Generator, c: int, prefix: str) -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(_f32(rng.uniform(0.5, 1.5, c)), f"{prefix}_scale"),
            numpy_helper.from_array(_f32(0.2 * rng.standard_normal(c)), f"{prefix}_bias"),
            numpy_helper.from_array(_f32(0.2 * rng.standard_normal(c)), f"{prefix}_mean"),
            numpy_helper.from_array(_f32(rng.uniform(0.5, 1.5, c)), f"{prefix}_var")]


def _bn(x: str, prefix: str, out: str) -> onnx.NodeProto:
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}_{k}" for k in ("scale", "bias", "mean", "var")],
                            [out], epsilon=1e-3)


def _model(nodes: list, inputs: list, outputs: list, inits: list, opset: int = 17) -> onnx.ModelProto:
    """``outputs``: names, or (name, shape) pairs."""
    outs = [(o, None) if isinstance(o, str) else o for o in outputs]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TP.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TP.FLOAT, s) for n, s in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], optimize: bool = True) -> list[np.ndarray]:
    """``optimize=False``: onnxruntime's graph fusions off (its LayerNorm fusion ignores the Pow
    exponent: onnxruntime 1.31 computes a LayerNorm for a Pow(d, 3) variance)."""
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _run(gm: torch.nn.Module, model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    names = [i.name for i in model.graph.input]
    with torch.no_grad():
        out = gm(*[torch.from_numpy(feeds[n]) for n in names])
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _check(model: onnx.ModelProto, feeds: dict[str, np.ndarray], optimize: bool = True) -> torch.fx.GraphModule:
    """Fused and unfused conversions both match onnxruntime; returns the fused module."""
    want = _ort(model, feeds, optimize)
    fused = convert(model, simplify=False, fuse=True)
    plain = convert(model, simplify=False, fuse=False)
    for gm in (fused, plain):
        got = _run(gm, model, feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    return fused


@pytest.fixture(params=["onednn", "small"])
def conv_path(request, monkeypatch) -> str:
    """Run a test on both of ``conv2d_fused``'s eager paths: oneDNN with a packed weight, and
    F.conv2d with the residual/clamp/ReLU in place (what convolutions below ONEDNN_MIN_MACS take;
    the tests' convolutions are all that small)."""
    monkeypatch.setattr(rt_conv, "ONEDNN_MIN_MACS", 0 if request.param == "onednn" else 2**62)
    monkeypatch.setattr(rt_conv, "SMALL_MAX_PIXELS", 2**62)
    rt_conv.clear_packed_weights()
    return request.param


def _targets(gm: torch.fx.GraphModule) -> list:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def _fused_calls(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target is rt_conv.conv2d_fused]


def _x(*shape: int, seed: int = 1) -> np.ndarray:
    return _f32(_rng(seed).standard_normal(shape))


# --- Conv + BatchNormalization (+ Mul + Add) + Relu -------------------------------------------
def _conv_bn_relu(extra_affine: bool = False, bias: bool = True) -> onnx.ModelProto:
    rng = _rng(3)
    inits = [numpy_helper.from_array(_f32(0.3 * rng.standard_normal((8, 4, 3, 3))), "w")] + _bn_params(rng, 8, "bn")
    conv_in = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(_f32(0.1 * rng.standard_normal(8)), "b"))
        conv_in.append("b")
    nodes = [helper.make_node("Conv", conv_in, ["c"], pads=[1, 1, 1, 1]), _bn("c", "bn", "n")]
    last = "n"
    if extra_affine:  # densenet: Mul and Add by per-channel [C, 1, 1] constants after the BN
        inits += [numpy_helper.from_array(_f32(rng.uniform(0.5, 1.5, (8, 1, 1))), "a"),
                  numpy_helper.from_array(_f32(0.1 * rng.standard_normal((8, 1, 1))), "s")]
        nodes += [helper.make_node("Mul", ["n", "a"], ["m"]), helper.make_node("Add", ["s", "m"], ["p"])]
        last = "p"
    nodes.append(helper.make_node("Relu", [last], ["y"]))
    return _model(nodes, [("x", ["N", 4, 9, 9])], ["y"], inits)


@pytest.mark.parametrize("extra_affine,bias", [(False, True), (False, False), (True, True)],
                         ids=["bn", "bn-no-bias", "bn-mul-add"])
def test_conv_bn_relu_folds_into_one_fused_call(extra_affine: bool, bias: bool, conv_path: str) -> None:
    model = _conv_bn_relu(extra_affine, bias)
    gm = _check(model, {"x": _x(2, 4, 9, 9)})
    assert _targets(gm) == [rt_conv.conv2d_fused]
    assert _fused_calls(gm)[0].kwargs == {"relu": True}
    # the BN scale/mean/var are folded away; the verification locator still finds the outputs
    assert not any("bn_mean" in name for name, _ in gm.named_parameters())
    assert gm.onnx_value_to_fx["y"] in {n.name for n in gm.graph.nodes}
    assert "c" not in gm.onnx_value_to_fx and "n" not in gm.onnx_value_to_fx


@pytest.mark.parametrize("bounds", ["relu6-11", "relu6-10", "runtime-max"])
def test_conv_bn_clip_applies_the_clip_in_the_convolution(bounds: str, conv_path: str) -> None:
    """MobileNet's Conv-BN-ReLU6 (Clip 0..6, as bounds inputs at opset 11+ or attributes before):
    one fused call with the clamp as oneDNN's post-op; a bound computed at run time stays a clamp."""
    model = _conv_bn_relu()
    clip = model.graph.node[-1]
    clip.op_type = "Clip"
    feeds = {"x": 3.0 * _x(2, 4, 9, 9)}
    if bounds == "relu6-10":
        clip.attribute.extend([helper.make_attribute("min", 0.0), helper.make_attribute("max", 6.0)])
        del model.opset_import[:]
        model.opset_import.extend([helper.make_opsetid("", 10)])
    else:
        clip.input.extend(["lo", "hi"])
        model.graph.initializer.append(numpy_helper.from_array(np.array(0.0, np.float32), "lo"))
        if bounds == "runtime-max":
            model.graph.input.append(helper.make_tensor_value_info("hi", TP.FLOAT, []))
            feeds["hi"] = np.array(2.5, np.float32)
        else:
            model.graph.initializer.append(numpy_helper.from_array(np.array(6.0, np.float32), "hi"))
    gm = _check(model, feeds)
    (call,) = _fused_calls(gm)
    if bounds == "runtime-max":
        assert "clamp" not in call.kwargs and torch.clamp in _targets(gm)
    else:
        assert call.kwargs["clamp"] == [0.0, 6.0] and torch.clamp not in _targets(gm)
        xt = torch.from_numpy(feeds["x"]).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():  # the fast path, and the plain path under torch.export
            np.testing.assert_allclose(gm(xt).numpy(), _ort(model, feeds)[0], rtol=RTOL, atol=ATOL)
            exported = torch.export.export(gm, (xt,)).module()
            np.testing.assert_allclose(exported(xt).numpy(), _ort(model, feeds)[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("activation", ["silu", "hardswish", "sigmoid", "gelu", "gelu_tanh", "silu-read-twice"])
def test_conv_bn_activation_applies_it_in_the_convolution(activation: str, conv_path: str) -> None:
    """EfficientNet's Conv-BN-SiLU (x * Sigmoid(x)), MobileNetV3's HardSwish, a Sigmoid gate and
    GELU (opset 20) become one fused call with oneDNN's post-op; an activation input read elsewhere
    keeps its own op. Fast path, plain path under torch.export and onnxruntime agree."""
    model = _conv_bn_relu()
    del model.graph.node[-1]  # the Relu
    read_twice = activation == "silu-read-twice"
    if activation.startswith("silu"):
        nodes = [helper.make_node("Sigmoid", ["n"], ["g"]), helper.make_node("Mul", ["n", "g"], ["y"])]
    elif activation.startswith("gelu"):
        nodes = [helper.make_node("Gelu", ["n"], ["y"], approximate="tanh" if activation == "gelu_tanh" else "none")]
        del model.opset_import[:]
        model.opset_import.extend([helper.make_opsetid("", 20)])
    else:
        nodes = [helper.make_node({"hardswish": "HardSwish", "sigmoid": "Sigmoid"}[activation], ["n"], ["y"])]
    model.graph.node.extend(nodes)
    if read_twice:
        model.graph.output.append(helper.make_tensor_value_info("n", TP.FLOAT, None))
    feeds = {"x": 3.0 * _x(2, 4, 9, 9)}
    gm = _check(model, feeds)
    (call,) = _fused_calls(gm)
    if read_twice:
        assert "activation" not in call.kwargs and F.silu in _targets(gm)
        return
    assert call.kwargs == {"activation": activation} and _targets(gm) == [rt_conv.conv2d_fused]
    xt = torch.from_numpy(feeds["x"]).contiguous(memory_format=torch.channels_last)
    want = _ort(model, feeds)[0]
    with torch.no_grad():
        np.testing.assert_allclose(gm(xt).numpy(), want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(torch.export.export(gm, (xt,)).module()(xt).numpy(), want, rtol=RTOL, atol=ATOL)


def test_conv_output_read_twice_is_not_folded() -> None:
    rng = _rng(4)
    inits = [numpy_helper.from_array(_f32(0.3 * rng.standard_normal((6, 3, 1, 1))), "w")] + _bn_params(rng, 6, "bn")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), _bn("c", "bn", "n"), helper.make_node("Relu", ["n"], ["y"])]
    model = _model(nodes, [("x", [1, 3, 5, 5])], ["y", "c"], inits)
    gm = _check(model, {"x": _x(1, 3, 5, 5)})
    assert rt_norm.batch_norm_inference not in _targets(gm)  # became a multiply-add, not folded
    assert torch.addcmul in _targets(gm)
    assert "c" in gm.onnx_value_to_fx


def test_spatial_constant_is_not_folded_into_the_convolution() -> None:
    rng = _rng(5)
    inits = [numpy_helper.from_array(_f32(0.3 * rng.standard_normal((4, 2, 3, 3))), "w"),
             numpy_helper.from_array(_f32(rng.uniform(0.5, 1.5, (1, 1, 5, 5))), "k")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Mul", ["c", "k"], ["y"])]
    model = _model(nodes, [("x", [1, 2, 5, 5])], ["y"], inits)
    gm = _check(model, {"x": _x(1, 2, 5, 5)})
    assert torch.mul in _targets(gm)


def test_shared_weight_is_folded_into_two_copies() -> None:
    """Two convolutions read one initializer; each folds its own BN without touching the other."""
    rng = _rng(6)
    inits = ([numpy_helper.from_array(_f32(0.3 * rng.standard_normal((4, 4, 3, 3))), "w")]
             + _bn_params(rng, 4, "bn1") + _bn_params(rng, 4, "bn2"))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"], pads=[1, 1, 1, 1]), _bn("c1", "bn1", "n1"),
             helper.make_node("Conv", ["n1", "w"], ["c2"], pads=[1, 1, 1, 1]), _bn("c2", "bn2", "y")]
    model = _model(nodes, [("x", [1, 4, 6, 6])], ["y"], inits)
    gm = _check(model, {"x": _x(1, 4, 6, 6)})
    assert _targets(gm) == [rt_conv.conv2d_fused, rt_conv.conv2d_fused]


def test_conv_transpose_grouped_bn_fold() -> None:
    rng = _rng(7)
    inits = ([numpy_helper.from_array(_f32(0.3 * rng.standard_normal((4, 3, 3, 3))), "w"),
              numpy_helper.from_array(_f32(0.1 * rng.standard_normal(6)), "b")] + _bn_params(rng, 6, "bn"))
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2], group=2), _bn("c", "bn", "y")]
    model = _model(nodes, [("x", [1, 4, 4, 4])], ["y"], inits)
    gm = _check(model, {"x": _x(1, 4, 4, 4)})
    assert rt_norm.batch_norm_inference not in _targets(gm) and torch.addcmul not in _targets(gm)


def test_conv1d_bn_fold() -> None:
    rng = _rng(8)
    inits = [numpy_helper.from_array(_f32(0.3 * rng.standard_normal((5, 3, 3))), "w")] + _bn_params(rng, 5, "bn")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1]), _bn("c", "bn", "y")]
    model = _model(nodes, [("x", [2, 3, 7])], ["y"], inits)
    gm = _check(model, {"x": _x(2, 3, 7)})
    assert _targets(gm) == [torch.conv1d]


@pytest.mark.parametrize("stride,pads,bias", [(1, [2, 2], True), (2, [0, 0], False), (1, [3, 1], True)],
                         ids=["same", "strided-valid", "asymmetric"])
def test_dilated_conv1d_runs_as_one_matrix_product(stride: int, pads: list, bias: bool) -> None:
    """A TCN/WaveNet layer: the GEMM path for one sample, F.conv1d for a batch, traced and exported
    modules on the plain path, all with onnxruntime's numbers."""
    rng = _rng(9)
    inits = [numpy_helper.from_array(_f32(0.3 * rng.standard_normal((6, 4, 3))), "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(_f32(rng.standard_normal(6)), "b"))
        inputs.append("b")
    nodes = [helper.make_node("Conv", inputs, ["c"], dilations=[2], strides=[stride], pads=pads),
             helper.make_node("Relu", ["c"], ["y"])]
    model = _model(nodes, [("x", ["n", 4, "t"])], ["y"], inits)
    gm = _check(model, {"x": _x(1, 4, 19)})
    assert rt_conv.conv1d_dilated in _targets(gm)
    for x in (_x(1, 4, 19, seed=2), _x(3, 4, 11, seed=3)):
        want = _ort(model, {"x": x})[0]
        np.testing.assert_allclose(_run(gm, model, {"x": x})[0], want, rtol=RTOL, atol=ATOL)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            for how, module in (("fx", torch.fx.symbolic_trace(gm)), ("export", torch.export.export(gm, (xt,)).module())):
                np.testing.assert_allclose(module(xt).numpy(), want, rtol=RTOL, atol=ATOL, err_msg=how)


def test_dilated_conv1d_gemm_path_is_taken_only_where_pytorch_is_slow(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(rt_conv, "_im2col_conv1d", lambda *a: calls.append(a[0].shape) or F.conv1d(
        a[0], a[1], a[2], [a[3]], [a[4]], [a[5]]))
    w = torch.randn(8, 8, 3)
    for shape in ((1, 8, 40), (2, 8, 40), (1, 8, rt_conv.SLOW_DILATED_MAX_ELEMENTS)):
        rt_conv.conv1d_dilated(torch.randn(shape), w, None, [1], [2], [2], 1)
    assert calls == [(1, 8, 40)]


# --- residual add ---------------------------------------------------------------------------
def _residual(swap: bool, shortcut_is_input: bool = False) -> onnx.ModelProto:
    """x -> conv1-BN-relu -> conv2-BN; + shortcut (conv3 of x, or x itself) -> relu."""
    rng = _rng(9)
    c = 4 if shortcut_is_input else 8
    inits = ([numpy_helper.from_array(_f32(0.3 * rng.standard_normal((8, 4, 3, 3))), "w1"),
              numpy_helper.from_array(_f32(0.3 * rng.standard_normal((c, 8, 1, 1))), "w2"),
              numpy_helper.from_array(_f32(0.3 * rng.standard_normal((8, 4, 1, 1))), "w3")]
             + _bn_params(rng, 8, "bn1") + _bn_params(rng, c, "bn2"))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), _bn("c1", "bn1", "n1"),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"]), _bn("c2", "bn2", "n2")]
    shortcut = "x"
    if not shortcut_is_input:
        nodes.append(helper.make_node("Conv", ["x", "w3"], ["s"]))
        shortcut = "s"
    nodes += [helper.make_node("Add", [shortcut, "n2"] if swap else ["n2", shortcut], ["a"]),
              helper.make_node("Relu", ["a"], ["y"])]
    return _model(nodes, [("x", [2, 4, 7, 7])], ["y"], inits)


@pytest.mark.parametrize("swap", [False, True], ids=["conv-first", "shortcut-first"])
def test_residual_add_relu_fused_and_accumulated_in_place(swap: bool, conv_path: str) -> None:
    model = _residual(swap)
    gm = _check(model, {"x": _x(2, 4, 7, 7)})
    fused = _fused_calls(gm)
    assert len(fused) == 3 and _targets(gm) == [rt_conv.conv2d_fused] * 3
    with_residual = [n for n in fused if "residual" in n.kwargs]
    assert len(with_residual) == 1
    assert with_residual[0].kwargs["relu"] is True and with_residual[0].kwargs["residual_is_dead"] is True
    assert gm.onnx_value_to_fx["y"] == with_residual[0].name


def test_residual_that_is_the_conv_input_is_not_overwritten(conv_path: str) -> None:
    """add(conv(x), x) with x read nowhere else: the fused call must not accumulate into x."""
    rng = _rng(10)
    inits = [numpy_helper.from_array(_f32(0.3 * rng.standard_normal((4, 4, 3, 3))), "w")]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Conv", ["r", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "r"], ["y"])]
    model = _model(nodes, [("x", [1, 4, 5, 5])], ["y"], inits)
    gm = _check(model, {"x": _x(1, 4, 5, 5)})
    (fused,) = _fused_calls(gm)
    assert fused.kwargs.get("residual") is fused.args[0] and "residual_is_dead" not in fused.kwargs


def test_small_convolutions_skip_onednn_and_large_ones_pack_their_weight() -> None:
    """An ungrouped, undilated convolution on at most SMALL_MAX_PIXELS output pixels and below
    ONEDNN_MIN_MACS multiply-adds per call runs F.conv2d (oneDNN's call overhead exceeds its
    arithmetic there) and packs nothing; the rest packs its weight."""
    gen = torch.Generator().manual_seed(0)
    side = int(rt_conv.SMALL_MAX_PIXELS ** 0.5)
    wide = int(rt_conv.ONEDNN_MIN_MACS / (side * side * 256))  # output channels at the MAC bound
    cases = [((16, 8, 1, 1), side, 1, False), ((16, 8, 1, 1), side + 1, 1, True),  # pixel bound
             ((16, 8, 3, 3), side, 1, False), ((16, 8, 3, 3), side, 2, True),  # dilated: PyTorch's kernel is slower
             ((wide, 256, 1, 1), side, 1, False), ((wide + 1, 256, 1, 1), side, 1, True)]  # MAC bound
    with torch.no_grad():
        for shape, hw, dilation, packs in cases:
            rt_conv.clear_packed_weights()
            w, bias = torch.randn(*shape, generator=gen), torch.randn(shape[0], generator=gen)
            pad = dilation * (shape[-1] // 2)
            x = torch.randn(1, shape[1], hw, hw, generator=gen).contiguous(memory_format=torch.channels_last)
            residual = torch.randn(1, shape[0], hw, hw, generator=gen)
            got = rt_conv.conv2d_fused(x, w, bias, [1, 1], [pad, pad], [dilation, dilation], 1,
                                       residual=residual, relu=True)
            want = torch.relu(F.conv2d(x, w, bias, 1, pad, dilation) + residual)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
            assert (w in rt_conv._PACKED) is packs, (shape, hw, dilation)


# --- BatchNormalization that follows no convolution ------------------------------------------
def test_pre_activation_bn_mul_add_relu_becomes_multiply_add(conv_path: str) -> None:
    """densenet: Concat -> BN -> Mul -> Add -> Relu -> Conv."""
    rng = _rng(11)
    inits = ([numpy_helper.from_array(_f32(0.3 * rng.standard_normal((4, 6, 1, 1))), "w"),
              numpy_helper.from_array(_f32(rng.uniform(0.5, 1.5, (6, 1, 1))), "a"),
              numpy_helper.from_array(_f32(0.1 * rng.standard_normal((6, 1, 1))), "s")] + _bn_params(rng, 6, "bn"))
    nodes = [helper.make_node("Concat", ["x1", "x2"], ["cat"], axis=1), _bn("cat", "bn", "n"),
             helper.make_node("Mul", ["n", "a"], ["m"]), helper.make_node("Add", ["m", "s"], ["p"]),
             helper.make_node("Relu", ["p"], ["r"]), helper.make_node("Conv", ["r", "w"], ["y"])]
    model = _model(nodes, [("x1", [2, 2, 5, 5]), ("x2", [2, 4, 5, 5])], ["y"], inits)
    gm = _check(model, {"x1": _x(2, 2, 5, 5, seed=1), "x2": _x(2, 4, 5, 5, seed=2)})
    assert _targets(gm) == [torch.cat, torch.addcmul, torch.relu_, rt_conv.conv2d_fused]


# --- the fused module outside eager inference ------------------------------------------------
def test_fused_module_traces_and_exports_with_the_same_numbers() -> None:
    model = _residual(False)
    x = _x(2, 4, 7, 7)
    want = _ort(model, {"x": x})[0]
    gm = convert(model, simplify=False, fuse=True)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        results = {
            "fx": torch.fx.symbolic_trace(gm)(xt),
            "jit": torch.jit.trace(gm, (xt,))(xt),
            "export": torch.export.export(gm, (xt,)).module()(xt),
        }
    for how, got in results.items():
        np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL, err_msg=how)
    exported = torch.export.export(gm, (xt,))
    assert not any("mkldnn" in str(n.target) for n in exported.graph.nodes)  # the plain path was traced


def test_autograd_takes_the_plain_path() -> None:
    model = _conv_bn_relu()
    x = _x(2, 4, 9, 9)
    gm = convert(model, simplify=False, fuse=True)
    xt = torch.from_numpy(x).requires_grad_(True)
    y = gm(xt)
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), _ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)
    assert xt.grad is not None and xt.grad.shape == xt.shape


def test_packed_weight_follows_batch_changes_and_weight_updates(conv_path: str) -> None:
    model = _conv_bn_relu(bias=False)
    gm = convert(model, simplify=False, fuse=True)
    for n in (1, 3, 1):
        x = _x(n, 4, 9, 9, seed=n)
        np.testing.assert_allclose(_run(gm, model, {"x": x})[0], _ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)
    # doubling the (folded) weight in place equals doubling the ONNX weight (BN is affine after it)
    (fused,) = _fused_calls(gm)
    with torch.no_grad():
        getattr(gm, fused.args[1].target).mul_(2.0)
    doubled = onnx.ModelProto()
    doubled.CopyFrom(model)
    w = doubled.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, w.name))
    x = _x(1, 4, 9, 9, seed=1)
    np.testing.assert_allclose(_run(gm, model, {"x": x})[0], _ort(doubled, {"x": x})[0], rtol=RTOL, atol=ATOL)


def test_module_built_in_inference_mode(conv_path: str) -> None:
    """Inference tensors have no version counter; the packed-weight cache must cope."""
    model = _residual(True)
    x = _x(2, 4, 7, 7)
    with torch.inference_mode():
        gm = convert(model, simplify=False, fuse=True)
        got = gm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)


# --- onnx-simplifier on the model's skeleton -------------------------------------------------
def _shape_model() -> onnx.ModelProto:
    """Large conv weight, BN, and a Shape-computed flatten that onnxsim folds to a constant."""
    rng = _rng(12)
    inits = ([numpy_helper.from_array(_f32(0.1 * rng.standard_normal((32, 16, 3, 3))), "w"),
              numpy_helper.from_array(_f32(0.1 * rng.standard_normal((10, 32 * 6 * 6))), "fc"),
              numpy_helper.from_array(np.array([0], np.int64), "zero"),
              numpy_helper.from_array(np.array([-1], np.int64), "minus_one")] + _bn_params(rng, 32, "bn"))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), _bn("c", "bn", "n"), helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("Shape", ["r"], ["shape"]), helper.make_node("Gather", ["shape", "zero"], ["batch"]),
             helper.make_node("Concat", ["batch", "minus_one"], ["flat"], axis=0),
             helper.make_node("Reshape", ["r", "flat"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    return _model(nodes, [("x", [2, 16, 8, 8])], [("y", [2, 10])], inits)


@pytest.mark.parametrize("in_place", [False, True], ids=["copy", "in-place"])
def test_simplify_sees_no_large_weights_and_puts_them_back(in_place: bool,
                                                           onnxsim_inputs: list[onnx.ModelProto]) -> None:
    model = _shape_model()
    original = onnx.ModelProto()
    original.CopyFrom(model)
    large = {t.name for t in model.graph.initializer if numpy_helper.to_array(t).nbytes > LARGE_INITIALIZER_BYTES}
    assert large == {"w", "fc"}
    out = simplify(model, in_place=in_place)
    (given,) = onnxsim_inputs
    assert max(numpy_helper.to_array(t).nbytes for t in given.graph.initializer) <= LARGE_INITIALIZER_BYTES
    assert {i.name for i in given.graph.input} == {"x"} | large
    assert (out is model) == in_place
    if not in_place:
        assert model == original  # the caller's proto is untouched
    assert {"Shape", "Gather", "Concat"}.isdisjoint(n.op_type for n in out.graph.node)  # folded by onnxsim
    assert [i.name for i in out.graph.input] == ["x"]
    names = [t.name for t in out.graph.initializer]
    assert len(names) == len(set(names))
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    for name in large:
        np.testing.assert_array_equal(inits[name], numpy_helper.to_array(
            next(t for t in original.graph.initializer if t.name == name)))
    x = _x(2, 16, 8, 8)
    np.testing.assert_allclose(_ort(out, {"x": x})[0], _ort(original, {"x": x})[0], rtol=1e-5, atol=1e-6)
    gm = convert(out)
    np.testing.assert_allclose(_run(gm, original, {"x": x})[0], _ort(original, {"x": x})[0], rtol=RTOL, atol=ATOL)


def test_default_conversion_matches_onnxruntime_and_keeps_the_callers_proto() -> None:
    model = _shape_model()
    original = onnx.ModelProto()
    original.CopyFrom(model)
    gm = convert(model)  # onnxsim on the skeleton, then fusion
    assert model == original
    x = _x(2, 16, 8, 8)
    np.testing.assert_allclose(_run(gm, model, {"x": x})[0], _ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)
    assert rt_conv.conv2d_fused in _targets(gm)


# --- exact patterns (fusion_patterns.py) ------------------------------------------------------
# Hand-built graphs in the forms exporters write (torch.onnx.export at opset 14 unless noted);
# each must become one call and match both the unfused module and onnxruntime, and each
# near-miss (eps outside the root, another axis, another exponent, a value read twice) must not.
def _c(value: Any, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(_f32(value), name)


def _count(gm: torch.fx.GraphModule, target: Any) -> int:
    return sum(1 for n in gm.graph.nodes if n.op == "call_function" and n.target is target)


def _layer_norm_model(form: str, opset: int = 14) -> onnx.ModelProto:
    """x [2, 5, 8] -> decomposed LayerNorm. ``form`` picks the exporter's variant or a near miss."""
    rng = _rng(20)
    gamma_shape = (1, 1, 8) if form == "reciprocal" else (8,)
    inits = [_c(1e-5, "eps"), _c(3.0 if form == "pow3" else 2.0, "two"),
             _c(rng.uniform(0.5, 1.5, gamma_shape), "gamma"), _c(0.1 * rng.standard_normal(8), "beta")]
    axis = 1 if form == "axis1" else -1
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([axis], np.int64), "axes"))
        mean = lambda i, o: helper.make_node("ReduceMean", [i, "axes"], [o], keepdims=1)  # noqa: E731
    else:
        mean = lambda i, o: helper.make_node("ReduceMean", [i], [o], axes=[axis], keepdims=1)  # noqa: E731
    nodes = [mean("x", "m"), helper.make_node("Sub", ["x", "m"], ["d"])]
    if form == "mul-square":
        nodes.append(helper.make_node("Mul", ["d", "d"], ["sq"]))
    else:
        nodes.append(helper.make_node("Pow", ["d", "two"], ["sq"]))
    nodes.append(mean("sq", "v"))
    if form == "eps-outside":  # sqrt(var) + eps: not what F.layer_norm computes
        nodes += [helper.make_node("Sqrt", ["v"], ["s"]), helper.make_node("Add", ["s", "eps"], ["ve"]),
                  helper.make_node("Div", ["d", "ve"], ["n"])]
    else:
        add_in = ["eps", "v"] if form == "mul-square" else ["v", "eps"]
        nodes += [helper.make_node("Add", add_in, ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"])]
        if form == "reciprocal":
            nodes += [helper.make_node("Reciprocal", ["s"], ["r"]), helper.make_node("Mul", ["d", "r"], ["n"])]
        else:
            nodes.append(helper.make_node("Div", ["d", "s"], ["n"]))
    outputs = ["y"]
    if form == "reciprocal":  # no beta
        nodes.append(helper.make_node("Mul", ["gamma", "n"], ["y"]))
    else:
        swapped = form == "mul-square"
        nodes += [helper.make_node("Mul", ["gamma", "n"] if swapped else ["n", "gamma"], ["g"]),
                  helper.make_node("Add", ["beta", "g"] if swapped else ["g", "beta"], ["y"])]
    if form == "variance-read-twice":
        outputs.append("v")
    return _model(nodes, [("x", ["N", 5, 8])], outputs, inits, opset=opset)


@pytest.mark.parametrize("form,opset", [("torch", 14), ("mul-square", 14), ("reciprocal", 14), ("torch", 18)],
                         ids=["torch-export", "mul-square-swapped", "reciprocal-no-beta", "opset18-axes-input"])
def test_decomposed_layer_norm_becomes_layer_norm(form: str, opset: int) -> None:
    gm = _check(_layer_norm_model(form, opset), {"x": 3.0 * _x(2, 5, 8) + 1.0})
    assert _targets(gm) == [F.layer_norm]
    (ln,) = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert ln.args[1] == (8,) and ln.args[4] == pytest.approx(1e-5)
    assert ln.args[3] is None if form == "reciprocal" else ln.args[3] is not None
    assert gm.onnx_value_to_fx["y"] == ln.name  # the locator still finds the chain's result
    assert "d" not in gm.onnx_value_to_fx and "v" not in gm.onnx_value_to_fx


@pytest.mark.parametrize("form", ["eps-outside", "axis1", "pow3", "variance-read-twice"])
def test_layer_norm_near_misses_are_left_alone(form: str) -> None:
    gm = _check(_layer_norm_model(form), {"x": 3.0 * _x(2, 5, 8) + 1.0}, optimize=False)
    assert F.layer_norm not in _targets(gm) and F.rms_norm not in _targets(gm)


def _rms_norm_model(form: str) -> onnx.ModelProto:
    """transformers' RMSNorm: x * rsqrt(mean(x^2) + eps) * w (rsqrt exported as Div(1, Sqrt))."""
    rng = _rng(21)
    inits = [_c(1e-6, "eps"), _c(2.0, "two"), _c([1.0], "one"), _c(rng.uniform(0.5, 1.5, 8), "w")]
    nodes = [helper.make_node("Pow", ["x", "two"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["v"], axes=[-1], keepdims=1)]
    if form == "eps-outside":
        nodes += [helper.make_node("Sqrt", ["v"], ["s"]), helper.make_node("Add", ["s", "eps"], ["root"])]
    else:
        nodes += [helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["root"])]
    if form == "div":
        nodes.append(helper.make_node("Div", ["x", "root"], ["n"]))
    else:
        nodes += [helper.make_node("Div", ["one", "root"], ["r"]), helper.make_node("Mul", ["x", "r"], ["n"])]
    nodes.append(helper.make_node("Mul", ["w", "n"], ["y"]))
    return _model(nodes, [("x", [2, "L", 8])], ["y"], inits, opset=14)


@pytest.mark.parametrize("form", ["rsqrt", "div"])
def test_decomposed_rms_norm_becomes_rms_norm(form: str) -> None:
    gm = _check(_rms_norm_model(form), {"x": _x(2, 5, 8)})
    assert _targets(gm) == [F.rms_norm]
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert node.args[1] == (8,) and node.args[3] == pytest.approx(1e-6)


def test_rms_norm_with_eps_outside_the_root_is_left_alone() -> None:
    gm = _check(_rms_norm_model("eps-outside"), {"x": _x(2, 5, 8)}, optimize=False)
    assert F.rms_norm not in _targets(gm)


def _gelu_model(form: str) -> onnx.ModelProto:
    """The Erf and Tanh GELUs in their exported groupings (and near misses)."""
    inits = [_c(1.0, "one"), _c(0.5, "half"), _c(np.sqrt(2.0), "sqrt2"), _c(1 / np.sqrt(2.0), "inv_sqrt2"),
             _c(np.sqrt(2 / np.pi), "k"), _c(0.044715, "cubic"), _c(2.0 if form == "tanh-square" else 3.0, "three"),
             _c(1.41, "almost_sqrt2")]
    mk = helper.make_node
    if form.startswith("erf") or form == "wrong-constant":
        if form in ("erf-torch", "erf-read-twice", "wrong-constant"):  # F.gelu as torch.onnx exports it
            nodes = [mk("Div", ["x", "almost_sqrt2" if form == "wrong-constant" else "sqrt2"], ["u"]),
                     mk("Erf", ["u"], ["e"]), mk("Add", ["e", "one"], ["a"]),
                     mk("Mul", ["x", "a"], ["p"]), mk("Mul", ["p", "half"], ["y"])]
        elif form == "erf-half-first":  # 0.5 * x * (1 + erf(x * 1/sqrt2))
            nodes = [mk("Mul", ["x", "inv_sqrt2"], ["u"]), mk("Erf", ["u"], ["e"]), mk("Add", ["one", "e"], ["a"]),
                     mk("Mul", ["half", "x"], ["h"]), mk("Mul", ["h", "a"], ["y"])]
        else:  # x * ((1 + erf) * 0.5)
            nodes = [mk("Div", ["x", "sqrt2"], ["u"]), mk("Erf", ["u"], ["e"]), mk("Add", ["e", "one"], ["a"]),
                     mk("Mul", ["a", "half"], ["p"]), mk("Mul", ["x", "p"], ["y"])]
    else:  # transformers' NewGELUActivation (GPT-2): 0.5 x (1 + tanh(k (x + 0.044715 x^3)))
        cube = ([mk("Pow", ["x", "three"], ["x3"])] if form != "tanh-xxx"
                else [mk("Mul", ["x", "x"], ["x2"]), mk("Mul", ["x2", "x"], ["x3"])])
        nodes = [mk("Mul", ["x", "half"], ["h"])] + cube + [
            mk("Mul", ["x3", "cubic"], ["c3"]), mk("Add", ["x", "c3"], ["i"]), mk("Mul", ["i", "k"], ["z"]),
            mk("Tanh", ["z"], ["t"]), mk("Add", ["t", "one"], ["a"]), mk("Mul", ["h", "a"], ["y"])]
    outputs = ["y", "e"] if form == "erf-read-twice" else ["y"]
    return _model(nodes, [("x", ["N", 16])], outputs, inits, opset=14)


@pytest.mark.parametrize("form,approximate", [("erf-torch", "none"), ("erf-half-first", "none"),
                                              ("erf-half-last", "none"), ("tanh-gpt2", "tanh"),
                                              ("tanh-xxx", "tanh")])
def test_gelu_arithmetic_becomes_gelu(form: str, approximate: str) -> None:
    gm = _check(_gelu_model(form), {"x": 3.0 * _x(4, 16)})
    assert _targets(gm) == [F.gelu]
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert node.kwargs.get("approximate", "none") == approximate
    assert gm.onnx_value_to_fx["y"] == node.name


@pytest.mark.parametrize("form", ["wrong-constant", "tanh-square", "erf-read-twice"])
def test_gelu_near_misses_are_left_alone(form: str) -> None:
    gm = _check(_gelu_model(form), {"x": 3.0 * _x(4, 16)}, optimize=False)
    assert F.gelu not in _targets(gm)


def _silu_model(form: str) -> onnx.ModelProto:
    """Conv -> ``c * Sigmoid(c)`` (SiLU as exporters write it) or ``c * HardSigmoid(c)``
    (hardswish before opset 14) -> Conv, and near misses."""
    rng = _rng(25)
    inits = [_c(0.3 * rng.standard_normal((8, 4, 3, 3)), "w1"), _c(0.3 * rng.standard_normal((8, 8, 1, 1)), "w2")]
    mk = helper.make_node
    operands = {"x-sigmoid": ["c", "s"], "sigmoid-x": ["s", "c"], "sigmoid-read-twice": ["c", "s"],
                "other-operand": ["x2", "s"], "hardswish": ["s", "c"], "hardsigmoid-0.2": ["c", "s"]}[form]
    gate = (mk("HardSigmoid", ["c"], ["s"], alpha=1 / 6, beta=0.5) if form == "hardswish" else
            mk("HardSigmoid", ["c"], ["s"]) if form == "hardsigmoid-0.2" else mk("Sigmoid", ["c"], ["s"]))
    nodes = [mk("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]), gate,
             mk("Mul", operands, ["a"]), mk("Conv", ["a", "w2"], ["y"])]
    inputs = [("x", ["N", 4, 6, 6])] + ([("x2", ["N", 8, 6, 6])] if form == "other-operand" else [])
    outputs = ["y", "s"] if form == "sigmoid-read-twice" else ["y"]
    return _model(nodes, inputs, outputs, inits)


@pytest.mark.parametrize("form", ["x-sigmoid", "sigmoid-x", "hardswish"])
def test_self_gating_becomes_f_silu_or_hardswish(form: str) -> None:
    """The gate becomes F.silu / F.hardswish, which the convolution before it then applies as its
    activation (oneDNN's post-op)."""
    gm = _check(_silu_model(form), {"x": 4.0 * _x(2, 4, 6, 6)})  # hardswish's both bends: |x| > 3
    first = _fused_calls(gm)[0]
    assert first.kwargs == {"activation": "hardswish" if form == "hardswish" else "silu"}
    assert torch.mul not in _targets(gm) and F.silu not in _targets(gm) and F.hardswish not in _targets(gm)
    assert torch.sigmoid not in _targets(gm) and F.hardsigmoid not in _targets(gm)
    assert gm.onnx_value_to_fx["a"] == first.name


@pytest.mark.parametrize("form", ["sigmoid-read-twice", "other-operand", "hardsigmoid-0.2"])
def test_self_gating_near_misses_are_left_alone(form: str) -> None:
    feeds = {"x": 4.0 * _x(2, 4, 6, 6), "x2": _x(2, 8, 6, 6, seed=4)}
    model = _silu_model(form)
    gm = _check(model, {i.name: feeds[i.name] for i in model.graph.input})
    assert F.silu not in _targets(gm) and F.hardswish not in _targets(gm)


def _attention_model(form: str, opset: int = 14) -> onnx.ModelProto:
    """q [B, H, L, E], k and v [B, H, S, E], additive mask [B, 1, 1, S] (graph inputs)."""
    e = 8
    inits = [_c(1 / np.sqrt(e), "scale"), _c(np.sqrt(e), "root"), _c(e ** -0.25, "quarter"),
             _c(_rng(22).standard_normal((5, 6)), "bias_scores"),
             _c(_rng(24).standard_normal((1, 4, 5, 6)), "position_bias")]
    mk = helper.make_node
    nodes = [mk("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2])]
    q, kt = "q", "kt"
    if form in ("scale-on-q-and-k", "nan-guard"):  # q * e^-1/4 and k^T * e^-1/4 (torch's SDPA export)
        nodes += [mk("Mul", ["q", "quarter"], ["qs"]), mk("Mul", ["quarter", "kt"], ["kts"])]
        q, kt = "qs", "kts"
    nodes.append(mk("MatMul", [q, kt], ["s"]))
    if form in ("bert", "probs-read-twice", "softmax-axis2", "opset11"):
        nodes += [mk("Mul", ["s", "scale"], ["ss"]), mk("Add", ["ss", "mask"], ["l"])]
    elif form == "div-no-mask":
        nodes.append(mk("Div", ["s", "root"], ["l"]))
    elif form in ("scale-on-q-and-k", "nan-guard"):
        nodes.append(mk("Add", ["mask", "s"], ["l"]))
    elif form == "causal-constant":  # a constant [L, S] mask
        causal = np.triu(np.full((5, 6), np.finfo(np.float32).min, np.float32), k=2)
        inits.append(numpy_helper.from_array(causal, "causal"))
        nodes += [mk("Mul", ["s", "scale"], ["ss"]), mk("Add", ["ss", "causal"], ["l"])]
    elif form == "tensor-scale":  # a [L, S] bias multiplied in: not a scale
        nodes += [mk("Mul", ["s", "bias_scores"], ["l"])]
    elif form == "t5":  # unscaled scores + a relative position bias [1, H, L, S], then the padding mask
        nodes += [mk("Add", ["s", "position_bias"], ["sb"]), mk("Add", ["sb", "mask"], ["l"])]
    elif form == "t5-swapped":
        nodes += [mk("Add", ["position_bias", "s"], ["sb"]), mk("Add", ["mask", "sb"], ["l"])]
    elif form == "bias-read-twice":  # the biased scores are an output too: not fused
        nodes += [mk("Add", ["s", "position_bias"], ["sb"]), mk("Add", ["sb", "mask"], ["l"])]
    axis = 2 if form == "softmax-axis2" else (3 if form == "opset11" else -1)
    if form == "nan-guard":  # rows the mask hides entirely are zeros, as SDPA returns them
        inits.append(_c([0.0], "zero"))
        nodes += [mk("Softmax", ["l"], ["p0"], axis=axis), mk("IsNaN", ["p0"], ["nan"]),
                  mk("Where", ["nan", "zero", "p0"], ["p"])]
    else:
        nodes.append(mk("Softmax", ["l"], ["p"], axis=axis))
    nodes.append(mk("MatMul", ["p", "v"], ["y"]))
    outputs = ["y", "p"] if form == "probs-read-twice" else ["y", "sb"] if form == "bias-read-twice" else ["y"]
    inputs = [("q", ["B", 4, 5, e]), ("k", ["B", 4, 6, e]), ("v", ["B", 4, 6, e]), ("mask", ["B", 1, 1, 6])]
    used = {i for n in nodes for i in n.input}
    return _model(nodes, [i for i in inputs if i[0] in used], outputs, inits, opset=11 if form == "opset11" else opset)


def _attention_feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    mask = np.zeros((2, 1, 1, 6), np.float32)
    mask[0, ..., 4:] = np.finfo(np.float32).min  # padding, as transformers masks it
    if any(n.op_type == "IsNaN" for n in model.graph.node):
        mask[1] = -np.inf  # every key hidden: NaN rows in Softmax, zeroed by the guard
    feeds = {"q": _x(2, 4, 5, 8, seed=1), "k": _x(2, 4, 6, 8, seed=2), "v": _x(2, 4, 6, 8, seed=3), "mask": mask}
    return {i.name: feeds[i.name] for i in model.graph.input}


@pytest.mark.parametrize("form", ["bert", "div-no-mask", "scale-on-q-and-k", "opset11", "causal-constant",
                                  "nan-guard", "t5", "t5-swapped"])
def test_attention_becomes_scaled_dot_product_attention(form: str) -> None:
    model = _attention_model(form)
    gm = _check(model, _attention_feeds(model))
    assert _count(gm, F.scaled_dot_product_attention) == 1
    assert torch.matmul not in _targets(gm) and torch.where not in _targets(gm)
    (sdpa,) = [n for n in gm.graph.nodes if n.target is F.scaled_dot_product_attention]
    assert sdpa.kwargs["scale"] == pytest.approx(1.0 if form.startswith("t5") else 1 / np.sqrt(8), rel=1e-6)
    assert len(sdpa.args) == (3 if form == "div-no-mask" else 4)
    assert gm.onnx_value_to_fx["y"] == sdpa.name
    if form.startswith("t5"):  # one mask: the bias plus the padding mask
        assert _count(gm, torch.add) == 1 and sdpa.args[3].target is torch.add


@pytest.mark.parametrize("form", ["softmax-axis2", "probs-read-twice", "tensor-scale", "bias-read-twice"])
def test_attention_near_misses_are_left_alone(form: str) -> None:
    model = _attention_model(form)
    gm = _check(model, _attention_feeds(model), optimize=False)
    assert F.scaled_dot_product_attention not in _targets(gm)


def _linear_model(form: str) -> onnx.ModelProto:
    rng = _rng(23)
    w = 0.3 * rng.standard_normal((8, 6))
    inits = [_c(w, "w"), _c(w.T, "wt"), _c(0.1 * rng.standard_normal(6), "b"),
             _c(0.1 * rng.standard_normal((3, 6)), "b_rows")]
    mk = helper.make_node
    if form == "matmul-add":
        nodes, x = [mk("MatMul", ["x", "w"], ["m"]), mk("Add", ["b", "m"], ["y"])], ("x", ["N", 3, 8])
    elif form == "gemm":
        nodes, x = [mk("Gemm", ["x", "w", "b"], ["y"])], ("x", ["N", 8])
    elif form == "gemm-transB":
        nodes, x = [mk("Gemm", ["x", "wt", "b"], ["y"], transB=1)], ("x", ["N", 8])
    elif form == "bias-per-row":  # a [3, 6] bias is not a per-output vector
        nodes, x = [mk("MatMul", ["x", "w"], ["m"]), mk("Add", ["m", "b_rows"], ["y"])], ("x", ["N", 3, 8])
    else:  # the weight is an input: nothing to transpose at conversion
        nodes, x = [mk("MatMul", ["x", "win"], ["m"]), mk("Add", ["m", "b"], ["y"])], ("x", ["N", 3, 8])
    inputs = [x] + ([("win", [8, 6])] if form == "runtime-weight" else [])
    return _model(nodes, inputs, ["y"], inits, opset=14)


@pytest.mark.parametrize("form", ["matmul-add", "gemm", "gemm-transB"])
def test_matmul_bias_becomes_linear(form: str) -> None:
    model = _linear_model(form)
    x = _x(2, 3, 8) if form == "matmul-add" else _x(4, 8)
    gm = _check(model, {"x": x})
    assert _targets(gm) == [LINEAR]
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function"]
    weight = getattr(gm, node.args[1].target)
    assert tuple(weight.shape) == (6, 8)  # [out, in]: a transposed view of the [in, out] initializer, no copy


def test_only_weights_worth_packing_get_the_packed_linear() -> None:
    """A MatMul+Add whose weight the packed path would take (PACK_MIN_ELEMENTS and over) becomes
    ``linear_prepacked``; a smaller one plain F.linear, where the helper's checks are pure cost."""
    rng = _rng(26)
    k = rt_linalg.PACK_MIN_ELEMENTS // 512
    for n, want in ((512, PACKED_LINEAR), (511, F.linear)):
        inits = [_c(0.05 * rng.standard_normal((k, n)), "w"), _c(0.1 * rng.standard_normal(n), "b")]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
        gm = _check(_model(nodes, [("x", ["N", k])], ["y"], inits, opset=14), {"x": _x(4, k)})
        assert _targets(gm) == [want], n


def test_tied_weight_is_transposed_once() -> None:
    """Two MatMul+Add read one initializer: both become F.linear over one transposed copy."""
    rng = _rng(25)
    inits = [_c(0.3 * rng.standard_normal((8, 8)), "w"), _c(0.1 * rng.standard_normal(8), "b1"),
             _c(0.1 * rng.standard_normal(8), "b2")]
    mk = helper.make_node
    nodes = [mk("MatMul", ["x", "w"], ["m1"]), mk("Add", ["m1", "b1"], ["h"]),
             mk("MatMul", ["h", "w"], ["m2"]), mk("Add", ["m2", "b2"], ["y"])]
    gm = _check(_model(nodes, [("x", ["N", 8])], ["y"], inits, opset=14), {"x": _x(3, 8)})
    linears = [n for n in gm.graph.nodes if n.target is LINEAR]
    assert len(linears) == 2 and linears[0].args[1].target == linears[1].args[1].target
    assert len([name for name, p in gm.named_parameters() if p.dim() == 2]) == 1


def test_prepacked_linear_matches_f_linear_and_follows_weight_updates() -> None:
    """The oneDNN path (eager, no grad) and the plain path (autograd) give F.linear's numbers;
    a weight changed in place is packed again; weights too small or too big to gain from packing,
    and single rows, take F.linear."""
    gen = torch.Generator().manual_seed(0)
    n, k = 512, rt_linalg.PACK_MIN_ELEMENTS // 512
    w, b = 0.05 * torch.randn(n, k, generator=gen), torch.randn(n, generator=gen)
    for shape in ((k,), (4, k), (2, 3, k)):
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            torch.testing.assert_close(PACKED_LINEAR(x, w, b), F.linear(x, w, b))
            torch.testing.assert_close(PACKED_LINEAR(x.transpose(0, -1).contiguous().transpose(0, -1), w, None),
                                       F.linear(x, w))
    x = torch.randn(4, k, generator=gen)
    with torch.no_grad():
        rt_linalg.clear_packed_linear_weights()
        PACKED_LINEAR(x, w, b), PACKED_LINEAR(x, w, b)
        assert rt_linalg._PACKED_LINEAR[w][1] is not None  # the packed copy, kept
        w.mul_(2.0)
        torch.testing.assert_close(PACKED_LINEAR(x, w, b), F.linear(x, w, b))
    xg = x.clone().requires_grad_(True)
    PACKED_LINEAR(xg, w, b).sum().backward()
    torch.testing.assert_close(xg.grad, w.sum(0).expand(4, k))
    big = torch.zeros(rt_linalg.PACK_MAX_BYTES // 4 // 8 + 1, 8)  # over the cap: no packed second copy
    small = torch.randn(64, k, generator=gen)  # oneDNN's call overhead outweighs packing
    one_row = torch.randn(1, k, generator=gen)
    with torch.no_grad():
        rt_linalg.clear_packed_linear_weights()
        PACKED_LINEAR(x[:, :8], big, None), PACKED_LINEAR(x, small, None)
        torch.testing.assert_close(PACKED_LINEAR(one_row, w, b), F.linear(one_row, w, b))
    assert not rt_linalg._PACKED_LINEAR  # none of them was packed


def test_packed_weights_are_kept_from_their_second_call_on() -> None:
    """A run made once (the CLI's check) packs each weight for its call and keeps no packed copy,
    so it never holds a second copy of the weights; the second call with the same weight keeps
    one, and from then on the packed copy is reused. Values as F.linear's / F.conv2d's each time."""
    gen = torch.Generator().manual_seed(1)
    k = rt_linalg.PACK_MIN_ELEMENTS // 512
    w, x = 0.05 * torch.randn(512, k, generator=gen), torch.randn(4, k, generator=gen)
    cw, cx = torch.randn(16, 8, 3, 3, generator=gen), torch.randn(1, 8, 32, 32, generator=gen)

    def linear() -> torch.Tensor:
        got = PACKED_LINEAR(x, w, None)
        torch.testing.assert_close(got, F.linear(x, w))
        return rt_linalg._PACKED_LINEAR[w][1]

    def conv() -> torch.Tensor:
        got = rt_conv.conv2d_fused(cx, cw, None, [1, 1], [1, 1], [1, 1], 1)
        torch.testing.assert_close(got, F.conv2d(cx, cw, None, 1, 1), rtol=1e-4, atol=1e-4)
        return rt_conv._PACKED[cw][2]

    with torch.no_grad():
        rt_linalg.clear_packed_linear_weights()
        rt_conv.clear_packed_weights()
        for run in (linear, conv):
            assert run() is None, run.__name__  # one call: nothing kept beside the weight
            kept = run()
            assert kept is not None, run.__name__  # the second call keeps the packed copy
            assert run() is kept, run.__name__  # reused, not packed again


@pytest.mark.parametrize("form", ["bias-per-row", "runtime-weight"])
def test_matmul_bias_near_misses_are_left_alone(form: str) -> None:
    model = _linear_model(form)
    feeds = {"x": _x(2, 3, 8)}
    if form == "runtime-weight":
        feeds["win"] = _x(8, 6, seed=5)
    gm = _check(model, feeds, optimize=False)
    if form == "bias-per-row":  # the MatMul alone is a linear layer; the [3, 6] Add stays an Add
        assert _targets(gm) == [F.linear, torch.add]
        (linear,) = [n for n in gm.graph.nodes if n.target is F.linear]
        assert linear.args[2] is None
    else:
        assert PACKED_LINEAR not in _targets(gm) and F.linear not in _targets(gm)


@pytest.mark.parametrize("form", ["matmul", "matmul-read-twice", "gemm-no-c"])
def test_bias_free_matmul_becomes_linear(form: str) -> None:
    """LLaMA's and T5's layers: ``MatMul(x, W)`` with a constant W and no bias -> F.linear(x, W^T);
    also when the product is read elsewhere too (the Add of a bias then stays an Add), and a Gemm
    without C."""
    rng = _rng(27)
    mk = helper.make_node
    inits = [_c(0.3 * rng.standard_normal((8, 6)), "w"), _c(0.1 * rng.standard_normal(6), "b")]
    if form == "matmul":
        nodes, outs = [mk("MatMul", ["x", "w"], ["y"])], ["y"]
    elif form == "matmul-read-twice":
        nodes = [mk("MatMul", ["x", "w"], ["m"]), mk("Add", ["m", "b"], ["y"]), mk("Relu", ["m"], ["z"])]
        outs = ["y", "z"]
    else:
        nodes, outs = [mk("Gemm", ["x", "w"], ["y"], alpha=1.0, beta=0.5)], ["y"]
    model = _model(nodes, [("x", ["N", 8] if form == "gemm-no-c" else ["N", 3, 8])], outs, inits, opset=14)
    gm = _check(model, {"x": _x(4, 8) if form == "gemm-no-c" else _x(2, 3, 8)})
    (linear,) = [n for n in gm.graph.nodes if n.target is F.linear]
    assert linear.args[2] is None and torch.matmul not in _targets(gm) and rt_linalg.gemm not in _targets(gm)
    assert tuple(getattr(gm, linear.args[1].target).shape) == (6, 8)


# --- Pow with a constant exponent --------------------------------------------------------------
@pytest.mark.parametrize("exponent,shape,target", [
    (2.0, [], torch.square), (0.5, [], torch.sqrt), (-1.0, [1], torch.reciprocal), (-0.5, [], torch.rsqrt),
    (3.0, [], torch.pow), (np.int64(2), [], torch.square), (2.0, [1, 1, 1], torch.pow)],
    ids=["square", "sqrt", "reciprocal", "rsqrt", "cube", "int-exponent", "rank-raising-exponent"])
def test_pow_by_a_constant_is_a_number_in_forward(exponent: Any, shape: list, target: Any) -> None:
    arr = np.full(shape, exponent, dtype=np.int64 if isinstance(exponent, np.int64) else np.float32)
    nodes = [helper.make_node("Pow", ["x", "e"], ["y"])]
    model = _model(nodes, [("x", [3, 4])], ["y"], [numpy_helper.from_array(arr, "e")], opset=14)
    gm = _check(model, {"x": np.abs(_x(3, 4)) + 0.1})
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert node.target is target
    tensor_args = [a for a in node.args if isinstance(a, torch.fx.Node) and a.op == "get_attr"]
    assert (len(tensor_args) == 1) == (shape == [1, 1, 1])  # only a rank-raising exponent stays a tensor
    if target is torch.pow and not tensor_args:
        assert node.args[1] == 3.0


# --- fused transformer blocks outside eager inference ----------------------------------------
def _block_model() -> onnx.ModelProto:
    """LayerNorm -> linear -> GELU -> attention on the result (q = k = v): every pattern at once."""
    ln = _layer_norm_model("torch")
    rng = _rng(24)
    nodes = list(ln.graph.node) + [
        helper.make_node("MatMul", ["y", "w"], ["lin"]), helper.make_node("Add", ["lin", "b"], ["h"])]
    gelu = _gelu_model("erf-torch")
    for n in gelu.graph.node:
        n2 = onnx.NodeProto()
        n2.CopyFrom(n)
        n2.input[:] = ["h" if i == "x" else i for i in n2.input]
        n2.output[:] = ["act" if o == "y" else o for o in n2.output]
        nodes.append(n2)
    mk = helper.make_node
    nodes += [mk("Transpose", ["act"], ["gt"], perm=[0, 2, 1]), mk("MatMul", ["act", "gt"], ["scores"]),
              mk("Div", ["scores", "root"], ["logits"]), mk("Softmax", ["logits"], ["probs"], axis=-1),
              mk("MatMul", ["probs", "act"], ["out"])]
    inits = (list(ln.graph.initializer) + [i for i in gelu.graph.initializer]
             + [_c(0.3 * rng.standard_normal((8, 16)), "w"), _c(0.1 * rng.standard_normal(16), "b"), _c(4.0, "root")])
    return _model(nodes, [("x", ["N", 5, 8])], ["out"], inits, opset=14)


def test_fused_block_exports_and_reexports_to_onnx_with_the_same_numbers(tmp_path) -> None:
    model = _block_model()
    x = 3.0 * _x(2, 5, 8) + 1.0
    gm = _check(model, {"x": x})
    for target in (F.layer_norm, LINEAR, F.gelu, F.scaled_dot_product_attention):
        assert _count(gm, target) == 1, target
    want = _ort(model, {"x": x})[0]
    xt = torch.from_numpy(x)
    with torch.no_grad():
        exported = torch.export.export(gm, (xt,))
        np.testing.assert_allclose(exported.module()(xt).numpy(), want, rtol=RTOL, atol=ATOL)
        assert not any("mkldnn" in str(n.target) for n in exported.graph.nodes)  # the plain F.linear path
        path = tmp_path / "fused.onnx"
        torch.onnx.export(gm, (xt,), str(path), input_names=["x"], output_names=["out"], opset_version=17,
                          dynamo=False)
    again = onnx.load(str(path))
    assert {"LayerNormalization", "Erf"} <= {n.op_type for n in again.graph.node}
    np.testing.assert_allclose(_ort(again, {"x": x})[0], want, rtol=RTOL, atol=ATOL)


# --- a real producer: transformers exported by torch.onnx.export ------------------------------
@pytest.mark.parametrize("kind,attention,approximate,linears", [
    ("bert", "eager", "none", 12), ("bert", "sdpa", "none", 12), ("gpt2", "eager", "tanh", 8)],
    ids=["bert", "bert-sdpa", "gpt2"])
def test_transformers_exports_convert_fused_and_pass_the_cli_check(kind: str, attention: str, approximate: str,
                                                                    linears: int, tmp_path) -> None:
    """2-layer BERT / GPT-2 at opset 14: 5 LayerNorms (2 a layer + embeddings / ln_f), one GELU and
    one attention a layer, every MatMul+bias / Gemm a linear; the CLI's check against
    onnxruntime passes and a padded mask gives the unfused module's numbers."""
    from onnx2x.cli import main
    from tests.support.fusion_models import export_plain

    src = export_plain(kind, tmp_path / f"{kind}.onnx", attention=attention)
    assert main(["torch", str(src), "-o", str(tmp_path / "out" / f"{kind}.pt"), "-q"]) == 0
    gm = convert(onnx.load(str(src)))
    assert _count(gm, F.layer_norm) == 5 and _count(gm, F.scaled_dot_product_attention) == 2
    assert _count(gm, LINEAR) == linears and torch.matmul not in _targets(gm)
    gelus = [n for n in gm.graph.nodes if n.target is F.gelu]
    assert len(gelus) == 2 and all(n.kwargs.get("approximate", "none") == approximate for n in gelus)
    assert torch.pow not in _targets(gm) and torch.erf not in _targets(gm) and torch.tanh not in _targets(gm)
    ids = torch.from_numpy(_rng(7).integers(0, 64, (2, 8)))
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[1, 5:] = 0
    plain = convert(onnx.load(str(src)), fuse=False)
    with torch.no_grad():
        np.testing.assert_allclose(gm(ids, mask).numpy(), plain(ids, mask).numpy(), rtol=RTOL, atol=ATOL)
    feeds = {"ids": ids.numpy(), "mask": mask.numpy()}
    np.testing.assert_allclose(gm(ids, mask).detach().numpy(), _ort(onnx.load(str(src)), feeds)[0],
                               rtol=RTOL, atol=ATOL)
    source = (tmp_path / "out" / f"{kind}.py").read_text()
    assert source.count("scaled_dot_product_attention(") == 2 and source.count("layer_norm(") == 5


def test_llama_export_gets_rms_norm_and_grouped_query_sdpa() -> None:
    """Llama (opset 14): 5 RMSNorms (2 a layer + the final one) and SDPA over the repeated K/V heads."""
    import tempfile
    from pathlib import Path

    from tests.support.fusion_models import export_plain

    with tempfile.TemporaryDirectory() as tmp:
        model = onnx.load(str(export_plain("llama", Path(tmp) / "llama.onnx")))
    gm = convert(model)
    assert _count(gm, F.rms_norm) == 5 and _count(gm, F.scaled_dot_product_attention) == 2
    assert torch.pow not in _targets(gm) and torch.rsqrt not in _targets(gm)
    ids = torch.from_numpy(_rng(8).integers(0, 64, (2, 8)))
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[1, 6:] = 0
    with torch.no_grad():
        got = gm(ids, mask).numpy()
        np.testing.assert_allclose(got, convert(model, fuse=False)(ids, mask).numpy(), rtol=RTOL, atol=ATOL)
    want = _ort(model, {"ids": ids.numpy(), "mask": mask.numpy()}, optimize=False)[0]
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# --- channel shuffle ---------------------------------------------------------------------------
def _shuffle_model(form: str) -> onnx.ModelProto:
    """Conv -> Reshape [N, 2, 4, 5, 5] -> Transpose -> Reshape [N, 8, 5, 5] -> Conv (ShuffleNet's
    channel shuffle between two convolutions), and near misses of it."""
    rng = _rng(31)
    split, perm, merged = [-1, 2, 4, 5, 5], [0, 2, 1, 3, 4], [-1, 8, 5, 5]
    if form == "identity-perm":
        perm = [0, 1, 2, 3, 4]
    elif form == "spatial-split":  # groups taken from a spatial axis: not a channel shuffle
        split, perm, merged = [-1, 8, 5, 5, 1], [0, 2, 1, 3, 4], [-1, 8, 5, 5]
    elif form == "other-merge":  # the channels come back merged with a spatial axis
        merged = [-1, 4, 10, 5]
    mk = helper.make_node
    nodes = [mk("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[1, 1]),
             mk("Reshape", ["c1", "split"], ["r1"]), mk("Transpose", ["r1"], ["t"], perm=perm),
             mk("Reshape", ["t", "merged"], ["r2"])]
    out_shape = [merged[1], merged[2], merged[3]]
    if form != "other-merge":
        nodes.append(mk("Conv", ["r2", "w2", "b2"], ["y"], kernel_shape=[1, 1]))
    else:
        nodes.append(mk("Relu", ["r2"], ["y"]))
    inits = [_c(0.3 * rng.standard_normal((8, 8, 1, 1)), "w1"), _c(0.1 * rng.standard_normal(8), "b1"),
             _c(0.3 * rng.standard_normal((8, 8, 1, 1)), "w2"), _c(0.1 * rng.standard_normal(8), "b2"),
             numpy_helper.from_array(np.array(split, np.int64), "split"),
             numpy_helper.from_array(np.array(merged, np.int64), "merged")]
    return _model(nodes, [("x", ["N", 8, 5, 5])], [("y", ["N"] + out_shape)], inits)


def test_reshape_transpose_reshape_becomes_channel_shuffle() -> None:
    from onnx2x.torch.runtime.shape import channel_shuffle

    gm = _check(_shuffle_model("shuffle"), {"x": _x(3, 8, 5, 5)})
    assert _count(gm, channel_shuffle) == 1
    assert torch.permute not in _targets(gm) and torch.reshape not in _targets(gm)
    (node,) = [n for n in gm.graph.nodes if n.target is channel_shuffle]
    assert node.args[1] == 2


@pytest.mark.parametrize("form", ["identity-perm", "spatial-split", "other-merge"])
def test_channel_shuffle_near_misses_are_left_alone(form: str) -> None:
    from onnx2x.torch.runtime.shape import channel_shuffle

    gm = _check(_shuffle_model(form), {"x": _x(3, 8, 5, 5)})
    assert _count(gm, channel_shuffle) == 0 and torch.reshape in _targets(gm)


class _Shuffle(torch.nn.Module):
    """torchvision's ShuffleNetV2 shuffle (sizes read from the tensor) between two convolutions."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Conv2d(6, 6, 1), torch.nn.Conv2d(6, 6, 3, padding=1, groups=6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        n, c, h, w = x.size()
        x = x.view(n, 3, c // 3, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        return self.b(x)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_exported_shuffle_fuses_with_a_dynamic_batch_and_exports_again(dynamo: bool, tmp_path) -> None:
    """The exporters write the batch as -1 or as ``Shape(x)[0]``; both are the batch. The fused
    module traces back to ONNX (the TorchScript exporter has no channel_shuffle: the helper
    records the chain) and runs under torch.export with the original's numbers."""
    from onnx2x.torch.runtime.shape import channel_shuffle

    net = _Shuffle().eval()
    x = torch.from_numpy(_x(2, 6, 7, 7))
    path = tmp_path / "shuffle.onnx"
    if dynamo:
        torch.onnx.export(net, (x,), str(path), dynamo=True, input_names=["x"],
                          dynamic_shapes=({0: torch.export.Dim("n")},))
    else:
        torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    gm = convert(str(path))
    assert _count(gm, channel_shuffle) == 1 and torch.permute not in _targets(gm)
    x3 = torch.from_numpy(_x(3, 6, 7, 7, seed=4))
    with torch.no_grad():
        want = net(x3).numpy()
        np.testing.assert_allclose(gm(x3).numpy(), want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(gm(x3.contiguous(memory_format=torch.channels_last)).numpy(), want,
                                   rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(torch.export.export(gm, (x3,)).module()(x3).numpy(), want, rtol=RTOL, atol=ATOL)
        again = tmp_path / "again.onnx"
        torch.onnx.export(gm, (x,), str(again), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}})
    np.testing.assert_allclose(_ort(onnx.load(str(again)), {"x": x3.numpy()})[0], want, rtol=RTOL, atol=ATOL)


# --- GroupNorm ---------------------------------------------------------------------------------
def _group_norm_model(form: str) -> onnx.ModelProto:
    """x [N, 8, 5, H] -> what the torch exporters write for ``nn.GroupNorm(2, 8)``: Reshape [N, 2, -1],
    InstanceNormalization (unit scale, zero bias), Reshape to Shape(x), Mul gamma, Add beta.
    ``one-per-channel``: x [N, 8, L] and ``nn.GroupNorm(8, 8)`` (wav2vec2's), whose first Reshape
    is the identity the converter drops."""
    rng = _rng(30)
    groups = 8 if form == "one-per-channel" else 2
    split = [0, groups, 5, -1] if form == "rank4-split" else [0, groups, -1]
    per_channel = (8, 1) if form == "one-per-channel" else (8, 1, 1)
    gamma = rng.uniform(0.5, 1.5, (5, 1) if form == "spatial-gamma" else per_channel)
    inits = [_c(np.full(groups, 2.0 if form == "scaled" else 1.0), "s"), _c(np.zeros(groups), "b"),
             _c(gamma, "gamma"), _c(0.1 * rng.standard_normal(per_channel), "beta"),
             numpy_helper.from_array(np.array(split, np.int64), "split")]
    if form == "one-per-channel":
        nodes = [helper.make_node("InstanceNormalization", ["x", "s", "b"], ["n"], epsilon=1e-5)]
    else:
        nodes = [helper.make_node("Reshape", ["x", "split"], ["g"]),
                 helper.make_node("InstanceNormalization", ["g", "s", "b"], ["n"], epsilon=1e-5)]
    nodes += [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Reshape", ["n", "shape"], ["r"]),
        helper.make_node("Mul", ["gamma", "r"], ["m"]),
        helper.make_node("Add", ["m", "beta"], ["y"])]
    outputs = ["y", "n"] if form == "normalized-read-twice" else ["y"]
    x_shape = ["N", 8, "L"] if form == "one-per-channel" else ["N", 8, 5, "H"]
    return _model(nodes, [("x", x_shape)], outputs, inits)


@pytest.mark.parametrize("form,groups", [("torch", 2), ("one-per-channel", 8)])
def test_exporters_group_norm_chain_becomes_group_norm(form: str, groups: int) -> None:
    x = _x(2, 8, 5, 6) if form == "torch" else _x(2, 8, 30)
    gm = _check(_group_norm_model(form), {"x": 3.0 * x + 1.0})
    assert _targets(gm) == [F.group_norm]
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert node.args[1] == groups and node.args[4] == pytest.approx(1e-5)
    assert node.args[2] is not None and node.args[3] is not None
    assert gm.onnx_value_to_fx["y"] == node.name and "n" not in gm.onnx_value_to_fx


@pytest.mark.parametrize("form", ["scaled", "rank4-split", "normalized-read-twice", "spatial-gamma"])
def test_group_norm_near_misses_are_left_alone(form: str) -> None:
    """A non-unit InstanceNormalization scale, a split that is not [N, G, -1] and a normalized
    value read elsewhere keep the chain; a gamma along H is no GroupNorm weight (it stays a Mul
    after the GroupNorm)."""
    gm = _check(_group_norm_model(form), {"x": 3.0 * _x(2, 8, 5, 6) + 1.0})
    if form == "spatial-gamma":
        assert _count(gm, F.group_norm) == 1 and _count(gm, torch.mul) == 1
        (node,) = [n for n in gm.graph.nodes if n.target is F.group_norm]
        assert node.args[2] is None and node.args[3] is None
    else:
        assert _count(gm, F.group_norm) == 0 and _count(gm, rt_norm.instance_norm) == 1


class _GroupNormBlock(torch.nn.Module):
    """A UNet/BiT block: convolution, GroupNorm, SiLU, on an image of any size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)
        self.norm = torch.nn.GroupNorm(4, 12)
        torch.nn.init.uniform_(self.norm.weight, 0.5, 1.5)
        torch.nn.init.normal_(self.norm.bias, std=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm(self.conv(x)))


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_exported_group_norm_fuses_with_dynamic_sizes_and_exports_again(dynamo: bool, tmp_path) -> None:
    """Both exporters' GroupNorm, with a symbolic batch and image size, becomes one F.group_norm
    with the module's own weight and bias; the result runs under torch.export and exports again."""
    net = _GroupNormBlock().eval()
    x = torch.from_numpy(_x(2, 3, 9, 7))
    path = tmp_path / "gn.onnx"
    if dynamo:
        dims = {0: torch.export.Dim("n"), 2: torch.export.Dim("h"), 3: torch.export.Dim("w")}
        torch.onnx.export(net, (x,), str(path), dynamo=True, input_names=["x"], dynamic_shapes=(dims,))
    else:
        torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], opset_version=17,
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    gm = convert(str(path))
    assert _count(gm, F.group_norm) == 1 and _count(gm, rt_norm.instance_norm) == 0
    (node,) = [n for n in gm.graph.nodes if n.target is F.group_norm]
    assert node.args[1] == 4
    torch.testing.assert_close(getattr(gm, node.args[2].target), net.norm.weight.detach())
    torch.testing.assert_close(getattr(gm, node.args[3].target), net.norm.bias.detach())
    x3 = torch.from_numpy(3.0 * _x(3, 3, 11, 6, seed=4))
    with torch.no_grad():
        want = net(x3).numpy()
        np.testing.assert_allclose(gm(x3).numpy(), want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(torch.export.export(gm, (x3,)).module()(x3).numpy(), want, rtol=RTOL, atol=ATOL)
        again = tmp_path / "again.onnx"
        torch.onnx.export(gm, (x,), str(again), dynamo=False, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    np.testing.assert_allclose(_ort(onnx.load(str(again)), {"x": x3.numpy()})[0], want, rtol=RTOL, atol=ATOL)


# --- recurrent layers --------------------------------------------------------------------------
class _Recurrent(torch.nn.Module):
    """An ``nn.LSTM``/``nn.GRU`` as models use it (batch first); ``state``: also return the last
    hidden state (the exporter's Y_h is then read, which a stack of kernels cannot give per layer)."""

    def __init__(self, kind: str, layers: int, bidirectional: bool, state: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
        self.rnn = cls(12, 16, num_layers=layers, bidirectional=bidirectional, batch_first=True)
        self.state = state

    def forward(self, x: torch.Tensor) -> Any:
        y, h = self.rnn(x)
        if not self.state:
            return y
        return y, (h[0] if isinstance(h, tuple) else h)


@pytest.mark.parametrize("kind, layers, bidirectional, state, stacks", [
    ("lstm", 2, True, False, 1), ("gru", 3, False, False, 1), ("lstm", 1, True, False, 0),
    ("lstm", 2, False, True, 0)], ids=["bilstm-2", "gru-3", "bilstm-1", "lstm-2-with-state"])
def test_exported_rnn_layers_run_in_torch_layout_and_stack(kind: str, layers: int, bidirectional: bool, state: bool,
                                                           stacks: int, tmp_path) -> None:
    """``torch.onnx.export`` writes each layer's Y (T, D, B, H) back to torch's (T, B, D*H) with
    Transpose + Reshape (or Squeeze for one direction): the converted layers return torch's layout
    and a stack of them is one kernel call, as ``nn.LSTM`` makes; the module keeps the eager
    numbers at other batch and sequence sizes, under torch.export and exported to ONNX again."""
    from onnx2x.torch.runtime import rnn as rt_rnn

    net = _Recurrent(kind, layers, bidirectional, state).eval()
    x = torch.from_numpy(_x(2, 5, 12))
    path = tmp_path / "rnn.onnx"
    outputs = ["y", "h"] if state else ["y"]
    axes = {name: {0: "n", 1: "t"} for name in ["x", "y"]}
    with torch.no_grad():
        torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], output_names=outputs,
                          dynamic_axes=axes, opset_version=17)
    gm = convert(str(path))
    assert _count(gm, rt_rnn.layers) == stacks
    single = [n for n in gm.graph.nodes if n.target in (rt_rnn.lstm, rt_rnn.gru)]
    assert len(single) == (0 if stacks else layers) and all(n.kwargs == {"merged": True} for n in single)
    relayouts = [n for n in gm.graph.nodes if n.target is torch.squeeze or (
        n.target is torch.permute and list(n.args[1]) == [0, 2, 1, 3])]
    assert not relayouts
    x3 = torch.from_numpy(_x(3, 11, 12, seed=4))
    with torch.no_grad():
        want = net(x3)
        got = gm(x3)
        torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(torch.export.export(gm, (x3,)).module()(x3), want, rtol=RTOL, atol=ATOL)
        again = tmp_path / "again.onnx"
        torch.onnx.export(gm, (x,), str(again), dynamo=False, input_names=["x"], output_names=outputs,
                          dynamic_axes=axes, opset_version=17)
    want = [want] if not state else list(want)
    for have, ref in zip(_ort(onnx.load(str(again)), {"x": x3.numpy()}), want):
        np.testing.assert_allclose(have, ref.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16], ids=["kernel", "step-loop"])
def test_rnn_layers_match_their_layers_one_by_one(dtype: torch.dtype) -> None:
    """``runtime.rnn.layers`` (one kernel call, or layer by layer where torch's kernel does not
    run the dtype) computes the merged Y of the layers called one after the other, and a merged
    Y is the unmerged one transposed and reshaped, on the step-loop path too (clip set)."""
    from onnx2x.torch.runtime import rnn as rt_rnn

    gen = torch.Generator().manual_seed(0)
    hidden, n_dir, inputs = 8, 2, 6
    weights = []
    for size in (inputs, n_dir * hidden):
        weights.append(tuple((0.3 * torch.randn(shape, generator=gen)).to(dtype) for shape in
                             ((n_dir, 4 * hidden, size), (n_dir, 4 * hidden, hidden), (n_dir, 8 * hidden))))
    x = torch.randn(7, 3, inputs, generator=gen).to(dtype)
    acts = (("Sigmoid", 0.0, 0.0), ("Tanh", 0.0, 0.0), ("Tanh", 0.0, 0.0)) * n_dir
    y = x
    for w, r, b in weights:
        y = rt_rnn.lstm(y, w, r, b, None, None, None, None, hidden, "bidirectional", acts, None, 0, 0)[0]
        y = y.permute(0, 2, 1, 3).reshape(7, 3, -1)
    tol = dict(rtol=1e-2, atol=1e-3) if dtype == torch.float16 else dict(rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(rt_rnn.layers("lstm", x, weights, hidden, "bidirectional"), y, **tol)
    w, r, b = weights[0]
    plain = rt_rnn.lstm(x, w, r, b, None, None, None, None, hidden, "bidirectional", acts, 50.0, 0, 0)[0]
    merged = rt_rnn.lstm(x, w, r, b, None, None, None, None, hidden, "bidirectional", acts, 50.0, 0, 0, merged=True)[0]
    torch.testing.assert_close(merged, plain.permute(0, 2, 1, 3).reshape(7, 3, -1), rtol=0, atol=0)


# --- QDQ pairs --------------------------------------------------------------------------------------

def _qdq_model(codes: int, scale: float, zero: int, *, second_scale: float = None, codes_output: bool = False,
               ) -> onnx.ModelProto:
    """x -> QuantizeLinear -> DequantizeLinear -> Relu, one per-tensor scale and zero point (a
    second scale for the DequantizeLinear, or the codes also a graph output, are near misses)."""
    zp_type = {TP.UINT8: np.uint8, TP.INT8: np.int8, TP.UINT16: np.uint16, TP.INT16: np.int16}[codes]
    inits = [numpy_helper.from_array(_f32(scale), "s"), numpy_helper.from_array(np.array(zero, zp_type), "z"),
             numpy_helper.from_array(_f32(second_scale if second_scale is not None else scale), "s2")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s2", "z"], ["d"]), helper.make_node("Relu", ["d"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TP.FLOAT, [4, 64])]
    if codes_output:
        outputs.append(helper.make_tensor_value_info("q", codes, [4, 64]))
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TP.FLOAT, [4, 64])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _qdq_input(scale: float, lo: int, hi: int) -> np.ndarray:
    """Values on rounding boundaries ((k + 1/2) * scale, both signs), beyond both ends of the
    range, signed zeros, and random values."""
    rng = _rng(9)
    k = np.arange(lo - 3, hi + 3)[:: max(1, (hi - lo) // 60)].astype(np.float32)
    halves = np.concatenate([(k + 0.5) * np.float32(scale), (k - 0.5) * np.float32(scale)]).astype(np.float32)
    near = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, np.float32(-np.inf))])
    # where dividing by the scale and multiplying by its inverse round differently
    split = near[np.round(near / np.float32(scale)) != np.round(near * (np.float32(1) / np.float32(scale)))]
    special = np.concatenate([split, near, [-0.0, 0.0, 1e30, -1e30],
                              rng.standard_normal(256).astype(np.float32) * scale * (hi - lo) / 4])
    return np.resize(special.astype(np.float32), (4, 64))


@pytest.mark.parametrize("codes,lo,hi,zero", [(TP.UINT8, 0, 255, 131), (TP.INT8, -128, 127, 0),
                                              (TP.INT8, -128, 127, -7), (TP.UINT16, 0, 65535, 30000),
                                              (TP.INT16, -32768, 32767, 5)])
def test_qdq_pair_becomes_one_call_bit_for_bit(codes: int, lo: int, hi: int, zero: int) -> None:
    from onnx2x.torch.runtime import quantize as rt_quantize

    scale = 0.02  # 160 of the values near a half step round differently under x * (1 / scale)
    model = _qdq_model(codes, scale, zero)
    x = _qdq_input(scale, lo - zero, hi - zero)
    fused, plain = convert(model), convert(model, fuse=False)
    targets = [n.target for n in fused.graph.nodes if n.op == "call_function"]
    assert rt_quantize.quantize_dequantize in targets and rt_quantize.quantize not in targets
    with torch.no_grad():
        got, want = fused(torch.from_numpy(x)), plain(torch.from_numpy(x))
    assert torch.equal(got, want) and torch.equal(torch.signbit(got), torch.signbit(want))
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("near_miss", ["other_scale", "codes_read_elsewhere"])
def test_qdq_pair_near_misses_stay_unfused(near_miss: str) -> None:
    from onnx2x.torch.runtime import quantize as rt_quantize

    model = _qdq_model(TP.UINT8, 0.02, 128, second_scale=0.04 if near_miss == "other_scale" else None,
                       codes_output=near_miss == "codes_read_elsewhere")
    gm = convert(model)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert rt_quantize.quantize_dequantize not in targets and rt_quantize.quantize in targets
    x = _qdq_input(0.02, -128, 127)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with torch.no_grad():
        got = gm(torch.from_numpy(x))
    for g, e in zip(got if isinstance(got, tuple) else (got,), expected):
        np.testing.assert_array_equal(g.numpy(), e)
