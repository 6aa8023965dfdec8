"""Running ``onnx2x torch`` in the test process as a user runs it, for the corpus tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from onnx2x.cli import main


def convert_with_defaults(src: Path, weights: Path, capsys: pytest.CaptureFixture, label: str) -> str:
    """``onnx2x torch SRC -o WEIGHTS`` with default flags; asserts exit 0 and that both files were
    written, and returns the status line (what follows ``wrote ... and ...; ``: the check's verdict)."""
    capsys.readouterr()
    rc = main(["torch", str(src), "-o", str(weights)])
    captured = capsys.readouterr()
    assert rc == 0, f"{label}: onnx2x torch exited {rc}: {captured.err.strip()[-2000:]}"
    status = captured.out.strip().splitlines()[-1]
    assert status.startswith(f"wrote {weights} and "), status
    return status
