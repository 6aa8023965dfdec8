"""Inference fusions (``onnx2x/torch/fusion.py``) and the weight-free onnx-simplifier pass.

Every case converts a small model with and without fusion and compares both with onnxruntime on
the original model: folding BatchNormalization/Mul/Add into convolutions, the fused
conv(+add)(+relu) calls with pre-packed oneDNN weights, and the multiply-add that replaces the
remaining BatchNormalizations. Cases where folding would be wrong (a convolution output read
twice, a non per-channel constant, a shared weight, a residual that is the convolution's own
input) must leave the graph alone and still match.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from onnx2x.torch import convert
from onnx2x.torch.runtime import conv as rt_conv
from onnx2x.torch.runtime import normalization as rt_norm
from common.simplify import LARGE_INITIALIZER_BYTES, simplify

RTOL, ATOL = 1e-4, 1e-5


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


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _run(gm: torch.nn.Module, model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    names = [i.name for i in model.graph.input]
    with torch.no_grad():
        out = gm(*[torch.from_numpy(feeds[n]) for n in names])
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _check(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> torch.fx.GraphModule:
    """Fused and unfused conversions both match onnxruntime; returns the fused module."""
    want = _ort(model, feeds)
    fused = convert(model, simplify=False, fuse=True)
    plain = convert(model, simplify=False, fuse=False)
    for gm in (fused, plain):
        got = _run(gm, model, feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    return fused


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
def test_conv_bn_relu_folds_into_one_fused_call(extra_affine: bool, bias: bool) -> None:
    model = _conv_bn_relu(extra_affine, bias)
    gm = _check(model, {"x": _x(2, 4, 9, 9)})
    assert _targets(gm) == [rt_conv.conv2d_fused]
    assert _fused_calls(gm)[0].kwargs == {"relu": True}
    # the BN scale/mean/var are folded away; the verification locator still finds the outputs
    assert not any("bn_mean" in name for name, _ in gm.named_parameters())
    assert gm.onnx_value_to_fx["y"] in {n.name for n in gm.graph.nodes}
    assert "c" not in gm.onnx_value_to_fx and "n" not in gm.onnx_value_to_fx


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
def test_residual_add_relu_fused_and_accumulated_in_place(swap: bool) -> None:
    model = _residual(swap)
    gm = _check(model, {"x": _x(2, 4, 7, 7)})
    fused = _fused_calls(gm)
    assert len(fused) == 3 and _targets(gm) == [rt_conv.conv2d_fused] * 3
    with_residual = [n for n in fused if "residual" in n.kwargs]
    assert len(with_residual) == 1
    assert with_residual[0].kwargs["relu"] is True and with_residual[0].kwargs["residual_is_dead"] is True
    assert gm.onnx_value_to_fx["y"] == with_residual[0].name


def test_residual_that_is_the_conv_input_is_not_overwritten() -> None:
    """add(conv(x), x) with x read nowhere else: the fused call must not accumulate into x."""
    rng = _rng(10)
    inits = [numpy_helper.from_array(_f32(0.3 * rng.standard_normal((4, 4, 3, 3))), "w")]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Conv", ["r", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "r"], ["y"])]
    model = _model(nodes, [("x", [1, 4, 5, 5])], ["y"], inits)
    gm = _check(model, {"x": _x(1, 4, 5, 5)})
    (fused,) = _fused_calls(gm)
    assert fused.kwargs.get("residual") is fused.args[0] and "residual_is_dead" not in fused.kwargs


# --- BatchNormalization that follows no convolution ------------------------------------------
def test_pre_activation_bn_mul_add_relu_becomes_multiply_add() -> None:
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


def test_packed_weight_follows_batch_changes_and_weight_updates() -> None:
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


def test_module_built_in_inference_mode() -> None:
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
