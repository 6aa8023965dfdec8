"""The scripts in examples/ run and produce the reports they promise."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from tests.support.verify_models import REPO


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "examples" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def _check_report(folder, stages):
    data = json.loads((folder / "report.json").read_text())
    assert data["ok"] is True
    assert [s["name"] for s in data["stages"]] == stages
    for stage in data["stages"][1:]:
        assert stage["outputs"] and all(o["n_bad"] == 0 and o["ok"] for o in stage["outputs"])
    markdown = (folder / "report.md").read_text()
    assert "**OK**" in markdown and markdown.count("\n| ") >= len(stages) + 1
    return data


def test_mxnet_model_zoo_example(tmp_path):
    done = _run("mxnet_model_zoo_roundtrip.py", "--model", "mobilenet0.25", "--size", "32", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: every stage is within tolerance of mxnet" in done.stdout
    _check_report(tmp_path, ["mxnet", "onnx", "torch", "onnx (from torch)"])


def test_onnx_model_example_with_user_inputs(tmp_path):
    image = np.random.default_rng(4).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", image=image)
    done = _run("onnx_model_roundtrip.py", "--inputs", str(tmp_path / "inputs.npz"), "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    data = _check_report(tmp_path, ["onnx", "torch", "onnx (from torch)"])
    assert data["inputs"] == [{"name": "image", "shape": [1, 3, 16, 16], "dtype": "float32",
                               "source": f"file {tmp_path / 'inputs.npz'}"}]
    # figures are on the scale of the logits of the user's data, recomputed with onnxruntime directly
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from onnx_model_roundtrip import tiny_cnn
    finally:
        sys.path.pop(0)
    import onnxruntime as ort

    session = ort.InferenceSession(tiny_cnn().SerializeToString(), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": image})
    torch_out = data["stages"][1]["outputs"][0]
    assert torch_out["ref_shape"] == list(logits.shape)
    assert torch_out["max_abs"] <= 1e-5 + 1e-4 * float(np.abs(logits).max())
