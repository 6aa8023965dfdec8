"""Restore numpy aliases that MXNet 1.9.1 still uses (``np.bool``, ``np.object``, ...).

numpy 1.24 removed these deprecated aliases; MXNet 1.9.1 references them at import time and in
its ONNX exporter. This must run before ``import mxnet``.
"""
from __future__ import annotations

import numpy as np

_ALIASES = {"bool": bool, "object": object, "int": int, "float": float, "complex": complex, "str": str,
            "long": int, "unicode": str}


def restore_numpy_aliases() -> None:
    """Idempotent; only adds names numpy no longer has."""
    for name, value in _ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
