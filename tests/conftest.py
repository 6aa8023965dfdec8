"""Fixtures shared by test files."""
from __future__ import annotations

from typing import Any

import onnx
import pytest


@pytest.fixture
def onnxsim_inputs(monkeypatch: pytest.MonkeyPatch) -> list[onnx.ModelProto]:
    """The models ``onnxsim.simplify`` is given during the test, in call order (it still runs)."""
    import onnxsim

    seen: list[onnx.ModelProto] = []
    real = onnxsim.simplify

    def spy(model: onnx.ModelProto, *args: Any, **kwargs: Any) -> Any:
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnxsim, "simplify", spy)
    return seen
