"""Shared foundation for both conversion directions: graph IR, model I/O, errors, verification.

This package must not import ``x2onnx`` or ``onnx2x``: both depend on it, never the reverse.
"""
