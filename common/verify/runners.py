"""Run a model in one framework behind one interface, optionally capturing every intermediate tensor.

Every runner takes ``{input name: numpy array}`` and returns a :class:`RunResult` with the final
outputs (in the model's order) and, on request, the intermediate tensors keyed by **ONNX tensor
name**, so that tensors from different frameworks can be matched one to one:

- :class:`OnnxRuntimeRunner` (ModelProto): intermediates by exposing every node output as a graph
  output on a copy of the model;
- :class:`TorchRunner` (a GraphModule made by ``onnx2x.torch.convert``): intermediates through a
  ``torch.fx.Interpreter`` that records node results, named back through ``gm.onnx_value_to_fx``;
- :class:`MXNetRunner` (symbol + params): intermediates through ``sym.get_internals()``, renamed
  to ONNX names with the map the MXNet exporter records in the ONNX model
  (:func:`mxnet_tensor_map`).

This module never imports a converter: the caller passes what the converter made. A model that
cannot be loaded or run raises :class:`~common.errors.ConversionFailure` (exit code 3: a converter
made something unusable); missing inputs raise :class:`~common.errors.ShapeError`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import onnx

from ..errors import ConversionError, ConversionFailure, ModelLoadError, ShapeError
from .compare import to_numpy

log = logging.getLogger(__name__)

MXNET_TENSOR_MAP_KEY = "x2onnx.mxnet_tensor_map"
PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class RunResult:
    """What one run produced; ``intermediates`` is empty unless it was asked for."""

    outputs: dict[str, np.ndarray]
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    def all_tensors(self) -> dict[str, np.ndarray]:
        """Every tensor the run produced, by name: the intermediates, then the array outputs not among
        them (what the locator matches between a reference run and a candidate run)."""
        values = dict(self.intermediates)
        for name, value in self.outputs.items():
            if isinstance(value, np.ndarray):
                values.setdefault(name, value)
        return values


class Runner:
    """Common interface: ``input_names``, ``output_names`` and :meth:`run`."""

    framework = "?"
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: Mapping[str, Any], *, intermediates: bool = False) -> RunResult:
        raise NotImplementedError

    def _check_inputs(self, inputs: Mapping[str, Any]) -> None:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ShapeError(f"{self.framework}: no value given for input(s) {', '.join(missing)} "
                             f"(model inputs: {', '.join(self.input_names)})")


# --- onnxruntime ----------------------------------------------------------------------------
class OnnxRuntimeRunner(Runner):
    """onnxruntime on the CPU; graph optimizations off when intermediates are asked for.

    ``optimize=False`` disables ORT's graph rewrites everywhere, which makes ORT the most literal
    reading of the ONNX graph (the choice for a reference).
    """

    framework = "onnxruntime"

    def __init__(self, model: "onnx.ModelProto | PathLike", *, optimize: bool = True,
                 providers: Sequence[str] = ("CPUExecutionProvider",), threads: Optional[int] = None,
                 data_folder: Optional[str] = None) -> None:
        """``threads``: onnxruntime's intra-op threads (its default: one per core). ``data_folder``:
        where the external-data references of ``model`` (relative ones) are resolved, instead of
        the working directory (:func:`common.weight_refs.relative_to` makes such references)."""
        self.threads = threads
        self.data_folder = data_folder
        self._run_options: Any = None
        self._cancelled = False
        if isinstance(model, onnx.ModelProto):
            self.model = model
        else:
            from ..model_io import load_onnx

            self.model = load_onnx(model)
        self.optimize = optimize
        self.providers = list(providers)
        inits = {t.name for t in self.model.graph.initializer}
        self.input_names = [i.name for i in self.model.graph.input if i.name not in inits]
        self.output_names = [o.name for o in self.model.graph.output]
        self._session = None

    def _make_session(self, model: onnx.ModelProto, optimize: bool):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4  # failures come back as exceptions; no duplicate on stderr
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        if self.threads:
            options.intra_op_num_threads = self.threads
        # A reference session runs a few times. Pre-packing copies each big matrix into MLAS's
        # layout when the session is made: a second copy of those weights that saves nothing on
        # one run (zfnet512: session and one run 1.5 -> 1.1 s, peak 675 -> 629 MB).
        options.add_session_config_entry("session.disable_prepacking", "1")
        if self.data_folder is not None:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                             str(self.data_folder))
        try:
            return _session_from_model(model, options, self.providers)
        except Exception as exc:
            text = " ".join(str(exc).split())
            portable = with_portable_locale(model, text)
            if portable is not None:
                try:
                    return _session_from_model(portable, options, self.providers)
                except Exception as exc2:
                    text = " ".join(str(exc2).split())
            found = re.search(r"max supported IR version: (\d+)", text)
            if found and model.ir_version > int(found.group(1)):
                # onnx stamps its newest IR version even on models that use nothing new
                older = onnx.ModelProto()
                older.CopyFrom(model)
                older.ir_version = int(found.group(1))
                try:
                    return _session_from_model(older, options, self.providers)
                except Exception as exc2:
                    text = " ".join(str(exc2).split())
            raise ConversionFailure(f"onnxruntime cannot load the model: {text[:400]}") from exc

    def session(self) -> Any:
        """The onnxruntime session of the model (made once; :class:`ConversionFailure` if refused)."""
        if self._session is None:
            self._session = self._make_session(self.model, self.optimize)
        return self._session

    def run(self, inputs: Mapping[str, Any], *, intermediates: "bool | Collection[str]" = False) -> RunResult:
        """``intermediates``: True for every node output, or the names of those wanted (a large
        model's every tensor at once can take many times its activations' memory)."""
        self._check_inputs(inputs)
        feeds = {n: np.asarray(to_numpy(inputs[n]), order="C") for n in self.input_names}
        if intermediates:
            model, _ = with_intermediate_outputs(self.model, None if intermediates is True else intermediates)
            session = self._make_session(model, optimize=False)
        else:
            session = self.session()
        names = [o.name for o in session.get_outputs()]
        start = time.perf_counter()
        try:
            values = session.run(names, feeds, self._options_for_run())
        except Exception as exc:
            raise ConversionFailure(f"onnxruntime failed to run the model: {' '.join(str(exc).split())[:400]}") from exc
        seconds = time.perf_counter() - start
        got = dict(zip(names, values))
        outputs = {n: got[n] for n in self.output_names}
        inter = {}
        if intermediates:
            for n in names:
                if isinstance(got[n], np.ndarray):
                    inter[n] = got[n]
        return RunResult(outputs, inter, seconds)


    def _options_for_run(self) -> Any:
        import onnxruntime as ort

        options = ort.RunOptions()
        self._run_options = options  # before the flag is read: cancel() sees one or the other
        if self._cancelled:
            options.terminate = True
        return options

    def cancel(self) -> None:
        """Stop this runner's run in progress on another thread, and any later one (they raise)."""
        self._cancelled = True
        if self._run_options is not None:
            self._run_options.terminate = True

    def run_forced(self, inputs: Mapping[str, Any], forced: Mapping[str, Any],
                   like: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The tensors of ``like``, each computed from the ``forced`` values of its inputs instead of
        this model's own: each node's *own* error against a reference (see :func:`with_forced_values`).

        ``like`` holds this runner's ordinary values of the same tensors (their dtype and shape
        are what the forced values are cast and reshaped to; tensors whose size differs are not
        forced).
        """
        self._check_inputs(inputs)
        feeds = {n: np.asarray(to_numpy(inputs[n]), order="C") for n in self.input_names}
        values = forced_feeds(forced, like)
        model, fed = with_forced_values(self.model, values)
        feeds.update({fed[name]: value for name, value in values.items() if name in fed})
        traced, _ = with_intermediate_outputs(model, set(like))
        session = self._make_session(traced, optimize=False)
        names = [o.name for o in session.get_outputs()]
        try:
            got = session.run(names, feeds)
        except Exception as exc:
            raise ConversionFailure(f"onnxruntime failed to run the model: {' '.join(str(exc).split())[:400]}") from exc
        return {n: v for n, v in zip(names, got) if isinstance(v, np.ndarray)}


def forced_feeds(forced: Mapping[str, Any], like: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``forced`` values cast to the dtype and shape of their counterparts in ``like`` (same size only)."""
    out = {}
    for name, value in forced.items():
        target = like.get(name)
        if target is None:
            continue
        array, target = to_numpy(value), to_numpy(target)
        if array.size != target.size:
            continue
        out[name] = np.asarray(array.reshape(target.shape).astype(target.dtype, copy=False), order="C")
    return out


def with_forced_values(model: onnx.ModelProto, values: Mapping[str, np.ndarray]
                       ) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy of ``model`` whose nodes read a new graph input in place of each tensor in ``values``
    (the tensor itself is still computed); returns it and ``{tensor: new input name}``.

    Teacher forcing: with every compared tensor fed from the reference, each node's output
    differs from the reference only by that node's own error, however large the error upstream.
    Only main-graph node inputs are redirected (subgraph bodies keep their outer references).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    produced = {o for n in graph.node for o in n.output if o}
    taken = produced | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    renamed: dict[str, str] = {}
    for name, value in values.items():
        if name not in produced:
            continue
        new = f"{name}__forced"
        while new in taken:
            new += "_"
        taken.add(new)
        renamed[name] = new
        graph.input.append(onnx.helper.make_tensor_value_info(
            new, onnx.helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
    return out, renamed


# onnxruntime's StringNormalizer builds a C++ locale (en_US.UTF-8 unless the node names one) when the
# session loads; machines without that locale installed (most containers) cannot load the model.
_MISSING_LOCALE = "Failed to construct locale"
PORTABLE_LOCALE = "C.UTF-8"


def with_portable_locale(model: onnx.ModelProto, problem: str) -> Optional[onnx.ModelProto]:
    """A copy of ``model`` whose StringNormalizers use the C.UTF-8 locale, when ``problem`` is
    onnxruntime failing to build theirs; None otherwise. C.UTF-8 upper- and lower-cases letters
    beyond ASCII too (É, Ü), as en_US.UTF-8 does."""
    if _MISSING_LOCALE not in problem:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    changed = False
    for node in copy.graph.node:
        if node.op_type == "StringNormalizer" and node.domain in ("", "ai.onnx"):
            kept = [a for a in node.attribute if a.name != "locale"]
            del node.attribute[:]
            node.attribute.extend(kept + [onnx.helper.make_attribute("locale", PORTABLE_LOCALE)])
            changed = True
    if changed and not _LOCALE_WARNED:
        _LOCALE_WARNED.append(True)  # once per process: the check may open several sessions
        log.warning("onnxruntime cannot build StringNormalizer's locale on this machine (not installed); "
                    "the reference runs it with %s", PORTABLE_LOCALE)
    return copy if changed else None


_LOCALE_WARNED: list[bool] = []


def _session_from_model(model: onnx.ModelProto, options: Any, providers: list[str]):
    import onnxruntime as ort

    from ..model_io import EXTERNAL_DATA_THRESHOLD, _cheap_size_ok, save_onnx

    if _cheap_size_ok(model) and model.ByteSize() < EXTERNAL_DATA_THRESHOLD:
        return ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    with tempfile.TemporaryDirectory(prefix="verify-ort-") as tmp:  # protobuf's 2 GB limit
        path = Path(tmp) / "model.onnx"
        save_onnx(model, path, external_data=True)
        return ort.InferenceSession(str(path), options, providers=providers)


def with_intermediate_outputs(model: onnx.ModelProto, names: Optional[Collection[str]] = None
                              ) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` whose graph also outputs every node output of the main graph (only those
    in ``names``, when given).

    Types come from shape inference where it knows them; onnxruntime accepts untyped outputs
    for the rest. Constant nodes are left out (their value is the same on every side).
    """
    from .. import ir as cir

    inferred = cir.infer_shapes(model, data_prop=False)
    typed = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    existing = {o.name for o in out.graph.output} | {i.name for i in out.graph.input}
    extra: list[str] = []
    for node in out.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            continue
        for name in node.output:
            if not name or name in existing or (names is not None and name not in names):
                continue
            existing.add(name)
            vi = typed.get(name)
            if vi is not None and vi.type.HasField("tensor_type"):
                new = out.graph.output.add()
                new.CopyFrom(vi)
            elif vi is not None and vi.type.WhichOneof("value") is not None:
                continue  # sequences, maps, optionals: not compared
            else:
                out.graph.output.add().name = name
            extra.append(name)
    return out, extra


# --- PyTorch --------------------------------------------------------------------------------
class TorchRunner(Runner):
    """A ``torch.fx.GraphModule`` from ``onnx2x.torch.convert`` (any module taking positional inputs works)."""

    framework = "torch"

    def __init__(self, module: Any, *, input_names: Optional[Sequence[str]] = None,
                 output_names: Optional[Sequence[str]] = None) -> None:
        self.module = module
        placeholders = [n.name for n in getattr(getattr(module, "graph", None), "nodes", []) if n.op == "placeholder"]
        self.input_names = list(input_names or getattr(module, "onnx_input_names", None) or placeholders)
        self.output_names = list(output_names or getattr(module, "onnx_output_names", None) or [])
        value_to_fx: dict[str, str] = dict(getattr(module, "onnx_value_to_fx", {}) or {})
        self.fx_to_onnx: dict[str, list[str]] = {}
        for onnx_name, fx_name in value_to_fx.items():
            self.fx_to_onnx.setdefault(fx_name, []).append(onnx_name)

    def run(self, inputs: Mapping[str, Any], *, intermediates: bool = False) -> RunResult:
        import torch

        self._check_inputs(inputs)
        args = [to_torch(inputs[n]) for n in self.input_names]
        captured: dict[str, np.ndarray] = {}
        start = time.perf_counter()
        try:
            with torch.no_grad():
                if intermediates:
                    result = _CapturingInterpreter(self.module, self.fx_to_onnx, captured).run(*args)
                else:
                    result = self.module(*args)
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionFailure(f"the PyTorch module failed to run: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:400]}") from exc
        seconds = time.perf_counter() - start
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        names = self.output_names or [f"output_{i}" for i in range(len(values))]
        if len(names) != len(values):
            names = [f"output_{i}" for i in range(len(values))]
        outputs = {n: _torch_to_numpy(v) for n, v in zip(names, values)}
        return RunResult(outputs, captured, seconds)


    def run_forced(self, inputs: Mapping[str, Any], forced: Mapping[str, Any],
                   like: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Every mapped value computed from the ``forced`` values of its inputs (teacher forcing, as
        :meth:`OnnxRuntimeRunner.run_forced`): each node's own error, whatever happened upstream."""
        import torch

        self._check_inputs(inputs)
        args = [to_torch(inputs[n]) for n in self.input_names]
        values = forced_feeds(forced, like)
        local: dict[str, np.ndarray] = {}
        try:
            with torch.no_grad():
                _CapturingInterpreter(self.module, self.fx_to_onnx, local, forced=values).run(*args)
        except Exception as exc:
            raise ConversionFailure(f"the PyTorch module failed to run on forced values: {type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:400]}") from exc
        return local


def to_torch(value: Any):
    """A module input as the converted module takes it: a torch tensor (a copy, bfloat16 kept),
    or for strings a numpy object array."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    arr = np.asarray(to_numpy(value), order="C")
    if arr.dtype == object:  # strings: the converted string ops take numpy object arrays
        return arr.copy()
    if arr.dtype.name == "bfloat16":
        return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())


def _torch_to_numpy(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return to_numpy(value).copy()
    if isinstance(value, (list, tuple)):
        return [_torch_to_numpy(v) for v in value]
    if isinstance(value, (int, float, bool)):
        return np.asarray(value)
    return value


def _CapturingInterpreter(module: Any, fx_to_onnx: Mapping[str, list[str]], store: dict[str, np.ndarray],
                          forced: Optional[Mapping[str, np.ndarray]] = None):
    """An fx Interpreter that copies the result of every node named in ``fx_to_onnx`` into ``store``
    and, with ``forced``, continues from the forced value of that node instead of its own."""
    import torch
    import torch.fx as fx

    class Capture(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            result = super().run_node(n)
            names = fx_to_onnx.get(n.name)
            if names and isinstance(result, torch.Tensor):
                array = to_numpy(result).copy()
                for onnx_name in names:
                    store[onnx_name] = array
                if forced:
                    value = next((forced[k] for k in names if k in forced), None)
                    if value is not None and value.size == result.numel():
                        return torch.from_numpy(value.reshape(tuple(result.shape)).copy()).to(result.dtype)
            return result

    return Capture(module)


# --- MXNet ----------------------------------------------------------------------------------
def import_mxnet():
    """MXNet, after restoring the numpy aliases it needs; one clear error when it is missing."""
    from mx2onnx_patches.mxnet_import import import_mxnet as _import

    # MXNet prints a line on stderr each time its oneDNN subgraph backend binds a graph
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")

    return _import()


def mxnet_tensor_map(model: onnx.ModelProto) -> dict[str, str]:
    """{MXNet internal output name: ONNX tensor name}, as the MXNet exporter recorded it ({} if absent)."""
    for prop in model.metadata_props:
        if prop.key == MXNET_TENSOR_MAP_KEY:
            try:
                data = json.loads(prop.value)
            except ValueError:
                log.warning("metadata %s is not valid JSON; ignored", MXNET_TENSOR_MAP_KEY)
                return {}
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return {}


def load_mxnet_params(path: PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(arg_params, aux_params) from a ``.params`` file saved by MXNet."""
    mx = import_mxnet()
    if not Path(path).is_file():
        raise ModelLoadError("no such file", file=str(path))
    try:
        saved = mx.nd.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"not an MXNet params file ({' '.join(str(exc).split())[:200]})", file=str(path)) from exc
    args, aux = {}, {}
    items = saved.items() if isinstance(saved, dict) else []
    for key, value in items:
        kind, _, name = key.partition(":")
        if kind == "aux":
            aux[name] = value
        elif kind == "arg":
            args[name] = value
        else:  # gluon's save_parameters: plain names
            args[key] = value
    return args, aux


def load_mxnet_symbol(path: PathLike):
    mx = import_mxnet()
    if not Path(path).is_file():
        raise ModelLoadError("no such file", file=str(path))
    try:
        return mx.sym.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"not an MXNet symbol file ({' '.join(str(exc).split())[:200]})", file=str(path)) from exc


@contextlib.contextmanager
def _plain_mxnet_executor() -> Iterator[None]:
    """Bind without MXNet's oneDNN subgraph fusion.

    With fusion on, a graph that also outputs intermediates returns wrong values (MXNet 1.9.1:
    Convolution fused with a following ReLU makes ``relu_output`` hold the un-activated
    convolution and corrupts everything downstream), and the reference should be MXNet's plain
    operators anyway. ``MXNET_SUBGRAPH_BACKEND`` is read at bind time.
    """
    key = "MXNET_SUBGRAPH_BACKEND"
    old = os.environ.get(key)
    os.environ[key] = "NONE"
    try:
        with _native_stderr_filtered("subgraph backend is not in use"):
            yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


@contextlib.contextmanager
def _native_stderr_filtered(drop: str) -> Iterator[None]:
    """Capture what native code writes on file descriptor 2; pass on every line not containing ``drop``.

    MXNet logs ``MXNET_SUBGRAPH_BACKEND=NONE is detected`` on every bind with no switch to
    silence it.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if drop not in line]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class MXNetRunner(Runner):
    """An MXNet symbol with its parameters, run on the CPU in inference mode, on MXNet's plain
    executor (``fused=True``: its default one, with oneDNN subgraph fusion, which computes some
    graphs wrongly; only to warn about that).

    Label inputs of training heads (any variable that only feeds a loss head's label,
    ``common.mxnet_heads``) are not model inputs: they are fed zeros. ``tensor_map`` (see :func:`mxnet_tensor_map`) renames outputs and
    intermediates to the ONNX names; without it MXNet's own names are used.
    """

    framework = "mxnet"

    def __init__(self, symbol: Any, arg_params: Any = None, aux_params: Optional[Mapping[str, Any]] = None, *,
                 tensor_map: Optional[Mapping[str, str]] = None,
                 output_names: Optional[Sequence[str]] = None, fused: bool = False) -> None:
        self.mx = import_mxnet()
        self.fused = fused  # MXNet's default CPU executor (oneDNN subgraph fusion) instead of the plain one
        self.symbol = load_mxnet_symbol(symbol) if isinstance(symbol, (str, os.PathLike)) else symbol
        if isinstance(arg_params, (str, os.PathLike)):
            arg_params, file_aux = load_mxnet_params(arg_params)
            aux_params = {**file_aux, **dict(aux_params or {})}
        self.arg_params = {k: self._nd(v) for k, v in dict(arg_params or {}).items()}
        self.aux_params = {k: self._nd(v) for k, v in dict(aux_params or {}).items()}
        self.tensor_map = dict(tensor_map or {})
        self.label_names = self._label_names()
        params = set(self.arg_params) | set(self.aux_params)
        self.input_names = [n for n in self.symbol.list_arguments() if n not in params and n not in self.label_names]
        self.mx_output_names = list(self.symbol.list_outputs())
        if output_names is not None:
            self.output_names = list(output_names)
        else:
            self.output_names = [self.tensor_map.get(n, n) for n in self.mx_output_names]

    def _nd(self, value: Any):
        return value if isinstance(value, self.mx.nd.NDArray) else self.mx.nd.array(to_numpy(value), dtype=to_numpy(value).dtype)

    def _label_names(self) -> set[str]:
        from ..mxnet_heads import label_inputs

        graph = json.loads(self.symbol.tojson())
        return set(label_inputs(graph["nodes"], heads=graph["heads"]))

    def run(self, inputs: Mapping[str, Any], *, intermediates: bool = False) -> RunResult:
        mx = self.mx
        self._check_inputs(inputs)
        feeds = {n: to_numpy(inputs[n]) for n in self.input_names}
        arg_names = self.symbol.list_arguments()
        try:
            arg_shapes, _, aux_shapes = self.symbol.infer_shape_partial(**{n: a.shape for n, a in feeds.items()})
            arg_types, _, _ = self.symbol.infer_type_partial(**{n: a.dtype for n, a in feeds.items()})
        except Exception as exc:
            raise ShapeError(f"MXNet cannot infer shapes from inputs "
                             f"{ {n: a.shape for n, a in feeds.items()} }: {' '.join(str(exc).split())[:300]}") from exc
        args = {}
        for name, shape, dtype in zip(arg_names, arg_shapes, arg_types):
            if name in feeds:
                args[name] = mx.nd.array(feeds[name], dtype=dtype or feeds[name].dtype)
            elif name in self.arg_params:
                args[name] = self.arg_params[name]
            elif name in self.label_names:
                args[name] = mx.nd.zeros(shape or (1,), dtype=dtype or "float32")
            else:
                raise ModelLoadError(f"MXNet parameter {name!r} is missing from the params")
        aux = {}
        for name, shape in zip(self.symbol.list_auxiliary_states(), aux_shapes):
            if name not in self.aux_params:
                raise ModelLoadError(f"MXNet auxiliary state {name!r} is missing from the params")
            aux[name] = self.aux_params[name]

        if intermediates:
            internals = self.symbol.get_internals()
            variables = set(arg_names) | set(self.symbol.list_auxiliary_states())
            names = [n for n in internals.list_outputs() if n not in variables]
            target = mx.sym.Group([internals[n] for n in names])
        else:
            names = self.mx_output_names
            target = self.symbol
        start = time.perf_counter()
        try:
            with contextlib.nullcontext() if self.fused and not intermediates else _plain_mxnet_executor():
                executor = target.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")
            values = [o.asnumpy() for o in executor.forward(is_train=False)]
        except Exception as exc:
            raise ConversionFailure(f"MXNet failed to run the model: {' '.join(str(exc).split())[:400]}") from exc
        seconds = time.perf_counter() - start
        got = dict(zip(names, values))
        outputs = {out: got[mx_name] for out, mx_name in zip(self.output_names, self.mx_output_names)}
        inter: dict[str, np.ndarray] = {}
        if intermediates:
            for mx_name, value in got.items():
                key = self.tensor_map.get(mx_name) if self.tensor_map else mx_name
                if key is not None:
                    inter[key] = value
        return RunResult(outputs, inter, seconds)
