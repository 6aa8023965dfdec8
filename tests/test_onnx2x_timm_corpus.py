"""The timm corpus (:mod:`tests.support.timm_corpus`) through ``onnx2x torch`` as a user runs it:
the model exported by ``torch.onnx.export`` (TorchScript, opset 17, dynamic batch), the CLI with
its default flags (simplified, checked against onnxruntime), and the written artifact compared
with the eager timm module at another batch size than the export's.

CI runs three models (squeeze-excitation and SiLU, hard-swish mobile blocks, a windowed vision
transformer); ``-m slow`` runs the whole corpus.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from onnx2x.torch import artifact
from tests.support import timm_corpus as tc
from tests.support.cli_check import convert_with_defaults

CI_MODELS = ("efficientnet_b0", "mobilenetv3_small_100", "swin_tiny")
TOLERANCE = 1e-5  # of the output's scale, or ROUNDING_FACTOR times eager float32's own error (see timm_corpus)
ROUNDING_FACTOR = 5  # the corpus's worst: tresnet_m at 3.4x (onnxruntime at 1.7x), 4.8e-5 of scale


def _case(name: str):
    return pytest.param(name, id=name, marks=[] if name in CI_MODELS else [pytest.mark.slow])


@pytest.mark.parametrize("name", [_case(name) for name in tc.MODELS])
def test_timm_model_converts_and_matches_eager(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, reference = tc.build_in_subprocess(name, tmp_path)
    data = np.load(reference)
    assert float(data["spread"]) > 0.01, f"{name}: the eager output hardly depends on the input"
    weights = tmp_path / "out" / f"{name}.pt"
    status = convert_with_defaults(src, weights, capsys, name)
    assert "; matches onnxruntime (" in status, status
    net = artifact.load(weights)
    with torch.no_grad():
        got = net(torch.from_numpy(data["input"]))
    expected = data["output"]
    assert tuple(got.shape) == expected.shape
    scale = float(np.abs(expected).max())
    # another float32 implementation may differ from eager float32 by their two rounding errors
    atol = max(TOLERANCE * scale, ROUNDING_FACTOR * float(data["rounding"]))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=atol, err_msg=name)


def test_ci_set_is_small_and_real() -> None:
    assert len(CI_MODELS) <= 3 and set(CI_MODELS) <= set(tc.MODELS)
