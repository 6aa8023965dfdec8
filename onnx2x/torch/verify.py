"""The default check of a conversion: the PyTorch module against onnxruntime on seeded random inputs.

Why by default: a converter bug shows up as silently wrong numbers, so ``onnx2x torch`` runs the
converted module and onnxruntime on the same inputs and refuses to write a model whose outputs
differ (:class:`VerificationError`, exit 3), naming the node whose own error is out of tolerance.
The criterion is :mod:`common.verify.compare`'s, shared with every other check. When onnxruntime
itself cannot load or run the model
(an IR version or opset newer than it knows, an op it lacks, string inputs) there is no reference:
the check is skipped with a warning instead of failing the conversion.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import onnx
import torch

from common.errors import ConversionFailure, VerificationError
from common.verify.locator import LocatorResult
from common.verify.rowsets import selection_groups
from common.verify.verdict import Verdict, judge_conversion

log = logging.getLogger(__name__)

DEFAULT_RTOL: Optional[float] = None  # the per-dtype defaults of common.verify.compare
DEFAULT_ATOL: Optional[float] = None


@dataclass
class CheckResult:
    """What the check did: ``skipped`` with a reason, or the worst difference it saw."""

    skipped: bool = False
    reason: str = ""
    max_abs_diff: float = 0.0
    outputs: list[str] = field(default_factory=list)
    verdict: Optional[Verdict] = None


def graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: graph inputs that are not initializers."""
    inits = {t.name for t in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name not in inits]


class SymbolicSizes(NamedTuple):
    """The sizes one draw gives the symbolic dimensions the user did not fix: ``leading`` on a
    tensor's first axis, ``other`` elsewhere; with ``distinct``, each further name seen on such an
    axis gets its own larger size (see :func:`symbolic_size`)."""

    leading: int
    other: int
    distinct: bool = False


# What the check gives a symbolic dimension the user did not fix, tried in order until
# onnxruntime accepts the inputs. First sizes that exercise the model: a batch of 2 and sequences
# of 8 (with every size 1, attention over one token, broadcasting and batch mix-ups compute the
# right numbers by accident), each name of its own size (with one size for all, a module that
# reads one symbolic dimension where the graph reads another, say the key length for the query
# length, computes the right numbers by accident too). Then one size for all names, for models
# whose names are tied in ways the graph does not declare (exporters that give each input's batch
# a name of its own); then all ones; then larger sizes for models that shrink their input before
# they can run on it (an image of dynamic size through a strided stem, raw audio through a
# convolutional feature encoder with a receptive field of 400 samples).
SYMBOLIC_SIZES: tuple[SymbolicSizes, ...] = (
    SymbolicSizes(2, 8, distinct=True), SymbolicSizes(2, 8), SymbolicSizes(1, 1),
    SymbolicSizes(1, 32, distinct=True), SymbolicSizes(1, 32), SymbolicSizes(1, 224), SymbolicSizes(1, 1024))


def symbolic_size(sizes: SymbolicSizes, leading: bool, rank: int) -> int:
    """The size a draw gives the ``rank``-th symbolic name (0-based, in the order first seen) of
    its kind (first axis or not): the base size, and with ``distinct`` the base plus ``rank``
    steps of a quarter of it (2, 3, 4 ... on first axes; 8, 10, 12 ... or 32, 40, 48 ...
    elsewhere: even, so that strided and patched inputs stay whole)."""
    base = sizes.leading if leading else sizes.other
    if not sizes.distinct:
        return base
    return base + rank * (1 if leading else max(1, base // 4))


def given_inputs(proto: onnx.ModelProto, sources: Sequence[str], input_shapes: Optional[dict[str, Sequence[int]]] = None,
                 image: Any = None) -> dict[str, np.ndarray]:
    """The inputs ``--input`` items give (``[NAME=]FILE``: .npy, .npz or an image, see
    :func:`common.verify.inputs.read_inputs`), checked against the model's declared inputs;
    raises :class:`~common.errors.ShapeError` / ``ModelLoadError`` naming the item."""
    from common.verify.inputs import read_inputs, specs_from_onnx

    return read_inputs(specs_from_onnx(proto, input_shapes), list(sources), image=image)[0]


def random_inputs(
    proto: onnx.ModelProto, input_shapes: Optional[dict[str, Sequence[int]]] = None, seed: int = 0,
    symbolic: SymbolicSizes = SymbolicSizes(1, 1), given: Optional[Mapping[str, np.ndarray]] = None,
) -> list[np.ndarray]:
    """Seeded inputs in the model's declared shapes, in graph order.

    Drawn by ``common.verify.inputs`` (which keeps index-like inputs within the sizes their
    consumers allow). ``given`` arrays (:func:`given_inputs`) stand in for their inputs and fix the
    symbolic dimensions they have (an attention mask drawn to the length of given token ids). A
    symbolic dimension not fixed by ``input_shapes`` or ``given`` gets ``symbolic.leading`` on the
    leading axis and ``symbolic.other`` elsewhere (with ``symbolic.distinct``, each further name its
    own size: :func:`symbolic_size`); one name always gets one size (the one of the axis it is
    first seen on), a dimension without a name the base size. Raises ``ValueError`` for inputs
    that cannot be generated (sequences, strings, unknown rank).
    """
    given = dict(given or {})
    from common.errors import ShapeError
    from common.verify.inputs import random_inputs as draw, specs_from_onnx

    names = [v.name for v in graph_inputs(proto)]
    if any(not v.type.HasField("tensor_type") for v in graph_inputs(proto)):
        raise ValueError("the model has non-tensor inputs, which the check cannot generate")
    try:
        specs = specs_from_onnx(proto, input_shapes)
        sizes: dict[str, int] = {}  # one size per symbol name, wherever it appears
        for spec in specs:
            if spec.name in given and spec.shape is not None:
                for dim, size in zip(spec.shape, given[spec.name].shape):
                    if isinstance(dim, str):
                        sizes.setdefault(dim, int(size))
                spec.shape = tuple(given[spec.name].shape)

        named = {True: 0, False: 0}  # names drawn so far, on first axes and elsewhere

        def concrete(axis: int, dim: Any) -> int:
            if isinstance(dim, int) and dim >= 0:
                return dim
            leading = axis == 0
            if not isinstance(dim, str):
                return symbolic_size(symbolic, leading, 0)
            if dim not in sizes:
                sizes[dim] = symbolic_size(symbolic, leading, named[leading])
                named[leading] += 1
            return sizes[dim]

        for spec in specs:
            if spec.shape is not None:
                spec.shape = tuple(concrete(axis, d) for axis, d in enumerate(spec.shape))
            if spec.dtype in ("str", "bfloat16") or spec.dtype.startswith(("str", "<U", "|S", "float8")):
                raise ValueError(f"input {spec.name!r} has type {spec.dtype}, which the check cannot generate")
        drawn = draw(specs, seed)
    except ShapeError as exc:
        raise ValueError(exc.message) from exc
    return [given[n] if n in given else drawn[n] for n in names]


def onnxruntime_reference(proto: onnx.ModelProto, **options: Any) -> tuple[Any, str]:
    """(runner, "") for ``proto`` with onnxruntime's graph optimizations off, or (None, why) when
    onnxruntime refuses the model (``options``: more of
    :class:`common.verify.runners.OnnxRuntimeRunner`'s, such as ``threads``).

    Off, because the reference should be the most literal reading of the graph: onnxruntime's
    optimized run fuses QuantizeLinear/DequantizeLinear pairs into integer kernels that round
    differently (one quantization step) from the graph as written, which the converted module
    follows.
    """
    try:
        from common.verify.runners import OnnxRuntimeRunner

        runner = OnnxRuntimeRunner(proto, optimize=False, **options)
        runner.session()
        return runner, ""
    except ImportError:
        return None, "onnxruntime is not installed"
    except ConversionFailure as exc:
        return None, exc.message


def _run_reference(runner: Any, feeds: Mapping[str, np.ndarray]) -> tuple[Optional[list[Any]], str]:
    try:
        return list(runner.run(feeds).outputs.values()), ""
    except ConversionFailure as exc:
        return None, f"{_RANDOM_INPUTS} ({exc.message.split(': ', 1)[-1][:300]})"


_RANDOM_INPUTS = "onnxruntime cannot run the model on random inputs"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def to_numpy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, (list, tuple)):
        return [to_numpy(o) for o in obj]
    return obj


def _flat_outputs(names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """Outputs by name, ONNX sequences spread into ``name[k]`` entries (judged one by one), and
    maps (ZipMap's rows) into their keys ``name[k]#keys`` and values ``name[k]``."""
    flat: dict[str, Any] = {}
    for name, value in zip(names, values):
        if isinstance(value, list):
            flat[f"{name}#length"] = np.asarray(len(value), dtype=np.int64)
            for k, item in enumerate(value):
                if isinstance(item, dict):
                    keys = list(item)
                    flat[f"{name}[{k}]#keys"] = np.asarray(keys, dtype=object if keys and isinstance(keys[0], str)
                                                           else np.int64)
                    flat[f"{name}[{k}]"] = np.asarray(list(item.values()), dtype=np.float32)
                else:
                    flat[f"{name}[{k}]"] = item
        else:
            flat[name] = value
    return flat


@dataclass
class Reference:
    """onnxruntime's outputs on the check's inputs (``inputs``, by name), or why there are none."""

    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    expected: Optional[list[Any]] = None
    skip_reason: str = ""
    draw: int = -1  # the index in SYMBOLIC_SIZES of the draw onnxruntime ran
    refused: dict[tuple[tuple[int, ...], ...], str] = field(default_factory=dict)  # earlier draws' shapes -> why


def reference_outputs(
    proto: onnx.ModelProto, *, input_shapes: Optional[dict[str, Sequence[int]]] = None, seed: int = 0,
    given: Optional[Mapping[str, np.ndarray]] = None, runner: Any = None, where: str = "model",
    after: int = -1, avoid: Sequence[tuple[tuple[int, ...], ...]] = (),
) -> Reference:
    """Draw the check's inputs and run onnxruntime on them (``runner``, or a new one of ``proto``).

    Symbolic sizes are tried in the order of :data:`SYMBOLIC_SIZES` (from the one after index
    ``after``, skipping draws of the shapes in ``avoid``) until onnxruntime accepts the inputs.
    The runner is not kept: onnxruntime holds its own copy of the weights, which should be gone
    before the module runs (peak memory one copy, not two, for big models).
    """
    if runner is None:
        runner, why = onnxruntime_reference(proto)
        if runner is None:
            return Reference(skip_reason=why)
    input_names = [v.name for v in graph_inputs(proto)]
    refused: dict[tuple[tuple[int, ...], ...], str] = {}  # input shapes tried -> onnxruntime's reason
    for index, symbolic in enumerate(SYMBOLIC_SIZES):
        if index <= after:
            continue
        try:
            feeds = random_inputs(proto, input_shapes, seed, symbolic, given)
        except ValueError as exc:
            return Reference(skip_reason=str(exc))
        shapes = tuple(np.shape(f) for f in feeds)
        if shapes in refused or shapes in avoid:
            continue  # no symbolic dimension: one draw is all there is
        inputs = dict(zip(input_names, feeds))
        expected, why = _run_reference(runner, inputs)
        if expected is not None:
            return Reference(inputs=inputs, expected=expected, draw=index, refused=refused)
        refused[shapes] = why
        log.debug("%s: onnxruntime refuses inputs of shapes %s: %s", where, shapes, why)
    return Reference(skip_reason=_refusal(refused))


def _shown(shapes: tuple[tuple[int, ...], ...]) -> str:
    """Input shapes as the messages write them: ``2x3x8x10, 2x8``."""
    return ", ".join("x".join(str(d) for d in shape) or "scalar" for shape in shapes)


def _refusal(refused: dict[tuple[tuple[int, ...], ...], str]) -> str:
    """Why onnxruntime ran none of the draws: its reason for the first (the most typical sizes;
    later ones fail for reasons of their own, such as a position table shorter than 1024), and,
    when there were several, the shapes tried and how to give the sizes a graph exported for one
    sequence length or image size needs."""
    first = next(iter(refused.values()), "")
    if len(refused) < 2:
        return first
    shown = [_shown(shapes) for shapes in refused]
    first = first.replace(_RANDOM_INPUTS, f"{_RANDOM_INPUTS} of shapes {shown[0]}", 1)
    return (f"{first}, nor on {'; '.join(shown[1:])}. A model exported for fixed sizes runs only at those: "
            "give them with --input-shape NAME:D0,D1,... or --input [NAME=]FILE")


def check_module(
    module: torch.nn.Module,
    proto: onnx.ModelProto,
    *,
    input_shapes: Optional[dict[str, Sequence[int]]] = None,
    seed: int = 0,
    given: Optional[Mapping[str, np.ndarray]] = None,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    label: str = "",
    debug_gm: "torch.fx.GraphModule | Callable[[], torch.fx.GraphModule] | None" = None,
    debug_proto: Optional[onnx.ModelProto] = None,
    unfused: Optional[Callable[[], torch.fx.GraphModule]] = None,
    reference: Optional[Reference] = None,
) -> CheckResult:
    """Run ``module`` and onnxruntime on the same seeded inputs (``given`` ones, from the user's
    files, where there are: :func:`given_inputs`); raise when they differ.

    ``proto`` is the reference model (the one the user gave). Outputs are judged by
    :mod:`common.verify.judge` (scale-aware; detections as sets; onnxruntime's own sensitivity to
    a one-part-in-a-million input change when an output would fail). With ``debug_gm`` and
    ``debug_proto`` (the converted GraphModule, or a function making it again, and the ONNX model
    it was built from), a mismatch also names the node whose own error is out of tolerance; ``unfused()`` converts
    ``debug_proto`` again without fusions, for when fusion removed the values that would tell.
    ``reference``: onnxruntime's side computed beforehand (:func:`reference_outputs`; the CLI runs
    it on another thread while the model converts: :mod:`onnx2x.torch.early_reference`).
    """
    where = label or proto.graph.name or "model"
    if rtol is None and atol is None:
        rtol, atol = _tolerance_of_computation(proto, where)
    if reference is None:
        reference = reference_outputs(proto, input_shapes=input_shapes, seed=seed, given=given, where=where)
    if reference.expected is None:
        return _skip(where, reference.skip_reason)
    out, reference = _run_module_at_its_sizes(module, proto, reference, where=where, label=label,
                                              input_shapes=input_shapes, seed=seed, given=given)
    inputs, expected = reference.inputs, reference.expected
    _warn_if_checked_at_ones_only(reference, where)
    actual = list(out) if isinstance(out, tuple) else [out]
    names = [o.name for o in proto.graph.output]
    if len(actual) != len(expected):
        raise VerificationError(f"the converted module returns {len(actual)} outputs, onnxruntime {len(expected)}",
                                file=label or None)
    reopened: list[Any] = []

    def rerun(jittered: dict[str, np.ndarray]) -> dict[str, Any]:
        if not reopened:
            reopened.append(onnxruntime_reference(proto)[0])
        if reopened[0] is None:
            raise RuntimeError("onnxruntime cannot load the model again")
        values, problem = _run_reference(reopened[0], jittered)
        if values is None:
            raise RuntimeError(problem)
        return _flat_outputs(names, values)

    locate = None
    if debug_gm is not None and debug_proto is not None:
        def locate():
            gm = debug_gm if isinstance(debug_gm, torch.nn.Module) else debug_gm()
            return locate_divergence(debug_proto, gm, inputs, unfused=unfused, rtol=rtol, atol=atol)

    verdict = judge_conversion(_flat_outputs(names, expected), list(_flat_outputs(names, to_numpy(actual)).values()),
                               reference_name="onnxruntime", inputs=inputs, seed=seed, rtol=rtol, atol=atol,
                               row_groups=selection_groups(proto), rerun_reference=rerun, locate=locate)
    for line in verdict.notes + verdict.warnings:
        log.warning("%s: %s", where, line)
    if not verdict.ok:
        if verdict.locator is not None:
            log.info("%s", verdict.locator.describe())
        raise verdict.error(label or None)
    result = CheckResult(outputs=names, verdict=verdict)
    result.max_abs_diff = max((o.max_abs or 0.0 for o in verdict.comparison), default=0.0)
    log.info("%s: outputs match onnxruntime (%s)", where, "; ".join(verdict.lines()))
    return result


_REDUCED_FLOATS = {onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.FLOAT16: "float16"}  # coarsest first
_WIDE_FLOATS = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE})


def reduced_precision(proto: onnx.ModelProto) -> Optional[str]:
    """'float16' or 'bfloat16' when the graph computes in it behind wider float outputs: weights
    of that type, or a Cast to it (float16 conversions that keep float32 inputs and outputs, as
    onnxconverter-common's and onnxruntime's do). Its outputs then carry that precision's error."""
    graph = proto.graph
    if not any(o.type.tensor_type.elem_type in _WIDE_FLOATS for o in graph.output):
        return None  # float16 outputs get float16's tolerance from their dtype already
    found = {t.data_type for t in graph.initializer if t.data_type in _REDUCED_FLOATS}
    for node in graph.node:
        if node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to in _REDUCED_FLOATS:
                found.add(to)
    return next((name for code, name in _REDUCED_FLOATS.items() if code in found), None)


def _tolerance_of_computation(proto: onnx.ModelProto, where: str) -> tuple[Optional[float], Optional[float]]:
    """The default tolerance of the precision the graph computes in, when that is below its
    outputs' (:func:`reduced_precision`); (None, None), the outputs' own, otherwise."""
    precision = reduced_precision(proto)
    if precision is None:
        return None, None
    from common.verify.compare import DEFAULT_TOLERANCES

    tolerance = DEFAULT_TOLERANCES[precision]
    log.info("%s: the graph computes in %s: its float outputs are judged at %s's tolerance (%s)", where, precision,
             precision, tolerance)
    return tolerance.rtol, tolerance.atol


def locate_divergence(proto: onnx.ModelProto, gm: torch.fx.GraphModule, inputs: Mapping[str, np.ndarray], *,
                      unfused: Optional[Callable[[], torch.fx.GraphModule]] = None,
                      rtol: Optional[float] = None, atol: Optional[float] = None) -> LocatorResult:
    """The node whose own error is out of tolerance (:func:`common.verify.diagnose.diagnose_onnx_to_torch`).

    Fusion removes values (a convolution's output before its folded BatchNormalization), so a
    divergence found on the fused module may only be narrowed to a chain of nodes. Then the
    unfused conversion is located too: it names the converter at fault, or, when it agrees
    with onnxruntime, shows that the fusion passes introduced the error.
    """
    from common.verify.diagnose import diagnose_onnx_to_torch

    found = diagnose_onnx_to_torch(proto, gm, inputs, rtol=rtol, atol=atol)
    divergence = found.divergence
    if unfused is None or (divergence is not None and divergence.inputs_agree):
        return found
    plain = diagnose_onnx_to_torch(proto, unfused(), inputs, rtol=rtol, atol=atol)
    if plain.divergence is not None:
        return plain
    if divergence is not None and not plain.accumulated:
        divergence.cause = ("the conversion without fusions agrees with onnxruntime here: the error comes from the "
                            "inference fusions (onnx2x/torch/fusion.py) of this node's chain")
    return found


def _call(module: torch.nn.Module, inputs: Mapping[str, np.ndarray]) -> Any:
    """The module on the check's inputs (tensors, strings as numpy object arrays)."""
    from common.verify.runners import to_torch

    with torch.no_grad():
        return module(*[to_torch(f) for f in inputs.values()])


def _run_module_at_its_sizes(module: torch.nn.Module, proto: onnx.ModelProto, reference: Reference, *, where: str,
                             label: str, input_shapes: Optional[dict[str, Sequence[int]]], seed: int,
                             given: Optional[Mapping[str, np.ndarray]]) -> tuple[Any, Reference]:
    """The module's outputs on the reference's inputs, or, when it raises there, on the next
    draw of :data:`SYMBOLIC_SIZES` that onnxruntime and the module both run (with a warning).

    Why: the first draws are small (an 8x10 image), and onnxruntime computes outputs where
    PyTorch refuses an input smaller than a pooling window (a DenseNet with a symbolic image
    size: onnxruntime gives a 1x1 map for a 2x2 pool of a 1x1 one, ONNX's formula 0x0). That is
    the input's fault, not the conversion's; failing at every draw onnxruntime runs still fails.
    """
    first_error: Optional[BaseException] = None
    runner: Any = None  # one onnxruntime session for every later draw, made on the first failure
    current = reference
    failed: list[str] = []  # the shapes the module failed at
    while True:
        try:
            out = _call(module, current.inputs)
        except Exception as exc:  # noqa: BLE001 - what the module raises is the report
            first_error = first_error or exc
            failed.append(_shown(_input_shapes(current)))
            if current.draw < 0 or given:
                break
            if runner is None:
                runner, _ = onnxruntime_reference(proto)
                if runner is None:
                    break
            current = reference_outputs(proto, input_shapes=input_shapes, seed=seed, given=given, runner=runner,
                                        where=where, after=current.draw, avoid=[_input_shapes(current)])
            if current.expected is None:
                break
            continue
        if current is not reference:
            log.warning("%s: the converted module fails at input shapes %s, where onnxruntime computes outputs "
                        "(%s); checked at shapes %s instead, where both run (PyTorch refuses some inputs that "
                        "onnxruntime accepts, such as one smaller than a pooling window)",
                        where, _shown(_input_shapes(reference)), _short(first_error), _shown(_input_shapes(current)))
        return out, current
    hint = ""
    if not given and any(not d.HasField("dim_value") for v in graph_inputs(proto)
                         for d in v.type.tensor_type.shape.dim):  # sizes the check chose
        hint = (f"; it fails at every size the check drew that onnxruntime runs ({'; '.join(failed)}): if the model "
                f"needs inputs of other sizes, check it on some with --input NAME=FILE.npy (the module stays "
                f"dynamic) or fix them with --input-shape NAME:D0,D1,...")
    raise VerificationError(f"the converted module fails on inputs onnxruntime accepts (shapes "
                            f"{_shown(_input_shapes(reference))}: {_short(first_error)}){hint}",
                            file=label or None) from first_error


def _input_shapes(reference: Reference) -> tuple[tuple[int, ...], ...]:
    return tuple(np.shape(f) for f in reference.inputs.values())


def _warn_if_checked_at_ones_only(reference: Reference, where: str) -> None:
    """Say so when onnxruntime ran only the draw that sets every free axis to 1 (batch and
    sequence mix-ups compute the right numbers there), after refusing larger ones."""
    if not reference.refused or not 0 <= reference.draw < len(SYMBOLIC_SIZES):
        return
    if SYMBOLIC_SIZES[reference.draw] != SymbolicSizes(1, 1):
        return
    shapes, why = next(iter(reference.refused.items()))
    reason = why.replace(_RANDOM_INPUTS, "", 1).strip()  # "(onnxruntime's message)"
    log.warning("%s: checked only with every free axis of size 1: onnxruntime refuses inputs of shapes %s %s; "
                "give real sizes with --input-shape NAME:D0,D1,... or --input [NAME=]FILE", where, _shown(shapes),
                reason)


def _skip(where: str, why: str) -> CheckResult:
    log.warning("%s: verification skipped: %s", where, why)
    return CheckResult(skipped=True, reason=why)
