"""Round-trip reports: one table for the terminal, markdown for people, JSON for machines.

A report is a list of stages (the reference first, then every converted form) with, per stage,
the conversion and run times and the comparison of each output with the reference. The JSON form
is versioned (``schema``/``version``); its fields are listed in :data:`JSON_FIELDS`.
"""
from __future__ import annotations

import json
import math
import platform
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..atomic import atomic_path
from .compare import ComparisonReport, OutputComparison
from .locator import LocatorResult

SCHEMA = "x2onnx-toolkit.roundtrip-report"
SCHEMA_VERSION = 1
JSON_FIELDS = {
    "report": ("schema", "version", "title", "model", "ok", "reference", "tolerance", "inputs", "stages",
               "environment", "gradients"),
    "stage": ("name", "framework", "description", "ok", "status", "error", "convert_seconds", "run_seconds",
              "artifact", "outputs", "locator"),
    "output": ("name", "ref_shape", "cand_shape", "ref_dtype", "cand_dtype", "shape_ok", "dtype_ok", "n_elements",
               "max_abs", "max_rel", "mse", "cosine", "n_bad", "bad_fraction", "rtol", "atol", "ok"),
}


@dataclass
class OutputInfo:
    """Name, shape and dtype of one reference output."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Stage:
    """One form of the model: the reference, or a converted form compared with it."""

    name: str
    framework: str
    description: str = ""
    convert_seconds: Optional[float] = None
    run_seconds: Optional[float] = None
    comparison: Optional[ComparisonReport] = None  # None for the reference stage
    reference_outputs: list[OutputInfo] = field(default_factory=list)
    error: Optional[str] = None
    skipped: bool = False
    locator: Optional[LocatorResult] = None
    artifact: Optional[str] = None
    exit_code: Optional[int] = None  # of the error, when the stage failed with one

    @property
    def is_reference(self) -> bool:
        return self.comparison is None and not self.error and not self.skipped

    @property
    def ok(self) -> bool:
        if self.error or self.skipped:
            return False
        return self.comparison is None or self.comparison.ok

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error:
            return "error"
        if self.comparison is None:
            return "reference"
        return "ok" if self.comparison.ok else "DIFFERS"

    def to_dict(self) -> dict[str, Any]:
        if self.comparison is not None:
            outputs = [o.to_dict() for o in self.comparison]
        else:
            outputs = [o.to_dict() for o in self.reference_outputs]
        return {
            "name": self.name, "framework": self.framework, "description": self.description, "ok": self.ok,
            "status": self.status, "error": self.error, "convert_seconds": _round(self.convert_seconds),
            "run_seconds": _round(self.run_seconds), "artifact": self.artifact, "outputs": outputs,
            "locator": None if self.locator is None else self.locator.to_dict(),
        }


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(float(x), 6)


@dataclass
class RoundTripReport:
    """Every stage of a round trip compared with the reference (the first stage)."""

    title: str
    model: str
    stages: list[Stage] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    rtol: Optional[float] = None
    atol: Optional[float] = None
    gradients: list[Any] = field(default_factory=list)  # GradientReport per mode (roundtrip --check-gradients)

    @property
    def reference(self) -> Optional[Stage]:
        return self.stages[0] if self.stages else None

    @property
    def ok(self) -> bool:
        return bool(self.stages) and all(s.ok for s in self.stages) and all(g.ok for g in self.gradients)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def first_error(self) -> Optional[Stage]:
        return next((s for s in self.stages if s.error), None)

    def exit_code(self) -> int:
        """0 when every stage is within tolerance; the first failed stage's error code; else 3."""
        if self.ok:
            return 0
        failed = self.first_error()
        if failed is not None and failed.exit_code is not None:
            return failed.exit_code
        return 3

    # --- renderings -------------------------------------------------------------------------
    def rows(self) -> list[list[str]]:
        """Table rows (strings): one per (stage, output); stages without outputs get one row."""
        rows = []
        for stage in self.stages:
            times = [_secs(stage.convert_seconds), _secs(stage.run_seconds)]
            if stage.comparison is not None and len(stage.comparison):
                for out in stage.comparison:
                    rows.append([stage.name, out.name, _shape(out.cand_shape if out.cand_shape is not None else out.ref_shape),
                                 _num(out.max_abs), _num(out.max_rel), _num(out.mse), _cos(out.cosine),
                                 _bad(out), *times, "ok" if out.ok else "DIFFERS: " + out.problem()])
            elif stage.is_reference and stage.reference_outputs:
                for info in stage.reference_outputs:
                    rows.append([stage.name, info.name, _shape(info.shape), "-", "-", "-", "-", "-", *times,
                                 "reference"])
            else:
                rows.append([stage.name, "-", "-", "-", "-", "-", "-", "-", *times,
                             stage.status + (f": {stage.error}" if stage.error else "")])
        return rows

    HEADER = ["stage", "output", "shape", "max abs", "max rel", "mse", "cosine", "out of tol", "convert s",
              "run s", "result"]

    def table(self) -> str:
        """A plain-text table for the terminal, then one summary line."""
        rows = [self.HEADER] + self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER) - 1)]
        lines = []
        for k, row in enumerate(rows):
            cells = [c.ljust(w) for c, w in zip(row[:-1], widths)] + [row[-1]]
            lines.append("  ".join(cells).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        ref = self.reference.name if self.reference else "reference"
        if self.ok:
            return f"OK: every stage is within tolerance of {ref}"
        bad = [s.name for s in self.stages if not s.ok]
        if not bad:
            modes = [g.mode for g in self.gradients if not g.ok]
            return f"FAILED: gradients ({', '.join(modes)} mode) differ from {ref}'s"
        return f"FAILED: {', '.join(bad)} not within tolerance of {ref}"

    def to_markdown(self) -> str:
        lines = [f"# Round trip: {self.title}", "", f"- model: `{self.model}`",
                 f"- reference: {self.reference.name if self.reference else '-'}",
                 f"- tolerance: {_tolerance_text(self.rtol, self.atol)}", f"- result: **{'OK' if self.ok else 'FAILED'}**",
                 ""]
        if self.inputs:
            lines += ["## Inputs", "", "| input | shape | dtype | source |", "|---|---|---|---|"]
            for i in self.inputs:
                lines.append(f"| {_md(i['name'])} | {_shape(i['shape'])} | {i['dtype']} | {_md(i.get('source', ''))} |")
            lines.append("")
        lines += ["## Stages", "", "| " + " | ".join(self.HEADER) + " |", "|" + "---|" * len(self.HEADER)]
        for row in self.rows():
            lines.append("| " + " | ".join(_md(c) for c in row) + " |")
        lines.append("")
        for stage in self.stages:
            if stage.description or stage.artifact:
                lines.append(f"- **{_md(stage.name)}**: {_md(stage.description)}"
                             + (f" (saved as `{stage.artifact}`)" if stage.artifact else ""))
        details = [s for s in self.stages if s.locator is not None]
        if details:
            lines += ["", "## First divergent node", ""]
            for stage in details:
                assert stage.locator is not None
                lines += [f"### {stage.name}", "", "```", stage.locator.describe(), "```", ""]
        for gradients in self.gradients:
            lines += ["", "```", *gradients.lines(), "```"]
        lines += ["", self.verdict(), ""]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "version": SCHEMA_VERSION, "title": self.title, "model": self.model, "ok": self.ok,
            "reference": self.reference.name if self.reference else None,
            "tolerance": {"rtol": self.rtol, "atol": self.atol,
                          "rule": "|cand - ref| <= atol + rtol * |ref|; null = per-dtype default"},
            "inputs": list(self.inputs), "stages": [s.to_dict() for s in self.stages],
            "environment": environment(), "gradients": [g.to_dict() for g in self.gradients],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def write_markdown(self, path: str) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_markdown(), encoding="utf-8")

    def write_json(self, path: str) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json() + "\n", encoding="utf-8")


def environment() -> dict[str, str]:
    """Versions of the frameworks this process has loaded (none is imported for the purpose)."""
    env = {"python": platform.python_version()}
    for name in ("numpy", "onnx", "onnxruntime", "torch", "mxnet"):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if version:
            env[name] = str(version)
    return env


def _tolerance_text(rtol: Optional[float], atol: Optional[float]) -> str:
    if rtol is None and atol is None:
        return "per-dtype defaults (float32: rtol 1e-4, atol 1e-5)"
    return f"rtol {rtol if rtol is not None else 'default'}, atol {atol if atol is not None else 'default'}"


def _secs(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3f}"


def _num(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.3g}"


def _cos(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.6f}"


def _bad(out: OutputComparison) -> str:
    if out.n_bad is None:
        return "-"
    return f"{out.n_bad}/{out.n_elements}"


def _shape(shape: Optional[Sequence[int]]) -> str:
    if shape is None:
        return "-"
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
