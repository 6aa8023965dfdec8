"""Where the real models live (outside the repository) and what happens when they are missing.

``$X2ONNX_MODELS_DIR`` (default ``<repo>/../shared/models``). A missing model fails the test in
CI (``CI=true``) and skips it on a developer's machine that has no copy.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = Path(os.environ.get("X2ONNX_MODELS_DIR", REPO.parent / "shared" / "models"))
MTCNN = MODELS_DIR / "mxnet" / "mtcnn"


def require(path: Path) -> Path:
    """``path`` if it exists; otherwise fail in CI, skip elsewhere."""
    if path.exists():
        return path
    message = f"{path} not found (set X2ONNX_MODELS_DIR to the folder holding mxnet/mtcnn)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
