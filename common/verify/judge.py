"""The whole verdict on a conversion's outputs: element-wise, then as detection sets, then against
the reference's own sensitivity (the criterion is described in :mod:`.compare`).

Every step after the first runs only for outputs that failed the one before, so a conversion
that agrees costs one comparison; the sensitivity runs (two more runs of the reference) happen
only when something would otherwise be refused.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .compare import SENSITIVITY_FACTOR, ComparisonReport, OutputComparison, compare, compare_arrays, to_numpy
from .rowsets import compare_row_set
from .sensitivity import RerunFn, Sensitivity, measure

log = logging.getLogger(__name__)


def judge_outputs(
    reference: Mapping[str, Any],
    candidate: "Mapping[str, Any] | Sequence[Any]",
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    check_dtype: bool = True,
    row_groups: Sequence[Sequence[str]] = (),
    rerun_reference: Optional[RerunFn] = None,
    inputs: Optional[Mapping[str, Any]] = None,
    seed: int = 0,
    reference_name: str = "the reference",
) -> ComparisonReport:
    """Compare ``candidate`` with ``reference`` by the documented criterion.

    ``row_groups`` names the reference outputs to compare as sets of rows (from
    :func:`.rowsets.selection_groups`); ``rerun_reference(inputs)`` runs the reference again
    (same output names), for its sensitivity to ``inputs`` jittered by one part in a million.
    """
    report = compare(reference, candidate, rtol=rtol, atol=atol, check_dtype=check_dtype)
    if report.ok:
        return report
    cand_by_ref = _candidates_by_reference_name(report, candidate)
    failed = {o.name for o in report.failed}
    groups = [list(g) for g in row_groups if any(n in failed for n in g) and all(n in cand_by_ref for n in g)]
    _compare_row_groups(report, groups, reference, cand_by_ref, rtol, atol)
    still = [o for o in report.failed if o.cand_shape is not None and o.n_bad is not None]
    if not still or rerun_reference is None or inputs is None:
        return report
    sensitivity = measure(rerun_reference, inputs, seed=seed)
    if not sensitivity.available:
        report.notes.append(f"could not measure how sensitive {reference_name} is ({sensitivity.error})")
        return report
    _rejudge(report, sensitivity, groups, reference, cand_by_ref, rtol, atol, check_dtype, reference_name)
    return report


def _candidates_by_reference_name(report: ComparisonReport, candidate: Any) -> dict[str, Any]:
    """Candidate arrays keyed by the reference name they were paired with."""
    if isinstance(candidate, Mapping):
        return {o.name: candidate[o.cand_name or o.name] for o in report.outputs
                if (o.cand_name or o.name) in candidate}
    values = [candidate] if isinstance(candidate, np.ndarray) else list(candidate)
    return {o.name: values[i] for i, o in enumerate(report.outputs) if i < len(values)}


def _compare_row_groups(report: ComparisonReport, groups: list[list[str]], reference: Mapping[str, Any],
                        candidate: Mapping[str, Any], rtol: Optional[float], atol: Optional[float],
                        widen: Optional[Mapping[str, float]] = None,
                        allowed: Optional[Mapping[tuple, int]] = None) -> set[str]:
    """Replace the rows of ``report`` for each group that has a row structure; returns their names."""
    done: set[str] = set()
    for group in groups:
        rows = compare_row_set(group, reference, candidate, rtol=rtol, atol=atol,
                               widen=[(widen or {}).get(n, 0.0) for n in group],
                               allowed_unmatched=(allowed or {}).get(tuple(group), 0))
        if rows is None:
            continue
        for row in rows:
            report.replace(row)
            done.add(row.name)
    return done


def _rejudge(report: ComparisonReport, sensitivity: Sensitivity, groups: list[list[str]],
             reference: Mapping[str, Any], candidate: Mapping[str, Any], rtol: Optional[float],
             atol: Optional[float], check_dtype: bool, reference_name: str) -> None:
    """Judge the failed outputs again with bounds widened by the reference's own movement."""
    unsteadiness = {o.name: sensitivity.unsteady(o.name, reference[o.name]) for o in report.outputs
                    if o.name in reference}
    widen: dict[str, float] = {}
    allowed: dict[tuple, int] = {}
    for group in groups:
        if all(report[n].ok for n in group) or any(report[n].compared_as != "rows" for n in group):
            continue
        self_rows = [compare_row_set(group, reference, sample, rtol=rtol, atol=atol)
                     for sample in sensitivity.samples if all(n in sample for n in group)]
        self_rows = [r for r in self_rows if r is not None]
        if not self_rows:
            continue
        allowed[tuple(group)] = int(np.ceil(SENSITIVITY_FACTOR * max(r[0].n_bad or 0 for r in self_rows)))
        for k, name in enumerate(group):
            widen[name] = max(r[k].max_abs or 0.0 for r in self_rows)
    as_rows = _compare_row_groups(report, [g for g in groups if tuple(g) in allowed], reference, candidate, rtol,
                                  atol, {n: SENSITIVITY_FACTOR * m for n, m in widen.items()}, allowed)
    for group in allowed:
        if group[0] not in as_rows:
            continue
        for name in group:
            report[name].sensitivity = widen[name]
        _note(report, report[group[0]], reference_name, moved_rows=allowed[group] / SENSITIVITY_FACTOR,
              label=", ".join(group), unsteadiness=unsteadiness)
    for out in list(report.outputs):
        name = out.name
        if name in as_rows or out.ok or out.n_bad is None or out.compared_as == "rows" or name not in candidate:
            continue
        ref = to_numpy(reference[name])
        if out.compared_as == "exact":
            moved_count = sensitivity.mismatches(name, ref)
            if moved_count is None:
                continue
            new = compare_arrays(ref, candidate[name], rtol=rtol, atol=atol, name=name, check_dtype=check_dtype,
                                 cand_name=out.cand_name,
                                 allowed_mismatches=int(np.ceil(SENSITIVITY_FACTOR * moved_count)))
            new.sensitivity = float(moved_count)
        else:
            moved = sensitivity.max_change(name, ref)
            if moved is None:
                continue
            new = compare_arrays(ref, candidate[name], rtol=rtol, atol=atol, name=name, check_dtype=check_dtype,
                                 cand_name=out.cand_name, widen=SENSITIVITY_FACTOR * moved)
            new.sensitivity = moved
        report.replace(new)
        _note(report, new, reference_name, unsteadiness=unsteadiness)


def _note(report: ComparisonReport, out: OutputComparison, reference_name: str, *,
          moved_rows: float = 0.0, label: str = "", unsteadiness: Optional[Mapping[str, float]] = None) -> None:
    """One line saying how sensitive the reference is, when that is large enough to matter."""
    moved = out.sensitivity
    unsteady = unsteadiness.get(out.name) if unsteadiness else None
    if unsteady:
        what = (f"{int(unsteady)} of {out.n_elements} elements" if out.compared_as == "exact"
                else f"by up to {unsteady:.2g}" + (f" ({unsteady / out.scale:.2g} of its scale)" if out.scale else ""))
        verdict = "judged against that" if out.ok else "the difference is larger still"
        report.notes.append(f"{label or out.name}: {reference_name} is not deterministic: two runs on the same inputs "
                            f"differ {what} (random ops, such as Dropout in training mode?); {verdict}")
        return
    if not moved_rows and (not moved or out.compared_as == "elements" and out.scale is not None
                           and SENSITIVITY_FACTOR * moved < out.rtol * out.scale):
        return  # too small to change anything: not worth a line
    if out.compared_as == "exact":
        text = f"{int(moved or 0)} of {out.n_elements} elements change"
    elif out.compared_as == "rows":
        text = f"{int(moved_rows)} of its {out.n_elements} detection rows change and the others move by up to {moved or 0:.2g}"
    else:
        scale = f" ({moved / out.scale:.2g} of its scale)" if out.scale else ""
        text = f"it moves by {moved:.2g}{scale}"
    verdict = "judged against that" if out.ok else "the difference is larger still"
    if out.ok and _chaotic(out, moved, moved_rows):
        verdict += (", which leaves the check unable to tell a wrong conversion from a right one on these inputs "
                    "(give real ones with --input)")
    report.notes.append(f"{label or out.name}: {reference_name} is sensitive: when its inputs move by one part in a million, "
                        f"{text}; {verdict}")


CHAOTIC = 0.1  # a reference that moves by this fraction of its scale (or of its rows) under jitter


def _chaotic(out: OutputComparison, moved: Optional[float], moved_rows: float) -> bool:
    """True when the reference's own movement is of the order of the output itself: a bound
    widened by that much accepts nearly anything (a detector whose boxes move by 1e27)."""
    if out.compared_as == "rows":
        return bool(out.n_elements) and moved_rows >= CHAOTIC * out.n_elements
    if out.compared_as == "exact":
        return bool(out.n_elements) and (moved or 0) >= CHAOTIC * out.n_elements
    return bool(moved) and out.scale is not None and moved >= CHAOTIC * out.scale
