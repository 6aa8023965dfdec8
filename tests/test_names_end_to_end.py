"""MXNet parameter names survive MXNet -> ONNX -> PyTorch, with MXNet's values bit for bit.

``x2onnx mxnet`` (simplified or not) keeps every argument and auxiliary parameter as an ONNX
initializer of its MXNet name and value: onnxsim never sees them (a PReLU slope's Reshape and an
RNN vector's slicing stay in the graph). ``onnx2x`` with ``fuse=False`` keeps every float
initializer as a parameter of that name (``gm.onnx_param_names``) and value, recomputing what
the graph derives from it in the forward. Outputs are still checked: the export against MXNet
(``verify=True``), the converted module against onnxruntime.
"""
from __future__ import annotations

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


def _case(name: str):
    return _layers_case() if name == "layers" else _mtcnn_case(name)


def _export(sym, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray], simplify: bool) -> onnx.ModelProto:
    from x2onnx.mxnet import export

    return export(sym, {k: mx.nd.array(v, dtype=v.dtype) for k, v in params.items()},
                  {n: a.shape for n, a in inputs.items()}, simplify=simplify, verify=True,
                  input_dtypes={n: a.dtype for n, a in inputs.items()})


def _same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("simplify", [True, False], ids=["simplified", "no-simplify"])
@pytest.mark.parametrize("name", ["layers", "det1", "det2", "det3", "det4"])
def test_mxnet_names_are_initializers_and_state_dict_keys(name, simplify):
    from onnx2x.torch.convert import convert

    sym, params, inputs = _case(name)
    assert len(params) >= 6
    model = _export(sym, params, inputs, simplify)  # verify=True: outputs checked against MXNet

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
        np.testing.assert_allclose(g.detach().numpy(), e, rtol=1e-5, atol=1e-5)
