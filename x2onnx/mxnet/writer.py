"""Write an ONNX model without serializing it whole: at most one tensor's bytes extra in memory.

``onnx.save_model`` builds the complete serialized model first (one more copy of every weight
on top of the ``ModelProto``). Protobuf's wire format is a concatenation of fields, so the model
can be written as: the model's fields without its graph, the graph's length-delimited header,
the graph's fields without its initializers, then each initializer serialized on its own. The
file is byte-for-byte a valid ``ModelProto`` (fields in another order, which protobuf allows).
Models beyond protobuf's 2 GB limit go through :func:`common.model_io.save_onnx` (external data).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Union

import onnx

from common.atomic import atomic_path
from common.model_io import EXTERNAL_DATA_THRESHOLD, save_onnx

PathLike = Union[str, "os.PathLike[str]"]
_MODEL_GRAPH_FIELD = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_GRAPH_INITIALIZER_FIELD = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field_number: int) -> bytes:
    return _varint((field_number << 3) | 2)  # wire type 2: length-delimited


def _repeated(field) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 5; older ones have ``label``
    return bool(is_repeated) if is_repeated is not None else field.label == field.LABEL_REPEATED


def _shell(message, skip: str):
    """A copy of ``message`` without field ``skip`` (the skipped field is never copied)."""
    shell = type(message)()
    for field, value in message.ListFields():
        if field.name == skip:
            continue
        target = getattr(shell, field.name)
        if _repeated(field):
            target.extend(value)
        elif field.type == field.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(shell, field.name, value)
    return shell


def write_streaming(model: onnx.ModelProto, handle: BinaryIO) -> int:
    """Write ``model`` to ``handle`` field by field; returns the number of bytes written."""
    graph = model.graph
    graph_head = _shell(graph, "initializer").SerializeToString()
    sizes = [t.ByteSize() for t in graph.initializer]
    key = _key(_GRAPH_INITIALIZER_FIELD)
    graph_len = len(graph_head) + sum(len(key) + len(_varint(n)) + n for n in sizes)
    written = 0
    for chunk in (_shell(model, "graph").SerializeToString(), _key(_MODEL_GRAPH_FIELD), _varint(graph_len),
                  graph_head):
        handle.write(chunk)
        written += len(chunk)
    for tensor, size in zip(graph.initializer, sizes):
        data = tensor.SerializeToString()
        handle.write(key)
        handle.write(_varint(size))
        handle.write(data)
        written += len(key) + len(_varint(size)) + len(data)
        del data
    return written


def save_model(model: onnx.ModelProto, path: PathLike) -> Path:
    """Atomically write ``model`` to ``path`` (streaming; external data beyond 2 GB)."""
    total = sum(t.ByteSize() for t in model.graph.initializer)
    if total > EXTERNAL_DATA_THRESHOLD:
        return save_onnx(model, path, external_data=True)
    target = Path(path)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            write_streaming(model, handle)
    return target
