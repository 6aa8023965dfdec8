"""Real models through ``roundtrip mxnet ... --back-to-onnx``: every stage within 1e-4 of MXNet.

CI runs the four MTCNN models and the smallest gluon model-zoo model of each family (seeded
weights on which float32 itself is accurate to < 3.3e-5, checked: see tests/support/zoo_models.py;
small inputs where the architecture allows);
``pytest -m slow`` runs every model-zoo model.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roundtrip.cli import main
from tests.support.verify_models import models_dir
from tests.support.zoo_models import (MODELS, float32_error, input_shape, save_checkpoint, symbol_params,
                                      verification_inputs, zoo_network)

TOL = ["--rtol", "1e-4", "--atol", "1e-4"]
MTCNN = models_dir() / "mxnet" / "mtcnn"

CI_ZOO = ["resnet18_v1", "resnet18_v2", "vgg11", "alexnet", "densenet121", "squeezenet1.1", "inceptionv3",
          "mobilenet0.25", "mobilenetv2_0.25"]
SLOW_ZOO = [m for m in MODELS if m not in CI_ZOO]


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


def zoo_round_trip(name: str, tmp_path: Path) -> None:
    shape = input_shape(name)
    net = zoo_network(name, shape, classes=10)
    # float32 itself must be far more accurate than the tolerance, or this would test rounding
    assert float32_error(*symbol_params(net), verification_inputs(shape)) < 1e-4 / 3
    symbol, params = save_checkpoint(net, tmp_path / "model", name)
    run_roundtrip(symbol, params, shape, tmp_path)


@pytest.mark.parametrize("name", CI_ZOO)
def test_model_zoo_family(name, tmp_path):
    zoo_round_trip(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_ZOO)
def test_model_zoo_all(name, tmp_path):
    zoo_round_trip(name, tmp_path)
