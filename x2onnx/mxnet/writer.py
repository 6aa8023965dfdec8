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

import numpy as np
import onnx

from common.atomic import atomic_path
from common.protobuf_wire import encode_varint as _varint
from common.protobuf_wire import key as _key
from common.model_io import EXTERNAL_DATA_THRESHOLD, save_onnx

PathLike = Union[str, "os.PathLike[str]"]
_MODEL_GRAPH_FIELD = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_GRAPH_INITIALIZER_FIELD = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
_RAW_DATA_FIELD = onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number
_FIXED_SIZE_TYPES = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16, onnx.TensorProto.INT32,
    onnx.TensorProto.UINT32, onnx.TensorProto.INT64, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL,
}


def _repeated(field) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 5; older ones have ``label``
    return bool(is_repeated) if is_repeated is not None else field.label == field.LABEL_REPEATED


def _shell(message, skip: str):
    """A copy of ``message`` without field ``skip``.

    Fields are visited through the descriptor and ``HasField``/``len`` so that ``skip`` is never
    read (``ListFields`` would hand out a copy of a tensor's ``raw_data``).
    """
    shell = type(message)()
    for field in message.DESCRIPTOR.fields:
        if field.name == skip:
            continue
        if _repeated(field):
            values = getattr(message, field.name)
            if len(values):
                getattr(shell, field.name).extend(values)
        elif message.HasField(field.name):
            if field.type == field.TYPE_MESSAGE:
                getattr(shell, field.name).CopyFrom(getattr(message, field.name))
            else:
                setattr(shell, field.name, getattr(message, field.name))
    return shell


def _raw_payload_size(tensor: onnx.TensorProto) -> "int | None":
    """Bytes of ``raw_data`` implied by dims and type, for tensors stored that way (else None)."""
    if tensor.data_type not in _FIXED_SIZE_TYPES or not tensor.HasField("raw_data") \
            or tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize


def tensor_size(tensor: onnx.TensorProto) -> int:
    """Serialized size of ``tensor``, predicted without encoding its raw data.

    (upb's ``ByteSize`` encodes the whole message to measure it: a transient copy of the data.)
    """
    payload = _raw_payload_size(tensor)
    if payload is None:
        return tensor.ByteSize()
    head = _shell(tensor, "raw_data").ByteSize()
    return head + len(_key(_RAW_DATA_FIELD)) + len(_varint(payload)) + payload


def _write_tensor(tensor: onnx.TensorProto, handle: BinaryIO) -> int:
    """Write one serialized tensor; raw data goes out from a single copy of it.

    (``SerializeToString`` would encode into upb's arena and then copy into Python: twice the data.)
    """
    payload_size = _raw_payload_size(tensor)
    if payload_size is None:
        data = tensor.SerializeToString()
        handle.write(data)
        return len(data)
    head = _shell(tensor, "raw_data").SerializeToString()
    payload = tensor.raw_data
    if len(payload) != payload_size:  # raw_data disagrees with dims: never write a corrupt file
        raise ValueError(f"tensor {tensor.name!r}: {len(payload)} bytes of raw data, dims say {payload_size}")
    prefix = head + _key(_RAW_DATA_FIELD) + _varint(payload_size)
    handle.write(prefix)
    handle.write(payload)
    return len(prefix) + payload_size


def write_streaming(model: onnx.ModelProto, handle: BinaryIO) -> int:
    """Write ``model`` to ``handle`` field by field; returns the number of bytes written."""
    graph = model.graph
    graph_head = _shell(graph, "initializer").SerializeToString()
    sizes = [tensor_size(t) for t in graph.initializer]
    key = _key(_GRAPH_INITIALIZER_FIELD)
    graph_len = len(graph_head) + sum(len(key) + len(_varint(n)) + n for n in sizes)
    written = 0
    for chunk in (_shell(model, "graph").SerializeToString(), _key(_MODEL_GRAPH_FIELD), _varint(graph_len),
                  graph_head):
        handle.write(chunk)
        written += len(chunk)
    for tensor, size in zip(graph.initializer, sizes):
        handle.write(key)
        handle.write(_varint(size))
        if _write_tensor(tensor, handle) != size:
            raise ValueError(f"tensor {tensor.name!r}: wrote a size other than announced")
        written += len(key) + len(_varint(size)) + size
    return written


def save_model(model: onnx.ModelProto, path: PathLike) -> Path:
    """Atomically write ``model`` to ``path`` (streaming; external data beyond 2 GB)."""
    total = sum(tensor_size(t) for t in model.graph.initializer)
    if total > EXTERNAL_DATA_THRESHOLD:
        return save_onnx(model, path, external_data=True)
    target = Path(path)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            write_streaming(model, handle)
    return target
