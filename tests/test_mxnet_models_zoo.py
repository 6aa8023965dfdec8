"""Every gluon model-zoo vision network: export, onnx.checker, onnxruntime == MXNet (batch 1 and dynamic batch 4).

Seeded random weights (BatchNorm statistics, gamma and beta randomised too, so they matter).
Inputs are as small as each architecture allows (global pooling: 32x32; fixed final pooling:
224 or 299), which also shrinks VGG's and AlexNet's first dense layer: the whole zoo runs in a
few minutes in one process. Tolerance: max-abs 1e-4 and relative 1e-4 (``|d| <= 1e-4 + 1e-4 |ref|``).
"""
from __future__ import annotations

import gc

import numpy as np
import onnx
import pytest

from tests.support.mxnet_ops import mx

ATOL = RTOL = 1e-4
MODELS = [
    *(f"resnet{d}_v{v}" for v in (1, 2) for d in (18, 34, 50, 101, 152)),
    *(f"vgg{d}{bn}" for bn in ("", "_bn") for d in (11, 13, 16, 19)),
    "alexnet", "densenet121", "densenet161", "densenet169", "densenet201", "squeezenet1.0", "squeezenet1.1",
    "inceptionv3", "mobilenet1.0", "mobilenet0.75", "mobilenet0.5", "mobilenet0.25",
    "mobilenetv2_1.0", "mobilenetv2_0.75", "mobilenetv2_0.5", "mobilenetv2_0.25",
]
# smallest input each architecture accepts (fixed-size final pooling needs the full size)
SIZES = {"alexnet": 64, "densenet": 224, "squeezenet": 224, "inceptionv3": 299}


def input_size(name: str) -> int:
    return next((size for prefix, size in SIZES.items() if name.startswith(prefix)), 32)


def test_the_list_is_the_whole_zoo():
    """``get_model`` knows exactly these names (its table is local: probe with an unknown name)."""
    from mxnet.gluon.model_zoo import vision

    with pytest.raises(ValueError) as unknown:
        vision.get_model("no-such-model")
    listed = set(str(unknown.value).split("Available options are")[-1].split())
    assert len(MODELS) == 34 and listed == set(MODELS)


def build(name: str):
    """(symbol, params, input shape) of a zoo network with seeded random weights."""
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(0)
    rng = np.random.default_rng(0)
    net = vision.get_model(name, pretrained=False)
    net.initialize(mx.init.Xavier(magnitude=2.0))
    size = input_size(name)
    net(mx.nd.zeros((1, 3, size, size)))  # deferred shapes (dense layers follow the input size)
    for param in net.collect_params().values():
        if param.name.endswith("running_var") or param.name.endswith(("gamma", "beta")):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
        elif param.name.endswith("running_mean"):
            param.set_data(mx.nd.array(rng.uniform(-0.5, 0.5, param.shape)))
    mx.nd.waitall()
    sym = net(mx.sym.var("data"))
    params = {p.name: p.data() for p in net.collect_params().values()}
    return sym, params, (1, 3, size, size)


@pytest.mark.parametrize("name", MODELS)
def test_zoo_model_matches_mxnet(name):
    from x2onnx.mxnet.export import export_report

    sym, params, shape = build(name)
    try:
        static = export_report(sym, params, {"data": shape}, atol=ATOL, rtol=RTOL)
        onnx.checker.check_model(static.model)
        assert static.report is not None and static.report.ok
        assert [tuple(i.type.tensor_type.shape.dim[k].dim_value for k in range(4)) for i in static.model.graph.input] \
            == [shape]
        del static
        dynamic = export_report(sym, params, {"data": shape}, dynamic_batch=True, verify_batch=4, atol=ATOL,
                                rtol=RTOL)
        onnx.checker.check_model(dynamic.model)
        assert dynamic.report is not None and dynamic.report.ok
        assert dynamic.report.outputs[0].shape[0] == 4
        assert dynamic.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    finally:
        del sym, params
        gc.collect()
