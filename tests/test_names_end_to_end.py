"""MXNet parameter names survive MXNet -> ONNX -> PyTorch, with MXNet's values bit for bit.

``x2onnx mxnet`` (simplified or not) keeps every argument and auxiliary parameter as an ONNX
initializer of its MXNet name and value: onnxsim never sees them (a PReLU slope's Reshape and an
RNN vector's slicing stay in the graph). ``onnx2x`` with ``fuse=False`` keeps every float
initializer as a parameter of that name (``gm.onnx_param_names``) and value, recomputing what
the graph derives from it in the forward. Outputs are still checked: the export against MXNet
(``verify=True``), the converted module against onnxruntime.
"""
from __future__ import annotations

import json
from typing import Mapping

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from tests.support.mxnet_ops import mx, onnx_forward, random_params
from tests.support.shared_models import MTCNN, require

MTCNN_SHAPES = {"det1": (1, 3, 12, 12), "det2": (1, 3, 24, 24), "det3": (1, 3, 48, 48), "det4": (1, 15, 24, 24)}


def _layers_symbol():
    """Conv + BatchNorm(fix_gamma=False) + PReLU + Deconvolution + FullyConnected, and
    Embedding + fused LSTM (one packed parameter vector)."""
    data = mx.sym.var("data")
    x = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), pad=(1, 1), name="conv0")
    x = mx.sym.BatchNorm(x, fix_gamma=False, name="bn0")
    x = mx.sym.LeakyReLU(x, act_type="prelu", name="prelu0")
    x = mx.sym.Deconvolution(x, num_filter=3, kernel=(2, 2), stride=(2, 2), name="deconv0")
    fc = mx.sym.FullyConnected(x, num_hidden=6, name="fc0")
    emb = mx.sym.Embedding(mx.sym.var("tokens"), input_dim=7, output_dim=5, name="emb0")
    lstm = mx.sym.RNN(emb, mx.sym.var("lstm0_parameters"), mx.sym.var("h0"), mx.sym.var("c0"), state_size=4,
                      num_layers=2, bidirectional=True, mode="lstm", name="lstm0")
    return mx.sym.Group([fc, lstm])


def _layers_case():
    rng = np.random.default_rng(1)
    inputs = {"data": rng.uniform(-1, 1, (2, 3, 6, 6)).astype(np.float32),
              "tokens": rng.integers(0, 7, (3, 2)).astype(np.float32),
              "h0": rng.uniform(-1, 1, (4, 2, 4)).astype(np.float32),
              "c0": rng.uniform(-1, 1, (4, 2, 4)).astype(np.float32)}
    sym = _layers_symbol()
    return sym, random_params(sym, inputs), inputs


def _mtcnn_case(name: str):
    require(MTCNN / f"{name}-symbol.json")
    sym, arg, aux = mx.model.load_checkpoint(str(MTCNN / name), 1)
    used = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    params = {k: v.asnumpy() for k, v in {**arg, **aux}.items() if k in used}
    data = np.random.default_rng(0).uniform(-1, 1, MTCNN_SHAPES[name]).astype(np.float32)
    return sym, params, {"data": data}


def _zoo_case(name: str):
    """A gluon model-zoo network (seeded, realistic scale: tests/support/zoo_models.py)."""
    from tests.support import zoo_models

    shape = zoo_models.input_shape(name)
    sym, params = zoo_models.symbol_params(zoo_models.zoo_network(name, shape, classes=10))
    used = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    return sym, {k: v.asnumpy() for k, v in params.items() if k in used}, zoo_models.verification_inputs(shape)


def _case(name: str):
    if name == "layers":
        return _layers_case()
    return _mtcnn_case(name) if name.startswith("det") else _zoo_case(name)


def _export(sym, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray], simplify: bool) -> onnx.ModelProto:
    from x2onnx.mxnet import export

    return export(sym, {k: mx.nd.array(v, dtype=v.dtype) for k, v in params.items()},
                  {n: a.shape for n, a in inputs.items()}, simplify=simplify, verify=True,
                  input_dtypes={n: a.dtype for n, a in inputs.items()})


def _same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


# one network per gluon model-zoo family in CI, every family member under -m slow
ZOO_FAMILIES = ["resnet18_v1", "resnet18_v2", "vgg11_bn", "alexnet", "mobilenet0.25", "mobilenetv2_0.25",
                "squeezenet1.1", "densenet121", "inceptionv3"]
ZOO_CI = ["resnet18_v1", "resnet18_v2", "vgg11_bn", "alexnet", "mobilenet0.25", "mobilenetv2_0.25"]


def _zoo_params():
    from tests.support.zoo_models import MODELS

    ci = [pytest.param(n, id=n) for n in ZOO_CI]
    return ci + [pytest.param(n, id=n, marks=pytest.mark.slow) for n in MODELS if n not in ZOO_CI]


@pytest.mark.parametrize("simplify", [True, False], ids=["simplified", "no-simplify"])
@pytest.mark.parametrize("name", ["layers", "det1", "det2", "det3", "det4"])
def test_mxnet_names_are_initializers_and_state_dict_keys(name, simplify):
    _check_names_end_to_end(name, simplify)


@pytest.mark.parametrize("name", _zoo_params())
def test_gluon_model_zoo_names_end_to_end(name):
    _check_names_end_to_end(name, simplify=True)


def _ignored_by_mxnet(sym) -> set[str]:
    """Parameters MXNet never reads: BatchNorm's gamma under ``fix_gamma`` (True by default), which
    computes with ones whatever is stored; nothing in the export reads them either."""
    nodes = json.loads(sym.tojson())["nodes"]
    return {nodes[node["inputs"][1][0]]["name"] for node in nodes
            if node["op"] == "BatchNorm" and node.get("attrs", {}).get("fix_gamma", "True") in ("True", "true", "1")}


def _check_names_end_to_end(name: str, simplify: bool) -> None:
    from onnx2x.torch.convert import convert

    sym, params, inputs = _case(name)
    assert len(params) >= 6
    model = _export(sym, params, inputs, simplify)  # verify=True: outputs checked against MXNet
    params = {k: v for k, v in params.items() if k not in _ignored_by_mxnet(sym)}

    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert sorted(set(params) - set(initializers)) == []
    for key, value in params.items():
        assert _same_bits(initializers[key], value), key

    gm = convert(model, fuse=False)
    state = {k: v.detach().contiguous().numpy() for k, v in gm.state_dict().items()}
    attribute_of = {onnx_name: attr for attr, onnx_name in gm.onnx_param_names.items()}
    assert sorted(set(params) - set(attribute_of)) == []
    for key, value in params.items():
        assert attribute_of[key] == key  # MXNet's names are Python identifiers: kept as they are
        assert _same_bits(state[key], value), key
        assert isinstance(getattr(gm, key), torch.nn.Parameter), key

    feeds = {n: a for n, a in inputs.items()}
    got = gm(*(torch.from_numpy(feeds[i]) for i in gm.onnx_input_names))
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, onnx_forward(model, feeds)):
        # float32 through a deep network (VGG-16, Inception-v3, MobileNet): summation order alone
        # moves outputs by 1e-5 of their scale S, so this is the verification's float32 bound,
        # 1e-5 + 1e-4 (|ref| + S) (common/verify/compare.py); a wrong weight moves them by O(S)
        scale = float(np.abs(e).max()) if e.size else 0.0
        np.testing.assert_allclose(g.detach().numpy(), e, rtol=1e-4, atol=1e-5 + 1e-4 * scale)


@pytest.mark.parametrize("onnxsim", [True, False], ids=["onnxsim", "no-onnxsim"])
@pytest.mark.parametrize("name", ["det1", "det2", "det3", "det4"])
def test_default_conversion_keeps_names_of_reshaped_prelu_slopes(name, onnxsim):
    """fuse=True folds the slopes' Reshape (onnxsim, or the builder without it): the folded
    slope keeps the MXNet name and ``gm.onnx_param_reshaped`` gives MXNet's shape back."""
    from onnx2x.torch.convert import convert
    from onnx2x.torch.naming import onnx_initializer

    sym, params, inputs = _mtcnn_case(name)
    model = _export(sym, params, inputs, simplify=True)
    gm = convert(model, simplify=onnxsim, fuse=True)
    state = gm.state_dict()
    attribute_of = {onnx_name: attr for attr, onnx_name in gm.onnx_param_names.items()}
    assert sorted(set(params) - set(attribute_of)) == []
    slopes = {k for k in params if k.startswith("prelu") and k.endswith("_gamma")}
    assert gm.onnx_param_reshaped and set(gm.onnx_param_reshaped) <= slopes  # not those after a dense layer
    for key, value in params.items():
        if key in gm.onnx_param_reshaped:
            assert state[attribute_of[key]].dim() == 3  # (C, 1, 1): what PRelu broadcasts
        assert _same_bits(onnx_initializer(gm, key).contiguous().numpy(), value), key
    got = gm(torch.from_numpy(inputs["data"]))
    for g, e in zip(got if isinstance(got, tuple) else (got,), onnx_forward(model, inputs)):
        np.testing.assert_allclose(g.detach().numpy(), e, rtol=1e-5, atol=1e-5)


def _reshape_model(slopes: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """x -> PRelu(x, Reshape(slope_k, (C, 1, 1))) for each slope, one after the other."""
    from onnx import TensorProto, helper

    nodes, inits, x = [], [numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape")], "x"
    for k, (name, value) in enumerate(slopes.items()):
        inits.append(numpy_helper.from_array(value, name))
        nodes.append(helper.make_node("Reshape", [name, "shape"], [f"r{k}"]))
        nodes.append(helper.make_node("PRelu", [x, f"r{k}"], [f"y{k}"]))
        x = f"y{k}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3, 2, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_simplifier_gives_a_folded_reshape_its_initializer_name_back():
    from common.simplify import RESHAPED_KEY, simplify

    slopes = {"a_gamma": np.array([0.1, 0.2, 0.3], np.float32), "b_gamma": np.array([0.4, 0.5, 0.6], np.float32)}
    out = simplify(_reshape_model(slopes), label="t")
    assert {n.op_type for n in out.graph.node} == {"PRelu"}  # the Reshapes were folded
    stored = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert sorted(stored) == ["a_gamma", "b_gamma"]
    shapes = json.loads(dict((p.key, p.value) for p in out.metadata_props)[RESHAPED_KEY])
    assert shapes == {"a_gamma": [3], "b_gamma": [3]}
    for key, value in slopes.items():
        assert stored[key].shape == (3, 1, 1)
        assert _same_bits(stored[key].reshape(shapes[key]), value)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(onnx_forward(out, {"x": x})[0], onnx_forward(_reshape_model(slopes), {"x": x})[0])


def test_simplifier_leaves_an_ambiguous_folded_reshape_unnamed():
    """Two slopes of equal bytes: which name the folded copy should take is not known."""
    from common.simplify import RESHAPED_KEY, simplify

    same = np.array([0.1, 0.2, 0.3], np.float32)
    out = simplify(_reshape_model({"a_gamma": same, "b_gamma": same.copy()}), label="t")
    assert not {"a_gamma", "b_gamma"} & {t.name for t in out.graph.initializer}
    assert RESHAPED_KEY not in {p.key for p in out.metadata_props}


@pytest.mark.parametrize("onnxsim", [True, False], ids=["onnxsim", "no-onnxsim"])
def test_default_conversion_keeps_the_name_of_a_folded_transposed_weight(onnxsim):
    """MatMul(x, Transpose(W)) with W too large for onnxsim to see: the builder folds the
    Transpose, then the MatMul becomes F.linear(x, W): the parameter is W itself, named after it
    (sanitized: ``fc/weight:0`` -> ``fc_weight_0``, ``gm.onnx_param_names`` maps back), and
    ``onnx_initializer`` gives W back; a MatMul by W itself stores W^T, noted as permuted."""
    from onnx import TensorProto, helper

    from onnx2x.torch.convert import convert
    from onnx2x.torch.naming import onnx_initializer

    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["fc/weight:0"], ["wt"], perm=[1, 0]), helper.make_node("MatMul", ["x", "wt"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])], [numpy_helper.from_array(w, "fc/weight:0")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    gm = convert(model, simplify=onnxsim, fuse=True)
    assert gm.onnx_param_names == {"fc_weight_0": "fc/weight:0"}
    assert tuple(gm.fc_weight_0.shape) == (64, 32) and gm.onnx_param_permuted == {}
    assert _same_bits(onnx_initializer(gm, "fc/weight:0").contiguous().numpy(), w)
    x = np.random.default_rng(1).standard_normal((2, 32)).astype(np.float32)
    np.testing.assert_allclose(gm(torch.from_numpy(x)).numpy(), onnx_forward(model, {"x": x})[0], rtol=1e-5, atol=1e-5)
    direct = helper.make_graph(  # MatMul(x, W^T) written with W^T as the initializer, and a bias
        [helper.make_node("MatMul", ["x", "fc/weight:0"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])],
        [numpy_helper.from_array(w.T.copy(), "fc/weight:0"), numpy_helper.from_array(w[:, 0].copy(), "b")])
    gm = convert(helper.make_model(direct, opset_imports=[helper.make_opsetid("", 13)], ir_version=8),
                 simplify=onnxsim, fuse=True)
    assert tuple(gm.fc_weight_0.shape) == (64, 32) and gm.onnx_param_permuted == {"fc/weight:0": (1, 0)}
    assert _same_bits(onnx_initializer(gm, "fc/weight:0").contiguous().numpy(), w.T)


def test_cli_default_export_lists_mxnet_names(tmp_path):
    """The command of the issue: ``x2onnx mxnet det1 ... -o d1.onnx`` (simplified, verified)."""
    from x2onnx.cli import main

    sym, params, _ = _mtcnn_case("det1")
    out = tmp_path / "d1.onnx"
    assert main(["mxnet", str(MTCNN / "det1-symbol.json"), str(MTCNN / "det1-0001.params"),
                 "--input-shape", "data:1,3,12,12", "-o", str(out), "-q"]) == 0
    model = onnx.load(str(out))
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert {"prelu1_gamma", "prelu2_gamma", "prelu3_gamma"} <= set(initializers)
    assert not [n for n in initializers if n.startswith("_v_")]
    for key, value in params.items():
        assert _same_bits(initializers[key], value), key


@pytest.mark.parametrize("simplify", [False, True], ids=["plain", "simplified"])
def test_trainable_conversion_trains_only_what_mxnet_trains(simplify: bool) -> None:
    """MXNet trains its arguments; the exporter's own constants (the unit gamma standing in for a
    BatchNorm with the default fix_gamma=True, the operands of ``* 2.5 + 1.0``) are listed in the
    model's metadata and stay constant buffers of the trainable module, whose outputs still match."""
    from common.metadata import CONSTANT_INITIALIZERS_KEY, json_value
    from onnx2x.torch import convert

    data = mx.sym.var("data")
    x = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), name="c")
    x = mx.sym.BatchNorm(x, name="bn")  # fix_gamma=True
    x = mx.sym.LeakyReLU(x * 2.5 + 1.0, act_type="prelu", name="p")
    inputs = {"data": np.random.default_rng(2).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)}
    params = random_params(x, inputs)
    model = _export(x, params, inputs, simplify)
    constants = json_value(model.metadata_props, CONSTANT_INITIALIZERS_KEY)
    assert constants and not set(constants) & set(params)
    gm = convert(model, trainable=True)
    trained = {gm.onnx_param_names[n] for n, p in gm.named_parameters() if p.requires_grad}
    assert trained == {"c_weight", "c_bias", "bn_beta", "p_gamma"}  # bn_gamma: fixed, MXNet never reads it
    buffers = {gm.onnx_param_names.get(n, n) for n, _ in gm.named_buffers()}
    assert set(constants) <= buffers and {"bn_moving_mean", "bn_moving_var"} <= buffers
    gm.eval()
    with torch.no_grad():
        got = gm(torch.from_numpy(inputs["data"])).numpy()
    np.testing.assert_allclose(got, onnx_forward(model, inputs)[0], rtol=1e-5, atol=1e-5)
    plain = onnx.ModelProto()
    plain.CopyFrom(model)
    del plain.metadata_props[:]  # an ONNX file from elsewhere: every float initializer learns
    elsewhere = convert(plain, trainable=True)
    assert set(constants) <= {elsewhere.onnx_param_names[n] for n, _ in elsewhere.named_parameters()}
