"""ONNX element types <-> torch dtypes."""
from __future__ import annotations

from typing import Optional

import numpy as np
import onnx
import torch

_ONNX_TO_TORCH: dict[int, torch.dtype] = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.UINT16: torch.uint16,
    onnx.TensorProto.UINT32: torch.uint32,
    onnx.TensorProto.UINT64: torch.uint64,
    onnx.TensorProto.BOOL: torch.bool,
    onnx.TensorProto.COMPLEX64: torch.complex64,
    onnx.TensorProto.COMPLEX128: torch.complex128,
    onnx.TensorProto.FLOAT8E4M3FN: torch.float8_e4m3fn,
    onnx.TensorProto.FLOAT8E4M3FNUZ: torch.float8_e4m3fnuz,
    onnx.TensorProto.FLOAT8E5M2: torch.float8_e5m2,
    onnx.TensorProto.FLOAT8E5M2FNUZ: torch.float8_e5m2fnuz,
}
_TORCH_TO_ONNX = {v: k for k, v in _ONNX_TO_TORCH.items()}


def torch_dtype(onnx_type: int) -> Optional[torch.dtype]:
    """torch dtype for an ONNX TensorProto data type, None when torch has no equivalent."""
    return _ONNX_TO_TORCH.get(int(onnx_type))


def onnx_dtype(dtype: torch.dtype) -> int:
    return _TORCH_TO_ONNX[dtype]


def torch_dtype_of_numpy(dtype: np.dtype) -> Optional[torch.dtype]:
    try:
        return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
    except TypeError:
        return None


def is_float(dtype: Optional[torch.dtype]) -> bool:
    return dtype is not None and dtype.is_floating_point


def float32_literal(value: float) -> float:
    """The shortest decimal that is ``value`` in float32: 0.9 for the attribute 0.8999999761581421.

    Why: ONNX float attributes are float32; written into generated code, their float64 spelling
    reads as noise where the model's author wrote 0.9.
    """
    return float(str(np.float32(value)))
