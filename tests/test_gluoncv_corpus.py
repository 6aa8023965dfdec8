"""Real GluonCV architectures (tests/support/gluon_corpus.py) through the x2onnx CLI as a user runs it.

Each model is built with seeded, realistically conditioned weights, exported by MXNet, and converted
by ``python -m x2onnx.cli mxnet ... --verify-json`` with the CLI's default flags (simplify, verify
against MXNet's plain executor). A correct conversion must pass: exit 0, the JSON verdict ok, and
the largest error a float32 rounding, far below the tolerance (rtol 1e-4 of the output's scale).
The CI subset is one classifier, one detector with box decoding and NMS in the graph, and one
segmentation network at small inputs; the whole corpus (docs/MODEL_ZOO.md) runs under ``-m slow``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest

from tests.support.gluon_corpus import BY_NAME, CORPUS, convert, markdown

# found, not imported: GluonCV is imported only in the build subprocesses, where torch is hidden
pytestmark = pytest.mark.skipif(importlib.util.find_spec("gluoncv") is None, reason="GluonCV is not installed")

ROUNDING = 1e-6  # error / scale a float32 conversion may add beyond float32's own error on the model
FLOOR_FACTOR = 4  # ... and how many times float32's own error (MXNet float32 vs float64) it may reach

CI_SUBSET = [
    dataclasses.replace(BY_NAME["resnet18_v1b"], shape=(1, 3, 112, 112)),
    dataclasses.replace(BY_NAME["yolo3_mobilenet1.0_voc"], shape=(1, 3, 160, 160)),
    dataclasses.replace(BY_NAME["fcn_resnet50_voc"], shape=(1, 3, 96, 96)),
]


def _check(model, tmp_path):
    result = convert(model, tmp_path / model.name)
    report = json.loads((tmp_path / model.name / f"{model.name}.json").read_text())
    assert result.exit_code == 0 and report["ok"], f"{model.name}: {result.reason}"  # no false alarm
    assert result.ok and (tmp_path / model.name / f"{model.name}.onnx").exists()
    outputs = report["comparison"]["outputs"]
    assert outputs and all(o["ok"] and o["shape_ok"] for o in outputs)
    if result.max_rel is not None and result.float32_error is not None:  # the conversion adds no more than rounding
        bound = FLOOR_FACTOR * result.float32_error + ROUNDING
        assert result.max_rel <= bound, f"{model.name}: error {result.max_rel:.3g} of scale, float32 {result.float32_error:.3g}"
    return result, report


@pytest.mark.parametrize("model", CI_SUBSET, ids=lambda m: m.name)
def test_gluoncv_model_converts_and_verifies(model, tmp_path):
    result, report = _check(model, tmp_path)
    outputs = report["comparison"]["outputs"]
    # judged by the plain criterion: MXNet's reference was not so sensitive that the bound was widened
    assert not report["comparison"]["notes"] and all(not o["widened_by"] for o in outputs)
    if model.task == "detection":  # class ids, scores, boxes after box decoding and NMS
        assert [o["ref_shape"][-1] for o in outputs] == [1, 1, 4]
    else:  # the float64 reference ran, and the weights give real outputs, not vanishing noise
        assert result.float32_error is not None and 0 < result.max_rel
        assert all(o["scale"] > 0.1 for o in outputs)


def test_markdown_lists_failures_with_their_reason():
    from tests.support.gluon_corpus import Result

    ok = Result("a", "classification", "1,3,8,8", "default", 0, True, 2e-7, 1.5, 1.0, "", True, 3e-7)
    bad = Result("b", "detection", "1,3,8,8", "19", 1, False, None, 2.0, 1.0, "error: op | Foo unsupported", None)
    text = markdown([ok, bad])
    assert "**1 of 2 models pass.**" in text
    assert "| a | classification | 1,3,8,8 | x2onnx mxnet / default | pass | 2e-07 | 3e-07 | 1.5 |  |" in text
    assert "| b | detection | 1,3,8,8 | x2onnx mxnet / 19 | FAIL (exit 1) | - | - | 2.0 | error: op \\| Foo unsupported |" in text


@pytest.mark.slow
@pytest.mark.parametrize("model", CORPUS, ids=lambda m: m.name)
def test_whole_corpus(model, tmp_path):
    _check(model, tmp_path)
