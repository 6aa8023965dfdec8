"""Fixtures shared by test files."""
from __future__ import annotations

import os
import sys
from typing import Any

import onnx
import pytest

# Lint every fx graph after the fusion passes (onnx2x.torch.graph_upkeep): off for users, for speed.
os.environ.setdefault("ONNX2X_CHECK_GRAPHS", "1")


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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The mistranslation catalogue's catch rate (tests/test_verify_catalogue.py), when it ran."""
    results = getattr(sys.modules.get("tests.test_verify_catalogue"), "RESULTS", None)
    if results:
        caught = sum(c for c, _ in results.values())
        named = sum(n for _, n in results.values())
        terminalreporter.write_line(f"mistranslation catalogue: {caught}/{len(results)} caught (exit 3), "
                                    f"injected node named in {named}/{len(results)}")
