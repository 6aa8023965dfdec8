"""Real models through ``roundtrip mxnet ... --back-to-onnx``: every stage within 1e-4 of MXNet.

CI runs the four MTCNN models and the smallest gluon model-zoo model of each family (seeded
random weights, BatchNorm statistics randomised too, small inputs where the architecture allows);
``pytest -m slow`` runs every model-zoo model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from roundtrip.cli import main
from tests.support.verify_models import models_dir

TOL = ["--rtol", "1e-4", "--atol", "1e-4"]
MTCNN = models_dir() / "mxnet" / "mtcnn"

# smallest input each architecture accepts (fixed final pooling windows need 224 / 299)
ZOO_SHAPES = {
    "resnet": (1, 3, 32, 32), "vgg": (1, 3, 32, 32), "alexnet": (1, 3, 64, 64), "densenet": (1, 3, 224, 224),
    "squeezenet": (1, 3, 224, 224), "inceptionv3": (1, 3, 299, 299), "mobilenet": (1, 3, 32, 32),
}
CI_ZOO = ["resnet18_v1", "resnet18_v2", "vgg11", "alexnet", "densenet121", "squeezenet1.1", "inceptionv3",
          "mobilenet0.25", "mobilenetv2_0.25"]
ALL_ZOO = [
    "resnet18_v1", "resnet34_v1", "resnet50_v1", "resnet101_v1", "resnet152_v1",
    "resnet18_v2", "resnet34_v2", "resnet50_v2", "resnet101_v2", "resnet152_v2",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "alexnet", "densenet121", "densenet161", "densenet169", "densenet201", "squeezenet1.0", "squeezenet1.1",
    "inceptionv3", "mobilenet1.0", "mobilenet0.75", "mobilenet0.5", "mobilenet0.25",
    "mobilenetv2_1.0", "mobilenetv2_0.75", "mobilenetv2_0.5", "mobilenetv2_0.25",
]
SLOW_ZOO = [m for m in ALL_ZOO if m not in CI_ZOO]


def zoo_shape(name: str) -> tuple[int, ...]:
    return next(shape for prefix, shape in ZOO_SHAPES.items() if name.startswith(prefix))


def export_zoo_model(name: str, folder: Path, shape: tuple[int, ...], seed: int = 0) -> tuple[Path, Path]:
    """A gluon model-zoo network with seeded weights, saved as ``NAME-symbol.json`` + ``NAME-0000.params``."""
    from mx2onnx_patches.mxnet_import import import_mxnet

    mx = import_mxnet()
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(seed)
    net = vision.get_model(name, pretrained=False, classes=10)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    net.hybridize()
    net(mx.nd.zeros(shape))
    rng = np.random.default_rng(seed)
    for pname, param in sorted(net.collect_params().items()):
        if pname.endswith("running_mean"):
            param.set_data(mx.nd.array(rng.normal(0, 0.1, size=param.shape)))
        elif pname.endswith("running_var"):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, size=param.shape)))
        elif pname.endswith("gamma") and "batchnorm" in pname:
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, size=param.shape)))
        elif pname.endswith("beta"):
            param.set_data(mx.nd.array(rng.normal(0, 0.1, size=param.shape)))
    net(mx.nd.zeros(shape))
    folder.mkdir(parents=True, exist_ok=True)
    net.export(str(folder / name), epoch=0)
    return folder / f"{name}-symbol.json", folder / f"{name}-0000.params"


def run_roundtrip(symbol: Path, params: Path, shape: tuple[int, ...], tmp_path: Path, *extra: str,
                  input_name: str = "data") -> dict:
    report = tmp_path / "report.json"
    code = main(["mxnet", str(symbol), str(params), "--input-shape", f"{input_name}:{','.join(map(str, shape))}",
                 "--back-to-onnx", *TOL, "--json", str(report), "-q", *extra])
    data = json.loads(report.read_text())
    failures = [f"{s['name']}: {s['status']} {s['error'] or ''} "
                + "; ".join(f"{o['name']} max abs {o.get('max_abs')} bad {o.get('n_bad')}"
                            for o in s["outputs"] if not o.get("ok", True))
                for s in data["stages"] if not s["ok"]]
    assert code == 0 and data["ok"], "\n".join(failures)
    stages = data["stages"]
    assert [s["name"] for s in stages] == ["mxnet", "onnx", "torch", "onnx (from torch)"]
    n_outputs = len(stages[0]["outputs"])
    for stage in stages[1:]:
        assert len(stage["outputs"]) == n_outputs
        for o in stage["outputs"]:
            assert o["n_bad"] == 0 and o["cand_shape"] == o["ref_shape"]
            assert (o["rtol"], o["atol"]) == (1e-4, 1e-4)
    return data


MTCNN_CASES = [("det1", (1, 3, 25, 31)), ("det2", (1, 3, 24, 24)), ("det3", (1, 3, 48, 48)),
               ("det4", (1, 15, 24, 24))]


@pytest.mark.parametrize("name,shape", MTCNN_CASES, ids=[c[0] for c in MTCNN_CASES])
def test_mtcnn_round_trip(name, shape, tmp_path):
    symbol, params = MTCNN / f"{name}-symbol.json", MTCNN / f"{name}-0001.params"
    if not symbol.is_file():
        pytest.fail(f"MTCNN model {symbol} not found (set X2ONNX_MODELS_DIR)")
    data = run_roundtrip(symbol, params, shape, tmp_path)
    expected_outputs = {"det1": 2, "det2": 2, "det3": 3, "det4": 5}[name]
    assert len(data["stages"][0]["outputs"]) == expected_outputs


def test_mtcnn_on_the_photo(tmp_path):
    """P-Net on the real photo with MTCNN's preprocessing: realistic activations, not just noise."""
    photo = MTCNN / "test.jpg"
    data = run_roundtrip(MTCNN / "det1-symbol.json", MTCNN / "det1-0001.params", (1, 3, 60, 80), tmp_path,
                         "--input", f"data={photo}", "--channel-order", "BGR", "--mean", "127.5", "--std", "128")
    assert data["inputs"][0]["source"] == f"image {photo}"


@pytest.mark.parametrize("name", CI_ZOO)
def test_model_zoo_family(name, tmp_path):
    shape = zoo_shape(name)
    symbol, params = export_zoo_model(name, tmp_path / "model", shape)
    run_roundtrip(symbol, params, shape, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_ZOO)
def test_model_zoo_all(name, tmp_path):
    shape = zoo_shape(name)
    symbol, params = export_zoo_model(name, tmp_path / "model", shape)
    run_roundtrip(symbol, params, shape, tmp_path)
