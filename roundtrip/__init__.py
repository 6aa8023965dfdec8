"""Round trips between frameworks with one comparison table (``roundtrip`` CLI and Python API).

    from roundtrip import mxnet_roundtrip, onnx_roundtrip
"""
from .pipeline import mxnet_roundtrip, onnx_roundtrip

__all__ = ["mxnet_roundtrip", "onnx_roundtrip"]
