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
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from .compare import OutputComparison, compare_arrays

log = logging.getLogger(__name__)

GRAD_RTOL = 1e-4
# floor of the bound, as a fraction of the largest gradient scale of the model: a gradient that is
# zero in the source may be a rounding residue in the candidate
GRAD_ATOL_FRACTION = 1e-7
# a finite-difference estimate backs a side when it lies within this fraction of the gap between them
FD_DECISIVE = 0.1
# steps, relative to the tensor's norm (at least 1): one-sided estimates stay exact on the smooth
# side of a kink (ReLU, PReLU, max pooling) that a central difference straddles
FD_STEPS = (1e-2, 1e-3, 1e-4)
# ... and when its best estimate is this many times closer than the other side's best (next to a
# kink, one one-sided slope may happen to lie near the other side too)
FD_CLOSER = 5.0

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
    """The source's directional derivative along the (unit) difference of the two gradients: the
    finite-difference estimate nearest either side, and which side the estimates back."""

    measured: float  # the estimate nearest to one of the two sides
    source: float  # the source's gradient . direction
    candidate: float  # the candidate's gradient . direction
    step: float
    kind: str  # "central", "forward" or "backward" difference
    supports: str  # "candidate", "source" or "neither" (inconclusive: no estimate, or estimates for both)
    dtype: str = "float64"

    def describe(self, source: str, candidate: str) -> str:
        return (f"finite differences of {source}'s forward ({self.dtype}, {self.kind}, step {self.step:.2g}) give "
                f"{self.measured:.6g} along the difference; {candidate}: {self.candidate:.6g}, "
                f"{source}: {self.source:.6g}")


def adjudicate(loss: Callable[[np.ndarray], float], point: np.ndarray, source_grad: np.ndarray,
               candidate_grad: np.ndarray, *, dtype: str = "float64") -> FiniteDifference:
    """Finite differences of ``loss`` at ``point`` along the unit vector of
    ``candidate_grad - source_grad`` (same shape as ``point``).

    Central, forward and backward differences at each of :data:`FD_STEPS` (times the tensor's norm,
    at least 1). A side is backed when its nearest estimate lies within :data:`FD_DECISIVE` of the
    gap from it and :data:`FD_CLOSER` times closer than the other side's nearest: where the loss
    has a kink next to ``point`` the central difference is neither one-sided derivative, but the
    one-sided difference on the smooth side is exact, and autograd returns that one. Otherwise
    the dispute stays open (a failure).
    """
    src = np.asarray(source_grad, np.float64)
    cand = np.asarray(candidate_grad, np.float64)
    diff = cand - src
    norm = float(np.linalg.norm(diff))
    direction = diff / norm if norm > 0 else diff
    a_src, a_cand = float(np.sum(src * direction)), float(np.sum(cand * direction))
    gap = abs(a_cand - a_src)
    base = np.asarray(point, np.float64)
    scale = max(float(np.linalg.norm(base)), 1.0)
    at_base = loss(base)
    estimates = []
    for rel in FD_STEPS:
        step = rel * scale
        up, down = loss(base + step * direction), loss(base - step * direction)
        estimates += [((up - down) / (2 * step), "central", step), ((up - at_base) / step, "forward", step),
                      ((at_base - down) / step, "backward", step)]
    best_cand = min(estimates, key=lambda e: abs(e[0] - a_cand))
    best_src = min(estimates, key=lambda e: abs(e[0] - a_src))
    err_cand, err_src = abs(best_cand[0] - a_cand), abs(best_src[0] - a_src)
    log.debug("finite differences: candidate %.6g (best %s), source %.6g (best %s)", a_cand, best_cand, a_src,
              best_src)
    if err_cand <= FD_DECISIVE * gap and err_cand * FD_CLOSER <= err_src:
        supports, best = "candidate", best_cand
    elif err_src <= FD_DECISIVE * gap and err_src * FD_CLOSER <= err_cand:
        supports, best = "source", best_src
    else:
        supports, best = "neither", min(best_cand, best_src, key=lambda e: min(abs(e[0] - a_cand), abs(e[0] - a_src)))
    return FiniteDifference(float(best[0]), a_src, a_cand, float(best[2]), best[1], supports, dtype)


@dataclass
class GradientEntry:
    """One parameter's (or input's) gradient, source against candidate."""

    name: str  # the source's name
    kind: str  # "parameter", "input" or "output" (the forward the loss is computed from)
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
    failed_to_run: str = ""  # why the check could not run (a failure)

    @property
    def ok(self) -> bool:
        return not self.failed_to_run and all(e.status != DIFFERS for e in self.entries)

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
        if self.failed_to_run:
            return f"[{self.mode}] gradient check could not run: {self.failed_to_run}"
        e = self.first_failure()
        if e is None:
            return ""
        why = e.comparison.problem() if e.comparison is not None else e.note
        if e.kind == "output":
            return f"[{self.mode}] output {e.name!r} of the forward the loss is computed from differs: {why}"
        fd = f"; {e.finite_difference.describe(self.source, self.candidate)}" if e.finite_difference else ""
        return f"[{self.mode}] gradient of {e.where()} differs: {why}{fd}"

    def to_dict(self) -> dict[str, Any]:
        """For the round trip's JSON report."""
        def fd(e: GradientEntry) -> Optional[dict[str, Any]]:
            f = e.finite_difference
            return None if f is None else {"measured": f.measured, "source": f.source, "candidate": f.candidate,
                                           "step": f.step, "kind": f.kind, "supports": f.supports}
        return {"mode": self.mode, "ok": self.ok, "source": self.source, "candidate": self.candidate,
                "error": self.error() or None, "notes": list(self.notes),
                "entries": [{"name": e.name, "kind": e.kind, "attribute": e.attribute, "node": e.node, "op": e.op,
                             "status": e.status, "note": e.note,
                             "comparison": None if e.comparison is None else e.comparison.to_dict(),
                             "finite_difference": fd(e)} for e in self.entries]}

    def lines(self) -> list[str]:
        """A short table: one line per gradient."""
        compared = [e for e in self.entries if e.comparison is not None and e.kind != "output"]
        out = [f"gradients ({self.mode} mode): {len(compared)} compared with {self.source}, "
               f"{sum(e.status == OK for e in self.entries if e.kind != 'output')} agree, "
               f"{sum(e.status == SOURCE_WRONG for e in self.entries)} {self.source} wrong (finite differences), "
               f"{sum(e.status == DIFFERS for e in self.entries if e.kind != 'output')} differ, "
               f"{sum(e.status == SKIPPED for e in self.entries)} not compared"]
        for e in self.entries:
            figures = e.comparison.figures() if e.comparison is not None else ""
            note = f" [{e.note}]" if e.note else ""
            kind = {"parameter": "param"}.get(e.kind, e.kind)
            out.append(f"  {e.status:<12} {kind:<6} {e.name:<28} {figures}{note}")
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def judge_gradients(mode: str, source_grads: Mapping[str, np.ndarray], candidate_grads: Mapping[str, np.ndarray],
                    *, kinds: Mapping[str, str], order: Sequence[str],
                    layers: Mapping[str, tuple[str, str]] = {},
                    notes: Mapping[str, str] = {}, skipped: Mapping[str, str] = {},
                    attributes: Mapping[str, str] = {},
                    loss: Optional[Callable[[str, np.ndarray], float]] = None,
                    points: Mapping[str, np.ndarray] = {}, source: str = "mxnet", candidate: str = "torch",
                    rtol: float = GRAD_RTOL) -> GradientReport:
    """Compare gradients by source name, in ``order`` (backward order: nearest the outputs first).

    ``candidate_grads`` are already in the source's shapes. ``loss(name, values)`` is the source's
    loss with tensor ``name`` replaced by ``values`` (float64); with it, disagreements are
    adjudicated at ``points[name]`` by finite differences. ``skipped`` gives names with the reason
    they are not compared; ``attributes`` the candidate's name of each.
    """
    report = GradientReport(mode, source, candidate)
    scales = [float(np.max(np.abs(g))) for g in source_grads.values() if np.size(g)]
    atol = GRAD_ATOL_FRACTION * max(scales, default=0.0)
    for name in order:
        node, op = layers.get(name, ("", ""))
        entry = GradientEntry(name, kinds.get(name, "parameter"), attributes.get(name), node=node, op=op,
                              note=notes.get(name, ""))
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
