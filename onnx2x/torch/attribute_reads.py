"""Cheaper ``self.<weight>`` reads in a module that :func:`onnx2x.torch.convert` returns
(why and how: :mod:`onnx2x.torch.runtime.attributes`, which a saved model's ``load()`` runs too).

Only fx's per-instance class (``GraphModuleImpl``, made for each GraphModule) gets descriptors,
so no other module changes; a deep copy or an unpickled module gets a new class and reads
through ``nn.Module.__getattr__`` again.
"""
from __future__ import annotations

import torch.fx as fx

from .runtime.attributes import read_attributes_through_classes

_PER_INSTANCE_CLASS = "GraphModuleImpl"


def speed_up_attribute_reads(gm: fx.GraphModule) -> None:
    """Descriptors for the weights and submodules of ``gm`` and of its GraphModule submodules."""
    # (fx names the class after the graph's class_name; its qualified name stays fx's)
    classes = {type(m) for m in gm.modules()
               if isinstance(m, fx.GraphModule) and type(m).__qualname__.split(".")[-1] == _PER_INSTANCE_CLASS}
    read_attributes_through_classes(gm, classes)
