"""Verification shared by every converter: compare outputs, run any framework, find the wrong node.

- :mod:`.compare`: per-output figures (max abs/rel error, mse, cosine, elements out of tolerance)
  and the documented per-dtype default tolerances;
- :mod:`.inputs`: seeded random inputs that respect dtypes and ranges, or the user's files;
- :mod:`.runners`: onnxruntime, PyTorch and MXNet behind one ``run(inputs, intermediates=...)``;
- :mod:`.locator`: the first node whose output is out of tolerance while its inputs agree;
- :mod:`.report`: round-trip tables, markdown and JSON;
- :mod:`.options`: the verification flags every CLI shares.

Nothing here imports a converter; runners receive what a converter produced.
"""
from .compare import (DEFAULT_TOLERANCES, ComparisonReport, OutputComparison, Tolerance, compare, compare_arrays,
                      default_tolerance, tolerance_for)
from .inputs import ImageOptions, InputSpec, PreparedInputs, prepare_inputs, random_inputs, specs_from_mxnet_json, \
    specs_from_onnx
from .locator import Divergence, LocatorResult, locate
from .report import RoundTripReport, Stage
from .runners import MXNetRunner, OnnxRuntimeRunner, RunResult, TorchRunner, mxnet_tensor_map

__all__ = [
    "DEFAULT_TOLERANCES", "ComparisonReport", "OutputComparison", "Tolerance", "compare", "compare_arrays",
    "default_tolerance", "tolerance_for", "ImageOptions", "InputSpec", "PreparedInputs", "prepare_inputs",
    "random_inputs", "specs_from_mxnet_json", "specs_from_onnx", "Divergence", "LocatorResult", "locate",
    "RoundTripReport", "Stage", "MXNetRunner", "OnnxRuntimeRunner", "RunResult", "TorchRunner", "mxnet_tensor_map",
]
