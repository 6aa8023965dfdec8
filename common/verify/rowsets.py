"""Detections compared as sets: outputs after a selection, whose row order is not defined.

A detector's last step sorts candidates by score and suppresses overlaps (NonMaxSuppression,
TopK, MXNet's box_nms). Two correct implementations that differ by float32 rounding in the
scores may list two near-equal detections in the other order, so comparing such outputs element
by element reports a large error where nothing is wrong. Here the rows of those outputs are
matched instead: every reference row must find a candidate row within the tolerance of
:mod:`.compare` (each column judged against the scale of the output it comes from), and no
candidate row may be left over. Rows that are entirely ``-1`` are padding (MXNet fills the rows
it did not keep that way) and are ignored on both sides.

Which outputs are row sets is read from the ONNX graph (:func:`selection_groups`): outputs
downstream of the same selection ops form one group, whose rows are concatenated across the
outputs (ids, scores and boxes of one detection become one row).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import onnx

from .compare import OutputComparison, Tolerance, dtype_name, to_numpy, tolerance_for

SELECTION_OPS = frozenset({"NonMaxSuppression", "TopK"})
_CHUNK = 1 << 22  # distance-matrix elements computed at once


def selection_groups(model: onnx.ModelProto) -> list[list[str]]:
    """Graph outputs computed after a selection op, grouped by the selections they depend on."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    memo: dict[str, frozenset] = {}

    def selections(name: str) -> frozenset:
        stack, order = [name], []
        while stack:  # iterative post-order: graphs can be thousands of nodes deep
            current = stack[-1]
            if current in memo:
                stack.pop()
                continue
            node = producer.get(current)
            if node is None:
                memo[current] = frozenset()
                stack.pop()
                continue
            pending = [i for i in node.input if i and i not in memo]
            if pending:
                stack.extend(pending)
                continue
            found = set().union(*(memo[i] for i in node.input if i)) if node.input else set()
            if node.op_type in SELECTION_OPS and node.domain in ("", "ai.onnx"):
                found.add(node.name or node.output[0])
            for out in node.output:
                memo[out] = frozenset(found)
            stack.pop()
            order.append(current)
        return memo[name]

    groups: dict[frozenset, list[str]] = {}
    for out in graph.output:
        found = selections(out.name)
        if found:
            groups.setdefault(found, []).append(out.name)
    return list(groups.values())


def row_axis(shapes: Sequence[tuple[int, ...]]) -> Optional[int]:
    """The axis along which a group of outputs lists its rows (None: no row structure).

    The last axis of the shapes' common prefix that is longer than 1 (``(1, 100, 1)`` scores with
    ``(1, 100, 4)`` boxes: axis 1); a lone output lists rows along its second-to-last axis.
    """
    if not shapes or any(len(s) == 0 for s in shapes):
        return None
    if len(shapes) == 1:
        shape = shapes[0]
        candidates = range(len(shape) - 2, -1, -1) if len(shape) >= 2 else [0]
    else:
        prefix = 0
        while all(len(s) > prefix for s in shapes) and len({s[prefix] for s in shapes}) == 1:
            prefix += 1
        if prefix == 0:
            return None
        candidates = range(prefix - 1, -1, -1)
    for axis in candidates:
        if shapes[0][axis] > 1:
            return axis
    return max(0, min(len(s) for s in shapes) - 2) if len(shapes) == 1 else None


@dataclass
class _Table:
    """One side's rows: ``rows[b]`` is an (n_rows, n_features) float64 array per batch index."""

    rows: list[np.ndarray]
    columns: list[tuple[int, int]]  # (start, stop) of each output's features


def _table(arrays: Sequence[np.ndarray], axis: int) -> Optional[_Table]:
    lead = arrays[0].shape[:axis]
    if any(a.shape[:axis] != lead for a in arrays):
        return None
    batch = int(np.prod(lead)) if lead else 1
    per_output = []
    for a in arrays:
        n = a.shape[axis] if a.ndim > axis else 1
        per_output.append(a.astype(np.float64).reshape(batch, n, -1))
    counts = {p.shape[1] for p in per_output}
    if len(counts) != 1:
        return None
    columns, start = [], 0
    for p in per_output:
        columns.append((start, start + p.shape[2]))
        start += p.shape[2]
    joined = np.concatenate(per_output, axis=2)
    rows = []
    for b in range(batch):
        block = joined[b]
        padding = np.all(block == -1.0, axis=1)
        rows.append(block[~padding])
    return _Table(rows, columns)


@dataclass
class RowMatch:
    """Result of matching candidate rows to reference rows over all batch indices."""

    n_reference: int
    n_candidate: int
    matched: int
    max_abs: list[float]  # per output, over matched rows
    max_rel: list[Optional[float]]
    worst: float  # largest matched distance as a multiple of the bound
    tied_at_cutoff: int = 0  # unmatched rows whose score ties the last kept score: either side may keep them

    @property
    def unmatched(self) -> int:
        return (self.n_reference - self.matched) + (self.n_candidate - self.matched) - self.tied_at_cutoff


def match_rows(reference: Sequence[Any], candidate: Sequence[Any], axis: int, tolerances: Sequence[Tolerance],
               widen: Sequence[float] = ()) -> Optional[RowMatch]:
    """Greedy matching of candidate rows to reference rows, reference rows in their own order
    (highest score first), each taking the closest unmatched candidate row within the bound."""
    refs = [to_numpy(a) for a in reference]
    cands = [to_numpy(a) for a in candidate]
    ref_table, cand_table = _table(refs, axis), _table(cands, axis)
    if ref_table is None or cand_table is None or len(ref_table.rows) != len(cand_table.rows) \
            or ref_table.columns != cand_table.columns:
        return None
    scales = []
    for a in refs:
        finite = np.abs(a[np.isfinite(a)].astype(np.float64)) if a.size else np.zeros(0)
        scales.append(float(finite.max()) if finite.size else 0.0)
    widen = list(widen) or [0.0] * len(refs)
    n_ref = n_cand = matched = tied = 0
    max_abs = [0.0] * len(refs)
    worst = 0.0
    key = _score_column(ref_table, cand_table)
    for r_rows, c_rows in zip(ref_table.rows, cand_table.rows):
        n_ref += len(r_rows)
        n_cand += len(c_rows)
        if not len(r_rows) or not len(c_rows):
            continue
        bound = np.empty_like(r_rows)
        for k, (start, stop) in enumerate(ref_table.columns):
            bound[:, start:stop] = tolerances[k].bound(np.abs(r_rows[:, start:stop]), scales[k]) + widen[k]
        bound = np.maximum(bound, np.finfo(np.float64).tiny)
        distance = _distances(r_rows, c_rows, bound)
        taken = np.zeros(len(c_rows), bool)
        kept = np.zeros(len(r_rows), bool)
        for i in range(len(r_rows)):
            row = np.where(taken, np.inf, distance[i])
            j = int(np.argmin(row))
            if row[j] <= 1.0:
                taken[j] = kept[i] = True
                matched += 1
                worst = max(worst, float(row[j]))
                diff = np.abs(r_rows[i] - c_rows[j])
                for k, (start, stop) in enumerate(ref_table.columns):
                    max_abs[k] = max(max_abs[k], float(diff[start:stop].max(initial=0.0)))
        if key is not None:
            tied += _tied_at_cutoff(r_rows[~kept, key], c_rows[:, key], bound[:, key].max())
            tied += _tied_at_cutoff(c_rows[~taken, key], r_rows[:, key], bound[:, key].max())
    max_rel = [m / s if s > 0 else (0.0 if m == 0 else None) for m, s in zip(max_abs, scales)]
    return RowMatch(n_ref, n_cand, matched, max_abs, max_rel, worst, tied)


def _score_column(*tables: _Table) -> Optional[int]:
    """The column both sides list their rows in descending order of (detections come sorted by
    score), preferring the one with the most distinct values; None when no column is sorted."""
    if not tables[0].rows:
        return None
    best, best_distinct = None, -1
    for col in range(tables[0].rows[0].shape[1]):
        if not all(np.all(np.diff(rows[:, col]) <= 0) for t in tables for rows in t.rows):
            continue
        distinct = len(np.unique(np.concatenate([rows[:, col] for t in tables for rows in t.rows])))
        if distinct > best_distinct:
            best, best_distinct = col, distinct
    return best


def _tied_at_cutoff(unmatched_keys: np.ndarray, other_keys: np.ndarray, bound: float) -> int:
    """Unmatched rows whose score equals, within ``bound``, the lowest score the other side kept:
    among candidates tied at the cut-off (top-k, NMS order) either may be the one kept."""
    if not len(unmatched_keys) or not len(other_keys):
        return 0
    cutoff = float(other_keys.min())
    return int(np.count_nonzero(np.abs(unmatched_keys - cutoff) <= bound))


def _distances(r_rows: np.ndarray, c_rows: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """``d[i, j] = max_f |r_if - c_jf| / bound_if`` (NaN against NaN counts as equal)."""
    out = np.empty((len(r_rows), len(c_rows)))
    step = max(1, _CHUNK // max(1, len(c_rows) * r_rows.shape[1]))
    for start in range(0, len(r_rows), step):
        r = r_rows[start:start + step, None, :]
        with np.errstate(invalid="ignore"):
            d = np.abs(r - c_rows[None, :, :]) / bound[start:start + step, None, :]
        both_nan = np.isnan(r) & np.isnan(c_rows[None, :, :])
        d = np.where(both_nan, 0.0, np.where(np.isnan(d), np.inf, d))
        out[start:start + step] = d.max(axis=2) if d.shape[2] else 0.0
    return out


def compare_row_set(names: Sequence[str], reference: Mapping[str, Any], candidate: Mapping[str, Any], *,
                    rtol: Optional[float] = None, atol: Optional[float] = None,
                    widen: Optional[Sequence[float]] = None,
                    allowed_unmatched: int = 0) -> Optional[list[OutputComparison]]:
    """One :class:`OutputComparison` per output of the group, judged as a set of rows; None when
    the outputs have no common row structure (then they stay compared element by element)."""
    refs = [to_numpy(reference[n]) for n in names]
    cands = [to_numpy(candidate[n]) for n in names]
    axis = row_axis([tuple(a.shape) for a in refs])
    if axis is None or any(c.ndim != r.ndim or c.shape[:axis] != r.shape[:axis] or c.shape[axis + 1:] != r.shape[axis + 1:]
                           for r, c in zip(refs, cands)):
        return None
    tols = [tolerance_for(r.dtype, c.dtype, rtol=rtol, atol=atol) for r, c in zip(refs, cands)]
    if any(t.rtol == 0 and t.atol == 0 for t in tols):  # integer ids: compared as values in the row all the same
        tols = [t if t.rtol or t.atol else Tolerance(0.0, 0.5) for t in tols]
    match = match_rows(refs, cands, axis, tols, widen or ())
    if match is None:
        return None
    results = []
    for k, (name, r, c) in enumerate(zip(names, refs, cands)):
        results.append(OutputComparison(
            name=name, ref_shape=tuple(r.shape), cand_shape=tuple(c.shape), ref_dtype=dtype_name(r.dtype),
            cand_dtype=dtype_name(c.dtype), rtol=tols[k].rtol, atol=tols[k].atol,
            shape_ok=True, dtype_ok=dtype_name(r.dtype) == dtype_name(c.dtype), n_elements=match.n_reference,
            max_abs=match.max_abs[k], max_rel=match.max_rel[k], n_bad=match.unmatched,
            bad_fraction=match.unmatched / max(1, match.n_reference), n_allowed=allowed_unmatched,
            worst=match.worst, widened_by=float((widen or [0.0] * len(names))[k]), compared_as="rows",
            message=f"{match.matched} rows matched of {match.n_reference} reference and {match.n_candidate} "
                    f"candidate rows, compared as a set along axis {axis}"
                    + (f"; {match.tied_at_cutoff} rows tied with the last kept score, which either side may keep"
                       if match.tied_at_cutoff else "")))
    return results
