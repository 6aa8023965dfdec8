"""ONNX sequences and optionals at run time: a sequence is a Python list of tensors, an optional
is ``None`` or its value. Used only when the sequence is built by run-time code (e.g. a Loop);
sequences with a length known at conversion time never reach these helpers."""
from __future__ import annotations

from typing import Any, List, Optional

import torch


def _pos(seq: List[torch.Tensor], position: Optional[torch.Tensor], default: int) -> int:
    if position is None:
        return default
    p = int(position.reshape(()).item()) if isinstance(position, torch.Tensor) else int(position)
    return p + len(seq) if p < 0 else p


def insert(seq: List[torch.Tensor], value: torch.Tensor, position: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    out = list(seq)
    out.insert(_pos(seq, position, len(seq)), value)
    return out


def erase(seq: List[torch.Tensor], position: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    out = list(seq)
    del out[_pos(seq, position, len(seq) - 1)]
    return out


def at(seq: List[torch.Tensor], position: torch.Tensor) -> torch.Tensor:
    return seq[_pos(seq, position, 0)]


def length(seq: List[torch.Tensor]) -> torch.Tensor:
    return torch.tensor(len(seq), dtype=torch.int64)


def concat(seq: List[torch.Tensor], axis: int, new_axis: int) -> torch.Tensor:
    return torch.stack(seq, axis) if new_axis else torch.cat(seq, axis)


def split(x: torch.Tensor, split: Optional[torch.Tensor], axis: int, keepdims: int) -> List[torch.Tensor]:
    """ONNX SplitToSequence: ``split`` absent -> size-1 chunks (squeezed unless ``keepdims``)."""
    if split is None:
        parts = list(torch.split(x, 1, axis))
        return parts if keepdims else [p.squeeze(axis) for p in parts]
    if split.dim() == 0:
        return list(torch.split(x, int(split.item()), axis))
    return list(torch.split(x, [int(s) for s in split.tolist()], axis))


def has_element(value: Any) -> torch.Tensor:
    return torch.tensor(value is not None)


def get_element(value: Any) -> Any:
    if value is None:
        raise ValueError("OptionalGetElement on an empty optional")
    return value
