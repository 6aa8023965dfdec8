"""Weights that stay in their file until a converter reads them, once, into memory it owns.

Why: ``onnx.load`` reads the whole file and parses it into a protobuf (two copies of the weights
at its peak), and everything after it (onnxsim, shape inference, the graph IR) only needs the
graph. :func:`skeleton_from_file` walks the protobuf wire format of the memory-mapped file and
parses everything *but* the large initializer payloads, which become ONNX external-data
references (``location``, ``offset``, ``length``) into the model file itself (by its absolute path).
Initializers already stored as external data keep their reference, which
:func:`common.model_io.load_onnx` (``lazy=True``) checks (inside the model's folder) and then
makes absolute too: such a *lazy* proto is an in-memory form of this toolkit, not something to
save as is (:func:`materialize` puts the bytes back).

:func:`read_array` reads one reference into a fresh, writable numpy array (one ``readinto`` from
the page cache: the only copy, owned by whoever converts it, independent of the file afterwards).
"""
from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import onnx

from .protobuf_wire import delimited, encode_varint

# A tensor whose payload is at most this many bytes stays in the proto: shape tensors, axes and
# scalars, which onnxsim's constant folding and shape inference's data propagation read.
INLINE_MAX_BYTES = 4096

_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_T_DIMS, _T_DATA_TYPE, _T_FLOAT_DATA, _T_NAME, _T_RAW_DATA = 1, 2, 4, 8, 9
_T_DOUBLE_DATA, _T_EXTERNAL_DATA, _T_DATA_LOCATION = 10, 13, 14
# Element types whose typed field is packed little-endian fixed-width values, as raw_data would be.
_PACKED_FIELD_TYPES = {_T_FLOAT_DATA: (onnx.TensorProto.FLOAT, onnx.TensorProto.COMPLEX64),
                       _T_DOUBLE_DATA: (onnx.TensorProto.DOUBLE, onnx.TensorProto.COMPLEX128)}
# External data, data_location, and the other typed fields (int32/string/int64/uint64 data).
_KEEP_AS_IS = frozenset({_T_EXTERNAL_DATA, _T_DATA_LOCATION, 5, 6, 7, 11})


class _NotWalkable(Exception):
    """The bytes use a wire feature this walker does not rewrite (groups, truncation)."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _NotWalkable("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, payload start, field end) for each field in [start, end)."""
    pos = start
    while pos < end:
        key, body = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, stop = _varint(buf, body, end)
        elif wire == 1:
            stop = body + 8
        elif wire == 5:
            stop = body + 4
        elif wire == 2:
            length, body = _varint(buf, body, end)
            stop = body + length
        else:
            raise _NotWalkable(f"wire type {wire}")
        if stop > end:
            raise _NotWalkable("field runs past its message")
        yield field, wire, pos, body, stop
        pos = stop


def _payload_bytes(data_type: int, dims: list[int]) -> Optional[int]:
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except Exception:  # noqa: BLE001 - onnx raises several types for unknown or packed types
        return None
    if data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED) or itemsize == 0:
        return None
    count = 1
    for d in dims:
        count *= d
    return count * itemsize


def _tensor(buf: memoryview, start: int, end: int, location: str, min_bytes: int) -> Optional[bytes]:
    """The TensorProto in [start, end) with its payload turned into a reference, or None to keep it."""
    dims: list[int] = []
    data_type = 0
    payload: Optional[tuple[int, int, int, int]] = None  # (field start, body, stop, field number)
    dropped: list[tuple[int, int]] = []  # an explicit data_location: DEFAULT, replaced below
    for field, wire, at, body, stop in _fields(buf, start, end):
        if field == _T_DIMS and wire == 0:
            dims.append(_varint(buf, body, stop)[0])
        elif field == _T_DIMS and wire == 2:
            p = body
            while p < stop:
                d, p = _varint(buf, p, stop)
                dims.append(d)
        elif field == _T_DATA_TYPE and wire == 0:
            data_type = _varint(buf, body, stop)[0]
        elif field == _T_DATA_LOCATION and wire == 0 and _varint(buf, body, stop)[0] == onnx.TensorProto.DEFAULT:
            dropped.append((at, stop))
        elif field in _KEEP_AS_IS:
            return None  # already a reference, or data this walker leaves inline
        elif field == _T_RAW_DATA or field in _PACKED_FIELD_TYPES:
            if payload is not None or wire != 2:
                return None  # two payload fields or unpacked values: leave it to the checks
            payload = (at, body, stop, field)
    if payload is None:
        return None
    at, body, stop, field = payload
    if field != _T_RAW_DATA and data_type not in _PACKED_FIELD_TYPES[field]:
        return None
    size = stop - body
    if size <= min_bytes or any(d > 2**62 for d in dims) or _payload_bytes(data_type, dims) != size:
        return None  # small, or inconsistent with dims (load_onnx's checks name the tensor)
    out = bytearray()
    pos = start
    for a, b in sorted(dropped + [(at, stop)]):
        out += buf[pos:a]
        pos = b
    out += buf[pos:end]
    for key, value in (("location", location), ("offset", str(body)), ("length", str(size))):
        out += delimited(_T_EXTERNAL_DATA, delimited(1, key.encode()) + delimited(2, value.encode()))
    out += encode_varint(_T_DATA_LOCATION << 3) + encode_varint(onnx.TensorProto.EXTERNAL)
    return bytes(out)


def _graph(buf: memoryview, start: int, end: int, location: str, min_bytes: int) -> bytes:
    out = bytearray()
    for field, wire, at, body, stop in _fields(buf, start, end):
        rewritten = _tensor(buf, body, stop, location, min_bytes) if field == _GRAPH_INITIALIZER and wire == 2 else None
        if rewritten is None:
            out += buf[at:stop]
        else:
            out += delimited(field, rewritten)
    return bytes(out)


def skeleton_from_file(path: "str | os.PathLike[str]", *, min_bytes: int = INLINE_MAX_BYTES) -> Optional[onnx.ModelProto]:
    """The model at ``path`` with every main-graph initializer payload over ``min_bytes`` bytes
    (``raw_data``, or packed ``float_data``/``double_data``) left in the file as a reference to
    ``path`` itself (absolute). None when the file is not a protobuf this walker can rewrite (the
    caller then loads it the ordinary way, which reports what is wrong with it)."""
    if sys.byteorder != "little":  # references mean little-endian bytes; typed fields are host order
        return None
    location = str(Path(path).resolve())
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return None
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    buf = memoryview(mapped)
    try:
        out = bytearray()
        for field, wire, at, body, stop in _fields(buf, 0, size):
            if field == _MODEL_GRAPH and wire == 2:
                out += delimited(field, _graph(buf, body, stop, location, min_bytes))
            else:
                out += buf[at:stop]
        model = onnx.ModelProto()
        model.ParseFromString(bytes(out))
        return model
    except Exception:  # noqa: BLE001 - any parse failure: the ordinary loader explains it
        return None
    finally:
        buf.release()
        mapped.close()


# --- references -------------------------------------------------------------------------------
def reference(tensor: onnx.TensorProto) -> Optional[tuple[str, int, Optional[int]]]:
    """(location, offset, length or None) of an external tensor, else None."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    entries = {e.key: e.value for e in tensor.external_data}
    length = entries.get("length")
    return entries.get("location", ""), int(entries.get("offset") or 0), int(length) if length else None


def read_into(path: "str | os.PathLike[str]", offset: int, out: np.ndarray) -> np.ndarray:
    """Fill the contiguous array ``out`` with ``out.nbytes`` bytes of ``path`` from ``offset``."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        done = 0
        while done < len(view):
            n = f.readinto(view[done:])
            if not n:
                raise OSError(f"{path}: {len(view) - done} bytes missing at offset {offset + done}")
            done += n
    return out


# Arrays from this size on get a private anonymous mapping of their own instead of malloc's memory.
_OWN_MAPPING_MIN_BYTES = 1 << 16


def empty_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty`` whose memory, when large, goes back to the system the moment the array dies.

    Why: conversion replaces many weights (folded, relaid out); memory that malloc recycles
    into its heap stays resident (fragmentation: +0.3-0.6 weight copies on resnet50 measured),
    a mapping of its own is unmapped on release.
    """
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= int(d)
    private = getattr(mmap, "MAP_PRIVATE", None)  # POSIX only
    if nbytes < _OWN_MAPPING_MIN_BYTES or private is None:
        return np.empty(shape, dtype=dtype)
    mapping = mmap.mmap(-1, nbytes, flags=private)
    return np.frombuffer(mapping, dtype=dtype, count=nbytes // dtype.itemsize).reshape(shape)


def read_array(path: "str | os.PathLike[str]", offset: int, length: Optional[int], dtype: np.dtype,
               shape: tuple[int, ...]) -> np.ndarray:
    """A fresh writable array of ``dtype`` and ``shape`` read from ``path`` (one copy, from the page cache)."""
    out = empty_array(shape, dtype)
    if length is not None and length != out.nbytes:
        raise ValueError(f"{length} bytes of external data for shape {list(shape)} of {dtype} ({out.nbytes} expected)")
    return read_into(path, offset, out) if out.nbytes else out


def _external_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    for t in graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t


def materialize(model: onnx.ModelProto, base_dir: "str | os.PathLike[str]" = "") -> onnx.ModelProto:
    """Put the bytes of every external main-graph initializer into ``model`` (in place)."""
    for t in _external_tensors(model.graph):
        location, offset, length = reference(t)
        path = os.path.join(base_dir, location)
        if length is None:
            length = os.path.getsize(path) - offset
        data = bytearray(length)
        read_into(path, offset, np.frombuffer(data, np.uint8))
        t.raw_data = bytes(data)
        del data
        t.ClearField("external_data")
        t.ClearField("data_location")
    return model


def relative_to(model: onnx.ModelProto, folder: "str | os.PathLike[str]") -> Optional[onnx.ModelProto]:
    """A copy of a lazy ``model`` whose references are relative to ``folder`` (as onnxruntime needs
    for a model given as bytes: relative to the working directory, never above it), or None when
    some referenced file is not inside ``folder``."""
    base = Path(folder).resolve()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in _external_tensors(out.graph):
        location = Path(reference(t)[0])
        if not location.is_absolute():
            location = base / location
        try:
            relative = location.relative_to(base)
        except ValueError:
            return None
        for e in t.external_data:
            if e.key == "location":
                e.value = relative.as_posix()
    return out


def data_folder(model: onnx.ModelProto) -> Optional[str]:
    """The innermost folder holding every file the lazy ``model`` references (None: no reference)."""
    folders = {os.path.dirname(reference(t)[0]) for t in _external_tensors(model.graph)}
    return os.path.commonpath(sorted(folders)) if folders else None


def is_lazy(model: onnx.ModelProto) -> bool:
    """True when some main-graph initializer of ``model`` still lives in a file."""
    return any(True for _ in _external_tensors(model.graph))


__all__ = ["INLINE_MAX_BYTES", "data_folder", "empty_array", "is_lazy", "materialize", "read_array", "read_into", "reference", "relative_to",
           "skeleton_from_file"]
