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
