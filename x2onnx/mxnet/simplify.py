"""onnx-simplifier after export (on the model's skeleton: :mod:`common.simplify`), never fatal.

BatchNormalization is not folded into the Conv before it: the folded Conv would keep the Conv's
output name for a new value, and the export would no longer hold MXNet's convolution and
BatchNorm outputs for the locator to compare layer by layer. Runtimes fold it when they load the
model (onnxruntime, TensorRT, and ``onnx2x torch`` after conversion), so nothing is lost there.
Large weights that a constant subgraph reads (MXNet's RNN parameter slicing) stay visible to
onnxsim, so those subgraphs still fold into plain initializers. MXNet's parameters never reach
onnxsim: each stays an initializer under its MXNet name and value, and what the export computes
from it (a PReLU slope's Reshape, an RNN vector's slicing) stays in the graph. A parameter that
nothing reads (BatchNorm's gamma with ``fix_gamma=True``, which MXNet ignores) may be left out.
"""
from __future__ import annotations

from typing import Collection, Optional

import onnx

from common.simplify import simplify_tracking_names


def simplify_model(model: onnx.ModelProto, *, label: str = "model", params: Collection[str] = ()
                   ) -> tuple[onnx.ModelProto, Optional[set[str]]]:
    """The simplified model (built around ``model``'s own weights: ``model`` is consumed) and the
    names that hold the same value as before, or ``(model, None)`` with one warning line.
    ``params``: MXNet's argument and auxiliary parameter names, kept as they are."""
    return simplify_tracking_names(model, label=label, in_place=True, keep_foldable=True, skip_fuse_bn=True,
                                   keep=params)
