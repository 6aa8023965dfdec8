"""``x2onnx``: export models of other frameworks to ONNX (today: MXNet 1.x symbols + params).

The MXNet direction runs MXNet 1.9.1's own exporter repaired at run time by
:mod:`mx2onnx_patches`, then simplifies with onnxsim and checks the result against MXNet on
seeded random inputs. Python API: :func:`x2onnx.mxnet.export`; CLI: ``x2onnx mxnet --help``.
"""
