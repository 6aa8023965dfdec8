"""Correct conversions pass the default CLIs: the first half of the verification criterion's proof.

Models a user tries first and that an element-wise ``allclose`` refused: random-init deep nets
whose outputs reach 1e4..1e8, one so ill-conditioned that MXNet moves by several percent of its
output scale when its input moves by one part in a million, and a pre-activation residual block
that MXNet's default (oneDNN-fused) executor computes wrongly. Each goes through ``x2onnx mxnet``
and then ``onnx2x torch`` with default flags. (The other half, that wrong conversions are refused,
is tests/test_verify_catalogue.py.)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.support.zoo_models import save_checkpoint, uncalibrated_network

SIZE = 64


def _convert_both(sym: Path, params: Path, shape: tuple[int, ...], folder: Path, capsys) -> tuple[dict, dict, str]:
    from onnx2x.cli import main as onnx2x_main
    from x2onnx.cli import main as x2onnx_main

    onnx_path = folder / "model.onnx"
    code = x2onnx_main(["mxnet", str(sym), str(params), "--input-shape", "data:" + ",".join(map(str, shape)),
                        "-o", str(onnx_path), "--verify-json", str(folder / "x2onnx.json")])
    err = capsys.readouterr().err
    assert code == 0, err
    code = onnx2x_main(["torch", str(onnx_path), "-o", str(folder / "model.pt"), "--verify-json",
                        str(folder / "onnx2x.json")])
    err += capsys.readouterr().err
    assert code == 0, err
    return (json.loads((folder / "x2onnx.json").read_text()), json.loads((folder / "onnx2x.json").read_text()), err)


@pytest.mark.parametrize("name, magnitude, low", [("resnet18_v1", 6.0, 1e4), ("resnet34_v2", 6.0, 1e7)])
def test_huge_outputs_of_random_init_nets_pass(name, magnitude, low, tmp_path, capsys):
    shape = (1, 3, SIZE, SIZE)
    sym, params = save_checkpoint(uncalibrated_network(name, shape, magnitude=magnitude), tmp_path, name)
    mxnet_side, torch_side, _ = _convert_both(sym, params, shape, tmp_path, capsys)
    for verdict in (mxnet_side, torch_side):
        (out,) = verdict["comparison"]["outputs"]
        assert verdict["ok"] and out["scale"] > low
        assert out["max_rel"] < 1e-4 and out["widened_by"] == 0.0  # plain float32 accuracy, no widening needed


def test_an_ill_conditioned_net_passes_with_a_note(tmp_path, capsys):
    shape = (1, 3, SIZE, SIZE)
    sym, params = save_checkpoint(uncalibrated_network("mobilenetv2_0.25", shape), tmp_path, "mobilenet")
    mxnet_side, _, err = _convert_both(sym, params, shape, tmp_path, capsys)
    (out,) = mxnet_side["comparison"]["outputs"]
    assert mxnet_side["ok"] and out["sensitivity"] > 1e-3 * out["scale"]  # MXNet moves by > 0.1% of its scale
    assert out["max_rel"] > 1e-4  # element-wise, this conversion would have been refused
    (note,) = mxnet_side["comparison"]["notes"]
    assert "MXNet is sensitive" in note and note in err


def _preactivation_block(folder: Path) -> tuple[Path, Path, tuple[int, ...]]:
    """conv0's raw output feeds both a ReLU and an elemwise_add: MXNet's oneDNN conv+relu/conv+sum
    fusion computes this wrongly on its default CPU executor."""
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    data = mx.sym.var("data")
    c0 = mx.sym.Convolution(data, kernel=(3, 3), pad=(1, 1), num_filter=8, name="conv0")
    c1 = mx.sym.Convolution(mx.sym.Activation(c0, act_type="relu", name="relu0"), kernel=(3, 3), pad=(1, 1),
                            num_filter=8, name="conv1")
    out = mx.sym.Activation(mx.sym.elemwise_add(c1, c0, name="add0"), act_type="relu", name="relu1")
    shape = (1, 3, 16, 16)
    arg_shapes, _, _ = out.infer_shape(data=shape)
    rng = np.random.default_rng(0)
    params = {f"arg:{n}": mx.nd.array(rng.normal(0, 0.3, s).astype(np.float32))
              for n, s in zip(out.list_arguments(), arg_shapes) if n != "data"}
    out.save(str(folder / "pre-symbol.json"))
    mx.nd.save(str(folder / "pre-0000.params"), params)
    return folder / "pre-symbol.json", folder / "pre-0000.params", shape


def test_mxnet_fused_executor_error_is_not_blamed_on_the_export(tmp_path, capsys):
    from common.verify.runners import MXNetRunner
    from common.verify.compare import compare

    sym, params, shape = _preactivation_block(tmp_path)
    x = {"data": np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)}
    plain = MXNetRunner(str(sym), str(params)).run(x).outputs
    fused = MXNetRunner(str(sym), str(params), fused=True).run(x).outputs
    assert not compare(plain, fused).ok  # MXNet's own default executor is wrong here
    mxnet_side, torch_side, err = _convert_both(sym, params, shape, tmp_path, capsys)
    assert mxnet_side["ok"] and torch_side["ok"]
    (warning,) = mxnet_side["warnings"]
    assert "relu1" in warning and "default CPU executor" in warning
    assert [ln for ln in err.splitlines() if ln.startswith("WARNING")] == [f"WARNING: {warning}"]


def test_softmax_output_on_4d_input_follows_mxnet_s_definition(tmp_path, capsys):
    """SoftmaxOutput without multi_output normalises over all trailing axes (its definition, MXNet's
    GPU and non-oneDNN kernels); MXNet's oneDNN CPU kernel normalises over the last axis only. The
    export follows the definition, and MXNet without oneDNN confirms it: exit 0, with a warning."""
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    shape = (1, 4, 8, 8)
    head = mx.sym.SoftmaxOutput(mx.sym.Convolution(mx.sym.var("data", shape=shape), kernel=(1, 1), num_filter=3,
                                                   name="score"), name="prob")
    arg_shapes, _, _ = head.infer_shape(data=shape)
    rng = np.random.default_rng(0)
    params = {f"arg:{n}": mx.nd.array(rng.normal(0, 1, s).astype(np.float32))
              for n, s in zip(head.list_arguments(), arg_shapes) if n not in ("data", "prob_label")}
    head.save(str(tmp_path / "seg-symbol.json"))
    mx.nd.save(str(tmp_path / "seg-0000.params"), params)
    mxnet_side, torch_side, err = _convert_both(tmp_path / "seg-symbol.json", tmp_path / "seg-0000.params", shape,
                                                tmp_path, capsys)
    assert mxnet_side["ok"] and torch_side["ok"]
    assert "without its oneDNN kernels" in mxnet_side["overruled"] and mxnet_side["overruled"] in err
    (out,) = mxnet_side["comparison"]["outputs"]
    assert out["max_rel"] < 1e-5  # against MXNet without oneDNN: float32 rounding only
    exported = onnx.load(str(tmp_path / "model.onnx"))
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    from common.verify.runners import OnnxRuntimeRunner

    y = next(iter(OnnxRuntimeRunner(exported).run({"data": x}).outputs.values()))
    np.testing.assert_allclose(y.reshape(1, -1).sum(axis=1), 1.0, rtol=1e-5)  # one softmax over C*H*W


def _float16_inside(outputs_float16: bool = False) -> onnx.ModelProto:
    """A float16 conversion that keeps float32 inputs and outputs (onnxconverter-common's and
    onnxruntime's keep_io_types): Cast in, float16 weights, Cast out."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((64, 64)) / 8).astype(np.float16), f"w{i}")
               for i in range(4)]
    nodes = [helper.make_node("Cast", ["x"], ["h0"], to=TensorProto.FLOAT16)]
    for i in range(4):
        nodes += [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"])]
    out_type = TensorProto.FLOAT16 if outputs_float16 else TensorProto.FLOAT
    nodes.append(helper.make_node("Cast", ["h4"], ["y"], to=out_type))
    graph = helper.make_graph(nodes, "fp16", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                              [helper.make_tensor_value_info("y", out_type, ["n", 64])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_graph_computing_in_float16_is_judged_at_float16s_tolerance(caplog) -> None:
    """Its float32 outputs carry float16's rounding (onnxruntime and PyTorch round float16 products
    differently). Judged at float32's tolerance this one was refused (7e-4 of its scale; the
    one-part-in-a-million jitter of the check vanishes in the Cast to float16, so onnxruntime looks
    steady), and deeper ones passed only through the sensitivity widening, with a warning."""
    from onnx2x.torch import convert
    from onnx2x.torch.verify import check_module, reduced_precision

    model = _float16_inside()
    assert reduced_precision(model) == "float16"
    assert reduced_precision(_float16_inside(outputs_float16=True)) is None  # its dtype says so already
    assert reduced_precision(_float32_relu()) is None
    with caplog.at_level("INFO", logger="onnx2x.torch.verify"):
        result = check_module(convert(model), model, label="fp16")
    assert result.verdict.ok
    assert "the graph computes in float16" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text
    assert 0 < result.max_abs_diff < 1e-2  # float16's rounding, not a wrong conversion


def _float32_relu() -> onnx.ModelProto:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
