"""Provide ``onnx.mapping``, which onnx 1.16 removed and MXNet's exporter still imports.

MXNet's ``export_model`` does ``from onnx import mapping`` and every translation looks dtypes up
in ``onnx.mapping.NP_TYPE_TO_TENSOR_TYPE`` / ``TENSOR_TYPE_TO_NP_TYPE``; without the module the
exporter fails before converting anything. The replacement is built from ``onnx.helper``'s
current dtype functions, restricted to the numpy-representable types the old tables held.
"""
from __future__ import annotations

import sys
from types import ModuleType

import numpy as np
import onnx
from onnx import TensorProto

from ._patching import Patch

_TYPES = (
    TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.UINT16, TensorProto.INT16,
    TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL, TensorProto.FLOAT16, TensorProto.DOUBLE,
    TensorProto.COMPLEX64, TensorProto.COMPLEX128, TensorProto.UINT32, TensorProto.UINT64,
    TensorProto.STRING,
)

_patch = Patch()
_added_module = False


def build_mapping_module() -> ModuleType:
    module = ModuleType("onnx.mapping")
    module.__doc__ = "Compatibility stand-in for the removed onnx.mapping (installed by mx2onnx_patches)."
    to_np = {int(t): np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t)) for t in _TYPES}
    module.TENSOR_TYPE_TO_NP_TYPE = to_np
    module.NP_TYPE_TO_TENSOR_TYPE = {v: k for k, v in to_np.items()}
    return module


def is_installed() -> bool:
    return _patch.active


def install() -> None:
    global _added_module
    if _patch.active:
        return
    existing = getattr(onnx, "mapping", None)
    if existing is not None and hasattr(existing, "NP_TYPE_TO_TENSOR_TYPE"):
        _patch.active = True  # an onnx that still has it: nothing to do
        return
    module = build_mapping_module()
    _patch.set(onnx, "mapping", module)
    if "onnx.mapping" not in sys.modules:
        sys.modules["onnx.mapping"] = module
        _added_module = True


def uninstall() -> None:
    global _added_module
    if _added_module:
        sys.modules.pop("onnx.mapping", None)
        _added_module = False
    _patch.undo()
