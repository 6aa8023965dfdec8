"""Gradient check: a converted model's gradients compared with the source framework's, by parameter name.

Both frameworks backpropagate the same seeded scalar loss, ``sum_i sum(output_i * weight_i)``
(one fixed random tensor per output, :func:`loss_weights`). Every parameter's gradient is compared
under the **source's name** (the converted module's attribute is mapped back through its ONNX
initializer name, or, where a conversion renamed or reshaped a parameter, through its values:
:func:`match_parameters`), then the input gradients, with the scale-aware criterion of
:mod:`.compare` (``rtol`` 1e-4 of each gradient's scale).

A source framework's autograd is not always right (MXNet 1.9.1's gradient of PReLU slopes after
FullyConnected is off by several times). So a disagreement is adjudicated: the directional
derivative of the **source's forward** along the difference of the two gradients, by central finite
differences in float64, says which side is right (:func:`adjudicate`). A gradient the source got
wrong is accepted with a warning; any other disagreement fails the check, naming the first
parameter in backward order (nearest the outputs), its node and its op.

This module is framework-neutral: arrays in, verdicts out; the loss for finite differences is a
callable.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from .compare import OutputComparison, compare_arrays

log = logging.getLogger(__name__)

GRAD_RTOL = 1e-4
# floor of the bound, as a fraction of the largest gradient scale of the model: a gradient that is
# zero in the source may be a rounding residue in the candidate
GRAD_ATOL_FRACTION = 1e-7
# finite differences decide when they lie within this fraction of the gap between the two sides
FD_DECISIVE = 0.2

OK, SOURCE_WRONG, DIFFERS, SKIPPED = "ok", "source wrong", "differs", "skipped"


def loss_weights(shapes: Sequence[Sequence[int]], seed: int = 0) -> list[np.ndarray]:
    """The fixed random tensors of the loss, one per output (float32, standard normal, seeded)."""
    rng = np.random.default_rng(seed + 7919)
    return [rng.standard_normal(tuple(s)).astype(np.float32) for s in shapes]


@dataclass
class ParamMatch:
    """Where a source parameter lives in the converted module."""

    source_name: str
    attribute: str
    how: str  # "name" (ONNX initializer named like the source) or "values" (renamed/reshaped, same values)


def match_parameters(candidate: Mapping[str, tuple[str, np.ndarray]], source: Mapping[str, np.ndarray]
                     ) -> tuple[dict[str, ParamMatch], list[str]]:
    """{source name: match} and the candidate attributes no source parameter maps to.

    ``candidate`` is ``{attribute: (ONNX initializer name, values)}``. A parameter is matched by its
    ONNX name when that is a source name with as many elements; otherwise by equal values (same
    elements in the same order, whatever the shape: a conversion may reshape a PReLU slope to
    ``[C, 1, 1]`` and give it a generated name), when exactly one unmatched source parameter has them.
    """
    matches: dict[str, ParamMatch] = {}
    rest: list[str] = []
    for attr, (onnx_name, values) in candidate.items():
        if onnx_name in source and source[onnx_name].size == values.size and onnx_name not in matches:
            matches[onnx_name] = ParamMatch(onnx_name, attr, "name")
        else:
            rest.append(attr)
    unmatched: list[str] = []
    for attr in rest:
        values = np.asarray(candidate[attr][1]).reshape(-1)
        found = [name for name, ref in source.items() if name not in matches and ref.size == values.size
                 and np.array_equal(np.asarray(ref, dtype=values.dtype).reshape(-1), values)]
        if len(found) == 1:
            matches[found[0]] = ParamMatch(found[0], attr, "values")
        else:
            unmatched.append(attr)
    return matches, unmatched


@dataclass
class FiniteDifference:
    """The source's directional derivative along the (unit) difference of the two gradients."""

    measured: float  # central finite difference of the source's forward
    source: float  # the source's gradient . direction
    candidate: float  # the candidate's gradient . direction
    step: float
    dtype: str

    @property
    def supports(self) -> str:
        """'candidate', 'source' or 'neither' (inconclusive)."""
        gap = abs(self.candidate - self.source)
        err_c, err_s = abs(self.measured - self.candidate), abs(self.measured - self.source)
        if err_c <= FD_DECISIVE * gap and err_s >= (1 - FD_DECISIVE) * gap:
            return "candidate"
        if err_s <= FD_DECISIVE * gap and err_c >= (1 - FD_DECISIVE) * gap:
            return "source"
        return "neither"

    def describe(self, source: str, candidate: str) -> str:
        return (f"finite differences of {source}'s forward ({self.dtype}, step {self.step:.2g}) give "
                f"{self.measured:.6g} along the difference; {candidate}: {self.candidate:.6g}, "
                f"{source}: {self.source:.6g}")


def adjudicate(loss: Callable[[np.ndarray], float], point: np.ndarray, source_grad: np.ndarray,
               candidate_grad: np.ndarray, *, dtype: str = "float64") -> FiniteDifference:
    """Central finite difference of ``loss`` at ``point`` along the unit vector of
    ``candidate_grad - source_grad`` (same shape as ``point``).

    The step is 1e-3 of the tensor's norm (at least 1e-3) in float64; 1e-2 in float32. Not smaller:
    MXNet's float64 forward keeps float32-level rounding in places (measured on MTCNN: a 1e-6 step
    is off by up to 10%, 1e-3 mostly by under 1e-4 and a few percent at worst), and the gaps worth
    disputing are large (the verdict needs the measurement within 20% of the gap).
    """
    diff = np.asarray(candidate_grad, np.float64) - np.asarray(source_grad, np.float64)
    norm = float(np.linalg.norm(diff))
    direction = diff / norm if norm > 0 else diff
    base = np.asarray(point, np.float64)
    rel = 1e-3 if dtype == "float64" else 1e-2
    step = rel * max(float(np.linalg.norm(base)), 1.0)
    measured = (loss(base + step * direction) - loss(base - step * direction)) / (2 * step)
    return FiniteDifference(float(measured), float(np.sum(np.asarray(source_grad, np.float64) * direction)),
                            float(np.sum(np.asarray(candidate_grad, np.float64) * direction)), step, dtype)


@dataclass
class GradientEntry:
    """One parameter's (or input's) gradient, source against candidate."""

    name: str  # the source's name
    kind: str  # "parameter" or "input"
    attribute: Optional[str] = None  # the candidate's attribute
    node: str = ""  # the source node that reads it
    op: str = ""
    status: str = OK
    note: str = ""
    comparison: Optional[OutputComparison] = None
    finite_difference: Optional[FiniteDifference] = None

    def where(self) -> str:
        node = f", node {self.node!r} ({self.op})" if self.node else ""
        return f"{self.kind} {self.name!r}{node}"


@dataclass
class GradientReport:
    """The gradient check of one mode ('eval': global statistics; 'train': batch statistics)."""

    mode: str
    source: str = "mxnet"
    candidate: str = "torch"
    entries: list[GradientEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e.status != DIFFERS for e in self.entries)

    def first_failure(self) -> Optional[GradientEntry]:
        return next((e for e in self.entries if e.status == DIFFERS), None)

    def warnings(self) -> list[str]:
        out = []
        for e in self.entries:
            if e.status == SOURCE_WRONG and e.finite_difference is not None:
                out.append(f"warning: [{self.mode}] {self.source}'s gradient of {e.where()} is wrong "
                           f"({e.comparison.figures() if e.comparison else ''}); "
                           + e.finite_difference.describe(self.source, self.candidate) + f": {self.candidate} is right")
        return out

    def error(self) -> str:
        e = self.first_failure()
        if e is None:
            return ""
        why = e.comparison.problem() if e.comparison is not None else e.note
        fd = f"; {e.finite_difference.describe(self.source, self.candidate)}" if e.finite_difference else ""
        return f"[{self.mode}] gradient of {e.where()} differs: {why}{fd}"

    def lines(self) -> list[str]:
        """A short table: one line per gradient."""
        compared = [e for e in self.entries if e.comparison is not None]
        out = [f"gradients ({self.mode} mode): {len(compared)} compared with {self.source}, "
               f"{sum(e.status == OK for e in self.entries)} agree, "
               f"{sum(e.status == SOURCE_WRONG for e in self.entries)} {self.source} wrong (finite differences), "
               f"{sum(e.status == DIFFERS for e in self.entries)} differ, "
               f"{sum(e.status == SKIPPED for e in self.entries)} not compared"]
        for e in self.entries:
            figures = e.comparison.figures() if e.comparison is not None else ""
            note = f" [{e.note}]" if e.note else ""
            out.append(f"  {e.status:<12} {e.kind[:5]} {e.name:<28} {figures}{note}")
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def judge_gradients(mode: str, source_grads: Mapping[str, np.ndarray], candidate_grads: Mapping[str, np.ndarray],
                    *, kinds: Mapping[str, str], order: Sequence[str],
                    layers: Mapping[str, tuple[str, str]] = {},
                    notes: Mapping[str, str] = {}, skipped: Mapping[str, str] = {},
                    loss: Optional[Callable[[str, np.ndarray], float]] = None,
                    points: Mapping[str, np.ndarray] = {}, source: str = "mxnet", candidate: str = "torch",
                    rtol: float = GRAD_RTOL) -> GradientReport:
    """Compare gradients by source name, in ``order`` (backward order: nearest the outputs first).

    ``candidate_grads`` are already in the source's shapes. ``loss(name, values)`` is the source's
    loss with tensor ``name`` replaced by ``values`` (float64); with it, disagreements are
    adjudicated at ``points[name]`` by finite differences. ``skipped`` gives names with the reason
    they are not compared.
    """
    report = GradientReport(mode, source, candidate)
    scales = [float(np.max(np.abs(g))) for g in source_grads.values() if np.size(g)]
    atol = GRAD_ATOL_FRACTION * max(scales, default=0.0)
    for name in order:
        node, op = layers.get(name, ("", ""))
        entry = GradientEntry(name, kinds.get(name, "parameter"), node=node, op=op, note=notes.get(name, ""))
        report.entries.append(entry)
        if name in skipped:
            entry.status, entry.note = SKIPPED, skipped[name]
            continue
        if name not in candidate_grads or candidate_grads[name] is None:
            entry.status, entry.note = DIFFERS, f"no gradient in {candidate}"
            continue
        ref, cand = np.asarray(source_grads[name]), np.asarray(candidate_grads[name])
        entry.comparison = compare_arrays(ref, cand.astype(ref.dtype, copy=False), rtol=rtol, atol=atol, name=name)
        if entry.comparison.ok:
            continue
        entry.status = DIFFERS
        if loss is None or name not in points or not entry.comparison.shape_ok:
            continue
        try:
            entry.finite_difference = adjudicate(lambda v: loss(name, v), points[name], ref, cand)
        except Exception as exc:  # the verdict stays "differs"; say why it could not be settled
            entry.note = (entry.note + "; " if entry.note else "") + f"finite differences failed: {exc}"
            continue
        if entry.finite_difference.supports == "candidate":
            entry.status = SOURCE_WRONG
            entry.note = (entry.note + "; " if entry.note else "") + f"finite differences support {candidate}"
        elif entry.finite_difference.supports == "source":
            entry.note = (entry.note + "; " if entry.note else "") + f"finite differences support {source}"
        else:
            entry.note = (entry.note + "; " if entry.note else "") + "finite differences inconclusive"
    return report
