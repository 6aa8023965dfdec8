"""ONNX -> PyTorch: every ONNX node becomes PyTorch code in a ``torch.fx.GraphModule``."""
from .convert import convert

__all__ = ["convert"]
