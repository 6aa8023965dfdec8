"""MXNet -> ONNX: :func:`export` (symbol + params in, checked ``onnx.ModelProto`` out)."""
from .export import TENSOR_MAP_KEY, Exported, export, export_checkpoint, export_report

__all__ = ["TENSOR_MAP_KEY", "Exported", "export", "export_checkpoint", "export_report"]
