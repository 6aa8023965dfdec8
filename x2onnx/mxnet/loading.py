"""Read an MXNet symbol and its parameters, from files or objects, failing with one clear line.

MXNet's own loaders either accept anything that parses as JSON (and fail later, far from the
cause), print multi-line C++ traces, or crash the process natively on a bad output index or a
corrupt ``.params`` header. Here nothing reaches MXNet unchecked: the symbol's structure is
validated in Python (``validate``), each op node is probed alone (``op_probe``), ``.params`` files
are parsed in Python (``params_file``), and parameters are checked against what the symbol
infers for them (:func:`conform_params`). Every problem is one line naming the file, and the
node, attribute or parameter when there is one.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from common.errors import ModelLoadError, ShapeError
from mx2onnx_patches.mxnet_import import import_mxnet

from . import op_probe, validate
from .params_file import read_params_file

PathLike = Union[str, "os.PathLike[str]"]
log = logging.getLogger(__name__)


@contextlib.contextmanager
def native_stderr_to_log():
    """Send what MXNet's C++ core prints on stderr meanwhile (e.g. "Loading symbol saved by
    previous version v0.8.0") to the debug log, so a CLI's stderr holds only its own lines."""
    fd = 2  # what C++ writes to, whatever Python's sys.stderr is at the moment
    try:
        sys.stderr.flush()
        saved = os.dup(fd)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    log.debug("mxnet: %s", line.strip())


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Traceback", "File ", "["))]
    return (useful or lines or [type(exc).__name__])[0][:200]


def _existing_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise ModelLoadError("no such file", file=str(path))
    if not p.is_file():
        raise ModelLoadError("not a regular file", file=str(path))
    return p


def checkpoint_paths(prefix: PathLike, epoch: int) -> tuple[Path, Path]:
    """``PREFIX-symbol.json`` and ``PREFIX-%04d.params`` (MXNet's checkpoint naming)."""
    prefix = str(prefix)
    return Path(f"{prefix}-symbol.json"), Path(f"{prefix}-{int(epoch):04d}.params")


def validate_symbol_json(text: str, file: Optional[str]) -> dict:
    """Parse ``text`` and check its structure (:func:`validate.check_structure`), in Python only."""
    try:
        graph = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"not JSON ({exc.msg} at line {exc.lineno})", file=file) from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, numbers too long
        raise ModelLoadError(f"not an MXNet symbol file ({_first_line(exc)})", file=file) from None
    try:
        return validate.check_structure(graph, file)
    except ModelLoadError as exc:
        if getattr(exc, "mxnet_reader_refuses", False):
            reason = _mxnet_reader_reason(text)
            if reason:
                exc.message = f"{exc.message} (MXNet: {reason})"
        raise


def _mxnet_reader_reason(text: str) -> Optional[str]:
    """MXNet's own words for a file its JSON reader refuses (asked only for problems that stop
    the reader before any graph is built, where MXNet cannot crash); None if it accepts it."""
    mx = import_mxnet()
    try:
        with native_stderr_to_log():
            mx.sym.load_json(text)
    except Exception as exc:  # noqa: BLE001 - MXNetError
        lines = [ln.strip() for ln in str(exc).splitlines() if "Check failed" in ln or "JSONReader" in ln]
        line = lines[0] if lines else op_probe.mxnet_message(exc)
        context = re.search(r"around \^`.*`, (.*)$", line)  # the reader quotes the text it stopped at
        reason = context.group(1) if context else line.rsplit(": ", 1)[-1]
        return reason.strip()[:200] or op_probe.mxnet_message(exc)
    return None


def _check_with_mxnet(graph: dict, file: Optional[str]) -> None:
    """What only MXNet knows, asked one op node at a time: the op exists, its attributes parse,
    and every reference names an output the node has (past-the-end ones crash MXNet)."""
    ops = op_probe.registered_ops()
    graph_attrs = graph.get("attrs", {})
    counts: dict[int, int] = {}

    def num_outputs(index: int) -> int:
        if index not in counts:
            counts[index] = op_probe.output_count(graph["nodes"][index], graph_attrs, file, ops)
        return counts[index]

    for index, node in enumerate(graph["nodes"]):
        if node["op"] != "null":
            num_outputs(index)
    validate.check_output_indices(graph, num_outputs, file)


def load_symbol(symbol: Any) -> tuple[Any, str]:
    """``(mx.sym.Symbol, label for messages)`` from a path or a Symbol.

    A file is validated before MXNet parses it (structure, ops, attributes, output indices) and
    its nodes' input counts after (MXNet's upgrade of old files adds auxiliary inputs first).
    """
    mx = import_mxnet()
    if isinstance(symbol, mx.sym.Symbol):
        return symbol, "<symbol>"
    if not isinstance(symbol, (str, os.PathLike)):
        raise ModelLoadError(f"symbol must be a path or an mx.sym.Symbol, not {type(symbol).__name__}")
    path = _existing_file(symbol)
    file = str(symbol)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelLoadError("not an MXNet symbol file (not UTF-8 text)", file=file) from None
    graph = validate_symbol_json(text, file)
    _check_with_mxnet(graph, file)
    try:
        with native_stderr_to_log():
            sym = mx.sym.load_json(text)
    except Exception as exc:  # MXNetError
        raise ModelLoadError(f"MXNet cannot read this symbol: {op_probe.mxnet_message(exc)}", file=file) from None
    try:
        nodes = json.loads(sym.tojson())["nodes"]
    except Exception as exc:  # noqa: BLE001 - MXNetError
        raise ModelLoadError(f"MXNet cannot read this symbol: {op_probe.mxnet_message(exc)}", file=file) from None
    op_probe.check_input_counts(nodes, file)
    return sym, file


def _to_ndarray(mx: Any, name: str, value: Any, file: str) -> Any:
    if isinstance(value, mx.nd.NDArray):
        return value
    try:
        return mx.nd.array(np.asarray(value), dtype=np.asarray(value).dtype)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"parameter {name!r} is not an array ({_first_line(exc)})", file=file) from None


def _read_params(mx: Any, path: Path, file: str) -> dict:
    """A ``.params`` file as ``{name: NDArray}``, checked field by field before anything is built."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read: {exc.strerror or exc}", file=file) from None
    content = read_params_file(data, file)
    if content.arrays and not content.names:
        raise ModelLoadError("MXNet params file holds a list, not named parameters", file=file)
    loaded = {}
    for name, array in zip(content.names, content.arrays):
        if array is None:
            log.warning("%s: parameter '%s' was saved without a shape; ignoring it", file, name)
            continue
        loaded[name] = mx.nd.array(array, dtype=array.dtype)
    return loaded


def load_params(params: Any) -> tuple[dict, dict, str]:
    """``(arg_params, aux_params, label)`` from a path, a dict or ``(arg_params, aux_params)``.

    A dict with MXNet's ``arg:``/``aux:`` prefixes is split by them; a dict without is returned
    as ``arg_params`` (the exporter treats both the same way).
    """
    mx = import_mxnet()
    if isinstance(params, (str, os.PathLike)):
        path = _existing_file(params)
        file = str(params)
        loaded = _read_params(mx, path, file)
        params, label = loaded, file
    else:
        label = "<params>"
    if isinstance(params, (tuple, list)) and len(params) == 2 and all(isinstance(p, Mapping) for p in params):
        arg = {k: _to_ndarray(mx, k, v, label) for k, v in params[0].items()}
        aux = {k: _to_ndarray(mx, k, v, label) for k, v in params[1].items()}
        return arg, aux, label
    if not isinstance(params, Mapping):
        raise ModelLoadError(f"params must be a path, a dict or (arg_params, aux_params), not {type(params).__name__}")
    arg, aux = {}, {}
    for key, value in params.items():
        kind, sep, name = str(key).partition(":")
        if sep and kind == "aux":
            aux[name] = _to_ndarray(mx, name, value, label)
        elif sep and kind == "arg":
            arg[name] = _to_ndarray(mx, name, value, label)
        else:
            arg[str(key)] = _to_ndarray(mx, str(key), value, label)
    return arg, aux, label


def drop_unused_params(sym: Any, params: Mapping[str, Any], file: Optional[str]) -> dict:
    """The parameters the symbol uses; the others are named in a warning and ignored."""
    used = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    unused = sorted(k for k in params if k not in used)
    if unused:
        more = f" (and {len(unused) - 5} more)" if len(unused) > 5 else ""
        log.warning("%sthe network does not use parameter(s) %s%s; ignoring them", f"{file}: " if file else "",
                    ", ".join(repr(n) for n in unused[:5]), more)
    return {k: v for k, v in params.items() if k in used}


def _fmt_shape(shape: Any) -> str:
    return str(tuple(int(d) for d in shape))


def _quiet_inference(sym: Any, infer: str, known: Mapping[str, Any]) -> tuple:
    """``sym.<infer>(**known)`` without MXNet's C++ log lines or its Python prints on stdout."""
    with native_stderr_to_log(), contextlib.redirect_stdout(io.StringIO()):
        return getattr(sym, infer)(**known)


def _expected_per_argument(sym: Any, infer: str, known: Mapping[str, Any]) -> dict[str, Any]:
    """``{argument or auxiliary state: what MXNet infers from the data inputs alone}`` ({} if
    MXNet cannot infer anything: then the full inference reports the problem)."""
    try:
        args, _, aux = _quiet_inference(sym, infer, known)
    except Exception:  # noqa: BLE001 - MXNetError: reported with its node by the full inference
        return {}
    names = sym.list_arguments() + sym.list_auxiliary_states()
    return dict(zip(names, list(args or []) + list(aux or [])))


def _full_inference(sym: Any, infer: str, known: Mapping[str, Any], what: str,
                    inputs: Optional[Mapping[str, tuple[int, ...]]] = None) -> None:
    """Run MXNet's inference with inputs and parameters; its error becomes one :class:`ShapeError`
    naming the operator MXNet names (the caller adds the symbol file), or naming the input whose
    rank differs from its declared shape (``inputs``: the input shapes given)."""
    try:
        _quiet_inference(sym, infer, known)
    except Exception as exc:  # noqa: BLE001 - MXNetError
        if inputs:
            _check_declared_ranks(sym, inputs)
        detail = op_probe.mxnet_message(exc)
        match = re.search(r"Error in operator ([^:\s]+):\s*", detail)
        node = match.group(1) if match else None
        if match:
            detail = detail[:match.start()] + detail[match.end():]
        raise ShapeError(f"{what} do not fit the network: {detail}", node=node) from None


def _check_declared_ranks(sym: Any, input_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """An input shape of another rank than the variable's declared ``__shape__``: name the input
    (MXNet would blame the first operator that reads it). Only asked once MXNet has refused the
    shapes: MXNet itself ignores a declared shape when one is given."""
    declared = sym.attr_dict()
    for name, shape in input_shapes.items():
        text = declared.get(name, {}).get("__shape__")
        if not text:
            continue
        try:
            dims = validate.declared_shape(text)
        except ValueError:  # AttrParseError included: MXNet did not read it either
            continue
        if dims and len(dims) != len(shape):
            raise ShapeError(f"input '{name}' has rank {len(shape)} ({','.join(map(str, shape))}), but the symbol "
                             f"declares rank {len(dims)} (__shape__ {text})")


def conform_params(sym: Any, params: Mapping[str, Any], input_shapes: Mapping[str, Any],
                   input_dtypes: Mapping[str, Any], file: Optional[str]) -> dict:
    """Check every parameter against what the symbol infers for it from the inputs alone, then run
    MXNet's whole shape and type inference once, so that its errors become one line here.

    A shape that differs -> :class:`ShapeError` naming the parameter, the shape given and the one
    the network needs. A float16/float64 (or bfloat16) weight where the network computes in
    another float type is cast to that type, with a warning (the ONNX model then holds it in the
    type MXNet would compute with); an integer or boolean array where a float one belongs, or the
    reverse, is refused: casting it would silently change what the model computes.
    """
    shapes_in = {n: tuple(int(d) for d in s) for n, s in input_shapes.items()}
    dtypes_in = {n: np.dtype(t) for n, t in input_dtypes.items()}
    given_shapes = ", ".join(f"{n}:{','.join(map(str, s))}" for n, s in shapes_in.items())
    given_dtypes = ", ".join(f"{n}:{t.name}" for n, t in dtypes_in.items())
    shapes = _expected_per_argument(sym, "infer_shape_partial", shapes_in)
    for name, value in params.items():
        expected = shapes.get(name)
        if expected and all(int(d) > 0 for d in expected) and tuple(value.shape) != tuple(expected):
            raise ShapeError(f"parameter '{name}' has shape {_fmt_shape(value.shape)}, but the network needs "
                             f"{_fmt_shape(expected)} there (with input shape(s) {given_shapes})", file=file)
    dtypes = _expected_per_argument(sym, "infer_type_partial", dtypes_in)
    out = dict(params)
    for name, value in params.items():
        expected = dtypes.get(name)
        if expected is None or np.dtype(expected) == np.dtype(value.dtype):
            continue
        want, have = np.dtype(expected), np.dtype(value.dtype)
        if want.kind == "f" and have.kind == "f":
            log.warning("%sparameter '%s' is %s; casting it to %s, the type the network computes in",
                        f"{file}: " if file else "", name, have.name, want.name)
            out[name] = value.astype(want)
            continue
        raise ModelLoadError(f"parameter '{name}' has dtype {have.name}, but the network needs {want.name} there "
                             f"(with input dtype(s) {given_dtypes})", file=file)
    known_shapes = dict(shapes_in, **{n: tuple(v.shape) for n, v in out.items()})
    _full_inference(sym, "infer_shape_partial", known_shapes, f"input shape(s) {given_shapes}", shapes_in)
    known_dtypes = dict(dtypes_in, **{n: np.dtype(v.dtype) for n, v in out.items()})
    _full_inference(sym, "infer_type_partial", known_dtypes, f"input dtype(s) {given_dtypes}")
    return out
