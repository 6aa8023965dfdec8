"""ONNX -> framework converters (first target: PyTorch, in ``onnx2x.torch``)."""
