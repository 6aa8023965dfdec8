"""The locator names the node of a deliberately wrong converter, and nothing on a correct model."""
from __future__ import annotations

import importlib
import json

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from common.verify.diagnose import diagnose_mxnet_to_onnx, diagnose_onnx_to_torch
from common.verify.locator import locate
from common.verify.runners import OnnxRuntimeRunner
from tests.support.verify_models import small_cnn, small_mxnet_net, wrong_converter, wrong_translation

X = np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)


def _prepared_and_module(model: onnx.ModelProto):
    convert_mod = importlib.import_module("onnx2x.torch.convert")
    prepared, label = convert_mod.prepare(model, simplify=True)
    return prepared, convert_mod.convert_prepared(prepared, label)


def _leaky_relu_ignoring_alpha(ctx):
    return ctx.call(torch.nn.functional.leaky_relu, ctx.input(0), 0.01)  # wrong: alpha attribute ignored


# --- ONNX -> PyTorch ------------------------------------------------------------------------
def test_correct_conversion_reports_nothing():
    prepared, gm = _prepared_and_module(small_cnn())
    result = diagnose_onnx_to_torch(prepared, gm, {"x": X})
    assert not result.found
    assert result.compared >= 7
    assert "agree" in result.describe()


def test_wrong_torch_converter_is_named():
    model = small_cnn(alpha=0.2)
    with wrong_converter("LeakyRelu", _leaky_relu_ignoring_alpha):
        prepared, gm = _prepared_and_module(model)
    result = diagnose_onnx_to_torch(prepared, gm, {"x": X})
    div = result.divergence
    assert div is not None
    assert (div.node_name, div.op_type) == ("lrelu", "LeakyRelu")
    assert div.attributes["alpha"] == pytest.approx(0.2)
    assert div.inputs_agree and div.inputs[0].name == "conv_out" and div.inputs[0].status == "agrees"
    assert div.inputs[0].comparison.max_abs < 1e-5
    # the output error is what alpha 0.01 instead of 0.2 makes on the negative conv outputs
    conv = ReferenceEvaluator(model).run(None, {"x": X}, intermediate=True)["conv_out"]
    (out,) = div.outputs
    assert out.name == "lrelu_out" and not out.ok
    assert out.max_abs == pytest.approx(0.19 * float(-conv[conv < 0].min()), rel=1e-4)
    assert out.n_bad == pytest.approx(int(np.count_nonzero(conv < -1e-4)), abs=2)
    text = div.describe()
    assert "lrelu (LeakyRelu)" in text and "alpha=0.2" in text and "conv_out  agrees" in text
    json.dumps(result.to_dict(), allow_nan=False)


def test_wrong_converter_is_restored_after_the_fixture():
    prepared, gm = _prepared_and_module(small_cnn())
    assert not diagnose_onnx_to_torch(prepared, gm, {"x": X}).found


def test_uncompared_inputs_are_reported_as_suspects():
    model = small_cnn()
    ref = OnnxRuntimeRunner(model).run({"x": X}, intermediates=True).intermediates
    cand = {k: v.copy() for k, v in ref.items()}
    cand["conv2_out"] = cand["conv2_out"] + 0.5
    del ref["pool_out"], cand["pool_out"]  # the conv2 input cannot be compared
    div = locate(model, ref, cand).divergence
    assert div.node_name == "conv2" and not div.inputs_agree
    assert [i.status for i in div.inputs] == ["not compared", "constant"]
    assert div.suspects == ["pool (MaxPool)"]
    assert div.outputs[0].max_abs == pytest.approx(0.5, rel=1e-6)


def test_scaled_tolerance_ignores_rounding_on_large_values():
    model = small_cnn()
    ref = OnnxRuntimeRunner(model).run({"x": X}, intermediates=True).intermediates
    cand = {k: v.copy() for k, v in ref.items()}
    scale = 1000.0
    ref["conv_out"] = ref["conv_out"] * scale
    cand["conv_out"] = ref["conv_out"] + np.float32(2e-5 * scale)  # float32 rounding at this magnitude
    assert not locate(model, ref, cand).found


# --- MXNet -> ONNX --------------------------------------------------------------------------
def _sigmoid_instead_of_relu(node, **kwargs):
    from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import get_inputs

    name, inputs, _ = get_inputs(node, kwargs)
    return [onnx.helper.make_node("Sigmoid", [inputs[0]], [name], name=name)]


def _export(sym_path, params_path, shape):
    from x2onnx.mxnet import export

    return export(str(sym_path), str(params_path), {"data": shape}, verify=False)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
def test_mxnet_correct_export_reports_nothing(tmp_path, batchnorm):
    sym_path, params_path, shape = small_mxnet_net(tmp_path, batchnorm=batchnorm)
    model = _export(sym_path, params_path, shape)
    data = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    result = diagnose_mxnet_to_onnx(str(sym_path), str(params_path), None, model, {"data": data})
    assert not result.found
    assert result.compared >= (5 if batchnorm else 4)
    if batchnorm:  # kept, not folded into conv1: both MXNet outputs stay comparable
        assert "BatchNormalization" in {n.op_type for n in model.graph.node}
        assert {"conv1_output", "bn1_output", "relu1_output"} <= set(_tensor_map(model))


def _tensor_map(model: onnx.ModelProto) -> dict:
    return json.loads(next(p.value for p in model.metadata_props if p.key == "x2onnx.mxnet_tensor_map"))


def test_names_a_fusion_gave_a_new_value_leave_the_tensor_map(tmp_path):
    """conv1 (no bias) + broadcast_add(shift): onnxsim folds the Add into the Conv, which keeps the
    name conv1 for conv1 + shift. Mapped to MXNet's conv1 output, the locator would blame a correct Conv."""
    from mx2onnx_patches.mxnet_import import import_mxnet
    from x2onnx.mxnet import export

    mx = import_mxnet()
    conv1 = mx.sym.Convolution(mx.sym.Variable("data"), kernel=(3, 3), num_filter=4, no_bias=True, name="conv1")
    shifted = mx.sym.broadcast_add(conv1, mx.sym.Variable("shift", shape=(1, 4, 1, 1)), name="addb")
    relu1 = mx.sym.Activation(shifted, act_type="relu", name="relu1")
    out = mx.sym.Convolution(relu1, kernel=(3, 3), num_filter=2, name="conv2")
    rng = np.random.default_rng(0)
    sizes = {"conv1_weight": (4, 3, 3, 3), "shift": (1, 4, 1, 1), "conv2_weight": (2, 4, 3, 3), "conv2_bias": (2,)}
    params = {name: mx.nd.array(rng.normal(size=size)) for name, size in sizes.items()}
    shape = (1, 3, 10, 10)
    model = export(out, params, {"data": shape}, verify=False)
    # the Add is folded into the Conv as a bias: a Squeeze of ``shift``, which keeps its MXNet name
    assert [n.op_type for n in model.graph.node] == ["Squeeze", "Conv", "Relu", "Conv"]
    assert "shift" in {t.name for t in model.graph.initializer}
    tensor_map = _tensor_map(model)
    assert "conv1_output" not in tensor_map and "addb_output" not in tensor_map and tensor_map["conv2_output"]
    data = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    result = diagnose_mxnet_to_onnx(out, params, None, model, {"data": data})
    assert not result.found and result.compared >= 1


def test_wrong_translation_after_batchnorm_is_named(tmp_path):
    sym_path, params_path, shape = small_mxnet_net(tmp_path, batchnorm=True)
    with wrong_translation("Activation", _sigmoid_instead_of_relu):
        model = _export(sym_path, params_path, shape)
    data = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    div = diagnose_mxnet_to_onnx(str(sym_path), str(params_path), None, model, {"data": data}).divergence
    assert div is not None and div.op_type == "Sigmoid" and "relu1" in str(div.origin) and div.inputs_agree


def test_wrong_mxnet_translation_is_named(tmp_path):
    sym_path, params_path, shape = small_mxnet_net(tmp_path)
    with wrong_translation("Activation", _sigmoid_instead_of_relu):
        model = _export(sym_path, params_path, shape)
    assert "Sigmoid" in {n.op_type for n in model.graph.node}
    data = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    result = diagnose_mxnet_to_onnx(str(sym_path), str(params_path), None, model, {"data": data})
    div = result.divergence
    assert div is not None and div.op_type == "Sigmoid"
    assert div.origin is not None and "relu1" in str(div.origin) and "Activation" in str(div.origin)
    assert div.inputs_agree
    # reference figures: MXNet's relu vs the sigmoid the wrong translation emitted, on conv1's output
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    sym = mx.sym.load(str(sym_path))
    params = mx.nd.load(str(params_path))
    conv1 = sym.get_internals()["conv1_output"]
    exe = conv1.bind(mx.cpu(), {"data": mx.nd.array(data), "conv1_weight": params["arg:conv1_weight"],
                                 "conv1_bias": params["arg:conv1_bias"]}, grad_req="null")
    c = exe.forward()[0].asnumpy().astype(np.float64)
    expected = np.abs(np.maximum(c, 0) - 1 / (1 + np.exp(-c))).max()
    assert div.outputs[0].max_abs == pytest.approx(expected, rel=1e-4)


def test_wrong_translation_is_restored_after_the_fixture(tmp_path):
    sym_path, params_path, shape = small_mxnet_net(tmp_path)
    model = _export(sym_path, params_path, shape)
    assert "Sigmoid" not in {n.op_type for n in model.graph.node}


def test_equivalent_shapes_are_compared_flat():
    model = small_cnn()
    ref = OnnxRuntimeRunner(model).run({"x": X}, intermediates=True).intermediates
    cand = {k: v.copy() for k, v in ref.items()}
    ref["gap_out"] = ref["gap_out"].reshape(1, 8)  # as a framework that squeezes pooled maps keeps it
    assert not locate(model, ref, cand).found
    cand["gap_out"] = cand["gap_out"][:, ::-1].copy()  # same shape trick, wrong channel order
    div = locate(model, ref, cand).divergence
    assert div.node_name == "gap" and div.outputs[0].max_abs == pytest.approx(
        float(np.abs(ref["gap_out"].ravel() - cand["gap_out"].ravel()).max()))


def _two_node_model() -> onnx.ModelProto:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])
    nodes = [onnx.helper.make_node("Relu", ["x"], ["a"], name="relu"),
             onnx.helper.make_node("Neg", ["a"], ["y"], name="neg")]
    return onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [x], [y]))


def _rounding_case(local_y_error: float, drop_local: bool = False):
    """Reference and candidate differ at both tensors; ``local`` (each node fed the reference's
    inputs) agrees unless ``local_y_error``; ``drop_local``: the second node has no own value."""
    from common.verify.locator import locate

    a = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    reference = {"x": a, "a": a, "y": -a}
    candidate = {"x": a, "a": a + 0.01, "y": -a - 0.01}
    local = {"a": a, "y": -a + local_y_error}
    if drop_local:
        del local["y"]
    return locate(_two_node_model(), reference, candidate, local=local), reference, candidate


def test_every_node_agreeing_on_its_own_inputs_is_rounding_only():
    found, _, _ = _rounding_case(0.0)
    assert found.divergence is None and found.accumulated and found.rounding_only and found.unchecked == 0


def test_a_node_without_its_own_value_leaves_rounding_unproven():
    found, _, _ = _rounding_case(0.0, drop_local=True)
    assert found.accumulated and found.unchecked == 1 and not found.rounding_only


def test_verdict_accepts_amplified_rounding_and_refuses_a_wrong_node():
    """Outputs 0.25% off: accepted with a warning when every node agrees on its own inputs (a
    quantizing step flipped), refused when the last node is itself wrong."""
    from common.verify.verdict import judge_conversion

    for local_error, ok in ((0.0, True), (0.01, False)):
        found, reference, candidate = _rounding_case(local_error)
        verdict = judge_conversion({"y": reference["y"]}, [candidate["y"]], reference_name="onnxruntime",
                                   inputs={"x": reference["x"]}, locate=lambda: found)
        assert verdict.ok is ok
        if ok:
            assert "every node agrees" in verdict.accepted_because
            assert any("float rounding amplified by the graph" in w for w in verdict.warnings)
        else:
            assert not verdict.accepted_because and verdict.locator.divergence.node_name == "neg"
