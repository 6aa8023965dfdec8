"""A conversion's verification as the CLIs report it: judged outputs, warnings, the located node.

Both directions (``x2onnx mxnet`` against MXNet, ``onnx2x torch`` against onnxruntime) run the
same steps: the reference and the converted model on the same seeded inputs, the outputs judged
by :func:`.judge.judge_outputs`, and on a failure the locator's answer to *which node*. A
:class:`Verdict` holds all of it, prints the per-output lines, becomes the one-line
:class:`~common.errors.VerificationError`, and writes the JSON that ``--verify-json`` asks for.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..errors import VerificationError
from .compare import ComparisonReport, OutputComparison
from .judge import judge_outputs
from .arbiter import describe_deviation
from .locator import LocatorResult
from .sensitivity import RerunFn

log = logging.getLogger(__name__)


@dataclass
class Verdict:
    """The outcome of one verification (``ok``), with everything needed to explain it."""

    reference_name: str
    comparison: ComparisonReport
    seed: int
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    locator: Optional[LocatorResult] = None
    locator_error: str = ""
    overruled: str = ""  # why outputs that differ are accepted (the reference deviates from the ONNX spec, ...)
    accepted_because: str = ""  # the same in a few words, for a CLI's one-line status

    @property
    def ok(self) -> bool:
        return self.comparison.ok or bool(self.overruled)

    @property
    def notes(self) -> list[str]:
        return list(self.comparison.notes)

    def lines(self) -> list[str]:
        """One line per output: ``NAME (shape): figures`` (and why, when it failed). The entries
        of a sequence output (``NAME#length``, ``NAME[k]``, a map's ``NAME[k]#keys``) that agree
        make one line, ``NAME (n items): figures of the worst``, instead of one each."""
        out: list[str] = []
        items: dict[str, list[OutputComparison]] = {}
        for o in self.comparison:
            base = _sequence_base(o.name)
            if base is not None and o.ok:
                if base not in items:
                    items[base] = []
                    out.append(base)  # placeholder, filled below
                items[base].append(o)
                continue
            line = f"{o.name} {tuple(o.ref_shape)}: {o.figures()}"
            if not o.ok:
                line += f" -- {o.problem()}"
            out.append(line)
        for base, entries in items.items():
            values = [e for e in entries if not e.name.endswith(("#length", "#keys"))]
            worst = max(values, key=lambda e: (e.worst or 0.0, e.max_abs or 0.0), default=None)
            figures = "equal" if worst is None else worst.figures()
            count = f"{len(values)} item{'' if len(values) == 1 else 's'}"
            out[out.index(base)] = f"{base} ({count}): {figures if len(values) < 2 else 'worst ' + figures}"
        return out

    def failure_message(self) -> str:
        """The one line a failed verification ends in (empty when ``ok``)."""
        bad: Optional[OutputComparison] = next(iter(self.comparison.failed), None)
        if bad is None:
            return ""
        text = (f"output {bad.name} {tuple(bad.ref_shape)} differs from {self.reference_name}: {bad.problem()} "
                f"(seed {self.seed})")
        if self.comparison.notes:
            text += "; " + self.comparison.notes[0]
        if self.locator is not None:
            if self.locator.divergence is not None:
                text += "; " + self.locator.divergence.headline()
            else:
                text += "; " + self.locator.describe().removeprefix("locator: ")
        elif self.locator_error:
            text += f"; the divergent node could not be located ({self.locator_error})"
        return text

    def error(self, file: Optional[str] = None) -> VerificationError:
        """The failure as an exception naming the node (the source framework's, when known)."""
        node = op = None
        divergence = self.locator.divergence if self.locator is not None else None
        if divergence is not None:
            if divergence.origin is not None:
                node, op = divergence.origin.node, divergence.origin.op or None
            else:
                node, op = divergence.node_name or None, divergence.op_type
        error = VerificationError(self.failure_message(), file=file, node=node, op_type=op)
        error.verdict = self  # for --verify-json, which records failures too
        return error

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "reference": self.reference_name, "seed": self.seed,
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "comparison": self.comparison.to_dict(), "warnings": list(self.warnings),
            "locator": None if self.locator is None else self.locator.to_dict(),
            "locator_error": self.locator_error or None, "overruled": self.overruled or None,
            "accepted_because": self.accepted_because or None,
        }

    def write_json(self, path: "str | Path") -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def judge_conversion(
    reference: Mapping[str, Any],
    candidate: "Mapping[str, Any] | Sequence[Any]",
    *,
    reference_name: str,
    inputs: Mapping[str, np.ndarray],
    seed: int = 0,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    check_dtype: bool = True,
    row_groups: Sequence[Sequence[str]] = (),
    rerun_reference: Optional[RerunFn] = None,
    locate: Optional[Callable[[], LocatorResult]] = None,
    warnings: Sequence[str] = (),
    second_opinion: Optional[Callable[[], tuple[str, Mapping[str, Any], str]]] = None,
) -> Verdict:
    """Judge ``candidate`` against ``reference`` and, when it fails, ask ``locate`` which node.

    ``second_opinion()`` returns ``(name, outputs, why)``: the same framework computing the same
    outputs another way (MXNet without its oneDNN kernels). When the candidate fails against the
    reference but matches the second opinion, the disagreement is the framework's own: the verdict
    is accepted with a warning saying so (``why`` says which to trust).
    """
    comparison = judge_outputs(reference, candidate, rtol=rtol, atol=atol, check_dtype=check_dtype,
                               row_groups=row_groups, rerun_reference=rerun_reference, inputs=inputs, seed=seed,
                               reference_name=reference_name)
    verdict = Verdict(reference_name, comparison, seed,
                      {k: tuple(np.shape(v)) for k, v in inputs.items()}, list(warnings))
    if not verdict.ok and second_opinion is not None:
        _ask_second_opinion(verdict, second_opinion, candidate, rtol=rtol, atol=atol, check_dtype=check_dtype,
                            row_groups=row_groups)
    if not verdict.ok and locate is not None:
        try:
            verdict.locator = locate()
        except Exception as exc:  # the diagnosis must never hide the failure it explains
            verdict.locator_error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            log.debug("locator failed", exc_info=True)
        if verdict.locator is not None and verdict.locator.reference_deviates:
            verdict.overruled = describe_deviation(verdict.locator.arbitration, reference_name)
            verdict.accepted_because = f"{reference_name} deviates from the ONNX specification"
            verdict.warnings.append(verdict.overruled)
        elif verdict.locator is not None and verdict.locator.rounding_only:
            verdict.overruled = _rounding_amplified(verdict, reference_name)
            verdict.accepted_because = "every node agrees; the graph amplifies float rounding"
            verdict.warnings.append(verdict.overruled)
    return verdict


def _rounding_amplified(verdict: Verdict, reference_name: str) -> str:
    """Why outputs that differ are accepted when every node agrees with the reference on its own.

    Why: the reference's sensitivity (:mod:`.sensitivity`) is measured by jittering float inputs,
    and a model fed only integers (token ids, masks) has none; a quantizing step (DynamicQuantizeLinear)
    there turns a one-ulp difference into one quantization step, which the graph then carries to the
    outputs. The locator's node-by-node check, every node fed the reference's own inputs, is the
    stronger evidence that the conversion computes what the reference computes.
    """
    locator = verdict.locator
    worst = next(iter(verdict.comparison.failed), None)
    size = ""
    if worst is not None and worst.scale and worst.max_abs is not None:
        size = f" by up to {worst.max_abs / worst.scale:.2g} of {worst.name}'s scale"
    own = f"; largest own error {locator.largest_own.figures()}" if locator.largest_own is not None else ""
    return (f"outputs differ from {reference_name}{size}, but every node computes what {reference_name} computes "
            f"from the same inputs ({locator.compared} tensors compared{own}): the difference is float rounding "
            f"amplified by the graph (a value on a quantization step's boundary rounding the other way); accepted")


def _ask_second_opinion(verdict: Verdict, ask: Callable[[], tuple[str, Mapping[str, Any], str]],
                        candidate: Any, *, rtol: Optional[float], atol: Optional[float], check_dtype: bool,
                        row_groups: Sequence[Sequence[str]]) -> None:
    try:
        name, outputs, why = ask()
    except Exception as exc:  # a help on top of the verdict: never replace it
        log.info("second opinion failed: %s", exc)
        return
    other = judge_outputs(outputs, candidate, rtol=rtol, atol=atol, check_dtype=check_dtype, row_groups=row_groups)
    if other.ok:
        names = ", ".join(o.name for o in verdict.comparison.failed)
        verdict.overruled = (f"{verdict.reference_name} computes output(s) {names} differently from {name}, which "
                             f"the conversion matches; {why}")
        verdict.accepted_because = f"matches {name}"
        verdict.warnings.append(verdict.overruled)
        verdict.comparison = other  # the figures the conversion is accepted on


_SEQUENCE_ENTRY = re.compile(r"^(.*?)(?:\[\d+\](?:#keys)?|#length)$")


def _sequence_base(name: str) -> Optional[str]:
    """The output name behind a sequence entry (``NAME[3]``, ``NAME[3]#keys``, ``NAME#length``)."""
    match = _SEQUENCE_ENTRY.match(name)
    return match.group(1) if match else None
