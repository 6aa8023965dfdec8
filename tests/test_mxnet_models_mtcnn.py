"""The four real MTCNN models (P/R/O/L-Net, MXNet 0.8 checkpoints) against MXNet's own forward.

The models live outside the repository: ``$X2ONNX_MODELS_DIR/mxnet/mtcnn`` (default
``<repo>/../shared/models``). Missing models skip locally and fail in CI (``CI=true``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.support.mxnet_ops import mx, onnx_forward

from tests.support.shared_models import MTCNN, require  # noqa: E402
TOLERANCE = 1e-5

# name -> (random-input shape, ONNX output names in MXNet's order)
CASES = {
    "det1": ((2, 3, 37, 53), ["conv4_2", "prob1"]),  # odd sizes: pooling_convention='full' rounds up
    "det2": ((3, 3, 24, 24), ["conv5_2", "prob1"]),
    "det3": ((2, 3, 48, 48), ["conv6_3", "conv6_2", "prob1"]),
    "det4": ((2, 15, 24, 24), ["fc5_1", "fc5_2", "fc5_3", "fc5_4", "fc5_5"]),
}


def _mtcnn_dir() -> Path:
    require(MTCNN / "det1-symbol.json")
    return MTCNN


def _load(name: str):
    sym, arg, aux = mx.model.load_checkpoint(str(_mtcnn_dir() / name), 1)
    return sym, arg, aux


def mxnet_reference(sym, arg, aux, data: np.ndarray) -> list[np.ndarray]:
    """MXNet's Module forward at inference (labels are not inputs there)."""
    weights = [n for n in sym.list_arguments() if n != "data" and not n.endswith("_label")]
    assert set(weights) <= set(arg) and set(sym.list_auxiliary_states()) <= set(aux)
    module = mx.mod.Module(sym, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", data.shape)], for_training=False)
    module.set_params(arg, aux, allow_missing=True)  # only the training label is not a parameter
    module.forward(mx.io.DataBatch([mx.nd.array(data)]), is_train=False)
    return [o.asnumpy() for o in module.get_outputs()]


def _export(name: str, shape, **kwargs) -> onnx.ModelProto:
    from x2onnx.mxnet import export

    sym, arg, aux = _load(name)
    kwargs.setdefault("verify", False)
    return export(sym, (arg, aux), {"data": shape}, **kwargs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mtcnn_matches_mxnet_on_seeded_random_inputs(name):
    shape, outputs = CASES[name]
    model = _export(name, shape)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["data"]  # prob1_label of det2/det3 is left out
    assert [o.name for o in model.graph.output] == outputs
    data = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    expected = mxnet_reference(*_load(name), data)
    got = onnx_forward(model, {"data": data})
    for out_name, g, e in zip(outputs, got, expected):
        assert g.shape == e.shape, out_name
        err = float(np.abs(g - e).max())
        assert err <= TOLERANCE, f"{name} {out_name}: max-abs {err:.3g} > {TOLERANCE}"


def _photo_bgr_nchw() -> np.ndarray:
    image = mx.image.imread(str(_mtcnn_dir() / "test.jpg"), to_rgb=False).asnumpy().astype(np.float32)
    return ((image - 127.5) * 0.0078125).transpose(2, 0, 1)[None]


def test_det1_on_the_real_photo_at_full_size():
    data = _photo_bgr_nchw()
    assert data.shape == (1, 3, 750, 1000)
    model = _export("det1", data.shape)
    expected = mxnet_reference(*_load("det1"), data)
    got = onnx_forward(model, {"data": data})
    for out_name, g, e in zip(CASES["det1"][1], got, expected):
        assert g.shape == e.shape
        err = float(np.abs(g - e).max())
        assert err <= TOLERANCE, f"det1 {out_name} on the photo: max-abs {err:.3g}"
    # a real photo gives real detections: the face probability map is not flat
    assert float(got[1][0, 1].max()) > 0.9


def test_det4_dynamic_batch_with_builtin_verification():
    shape, outputs = CASES["det4"]
    model = _export("det4", (1,) + shape[1:], dynamic_batch=True, verify=True, verify_batch=3, atol=TOLERANCE,
                    rtol=0.0)
    data = np.random.default_rng(3).uniform(-1, 1, (5,) + shape[1:]).astype(np.float32)
    for g, e in zip(onnx_forward(model, {"data": data}), mxnet_reference(*_load("det4"), data)):
        assert float(np.abs(g - e).max()) <= TOLERANCE


def test_cli_exports_det1_from_its_checkpoint_prefix(capfd, tmp_path):
    from x2onnx.cli import main

    prefix = _mtcnn_dir() / "det1"
    out = tmp_path / "det1.onnx"
    code = main(["mxnet", str(prefix), "--epoch", "1", "--input-shape", "data:1,3,24,24", "-o", str(out),
                 "--atol", "1e-5", "--rtol", "0"])
    stdout, stderr = capfd.readouterr()
    assert code == 0, stderr
    assert stderr.strip() == ""  # MXNet's "upgrading a v0.8 symbol" chatter stays out of the CLI's stderr
    assert "verified conv4_2 (1, 4, 7, 7): max error" in stdout and "verified prob1 (1, 2, 7, 7)" in stdout
    model = onnx.load(str(out))
    data = np.random.default_rng(1).uniform(-1, 1, (1, 3, 24, 24)).astype(np.float32)
    for g, e in zip(onnx_forward(model, {"data": data}), mxnet_reference(*_load("det1"), data)):
        assert float(np.abs(g - e).max()) <= TOLERANCE
