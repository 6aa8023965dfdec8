"""Read an MXNet symbol and its parameters, from files or objects, failing with one clear line.

MXNet's own loaders either accept anything that parses as JSON (and fail later, far from the
cause) or print multi-line C++ traces; here every problem names the file and what is wrong:
missing file, JSON that is not an MXNet symbol, truncated or foreign ``.params``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from common.errors import ModelLoadError
from mx2onnx_patches.mxnet_import import import_mxnet

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


def validate_symbol_json(text: str, file: str) -> dict:
    """Parse and check that ``text`` is an MXNet symbol graph (nodes with op/name/inputs, heads)."""
    try:
        graph = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"not JSON ({exc.msg} at line {exc.lineno})" if isinstance(exc, json.JSONDecodeError)
                             else "not a text file", file=file) from None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list) or "heads" not in graph:
        raise ModelLoadError("not an MXNet symbol file (expected a JSON object with 'nodes' and 'heads')", file=file)
    for i, node in enumerate(graph["nodes"]):
        if not isinstance(node, dict) or not {"op", "name", "inputs"} <= node.keys():
            raise ModelLoadError(f"not an MXNet symbol file (node {i} lacks op/name/inputs)", file=file)
        for entry in node["inputs"]:
            if not isinstance(entry, list) or not entry or not isinstance(entry[0], int) \
                    or not 0 <= entry[0] < i:
                raise ModelLoadError(f"not an MXNet symbol file (node {i} '{node['name']}' has a bad input "
                                     f"reference {entry!r})", file=file)
    if not graph["nodes"] or not graph["heads"]:
        raise ModelLoadError("MXNet symbol file has no nodes or no outputs", file=file)
    return graph


def load_symbol(symbol: Any) -> tuple[Any, str]:
    """``(mx.sym.Symbol, label for messages)`` from a path or a Symbol."""
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
    validate_symbol_json(text, file)
    try:
        with native_stderr_to_log():
            return mx.sym.load_json(text), file
    except Exception as exc:  # MXNetError
        raise ModelLoadError(f"MXNet cannot read this symbol: {_first_line(exc)}", file=file) from None


def _to_ndarray(mx: Any, name: str, value: Any, file: str) -> Any:
    if isinstance(value, mx.nd.NDArray):
        return value
    try:
        return mx.nd.array(np.asarray(value), dtype=np.asarray(value).dtype)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"parameter {name!r} is not an array ({_first_line(exc)})", file=file) from None


def load_params(params: Any) -> tuple[dict, dict, str]:
    """``(arg_params, aux_params, label)`` from a path, a dict or ``(arg_params, aux_params)``.

    A dict with MXNet's ``arg:``/``aux:`` prefixes is split by them; a dict without is returned
    as ``arg_params`` (the exporter treats both the same way).
    """
    mx = import_mxnet()
    if isinstance(params, (str, os.PathLike)):
        path = _existing_file(params)
        file = str(params)
        try:
            loaded = mx.nd.load(str(path))
        except Exception as exc:  # MXNetError
            raise ModelLoadError(f"cannot read MXNet params (truncated or not a .params file: {_first_line(exc)})",
                                 file=file) from None
        if isinstance(loaded, list) and not loaded:
            loaded = {}  # a network without weights: MXNet saves and loads an empty list
        if not isinstance(loaded, dict):
            raise ModelLoadError("MXNet params file holds a list, not named parameters", file=file)
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
