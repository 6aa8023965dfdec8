"""Reading and writing ONNX files safely.

Loading never follows an external-data ``location`` outside the model's folder (absolute
paths, ``..`` and symlinks out are refused; the class of onnx's 2024 path-traversal CVEs), and
turns every parse failure into a :class:`ModelLoadError` naming the file. Saving is atomic and
switches to external data for models over protobuf's 2 GB limit.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import onnx
from google.protobuf.message import DecodeError

from .atomic import atomic_path
from .errors import ModelLoadError, SecurityError
from .weight_refs import skeleton_from_file

PathLike = Union[str, "os.PathLike[str]"]
PROTOBUF_LIMIT = 2**31 - 1
# Leave headroom: the serialized model is bigger than the sum of its tensors.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def _iter_tensors(graph: onnx.GraphProto, *, initializers: bool = True) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph`` and its subgraphs (``initializers=False``: but its own initializers)."""
    if initializers:
        yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _iter_tensors(attr.g)
            for sub in attr.graphs:
                yield from _iter_tensors(sub)


def external_locations(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(tensor name, location) for every tensor stored outside the model file."""
    found = []
    for tensor in _iter_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in tensor.external_data if e.key == "location"), "")
            found.append((tensor.name, loc))
    for func in model.functions:
        for node in func.node:
            for attr in node.attribute:
                if attr.HasField("t") and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                    loc = next((e.value for e in attr.t.external_data if e.key == "location"), "")
                    found.append((attr.t.name, loc))
    return found


def check_external_data(model: onnx.ModelProto, base_dir: PathLike, file: str = "", *,
                        own_file: Optional[str] = None) -> None:
    """Refuse external-data locations that leave ``base_dir`` or do not exist.

    ``own_file``: the absolute path of the model file itself, which references written by
    :func:`common.weight_refs.skeleton_from_file` name (allowed: it is the file being loaded).
    """
    base = Path(base_dir).resolve()
    for name, loc in external_locations(model):
        if own_file is not None and loc == own_file:
            continue
        where = f"tensor {name!r}: external data location {loc!r}"
        if not loc:
            raise SecurityError(f"{where} is empty", file=file)
        if os.path.isabs(loc) or loc.startswith(("/", "\\")) or ":" in Path(loc).parts[0]:
            raise SecurityError(f"{where} is an absolute path; refused", file=file)
        if any(part == ".." for part in Path(loc.replace("\\", "/")).parts):
            raise SecurityError(f"{where} goes up out of the model folder; refused", file=file)
        resolved = (base / loc).resolve()
        if base != resolved and base not in resolved.parents:
            raise SecurityError(f"{where} resolves outside the model folder (symlink?); refused", file=file)
        if not resolved.is_file():
            raise ModelLoadError(f"{where} does not exist", file=file)


_PACKED_PER_BYTE = {"INT4": 2, "UINT4": 2, "FLOAT4E2M1": 2, "INT2": 4, "UINT2": 4}
_TYPED_FIELD = {  # element type -> (field holding the values, values per element)
    "FLOAT": ("float_data", 1), "COMPLEX64": ("float_data", 2), "DOUBLE": ("double_data", 1),
    "COMPLEX128": ("double_data", 2), "INT64": ("int64_data", 1), "UINT32": ("uint64_data", 1),
    "UINT64": ("uint64_data", 1), "STRING": ("string_data", 1),
}


@functools.lru_cache(maxsize=None)
def _element_type(data_type: int) -> tuple[Optional[str], int]:
    """(name, bytes per element; 0 where not fixed) of an ONNX element type; name None if unknown."""
    if data_type not in onnx.TensorProto.DataType.values():
        return None, 0
    name = onnx.TensorProto.DataType.Name(data_type)
    try:
        return name, onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except Exception:  # noqa: BLE001 - onnx raises KeyError/ValueError/TypeError for these
        return name, 0


def _check_tensor(tensor: onnx.TensorProto, file: str) -> None:
    """Refuse tensors whose payload does not match their declared type and shape."""
    where = f"tensor {tensor.name!r}"
    type_name, itemsize = _element_type(tensor.data_type)
    if type_name is None or type_name == "UNDEFINED":
        raise ModelLoadError(f"{where} has an invalid element type ({tensor.data_type})", file=file)
    if any(d < 0 for d in tensor.dims):
        raise ModelLoadError(f"{where} has a negative dimension {list(tensor.dims)}", file=file)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return
    count = 1
    for d in tensor.dims:
        count *= d
    if tensor.HasField("raw_data"):
        if type_name == "STRING":
            raise ModelLoadError(f"{where}: string tensors cannot use raw_data", file=file)
        if type_name in _PACKED_PER_BYTE:
            expected = -(-count // _PACKED_PER_BYTE[type_name])
        elif not itemsize:
            return  # an element type without a fixed size that we know: nothing to compare
        else:
            expected = count * itemsize
        if len(tensor.raw_data) != expected:
            raise ModelLoadError(f"{where}: {len(tensor.raw_data)} bytes of data for shape {list(tensor.dims)} "
                                 f"of {type_name} ({expected} expected)", file=file)
        return
    field, per = _TYPED_FIELD.get(type_name, ("int32_data", 1))
    if type_name in _PACKED_PER_BYTE:
        count = -(-count // _PACKED_PER_BYTE[type_name])
    have = len(getattr(tensor, field))
    if have != count * per:
        raise ModelLoadError(f"{where}: {have} values in {field} for shape {list(tensor.dims)} of {type_name}",
                             file=file)


def copy_fields(target: Any, source: Any, skip: tuple[str, ...]) -> None:
    """Make every field of the message ``target`` but ``skip`` equal to ``source``'s.

    Lets callers build a copy of a model without its big repeated fields (initializers) instead of
    copying everything and deleting afterwards.
    """
    for desc in target.DESCRIPTOR.fields:
        if desc.name not in skip:
            target.ClearField(desc.name)
    for desc, value in source.ListFields():
        if desc.name in skip:
            continue
        field = getattr(target, desc.name)
        if hasattr(field, "extend"):  # repeated
            field.extend(value)
        elif desc.message_type is not None:
            field.CopyFrom(value)
        else:
            setattr(target, desc.name, value)


def tensor_nbytes(tensor: onnx.TensorProto) -> "int | None":
    """Payload size from dims and element type, without touching the data (reading ``raw_data``
    makes protobuf copy the bytes); None for strings and unknown types."""
    n = 1
    for d in tensor.dims:
        n *= int(d)
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except Exception:  # noqa: BLE001 - onnx raises KeyError/ValueError/TypeError for these
        return None
    if tensor.data_type == onnx.TensorProto.STRING:
        return None
    return n * itemsize


def check_tensors(model: onnx.ModelProto, file: str = "") -> None:
    """Validate every initializer and constant attribute tensor (including in subgraphs)."""
    for tensor in _iter_tensors(model.graph):
        _check_tensor(tensor, file)


def load_onnx(path: PathLike, *, load_external_data: bool = True, lazy: bool = False) -> onnx.ModelProto:
    """Load an ONNX file with clear errors and safe external data.

    ``lazy=True`` reads no weight: initializers over :data:`common.weight_refs.INLINE_MAX_BYTES`
    stay in their file as references with absolute, checked locations
    (:mod:`common.weight_refs`; ``read_array`` reads one, ``materialize`` all of them).
    """
    p = Path(path)
    file = str(path)
    if not p.exists():
        raise ModelLoadError("no such file", file=file)
    if not p.is_file():
        raise ModelLoadError("not a regular file", file=file)
    model = skeleton_from_file(p) if lazy else None
    own_file = str(p.resolve()) if model is not None else None
    if model is None:
        try:
            model = onnx.load(str(p), load_external_data=False)
        except (DecodeError, ValueError, TypeError, RuntimeError, OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"not a valid ONNX model ({' '.join(str(exc).split()) or type(exc).__name__})", file=file) from exc
        except RecursionError as exc:
            raise ModelLoadError("not a valid ONNX model (nesting too deep)", file=file) from exc
    if not model.HasField("graph"):
        raise ModelLoadError("not a valid ONNX model (no graph)", file=file)
    check_external_data(model, p.parent, file, own_file=own_file)
    check_tensors(model, file)
    if lazy:
        _absolute_locations(model, p.parent)
    elif load_external_data and external_locations(model):
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(p.parent))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read external data ({exc})", file=file) from exc
    return model


def _absolute_locations(model: onnx.ModelProto, base_dir: Path) -> None:
    """Make the (checked) external-data locations of the main graph's initializers absolute, so
    that a lazy model names its files wherever it goes in this process; external tensors elsewhere
    (subgraphs, Constant attributes, functions: small in practice) are read in now."""
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location" and not os.path.isabs(entry.value):
                    entry.value = str((base_dir / entry.value).resolve())
    others = [t for t in _iter_tensors(model.graph, initializers=False)
              if t.data_location == onnx.TensorProto.EXTERNAL]
    others += [n.attribute[k].t for f in model.functions for n in f.node for k in range(len(n.attribute))
               if n.attribute[k].HasField("t") and n.attribute[k].t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in others:
        onnx.external_data_helper.load_external_data_for_tensor(tensor, str(base_dir))
        tensor.ClearField("external_data")
        tensor.ClearField("data_location")


def as_model_proto(model: "onnx.ModelProto | PathLike") -> tuple[onnx.ModelProto, str]:
    """Accept a ModelProto or a path; return the proto and a label for error messages."""
    if isinstance(model, onnx.ModelProto):
        label = model.graph.name or "<model>"
        check_tensors(model, label)
        return model, label
    return load_onnx(model), str(model)


def save_onnx(model: onnx.ModelProto, path: PathLike, *, external_data: "bool | None" = None) -> Path:
    """Save atomically; use a side file ``<name>.data`` when the model exceeds protobuf's limit.

    ``external_data=None`` decides by size. The data file is written before the model file, and
    both appear only when both are complete.
    """
    target = Path(path)
    if external_data is None:
        external_data = model.ByteSize() > EXTERNAL_DATA_THRESHOLD if _cheap_size_ok(model) else True
    if not external_data:
        with atomic_path(target) as tmp:
            onnx.save_model(model, str(tmp))
        return target
    data_name = target.name + ".data"
    data_target = target.parent / data_name
    work = onnx.ModelProto()
    work.CopyFrom(model)
    onnx.external_data_helper.convert_model_to_external_data(
        work, all_tensors_to_one_file=True, location=data_name, size_threshold=1024
    )
    with atomic_path(data_target) as tmp_data, atomic_path(target) as tmp_model:
        # onnx writes external data next to the model file under `location`; write into a
        # staging folder, then move.
        staging = tmp_model.parent / (tmp_model.name + ".d")
        staging.mkdir()
        try:
            onnx.save_model(work, str(staging / target.name))
            os.replace(staging / target.name, tmp_model)
            os.replace(staging / data_name, tmp_data)
        finally:
            for leftover in staging.glob("*"):
                leftover.unlink()
            staging.rmdir()
    return target


def _cheap_size_ok(model: onnx.ModelProto) -> bool:
    """True when ByteSize() is safe to call (it overflows past 2 GB in some protobuf builds)."""
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) + 4 * len(t.float_data) + 8 * len(t.int64_data) + 4 * len(t.int32_data)
        if total > EXTERNAL_DATA_THRESHOLD:
            return False
    return True
