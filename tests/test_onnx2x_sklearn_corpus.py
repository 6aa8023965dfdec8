"""scikit-learn models exported by skl2onnx (tests/support/sklearn_corpus.py), converted by the CLI
as a user would (default flags, the check against onnxruntime on: it must run, string inputs and
StringNormalizer included), and compared with what scikit-learn itself predicts: labels exactly,
probabilities and values to float32 rounding."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from onnx2x.cli import main
from onnx2x.torch.artifact import load
from tests.support import sklearn_corpus


def _as_array(value):
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, list) and value and isinstance(value[0], dict):  # ZipMap: one dict per row
        return np.array([list(row.values()) for row in value], dtype=np.float32)
    return np.asarray(value)


@pytest.mark.parametrize("name", sklearn_corpus.CASES + tuple(
    pytest.param(name, marks=pytest.mark.slow) for name in sklearn_corpus.SLOW_CASES))
def test_converted_sklearn_model_predicts_what_sklearn_predicts(tmp_path, capsys, name: str) -> None:
    case = sklearn_corpus.build(name)
    path, out = tmp_path / f"{name}.onnx", tmp_path / f"{name}.pt"
    onnx.save(case.model, str(path))
    assert main(["torch", str(path), "-o", str(out)]) == 0
    assert "matches onnxruntime" in capsys.readouterr().out  # the check ran (string inputs included)
    module = load(str(out))
    args = [case.feeds[i.name] if case.feeds[i.name].dtype == object else torch.from_numpy(case.feeds[i.name])
            for i in case.model.graph.input]
    with torch.no_grad():
        outputs = module(*args)
    outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
    first = _as_array(outputs[0]).reshape(case.predicted.shape)
    if case.predicted.dtype.kind in "OUSib":  # labels
        assert [str(v) for v in first.reshape(-1)] == [str(v) for v in case.predicted.reshape(-1)]
    else:  # regressed values
        np.testing.assert_allclose(first, case.predicted, rtol=1e-5, atol=1e-5)
    if case.probabilities is not None:
        np.testing.assert_allclose(_as_array(outputs[1]), case.probabilities, rtol=1e-5, atol=1e-6)
