"""Round trips as a Python API: every converted form of a model compared with its source.

A user's own round-trip script is a few lines::

    from roundtrip import mxnet_roundtrip
    report = mxnet_roundtrip("det1-symbol.json", "det1-0001.params",
                             input_shapes={"data": (1, 3, 12, 12)}, back_to_onnx=True)
    print(report.table())          # or report.write_markdown("r.md"), report.write_json("r.json")
    assert report.ok

Stages (each compared with the first):

- ``mxnet_roundtrip``: MXNet (reference) -> ONNX (``x2onnx.mxnet.export``, run by onnxruntime)
  -> PyTorch (``onnx2x.torch.convert``, ``trainable=True`` for fine-tuning) [-> the PyTorch artifact
  saved to ``save_dir`` and loaded back] [-> ONNX again (``torch.onnx.export``)]; with
  ``check_gradients=True`` also the gradients of a seeded loss against MXNet's, by parameter name
  (``report.gradients``, :mod:`roundtrip.gradients`);
- ``onnx_roundtrip``: ONNX (onnxruntime, reference) -> PyTorch [-> ONNX again].

When a stage differs, the locator compares it with the stage it was converted from, tensor by
tensor, and names the first divergent node (``report.stage(name).locator``).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import onnx

from common.errors import EXIT_BAD_INPUT, EXIT_UNSUPPORTED, ConversionError, ConversionFailure
from common.model_io import PathLike, as_model_proto, save_onnx
from common.verify.judge import judge_outputs
from common.verify.rowsets import selection_groups
from common.verify.inputs import ImageOptions, InputSpec, PreparedInputs, prepare_inputs, specs_from_mxnet_json, \
    specs_from_onnx
from common.verify.diagnose import diagnose_mxnet_to_onnx, diagnose_onnx_to_torch
from common.verify.locator import LocatorResult
from common.verify.report import OutputInfo, RoundTripReport, Stage
from common.verify.runners import MXNetRunner, OnnxRuntimeRunner, RunResult, TorchRunner, load_mxnet_params, \
    load_mxnet_symbol

log = logging.getLogger(__name__)

InputsArg = Union[None, PreparedInputs, Mapping[str, Any], Sequence[str]]

STAGE_MXNET = "mxnet"
STAGE_ONNX = "onnx"
STAGE_TORCH = "torch"
STAGE_BACK = "onnx (from torch)"
STAGE_SAVED = "torch (saved)"


# --- helpers --------------------------------------------------------------------------------
def resolve_inputs(specs: Sequence[InputSpec], inputs: InputsArg, *, seed: int = 0,
                   image: Optional[ImageOptions] = None) -> PreparedInputs:
    """Inputs as given (arrays, or ``[NAME=]FILE`` items), random for what is missing."""
    if isinstance(inputs, PreparedInputs):
        return inputs
    if inputs is None:
        return prepare_inputs(specs, (), seed=seed, image=image)
    if isinstance(inputs, Mapping):
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        rest = [s for s in specs if s.name not in arrays]
        prepared = prepare_inputs(rest, (), seed=seed, image=image) if rest else PreparedInputs({}, {})
        ordered = {s.name: arrays[s.name] if s.name in arrays else prepared.arrays[s.name] for s in specs}
        sources = {n: ("given array" if n in arrays else prepared.sources[n]) for n in ordered}
        return PreparedInputs(ordered, sources)
    return prepare_inputs(specs, list(inputs), seed=seed, image=image)


def _feeds(inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Inputs for a runner: by name where the names match, else by position."""
    if all(n in inputs for n in names):
        return {n: inputs[n] for n in names}
    values = list(inputs.values())
    if len(values) != len(names):
        raise ConversionFailure(f"the converted model has inputs {list(names)}; the source had {list(inputs)}")
    return dict(zip(names, values))


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ConversionError):
        return str(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


class _Recorder:
    """Runs stages, timing them and turning failures into report rows instead of exceptions."""

    def __init__(self, report: RoundTripReport, rtol: Optional[float], atol: Optional[float],
                 inputs: Optional[Mapping[str, np.ndarray]] = None) -> None:
        self.report = report
        self.rtol, self.atol = rtol, atol
        self.reference: Optional[RunResult] = None
        self.rerun_reference: Optional[Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]]] = None
        self.inputs = inputs
        self.row_groups: list[list[str]] = []  # reference output names compared as detection sets
        self.broken = False

    def set_row_groups(self, model: onnx.ModelProto) -> None:
        """Detection outputs of ``model`` (after NMS/TopK), named as the reference names them (by position)."""
        names = [o.name for o in model.graph.output]
        ref_names = list(self.reference.outputs) if self.reference is not None else names
        by_position = dict(zip(names, ref_names))
        self.row_groups = [[by_position[n] for n in group if n in by_position] for group in selection_groups(model)]

    def skip(self, name: str, framework: str, description: str) -> Stage:
        stage = Stage(name, framework, description, skipped=True)
        self.report.stages.append(stage)
        return stage

    def stage(self, name: str, framework: str, description: str, convert: Callable[[], Any],
              run: Callable[[Any], RunResult]) -> tuple[Stage, Any, Optional[RunResult]]:
        """Convert (timed), run (timed), compare with the reference; never raises ConversionError."""
        if self.broken:
            return self.skip(name, framework, description), None, None
        stage = Stage(name, framework, description)
        self.report.stages.append(stage)
        product = None
        result = None
        try:
            start = time.perf_counter()
            product = convert()
            stage.convert_seconds = time.perf_counter() - start if product is not None else None
            start = time.perf_counter()
            result = run(product)
            # inference alone when the runner measured it (session creation is not run time)
            stage.run_seconds = result.seconds or (time.perf_counter() - start)
        except ConversionError as exc:
            stage.error = _error_text(exc)
            # the reference failing to run is a problem of the input (model, shapes), not of a converter
            stage.exit_code = exc.exit_code if self.report.stages[0] is not stage else EXIT_BAD_INPUT
            self.broken = product is None  # later stages need this one's product
            return stage, product, None
        except Exception as exc:  # a converter bug: reported as a failed stage, the report still gets written
            log.debug("stage %s failed", name, exc_info=True)
            stage.error = _error_text(exc)
            stage.exit_code = EXIT_UNSUPPORTED
            self.broken = product is None
            return stage, product, None
        if self.reference is None:
            self.reference = result
            stage.convert_seconds = None  # loading the source is not a conversion
            stage.reference_outputs = [OutputInfo(k, tuple(np.shape(v)), str(getattr(v, "dtype", "")))
                                       for k, v in result.outputs.items()]
        else:
            stage.comparison = judge_outputs(self.reference.outputs, result.outputs, rtol=self.rtol, atol=self.atol,
                                             row_groups=self.row_groups, rerun_reference=self.rerun_reference,
                                             inputs=self.inputs, reference_name=self.report.stages[0].framework)
        return stage, product, result

    def locate(self, stage: Stage, action: Callable[[], LocatorResult]) -> None:
        try:
            stage.locator = action()
        except Exception as exc:  # the diagnosis must never hide the table
            log.warning("locator failed for stage %s: %s", stage.name, _error_text(exc))
            log.debug("locator failure", exc_info=True)


# --- conversions ----------------------------------------------------------------------------
def export_mxnet(symbol_path: PathLike, params_path: PathLike, input_shapes: Mapping[str, tuple[int, ...]], *,
                 opset: int = 13, simplify: bool = True) -> onnx.ModelProto:
    """MXNet -> ONNX with the project's exporter (its own verification off: the round trip verifies)."""
    from x2onnx.mxnet import export

    return export(str(symbol_path), str(params_path), dict(input_shapes), opset=opset, simplify=simplify,
                  verify=False)


def convert_to_torch(model: onnx.ModelProto, *, simplify: bool = True,
                     input_shapes: Optional[Mapping[str, tuple[int, ...]]] = None,
                     trainable: bool = False) -> tuple[Any, onnx.ModelProto]:
    """ONNX -> GraphModule, and the ONNX graph the module's names refer to (after onnx2x's simplify step).

    ``trainable``: the fine-tuning conversion (``onnx2x.torch.convert(trainable=True)``), in eval mode.
    """
    convert_mod = importlib.import_module("onnx2x.torch.convert")
    shapes = dict(input_shapes) if input_shapes else None
    if trainable:
        prepared, label = convert_mod.prepare(model, simplify=simplify, input_shapes=shapes, trainable=True)
        return convert_mod.convert_prepared(prepared, label, trainable=True), prepared
    if hasattr(convert_mod, "prepare") and hasattr(convert_mod, "convert_prepared"):
        prepared, label = convert_mod.prepare(model, simplify=simplify, input_shapes=shapes)
        return convert_mod.convert_prepared(prepared, label), prepared
    gm = convert_mod.convert(model, simplify=simplify, input_shapes=shapes)
    return gm, model


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.onnx/torch.export log warnings (and whole tracebacks when they give up) on stderr;
    the stage records the failure in one line, so silence them for the duration of the export."""
    names = ["torch", "onnxscript"] + [n for n in list(logging.root.manager.loggerDict)
                                       if n.startswith(("torch.", "onnxscript."))]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_torch(module: Any, example: Mapping[str, np.ndarray], *, exporter: str = "auto",
                 opset: Optional[int] = None) -> tuple[onnx.ModelProto, str]:
    """PyTorch -> ONNX with ``torch.onnx.export``; returns the model and the exporter used.

    ``exporter``: ``"dynamo"`` (torch.export based, PyTorch's default), ``"torchscript"`` (legacy) or
    ``"auto"`` (dynamo, falling back to torchscript when it fails).
    """
    import torch

    module.eval()
    names_in = list(getattr(module, "onnx_input_names", None) or list(example))
    names_out = list(getattr(module, "onnx_output_names", None) or [])
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n]).copy()) for n in names_in)
    errors = []
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    for kind in order:
        try:
            with _quiet_exporter():
                if kind == "dynamo":
                    kwargs: dict[str, Any] = {"dynamo": True, "input_names": names_in, "verbose": False}
                    if names_out:
                        kwargs["output_names"] = names_out
                    if opset:
                        kwargs["opset_version"] = opset
                    program = torch.onnx.export(module, args, **kwargs)
                    return program.model_proto, kind
                buffer = io.BytesIO()
                torch.onnx.export(module, args, buffer, dynamo=False, input_names=names_in,
                                  output_names=names_out or None, opset_version=opset or 17)
                return onnx.load_from_string(buffer.getvalue()), kind
        except Exception as exc:
            errors.append(f"{kind}: {_error_text(exc)}")
            log.info("torch.onnx.export (%s) failed: %s", kind, errors[-1])
    raise ConversionFailure("torch.onnx.export failed (" + "; ".join(errors)[:600] + ")")


def _save(model: onnx.ModelProto, save_dir: Optional[PathLike], name: str) -> Optional[str]:
    if save_dir is None:
        return None
    path = Path(save_dir) / name
    save_onnx(model, path)
    return str(path)


# --- round trips ----------------------------------------------------------------------------
def mxnet_roundtrip(
    symbol: PathLike,
    params: PathLike,
    *,
    input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
    inputs: InputsArg = None,
    seed: int = 0,
    image: Optional[ImageOptions] = None,
    back_to_onnx: bool = False,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    opset: int = 13,
    simplify: bool = True,
    locate_failures: bool = True,
    exporter: str = "auto",
    save_dir: Optional[PathLike] = None,
    title: Optional[str] = None,
    trainable: bool = False,
    check_gradients: bool = False,
) -> RoundTripReport:
    """MXNet -> ONNX -> PyTorch (-> ONNX), every stage compared with MXNet. Never raises on a failed stage.

    ``save_dir``: also keep the ONNX file and the PyTorch artifact (``NAME.pt`` + ``NAME.py``,
    :mod:`onnx2x.torch.artifact`), which is loaded back and compared as one more stage.
    ``trainable``: the PyTorch stage (and the artifact) is the fine-tuning conversion.
    ``check_gradients``: also compare the gradients of a seeded loss with MXNet's, by MXNet
    parameter name (:mod:`roundtrip.gradients`); the results are in ``report.gradients``.
    """
    symbol_path, params_path = Path(symbol), Path(params)
    report = RoundTripReport(title=title or f"mxnet {symbol_path.name}", model=str(symbol_path), rtol=rtol, atol=atol)
    rec = _Recorder(report, rtol, atol)
    # Load first: a missing or corrupt file is an input error, not a failed stage.
    sym = load_mxnet_symbol(symbol_path)
    arg_params, aux_params = load_mxnet_params(params_path)
    specs = specs_from_mxnet_json(sym.tojson(), list(arg_params) + list(aux_params),
                                  {k: tuple(v) for k, v in (input_shapes or {}).items()})
    prepared = resolve_inputs(specs, inputs, seed=seed, image=image)
    report.inputs = prepared.describe()
    shapes = {n: tuple(a.shape) for n, a in prepared.arrays.items()}

    mx_runner: dict[str, MXNetRunner] = {}

    def make_mx() -> MXNetRunner:
        mx_runner["r"] = MXNetRunner(sym, arg_params, aux_params)
        return mx_runner["r"]

    rec.inputs = prepared.arrays
    rec.stage(STAGE_MXNET, "mxnet", "MXNet 1.x plain executor (reference)", make_mx,
              lambda r: r.run(prepared.arrays))
    if rec.reference is None:
        rec.broken = True
    else:
        rec.rerun_reference = lambda jittered: mx_runner["r"].run(jittered).outputs

    def export() -> onnx.ModelProto:
        model = export_mxnet(symbol_path, params_path, shapes, opset=opset, simplify=simplify)
        rec.set_row_groups(model)
        return model

    onnx_stage, onnx_model, _ = rec.stage(
        STAGE_ONNX, "onnxruntime", f"x2onnx.mxnet.export (opset {opset}), run by onnxruntime",
        export, lambda m: _run_onnx(m, prepared.arrays))
    if onnx_model is not None:
        onnx_stage.artifact = _save(onnx_model, save_dir, symbol_path.name.replace("-symbol.json", "") + ".onnx")
    if locate_failures and onnx_model is not None and onnx_stage.comparison is not None and not onnx_stage.ok:
        rec.locate(onnx_stage, lambda: diagnose_mxnet_to_onnx(sym, arg_params, aux_params, onnx_model, prepared.arrays,
                                                              rtol=rtol, atol=atol))

    _torch_stages(rec, onnx_model, prepared.arrays, back_to_onnx=back_to_onnx, simplify=simplify,
                  locate_failures=locate_failures, exporter=exporter, save_dir=save_dir,
                  base_name=symbol_path.name.replace("-symbol.json", ""), trainable=trainable, save_artifact=True)
    if check_gradients and onnx_model is not None and rec.reference is not None:
        _gradient_check(report, sym, arg_params, aux_params, onnx_model, prepared.arrays, seed=seed,
                        simplify=simplify)
    return report


def _gradient_check(report: RoundTripReport, sym: Any, arg_params: Mapping[str, Any], aux_params: Mapping[str, Any],
                    onnx_model: onnx.ModelProto, inputs: Mapping[str, np.ndarray], *, seed: int,
                    simplify: bool) -> None:
    """Gradients in eval (and train) mode against MXNet; a failure to run them is a failed check."""
    from common.verify.gradients import GradientReport

    from .gradients import check_mxnet_gradients

    try:
        report.gradients.extend(check_mxnet_gradients(sym, arg_params, aux_params, onnx_model, inputs, seed=seed,
                                                      simplify=simplify))
    except Exception as exc:  # reported as a failed check, the table still gets written
        log.debug("gradient check failed", exc_info=True)
        failed = GradientReport("eval")
        failed.failed_to_run = _error_text(exc)
        report.gradients.append(failed)


def _torch_stages(rec: _Recorder, onnx_model: Optional[onnx.ModelProto], inputs: Mapping[str, np.ndarray], *,
                  back_to_onnx: bool, simplify: bool, locate_failures: bool, exporter: str,
                  save_dir: Optional[PathLike], base_name: str, trainable: bool = False,
                  save_artifact: bool = False) -> None:
    """The PyTorch stage (the saved artifact's stage, the back-to-ONNX stage) shared by both round trips."""
    converted: dict[str, Any] = {}

    def convert() -> Any:
        assert onnx_model is not None
        shapes = {n: tuple(a.shape) for n, a in _feeds(inputs, _onnx_input_names(onnx_model)).items()}
        gm, prepared = convert_to_torch(onnx_model, simplify=simplify, input_shapes=shapes, trainable=trainable)
        converted["prepared"] = prepared
        return gm

    def run(gm: Any) -> RunResult:
        runner = TorchRunner(gm)
        return runner.run(_feeds(inputs, runner.input_names))

    if onnx_model is None:
        rec.broken = True
    how = "onnx2x.torch.convert(trainable=True)" if trainable else "onnx2x.torch.convert"
    torch_stage, gm, _ = rec.stage(STAGE_TORCH, "torch", f"{how}, run as a torch.fx.GraphModule", convert, run)
    if locate_failures and gm is not None and torch_stage.comparison is not None and not torch_stage.ok:
        prepared = converted["prepared"]
        rec.locate(torch_stage, lambda: diagnose_onnx_to_torch(prepared, gm, inputs, rtol=rec.rtol, atol=rec.atol))
    if save_artifact and save_dir is not None:
        _saved_artifact_stage(rec, gm, inputs, Path(save_dir) / f"{base_name}.pt")
    if not back_to_onnx:
        return
    used: dict[str, str] = {}

    def export() -> onnx.ModelProto:
        model, kind = export_torch(gm, _feeds(inputs, TorchRunner(gm).input_names), exporter=exporter)
        used["kind"] = kind
        return model

    if gm is None:
        rec.broken = True
    back_stage, back_model, _ = rec.stage(STAGE_BACK, "onnxruntime", "torch.onnx.export, run by onnxruntime",
                                          export, lambda m: _run_onnx(m, inputs))
    if used:
        back_stage.description = f"torch.onnx.export ({used['kind']} exporter), run by onnxruntime"
    if back_model is not None:
        back_stage.artifact = _save(back_model, save_dir, base_name + ".back.onnx")


def _saved_artifact_stage(rec: _Recorder, gm: Any, inputs: Mapping[str, np.ndarray], path: Path) -> None:
    """Save the PyTorch module as ``NAME.pt`` + ``NAME.py`` and compare what loads back from them."""
    artifact = importlib.import_module("onnx2x.torch.artifact")
    names = list(getattr(gm, "onnx_input_names", None) or []) if gm is not None else []
    if gm is None:
        rec.broken = True
    written: dict[str, str] = {}

    def save_and_load() -> Any:
        weights, source = artifact.save(gm, path, source_label=str(path.name))
        written["files"] = f"{weights}, {source}"
        return artifact.load(source)

    def run(module: Any) -> RunResult:
        runner = TorchRunner(module, input_names=names or None)
        return runner.run(_feeds(inputs, runner.input_names))

    broken = rec.broken
    stage, _, _ = rec.stage(STAGE_SAVED, "torch", "onnx2x.torch.artifact save + load (NAME.pt, NAME.py)",
                            save_and_load, run)
    rec.broken = broken  # later stages use the in-memory module, not the files
    if written:
        stage.artifact = written["files"]


def _run_onnx(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> RunResult:
    runner = OnnxRuntimeRunner(model)
    return runner.run(_feeds(inputs, runner.input_names))


def _onnx_input_names(model: onnx.ModelProto) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def onnx_roundtrip(
    model: "onnx.ModelProto | PathLike",
    *,
    input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
    inputs: InputsArg = None,
    seed: int = 0,
    image: Optional[ImageOptions] = None,
    back_to_onnx: bool = True,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    simplify: bool = True,
    locate_failures: bool = True,
    exporter: str = "auto",
    save_dir: Optional[PathLike] = None,
    title: Optional[str] = None,
) -> RoundTripReport:
    """ONNX (onnxruntime, reference) -> PyTorch (-> ONNX again), compared with onnxruntime."""
    proto, label = as_model_proto(model)
    report = RoundTripReport(title=title or f"onnx {Path(label).name}", model=label, rtol=rtol, atol=atol)
    rec = _Recorder(report, rtol, atol)
    specs = specs_from_onnx(proto, {k: tuple(v) for k, v in (input_shapes or {}).items()})
    prepared = resolve_inputs(specs, inputs, seed=seed, image=image)
    report.inputs = prepared.describe()

    rec.inputs = prepared.arrays
    ort_stage, ort_runner, _ = rec.stage(STAGE_ONNX, "onnxruntime", "the ONNX model, run by onnxruntime (reference)",
                                         lambda: OnnxRuntimeRunner(proto, optimize=False),
                                         lambda r: r.run(prepared.arrays))
    if rec.reference is None:
        rec.broken = True
    else:
        rec.rerun_reference = lambda jittered: ort_runner.run(jittered).outputs
        rec.set_row_groups(proto)
    _torch_stages(rec, proto if rec.reference is not None else None, prepared.arrays, back_to_onnx=back_to_onnx,
                  simplify=simplify, locate_failures=locate_failures, exporter=exporter, save_dir=save_dir,
                  base_name=Path(label).stem or "model")
    return report
