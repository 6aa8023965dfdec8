"""Runners: outputs and intermediates of onnxruntime, PyTorch and MXNet against independent references."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from common.errors import ShapeError
from common.verify.runners import (MXNET_TENSOR_MAP_KEY, MXNetRunner, OnnxRuntimeRunner, TorchRunner,
                                   mxnet_tensor_map, with_intermediate_outputs)
from tests.support.verify_models import models_dir, small_cnn

X = np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)


def test_onnxruntime_intermediates_match_reference_evaluator():
    model = small_cnn()
    expected = ReferenceEvaluator(model).run(None, {"x": X}, intermediate=True)
    result = OnnxRuntimeRunner(model).run({"x": X}, intermediates=True)
    assert list(result.outputs) == ["prob", "fc_out"]
    node_outputs = [o for n in model.graph.node for o in n.output]
    assert sorted(result.intermediates) == sorted(node_outputs)
    for name in node_outputs:
        np.testing.assert_allclose(result.intermediates[name], expected[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.outputs["prob"], expected["prob"], rtol=1e-5, atol=1e-6)
    # the model itself is untouched: intermediates are exposed on a copy
    assert [o.name for o in model.graph.output] == ["prob", "fc_out"]


def test_intermediate_copy_keeps_types_and_skips_constants():
    model = small_cnn()
    const = onnx.helper.make_node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(np.float32(1.0)))
    model.graph.node.insert(0, const)
    copy, extra = with_intermediate_outputs(model)
    assert "c" not in extra and "conv_out" in extra
    typed = {o.name: o for o in copy.graph.output}
    assert typed["conv_out"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in typed["conv_out"].type.tensor_type.shape.dim] == [1, 6, 8, 8]


def test_missing_input_is_a_clear_error():
    with pytest.raises(ShapeError, match="no value given for input"):
        OnnxRuntimeRunner(small_cnn()).run({})


def test_torch_runner_outputs_and_intermediates_match_onnxruntime():
    from onnx2x.torch import convert

    model = small_cnn()
    gm = convert(model, simplify=False)
    expected = OnnxRuntimeRunner(model).run({"x": X}, intermediates=True)
    result = TorchRunner(gm).run({"x": X}, intermediates=True)
    assert list(result.outputs) == ["prob", "fc_out"]
    compared = [n for n in expected.intermediates if n in result.intermediates]
    assert len(compared) >= 7
    for name in compared:
        np.testing.assert_allclose(result.intermediates[name], expected.intermediates[name], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.outputs["prob"], expected.outputs["prob"], rtol=1e-4, atol=1e-6)


def test_tensor_map_is_read_from_metadata():
    model = small_cnn()
    assert mxnet_tensor_map(model) == {}
    model.metadata_props.add(key=MXNET_TENSOR_MAP_KEY, value=json.dumps({"conv1_output": "conv1"}))
    assert mxnet_tensor_map(model) == {"conv1_output": "conv1"}


# --- MXNet ----------------------------------------------------------------------------------
MTCNN = models_dir() / "mxnet" / "mtcnn"


def _mx():
    from mx2onnx_patches.mxnet_import import import_mxnet

    return import_mxnet()


@pytest.fixture(scope="module")
def det1():
    if not (MTCNN / "det1-symbol.json").is_file():
        pytest.fail(f"MTCNN models not found under {MTCNN} (set X2ONNX_MODELS_DIR)")
    mx = _mx()
    return mx.model.load_checkpoint(str(MTCNN / "det1"), 1)


def test_mxnet_runner_outputs_match_module_api(det1):
    mx = _mx()
    sym, arg, aux = det1
    data = np.random.default_rng(1).uniform(-1, 1, (1, 3, 12, 12)).astype(np.float32)
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], for_training=False)
    mod.set_params(arg, aux)
    mod.forward(mx.io.DataBatch([mx.nd.array(data)]), is_train=False)
    expected = [o.asnumpy() for o in mod.get_outputs()]
    runner = MXNetRunner(sym, arg, aux)
    assert runner.input_names == ["data"]
    result = runner.run({"data": data})
    assert list(result.outputs) == sym.list_outputs()
    for got, want in zip(result.outputs.values(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_mxnet_intermediates_are_renamed_with_the_tensor_map(det1):
    mx = _mx()
    sym, arg, aux = det1
    data = np.random.default_rng(2).uniform(-1, 1, (1, 3, 12, 12)).astype(np.float32)
    runner = MXNetRunner(sym, arg, aux, tensor_map={"conv1_output": "onnx_conv1", "prelu1_output": "onnx_prelu1"})
    result = runner.run({"data": data}, intermediates=True)
    assert set(result.intermediates) == {"onnx_conv1", "onnx_prelu1"}
    # reference: the same layers computed with MXNet's imperative operators
    conv = mx.nd.Convolution(mx.nd.array(data), arg["conv1_weight"], arg["conv1_bias"], kernel=(3, 3), num_filter=10)
    np.testing.assert_allclose(result.intermediates["onnx_conv1"], conv.asnumpy(), rtol=1e-5, atol=1e-6)
    gamma = arg["prelu1_gamma"].asnumpy().reshape(1, -1, 1, 1)
    c = conv.asnumpy()
    np.testing.assert_allclose(result.intermediates["onnx_prelu1"], np.where(c > 0, c, c * gamma), rtol=1e-5, atol=1e-6)


def test_mxnet_runner_feeds_zeros_to_training_labels():
    if not (MTCNN / "det2-symbol.json").is_file():
        pytest.fail(f"MTCNN models not found under {MTCNN}")
    mx = _mx()
    runner = MXNetRunner(MTCNN / "det2-symbol.json", MTCNN / "det2-0001.params")
    assert runner.input_names == ["data"] and runner.label_names == {"prob1_label"}
    data = np.random.default_rng(3).uniform(-1, 1, (2, 3, 24, 24)).astype(np.float32)
    out = runner.run({"data": data}).outputs
    sym, arg, aux = mx.model.load_checkpoint(str(MTCNN / "det2"), 1)
    exe = sym.simple_bind(mx.cpu(), data=data.shape, prob1_label=(2,), grad_req="null")
    exe.copy_params_from(arg, aux)
    expected = exe.forward(is_train=False, data=mx.nd.array(data))
    for got, want in zip(out.values(), expected):
        np.testing.assert_allclose(got, want.asnumpy(), rtol=1e-6, atol=1e-7)
    assert out["prob1_output"].shape == (2, 2)


def test_onnxruntime_reference_sessions_do_not_prepack_weights():
    """A reference session runs once or a few times: pre-packed weights (a second copy of every big
    matrix, made with the session) would cost memory and time that one run never pays back. The
    outputs are those of the ONNX reference implementation either way."""
    runner = OnnxRuntimeRunner(small_cnn())
    got = runner.run({"x": X}).outputs["prob"]
    assert runner.session().get_session_options().get_session_config_entry("session.disable_prepacking") == "1"
    np.testing.assert_allclose(got, ReferenceEvaluator(small_cnn()).run(["prob"], {"x": X})[0], rtol=1e-5, atol=1e-6)
